"""The pre-registered analysis plan of the decisive (cpu) report, as data.

Seeds per cell (imported by reports/presets.py, so the presets take their seed counts from
the plan). The cheap architectures (MLP, ResNet, ViT: < 1 min per run) run
:data:`CPU_SEEDS` per cell. GPT-nano and MP-SENet runs cost 2–5 minutes each on the
shared 2-core machine, so their cells run :data:`COSTLY_SEEDS` unless :data:`PLANNED` sets
more: the n that 80% power needs at the claim's stated effect (reports/claims.py), from a
3-seed pilot (the v1 cpu sweep's SD; one-sided t at Holm's strictest level within the
claim, reports/power.py):

* claim 6a (relu² amplifies spikes, δ = ln 1.1): pilot SD 0.034 of the paired log-ratio
  → n = 4; the ``spikes`` relu² cell and the ``drift`` GPT ReLU cells (its relu reference)
  run 6;
* claim 4 (GPT-nano sparsity vs 0.85, δ = 0.02): the momentum cell's pilot SD 0.008 → n =
  6;
* claim 1 (ρ ≥ 0 at init, δ = 0.01): the 8-seed pilot (init v2) left GPT-nano on text
  (SD ≈ 0.016 per tap → n = 34–49) and ViT (SD 0.016 and 0.027 → n = 49 and 132)
  inconclusive; they run 48 and 64 seeds. A second stage, n again from the SD of the
  stage before (every seed of both stages enters the test): ViT's block 1 at 64 seeds
  (SD 0.037 → n = 241) runs 256; ResNet's BatchNorm taps stage2.block0.act2 and
  stage3.block0.act1 at 8 (SD 0.0075 and 0.0095 → n = 15 and 21) run 24, as do the
  norm=none cells of the same (architecture, data). The other init cells run 8;
* claim 2 (drift, δ = 0.01 init-std): MP-SENet's pilot SD 0.0022 → n = 5 (runs 6). GPT's
  pilot SD (0.07 with AdamW, 0.025 with momentum) would need n ≈ 700 and 100: no cpu design
  decides claim 2 for GPT-nano; the report says so, and the gpu scale is the design that
  would;
* claims 6b/6c (val-loss differences between GPT-nano activations, δ = 0.01 nats): the
  paired difference relu² − relu over the 6 seeds of 6a has SD 0.021, so 6b (one cell, Holm
  over its 3 tests) needs n = 41 paired seeds and 6c (four pairwise cells) n = 56, that is
  160–220 GPT-nano runs of about 5 minutes: no cpu design decides them, and the cpu scale
  runs none of their cells. The gpu scale's spikes preset has the cells at 1 seed, a
  smoke run; a decisive gpu design needs the same n.
"""

from __future__ import annotations

CPU_SEEDS = 8
COSTLY_ARCHS = ("gpt", "mpsenet")
COSTLY_SEEDS = 3
# (preset, arch[, data]) -> seeds per cell at the cpu scale, from the pilots above.
PLANNED = {("drift", "gpt"): 6, ("drift", "mpsenet"): 6, ("spikes", "gpt"): 6,
           ("init", "gpt", "embedded"): 48, ("init", "vit", "embedded"): 256,
           ("init", "resnet", "embedded"): 24}
# The init cells without a planned n run CPU_SEEDS (the preset's seed count is the largest n).
PLANNED_DEFAULT = {"init": CPU_SEEDS}


def cell_seeds(arch: str, seeds: int = CPU_SEEDS, preset: str = "", data: str = "") -> int:
    """Seeds of one cpu-scale cell of ``arch`` (on ``data``) in ``preset`` when the preset's
    seed count is ``seeds`` (``--seeds``, which caps every cell): :data:`PLANNED`'s n where
    it has one, else :data:`PLANNED_DEFAULT`'s for the preset, else ``seeds`` for the cheap
    archs and :data:`COSTLY_SEEDS` for the costly ones."""
    planned = PLANNED.get((preset, arch, data), PLANNED.get((preset, arch)))
    if planned is None:
        planned = PLANNED_DEFAULT.get(preset, COSTLY_SEEDS if arch in COSTLY_ARCHS else seeds)
    return min(seeds, planned)
