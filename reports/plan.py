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
* claim 2 (drift, δ = 0.01 init-std): MP-SENet's pilot SD 0.0022 → n = 5 (runs 6). GPT's
  pilot SD (0.07 with AdamW, 0.025 with momentum) would need n ≈ 700 and 100: no cpu design
  decides claim 2 for GPT-nano; the report says so, and the gpu scale is the design that
  would.
"""

from __future__ import annotations

CPU_SEEDS = 8
COSTLY_ARCHS = ("gpt", "mpsenet")
COSTLY_SEEDS = 3
# (preset, arch) -> seeds per cell at the cpu scale, from the pilot above.
PLANNED = {("drift", "gpt"): 6, ("drift", "mpsenet"): 6, ("spikes", "gpt"): 6}


def cell_seeds(arch: str, seeds: int = CPU_SEEDS, preset: str = "") -> int:
    """Seeds of one cpu-scale cell of ``arch`` in ``preset`` when the preset's seed count
    is ``seeds`` (``--seeds``): the costly archs get :data:`PLANNED`'s n or
    :data:`COSTLY_SEEDS`, never more than ``seeds``."""
    if arch not in COSTLY_ARCHS:
        return seeds
    return min(seeds, PLANNED.get((preset, arch), COSTLY_SEEDS))
