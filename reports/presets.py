"""Named, versioned experiment presets: each expands to a deterministic grid of runs.

    from driftlab.reports.presets import get_preset
    specs = get_preset("drift").grid("tiny", seeds=3)   # list[RunSpec]

A :class:`RunSpec` is one run: the preset it belongs to, a config (a
:class:`~driftlab.models.train.TrainConfig` run by the engine, or a
:class:`FirstStepConfig` run directly with JAX by ``reports/sweep.py``), the tags the
report groups by, and a stable id (a readable label plus a short hash of the config).
Bump a preset's ``version`` whenever its grid changes meaning; the version is part of
every run id, so a changed preset never reuses stale results.

Scales (the ``--size`` of ``driftlab sweep``; each preset maps a scale to model sizes,
steps and seeds, see :data:`SCALES`): ``tiny`` (CPU, seconds per run, tens of steps: the
tests' smoke scale), ``cpu`` (the decisive reduced scale: 1000-2000 steps, 3 seeds,
synthetic and real data, SGD and AdamW; the whole reduced report in about an hour on a
2-core CPU), ``small`` (one GPU, minutes per run), ``gpu`` (GPT-nano 12×768, sequence
1024: the drift, pins and spikes presets in ~40 minutes of one H100), ``paper`` (the
paper's scales, accelerators).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable

from driftlab.activations import parse_activation
from driftlab.models.base import current_name, legacy_name
from driftlab.models.train import TrainConfig
from driftlab.reports.plan import CPU_SEEDS, cell_seeds

DRIFT_ARCHS = ("mlp", "resnet", "vit", "gpt", "mpsenet")
DRIFT_ACTS = ("relu", "gelu", "silu", "tanh")  # tanh: the no-drift control
KINDS = ("train", "sparsity_law", "first_step")


def _bad(field_name: str, value, allowed) -> ValueError:
    return ValueError(f"{field_name}={value!r} invalid; allowed: {allowed}")


@dataclass(frozen=True)
class FirstStepConfig:
    """One SGD step on the theory's 3-layer block, ``draws`` independent weight draws.

    Block x ~ N(0, I_d) → W1 (d×n) → σ → W2 (n×n) → σ → W3 (n×k) → f, weights
    N(0, gain²/fan_in), no biases; loss ℓ = ½‖f − y‖² summed over the k outputs
    (BlockSetting reduction "sum"), y ~ N(0, I_k) independent of everything, averaged
    over a batch of ``batch_size`` inputs. The measured quantity is the mean entry of
    ΔW2 = −lr·∂L/∂W2 after one plain SGD step, per draw.
    """

    act: str = "relu"
    d_in: int = 32
    width: int = 64
    d_out: int = 10
    gain: float = 1.0
    lr: float = 0.1
    batch_size: int = 16
    draws: int = 256
    seed: int = 0

    def validate(self) -> "FirstStepConfig":
        """Raise ValueError naming the first bad field and its allowed values."""
        try:
            parse_activation(self.act)
        except ValueError as err:
            raise ValueError(f"FirstStepConfig.act: {err}") from None
        for name in ("d_in", "width", "d_out", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise _bad(f"FirstStepConfig.{name}", v, "a positive integer")
        if isinstance(self.draws, bool) or not isinstance(self.draws, int) or self.draws < 2:
            raise _bad("FirstStepConfig.draws", self.draws, "an integer >= 2")
        for name in ("gain", "lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise _bad(f"FirstStepConfig.{name}", v, "a positive number")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise _bad("FirstStepConfig.seed", self.seed, "a non-negative integer")
        return self


# TrainConfig fields that do not change a run's result: where it is written, whether a bar
# is shown, how often it checkpoints, whether an earlier run there may be replaced. They
# stay out of run ids, so adding such a field never invalidates finished runs.
OPERATIONAL_FIELDS = ("out", "progress", "checkpoint_minutes", "overwrite")
# TrainConfig fields added after run ids were first issued: left out of the id (and of
# run.json) while at their default, so finished runs keep their ids; a run that sets one
# gets a new id.
LATE_FIELDS = ("muon_scale", "muon_momentum", "muon_ns_dtype", "warmdown_end",
               "phase_scaling")


def config_dict(config) -> dict:
    """The config as JSON-ready plain data (tuples become lists), without the
    :data:`OPERATIONAL_FIELDS` and without :data:`LATE_FIELDS` at their defaults."""
    d = dataclasses.asdict(config)
    for name in OPERATIONAL_FIELDS:
        d.pop(name, None)
    if isinstance(config, TrainConfig):
        # Model fields spelled as before their renames (models/base.RENAMED_FIELDS), so the
        # run ids and run.json of existing run directories stay the same.
        d["model_overrides"] = [[legacy_name(config.arch, k), v]
                                for k, v in d["model_overrides"]]
        for name in LATE_FIELDS:
            if d.get(name) == getattr(TrainConfig, name):
                d.pop(name)
    return json.loads(json.dumps(d, sort_keys=True, default=str))


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._" else "-" for c in str(text))


@dataclass(frozen=True)
class RunSpec:
    """One run of a preset: ``kind`` "train" (engine), "sparsity_law" (engine in segments
    plus the law on each checkpoint) or "first_step" (direct JAX)."""

    preset: str
    version: str
    kind: str
    config: object  # TrainConfig or FirstStepConfig
    tags: tuple = ()  # ((key, value), ...) the report groups by; includes "seed"
    label: str = ""

    @property
    def run_id(self) -> str:
        """``{label}-{hash}``: hash over preset, version, kind and the config (stable)."""
        blob = json.dumps({"preset": self.preset, "version": self.version, "kind": self.kind,
                           "config": config_dict(self.config)}, sort_keys=True)
        digest = hashlib.sha1(blob.encode()).hexdigest()[:10]
        return f"{_slug(self.label or self.preset)}-{digest}"

    @property
    def tag_dict(self) -> dict:
        return dict(self.tags)

    def as_dict(self) -> dict:
        """Plain data written as ``run.json`` (and compared to decide if a run is done)."""
        return {"preset": self.preset, "version": self.version, "kind": self.kind,
                "run_id": self.run_id, "tags": self.tag_dict, "label": self.label,
                "config": config_dict(self.config)}

    def with_config(self, **changes) -> "RunSpec":
        """A copy with config fields changed (tests shrink ``steps``); the id follows."""
        return dataclasses.replace(self, config=dataclasses.replace(self.config, **changes))


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def spec_from_dict(d: dict) -> RunSpec:
    """Rebuild a RunSpec from :meth:`RunSpec.as_dict` output (for cluster jobs)."""
    cls = FirstStepConfig if d["kind"] == "first_step" else TrainConfig
    cfg = dict(d["config"])
    if cls is TrainConfig:  # JSON turned the config's tuples into lists
        cfg = {k: _tuples(v) for k, v in cfg.items()}
        # run.json spells renamed model fields the old way (config_dict); run the new names
        cfg["model_overrides"] = tuple((current_name(cfg.get("arch", "mlp"), k), v)
                                       for k, v in cfg.get("model_overrides", ()))
    return RunSpec(d["preset"], d["version"], d["kind"], cls(**cfg),
                   tuple(sorted(d["tags"].items())), d.get("label", ""))


@dataclass(frozen=True)
class Preset:
    """A named, versioned experiment. ``grid(size, seeds)`` -> list of RunSpec; ``size`` is
    one of the preset's ``scales``."""

    name: str
    version: str
    description: str
    build: Callable[[str, int], list] = field(repr=False)
    default_seeds: dict = field(default_factory=lambda: {"tiny": 2, "cpu": 3, "small": 3,
                                                         "paper": 5})

    @property
    def scales(self) -> tuple[str, ...]:
        return tuple(s for s in SCALES if s in self.default_seeds)

    def grid(self, size: str = "tiny", seeds: int | None = None) -> list[RunSpec]:
        """Every run of this preset at scale ``size`` with seeds 0 … seeds-1 (deterministic
        order)."""
        if size not in self.scales:
            raise _bad(f"size (preset {self.name!r})", size, ", ".join(self.scales))
        seeds = self.default_seeds[size] if seeds is None else seeds
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise _bad("seeds", seeds, "a positive integer")
        specs = self.build(size, seeds)
        ids = [s.run_id for s in specs]
        if len(set(ids)) != len(ids):  # a preset bug, not a user error
            raise RuntimeError(f"preset {self.name!r} produced duplicate run ids")
        return specs


# --------------------------------------------------------------------------- scales

SCALES = ("tiny", "cpu", "small", "gpu", "paper")


@dataclass(frozen=True)
class ModelScale:
    """How one architecture runs at one scale: model size + overrides, batch, steps and
    the learning rates of AdamW and of SGD with momentum 0.9."""

    size: str
    overrides: tuple = ()
    batch_size: int = 32
    steps: int = 100
    lr_adamw: float = 1e-3
    lr_sgd: float = 1e-2
    dtype: str = "float32"

    def train_fields(self, optimizer: str) -> dict:
        return dict(size=self.size, model_overrides=self.overrides, batch_size=self.batch_size,
                    steps=self.steps, optimizer=optimizer, dtype=self.dtype,
                    lr=self.lr_adamw if optimizer == "adamw" else self.lr_sgd)


# GPT-nano at CPU scale: nanoGPT's CPU recipe (4 layers, 4 heads, block 64) at width 64.
GPT_CPU = (("n_embd", 64),)
# The decisive CPU scale. Step counts: ≥ 2000 for GPT-nano and ≥ 1000 for the vision
# models (issue 9); MP-SENet as long as fits (~0.09 s per step at batch 4 on 2 cores).
# SGD learning rates from 300-step pilots (the largest of 0.01/0.03/0.1 that trains
# stably on both data sources).
CPU_MODELS = {
    "mlp": ModelScale("small", (("width", 128),), 64, 1000, 1e-3, 3e-2),
    "resnet": ModelScale("tiny", (), 64, 1000, 1e-3, 3e-2),
    "vit": ModelScale("tiny", (), 64, 1000, 1e-3, 3e-2),
    "gpt": ModelScale("small", GPT_CPU, 16, 2000, 3e-3, 1e-1),
    "mpsenet": ModelScale("tiny", (), 4, 300, 1e-3, 1e-2),
}
# GPT-nano 12×768 (the paper's width and depth), sequence 1024, bf16: each run ~4-5 min of
# one H100, so drift (1 seed × 2 optimizers), pins (2) and spikes (4) fit in ~40 minutes.
GPU_GPT = ModelScale("paper", (("block_size", 1024), ("init", "torch_default")), 16, 1500,
                     6e-4, 1e-1, "bfloat16")
# Paper-matching scales (``paper``, ``gpu``) use the paper code's init, PyTorch's default
# nn.Linear U(±1/√fan_in) (models/init.py); MP-SENet's default already is.
PAPER_INIT = (("init", "torch_default"),)


def _paper_init(arch: str, size: str) -> tuple:
    return PAPER_INIT if size in ("paper", "gpu") and arch != "mpsenet" else ()

_STEPS = {"tiny": 30, "small": 500, "paper": 5000}
_BATCH = {"tiny": 16, "small": 64, "paper": 256}


def _train(preset: str, version: str, label: str, tags: dict, kind: str = "train",
           **cfg) -> RunSpec:
    cfg.setdefault("progress", False)
    tc = TrainConfig(**cfg).validate()
    return RunSpec(preset, version, kind, tc, tuple(sorted(tags.items())), label)


# --------------------------------------------------------------------------- 1. drift

DRIFT_VERSION = "3"
TINY_HEAVY_ARCHS = ("resnet", "mpsenet")
TINY_HEAVY_ACTS = ("relu", "tanh")
TINY_MPSENET_BATCH = 4  # MP-SENet steps cost ~1 s at batch 16 on 2 cores
DRIFT_DATA = ("synthetic", "embedded")
DRIFT_OPTIMIZERS = ("momentum", "adamw")
# MP-SENet's "embedded" source is real speech only where Debian's pocketsphinx-testdata is
# installed (models/data/speech.py) and otherwise the synthetic generator itself, so the
# decisive grid runs MP-SENet on synthetic speech only rather than duplicate it.
DRIFT_DATA_OVERRIDE = {"mpsenet": ("synthetic",)}
CPU_LOG_EVERY = 50
# The MLP logs every 10 steps: its drift changes sign within the first ~100 steps
# (issue 18, item 7), and the zero-crossing step is read from the logged trajectory.
CPU_LOG_EVERY_ARCH = {"mlp": 10}


@dataclass(frozen=True)
class DriftCell:
    """One cell of the decisive (cpu) drift grid: the configuration before seeds."""

    arch: str
    act: str = "relu"
    data: str = "synthetic"
    optimizer: str = "adamw"
    lr: float | None = None  # None: the arch's CPU_MODELS learning rate for the optimizer
    norm: str | None = None  # ResNet only: None = the default (BatchNorm)


def drift_cells_cpu() -> tuple[DriftCell, ...]:
    """The cells of the decisive drift grid, cheapest architectures first, each one a
    cell of a claim in reports/plan.py (cells no claim needs are cut: ViT's and
    MP-SENet's SGD-momentum cells, whose drift was a structural zero of ~1e-8 in the
    pilot, and GPT-nano on synthetic tokens, whose drift SD of 0.16 would need thousands
    of seeds, see the plan). Claim 3's GELU/SiLU cells and the ResNet norm=none control
    run on the embedded digits, the cheaper data source of those archs."""
    cells = [DriftCell("mlp", "relu", d, o) for d in DRIFT_DATA for o in DRIFT_OPTIMIZERS]
    cells += [DriftCell("mlp", "relu", "synthetic", "adamw", lr) for lr in MLP_DRIFT_LRS]
    cells += [DriftCell("mlp", a, "synthetic", "adamw") for a in ("gelu", "silu", "tanh")]
    cells += [DriftCell("resnet", "relu", "embedded", o) for o in DRIFT_OPTIMIZERS]
    cells += [DriftCell("resnet", "relu", "embedded", "adamw", norm="none")]
    cells += [DriftCell("resnet", a, "embedded", "adamw") for a in ("gelu", "silu")]
    cells += [DriftCell("vit", "relu", d, "adamw") for d in DRIFT_DATA]
    cells += [DriftCell("vit", a, "embedded", "adamw") for a in ("gelu", "silu")]
    cells += [DriftCell("mpsenet", "relu", "synthetic", "adamw")]
    cells += [DriftCell("gpt", "relu", "embedded", o) for o in ("adamw", "momentum")]
    return tuple(cells)


# The MLP's learning-rate factor (issue 18, item 7): the sparsity-law MLP drifted +0.08
# at lr 1e-3 but −0.9 at 1e-2 and −1.4 at 3e-2; 1e-3 is the base cell (CPU_MODELS).
MLP_DRIFT_LRS = (1e-2, 3e-2)


def _drift_cpu_spec(preset: str, version: str, arch: str, act: str, data: str,
                    optimizer: str, seed: int, scale: str, pins: tuple = (),
                    lr: float | None = None, norm: str | None = None) -> RunSpec:
    """One run of the decisive grid (also the unpinned baseline of the ``pins`` preset)."""
    ms = GPU_GPT if scale == "gpu" else CPU_MODELS[arch]
    pin_tag = "+".join(pins) or "none"
    label = (f"{preset}_{arch}_{act}_{data}_{optimizer}" + (f"_lr{lr:g}" if lr else "")
             + (f"_norm-{norm}" if norm else "") + (f"_{pin_tag}" if pins else "")
             + f"_s{seed}")
    tags = {"arch": arch, "act": act, "data": data, "optimizer": optimizer, "seed": seed,
            "size": scale}
    if preset == "pins":
        tags["pin"] = pin_tag
    fields = ms.train_fields(optimizer)
    if lr is not None:
        tags["lr"] = lr
        fields["lr"] = lr
    if norm is not None:
        tags["norm"] = norm
        fields["model_overrides"] = tuple(fields["model_overrides"]) + (("norm", norm),)
    extra = {"pins": pins} if pins else {}
    log_every = CPU_LOG_EVERY_ARCH.get(arch, CPU_LOG_EVERY) if scale == "cpu" else 100
    return _train(preset, version, label, tags, arch=arch, act=act, data=data, seed=seed,
                  log_every=log_every, eval_batches=8, **fields, **extra)


def _drift_spec(preset: str, version: str, arch: str, act: str, seed: int, size: str,
                pins: tuple = ()) -> RunSpec:
    """One run of the tiny/small/paper drift grid: synthetic data, AdamW lr 1e-3 (also the
    unpinned baseline of the ``pins`` preset at ``tiny``)."""
    tags = {"arch": arch, "act": act, "seed": seed, "size": size, "data": "synthetic",
            "optimizer": "adamw"}
    label = f"drift_{arch}_{act}_s{seed}"
    extra = {}
    if pins:
        tags["pin"] = "+".join(pins)
        label = f"{preset}_{arch}_{tags['pin']}_s{seed}"
        extra["pins"] = pins
    return _train(preset, version, label, tags, arch=arch, act=act, data="synthetic",
                  size=size, steps=_STEPS[size], lr=1e-3,
                  batch_size=(TINY_MPSENET_BATCH if size == "tiny" and arch == "mpsenet"
                              else _BATCH[size]),
                  optimizer="adamw", seed=seed,
                  log_every={"tiny": 1, "small": 5, "paper": 25}[size], eval_batches=2,
                  model_overrides=_paper_init(arch, size), **extra)


def _drift_grid(size: str, seeds: int) -> list[RunSpec]:
    """Downstream-weight drift and E[g | p > 0] over training.

    ``tiny``/``small``/``paper``: every architecture × {relu, gelu, silu, tanh} × seed on
    synthetic data, AdamW lr 1e-3 (at ``tiny`` ResNet and MP-SENet run relu and the tanh
    control only, MP-SENet at batch 4: their compilation would dominate the smoke scale).
    ``cpu``: the decisive grid, the cells of :func:`drift_cells_cpu` × seed (see
    :data:`CPU_MODELS`); seeds per cell from the analysis plan (reports/plan.py
    ``cell_seeds``: ``seeds`` for the cheap archs, fewer for GPT-nano and MP-SENet).
    ``gpu``: GPT-nano 12×768 with ReLU on the embedded text, both optimizers.
    """
    if size == "cpu":
        return [_drift_cpu_spec("drift", DRIFT_VERSION, c.arch, c.act, c.data, c.optimizer,
                                seed, size, lr=c.lr, norm=c.norm)
                for c in drift_cells_cpu() for seed in range(cell_seeds(c.arch, seeds))]
    if size == "gpu":
        return [_drift_cpu_spec("drift", DRIFT_VERSION, "gpt", "relu", "embedded", opt,
                                seed, size) for opt in DRIFT_OPTIMIZERS
                for seed in range(seeds)]
    specs = []
    for arch in DRIFT_ARCHS:
        acts = TINY_HEAVY_ACTS if size == "tiny" and arch in TINY_HEAVY_ARCHS else DRIFT_ACTS
        for act in acts:
            specs += [_drift_spec("drift", DRIFT_VERSION, arch, act, seed, size)
                      for seed in range(seeds)]
    return specs


# --------------------------------------------------------------------------- 1b. init

INIT_VERSION = "1"
# E[g | p > 0] at the initial parameters over INIT_BATCHES training batches per seed: a
# run of INIT_BATCHES steps at lr INIT_LR, logging every step. AdamW's update is at most
# lr per entry per step, so 16 steps move no weight by more than 1.6e-11, below float32
# resolution of the ~1e-2 weights: every logged step is the init parameters on a fresh
# batch (issue 18, item 10: claim 1b over many batches per seed).
INIT_BATCHES = 16
INIT_LR = 1e-12
INIT_CELLS = (("mlp", "synthetic", None), ("resnet", "embedded", None),
              ("resnet", "embedded", "none"), ("vit", "embedded", None),
              ("mpsenet", "synthetic", None), ("gpt", "synthetic", None),
              ("gpt", "embedded", None))


def _init_grid(size: str, seeds: int) -> list[RunSpec]:
    """Claim 1b: the decisive scale's ReLU models at init (cpu: :data:`CPU_MODELS`;
    tiny: size tiny), :data:`INIT_BATCHES` batches per seed, every architecture's data
    source of the per-layer theorem's default variants plus the ResNet norm=none control."""
    specs = []
    for arch, data, norm in INIT_CELLS:
        for seed in range(seeds):
            if size == "cpu":
                ms = CPU_MODELS[arch]
                fields = ms.train_fields("adamw")
            else:
                fields = dict(size="tiny", model_overrides=(), batch_size=(
                    TINY_MPSENET_BATCH if arch == "mpsenet" else 8), dtype="float32")
            if norm:
                fields["model_overrides"] = tuple(fields["model_overrides"]) + (("norm", norm),)
            fields.update(steps=INIT_BATCHES if size == "cpu" else 4, lr=INIT_LR,
                          optimizer="adamw")
            tags = {"arch": arch, "act": "relu", "data": data, "seed": seed, "size": size,
                    **({"norm": norm} if norm else {})}
            label = f"init_{arch}_{data}" + (f"_norm-{norm}" if norm else "") + f"_s{seed}"
            specs.append(_train("init", INIT_VERSION, label, tags, arch=arch, act="relu",
                                data=data, seed=seed, log_every=1, eval_batches=1,
                                **fields))
    return specs


# --------------------------------------------------------------------------- 2. pins

PINS_VERSION = "2"
# The paper's pin first; the reader pin (driftlab's competing mechanism, exploratory) and
# its sham control (models/pins.py) after it.
PIN_NAMES = ("downstream-mean", "sham", "reader-stream-mean")


def _pins_grid(size: str, seeds: int) -> list[RunSpec]:
    """The causal test: the drift grid's runs with one pin each (models/pins.py), paired
    by seed with the unpinned run of the ``drift`` preset that has the same config.

    ``cpu``/``gpu``: the MLP on synthetic data and GPT-nano on the embedded text, both
    with AdamW, each pin of :data:`PIN_NAMES` × seed (cpu: the plan's seeds per arch). ``tiny``: the same at
    the drift preset's tiny config (smoke scale; its baselines are tiny drift runs).
    """
    specs = []
    cells = (("gpt", "embedded"),) if size == "gpu" else (("mlp", "synthetic"),
                                                          ("gpt", "embedded"))
    for arch, data in cells:
        for pin in PIN_NAMES:
            for seed in range(cell_seeds(arch, seeds) if size == "cpu" else seeds):
                if size == "tiny":
                    specs.append(_drift_spec("pins", PINS_VERSION, arch, "relu", seed, size,
                                             pins=(pin,)))
                else:
                    specs.append(_drift_cpu_spec("pins", PINS_VERSION, arch, "relu", data,
                                                 "adamw", seed, size, pins=(pin,)))
    return specs


# --------------------------------------------------------------------------- 3. first_step

FIRST_STEP_VERSION = "1"
FIRST_STEP_WIDTHS = {"tiny": (16, 64, 256), "cpu": (16, 64, 256, 1024),
                     "small": (16, 64, 256, 1024), "paper": (16, 64, 256, 1024, 4096)}
FIRST_STEP_DRAWS = {"tiny": 256, "cpu": 2048, "small": 2048, "paper": 8192}
FIRST_STEP_ACTS = ("relu", "gelu", "silu", "tanh")


def _first_step_grid(size: str, seeds: int) -> list[RunSpec]:
    """The 3-layer block (d=32, k=10, gain 1, lr 0.1, batch 16) at several widths; each
    seed is one run of ``draws`` independent weight draws (so draws × seeds in all)."""
    specs = []
    for act in FIRST_STEP_ACTS:
        for width in FIRST_STEP_WIDTHS[size]:
            for seed in range(seeds):
                cfg = FirstStepConfig(act=act, width=width, draws=FIRST_STEP_DRAWS[size],
                                      seed=seed).validate()
                specs.append(RunSpec("first_step", FIRST_STEP_VERSION, "first_step", cfg,
                                     tuple(sorted({"act": act, "width": width, "seed": seed,
                                                   "size": size}.items())),
                                     f"first_step_{act}_n{width}_s{seed}"))
    return specs


# --------------------------------------------------------------------------- 4. sparsity_law

SPARSITY_LAW_VERSION = "2"
# Learning rates that span little to strong drift within the run.
SPARSITY_LAW_LRS = (1e-3, 1e-2, 3e-2)
# Steps (from 0) at which the sweep evaluates the law on a checkpoint.
SPARSITY_LAW_POINTS = 4


def sparsity_law_steps(total: int) -> list[int]:
    """The evaluation steps of a sparsity_law run: 0 … total, SPARSITY_LAW_POINTS + 1 points."""
    return sorted({round(total * i / SPARSITY_LAW_POINTS) for i in range(SPARSITY_LAW_POINTS + 1)})


def _sparsity_law_grid(size: str, seeds: int) -> list[RunSpec]:
    """ReLU MLP with three hidden layers, no biases and fan_in_normal init (so every
    hidden pre-activation is exactly Σ_j W_ij h_j, the law's setting), on synthetic
    data, AdamW at several learning rates (``cpu``: 1000 steps, width 128)."""
    depth = {"paper": 4}.get(size, 3)
    model_size = "small" if size == "cpu" else size
    steps = {"cpu": 1000}.get(size, _STEPS.get(size, 0) * 2)
    overrides = (("bias", False), ("depth", depth), ("init", "fan_in_normal")) + \
        ((("width", 128),) if size == "cpu" else ())
    specs = []
    for lr in SPARSITY_LAW_LRS:
        for seed in range(seeds):
            specs.append(_train("sparsity_law", SPARSITY_LAW_VERSION,
                                f"sparsity_law_lr{lr:g}_s{seed}",
                                {"arch": "mlp", "act": "relu", "lr": lr, "seed": seed,
                                 "size": size}, kind="sparsity_law",
                                arch="mlp", act="relu", data="synthetic", size=model_size,
                                steps=steps, batch_size=_BATCH.get(size, 64), lr=lr,
                                optimizer="adamw", seed=seed, log_every=5 if size == "tiny"
                                else 50, eval_batches=2, model_overrides=overrides))
    return specs


# --------------------------------------------------------------------------- 5. tradeoff

TRADEOFF_VERSION = "2"


def tradeoff_axes(size: str) -> list[dict]:
    """The configurations of the trade-off sweep (before seeds).

    ``cpu``: knobs that move sparsity *without* instability around a stable AdamW base
    (lr 3e-3, gain 1, depth 3): init gain, decoupled weight decay, an L1 activation
    penalty (TrainConfig.act_l1) and clipped-ReLU² thresholds, plus a learning-rate ladder
    whose top rungs may diverge (the report flags them and fits the knee with and
    without them). ``tiny``/``small``/``paper``: learning rate × weight decay × gain ×
    depth × activation.
    """
    base = dict(act="relu", lr=3e-3, weight_decay=0.0, gain=1.0, depth=3, act_l1=0.0)
    if size == "cpu":
        configs = [dict(base, lr=lr) for lr in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)]
        configs += [dict(base, gain=g) for g in (0.5, 2.0, 3.0, 4.0)]
        configs += [dict(base, weight_decay=wd) for wd in (0.3, 1.0, 3.0)]
        configs += [dict(base, act_l1=l1) for l1 in (0.01, 0.03, 0.1, 0.3, 1.0)]
        configs += [dict(base, act=a) for a in ("relu2", "clipped_relu2:1",
                                                 "clipped_relu2:4")]
        return configs
    if size == "tiny":
        base = dict(base, depth=2)
        configs = [dict(base, lr=lr) for lr in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)]
        configs += [dict(base, lr=lr, gain=2.0, depth=4) for lr in (1e-2, 3e-2, 1e-1, 3e-1)]
        configs += [dict(base, lr=3e-2, weight_decay=wd, gain=0.5) for wd in (0.0, 1.0)]
        configs += [dict(base, lr=1e-2, act=a) for a in ("gelu", "relu2")]
        return configs
    lrs = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1) if size == "paper" else (1e-3, 1e-2, 1e-1)
    configs = []
    for act in ("relu", "relu2", "clipped_relu2:15"):
        for lr in lrs:
            for wd in (0.0, 0.1):
                for gain in ((0.5, 1.0, 2.0) if size == "paper" else (1.0, 2.0)):
                    configs.append(dict(base, act=act, lr=lr, weight_decay=wd, gain=gain,
                                        depth={"small": 3, "paper": 4}[size]))
    return configs  # paper: 3 × 5 × 2 × 3 = 90 configurations (the paper had 79)


def _tradeoff_grid(size: str, seeds: int) -> list[RunSpec]:
    """MLP on the embedded real digits (accuracy is meaningful), AdamW, per config × seed."""
    steps = {"tiny": 150, "cpu": 1000, "small": 2000, "paper": 10000}[size]
    model_size = "small" if size == "cpu" else size
    width = (("width", 128),) if size == "cpu" else ()
    specs = []
    for c in tradeoff_axes(size):
        for seed in range(seeds):
            label = (f"tradeoff_{c['act']}_lr{c['lr']:g}_wd{c['weight_decay']:g}"
                     f"_g{c['gain']:g}_d{c['depth']}_l1{c['act_l1']:g}_s{seed}")
            specs.append(_train("tradeoff", TRADEOFF_VERSION, label,
                                {**c, "arch": "mlp", "seed": seed, "size": size},
                                arch="mlp", act=c["act"], data="embedded", size=model_size,
                                steps=steps, batch_size=max(32, _BATCH.get(size, 64)),
                                lr=c["lr"], weight_decay=c["weight_decay"],
                                act_l1=c["act_l1"], optimizer="adamw", seed=seed,
                                log_every=max(1, steps // 10), eval_batches=8,
                                model_overrides=(("depth", c["depth"]), ("gain", c["gain"]))
                                + width + _paper_init("mlp", size)))
    return specs


# --------------------------------------------------------------------------- 6. spikes

SPIKES_VERSION = "3"
SPIKE_CLIPS = (2.0, 8.0, 50.0)
# cpu/gpu scale: thresholds that bind, from the measured distribution of the non-zero
# ReLU² outputs of GPT-nano cpu after 1500 AdamW steps (reports/spike_clips/): per layer
# the 99% quantile is 5.5-8.2 and the 99.9% quantile 9.9-16 (max 18-35), so clip 6
# cuts ~1% of the non-zero outputs and clip 12 ~0.1%.
SPIKE_CLIPS_DECISIVE = (6.0, 12.0)
GELU2_CLIP_DECISIVE = 6.0


# At cpu scale the spikes preset runs relu² only (claim 6a): its relu reference is the
# drift preset's GPT-nano embedded AdamW run (the same config), and claims 6b/6c need more
# seeds than fit (reports/plan.py), so their cells run at the gpu scale.
SPIKE_ACTS_CPU = ("relu2",)


def spike_activations(size: str = "tiny") -> list[str]:
    """relu (the reference), relu2, clipped_relu2 at the scale's thresholds, gelu2 and
    clipped_gelu2 (``tiny``/``small``/``paper`` also gelu). At ``cpu`` the report shows
    relu (from the drift preset) and :data:`SPIKE_ACTS_CPU`."""
    if size == "cpu":
        return ["relu", *SPIKE_ACTS_CPU]
    if size == "gpu":
        return (["relu", "relu2"] + [f"clipped_relu2:{c:g}" for c in SPIKE_CLIPS_DECISIVE]
                + ["gelu2", f"clipped_gelu2:{GELU2_CLIP_DECISIVE:g}"])
    return (["relu", "relu2"] + [f"clipped_relu2:{c:g}" for c in SPIKE_CLIPS]
            + ["gelu", "gelu2", "clipped_gelu2:8"])


def _spikes_grid(size: str, seeds: int) -> list[RunSpec]:
    """GPT-nano on the embedded stdlib text, AdamW, per activation × seed (``cpu``: the
    drift grid's 4-layer GPT for 2000 steps, relu² only, see :data:`SPIKE_ACTS_CPU`;
    ``gpu``: 12×768, sequence 1024)."""
    specs = []
    acts = SPIKE_ACTS_CPU if size == "cpu" else spike_activations(size)
    for act in acts:
        for seed in range(cell_seeds("gpt", seeds) if size == "cpu" else seeds):
            if size in ("cpu", "gpu"):
                specs.append(_drift_cpu_spec("spikes", SPIKES_VERSION, "gpt", act, "embedded",
                                             "adamw", seed, size))
                continue
            steps = {"tiny": 60, "small": 2000, "paper": 7000}[size]
            specs.append(_train("spikes", SPIKES_VERSION, f"spikes_{act}_s{seed}",
                                {"arch": "gpt", "act": act, "seed": seed, "size": size},
                                arch="gpt", act=act, data="embedded", size=size, steps=steps,
                                batch_size=_BATCH[size], lr=3e-3 if size == "tiny" else 1e-3,
                                optimizer="adamw", seed=seed, log_every=max(1, steps // 10),
                                eval_batches=4, model_overrides=_paper_init("gpt", size)))
    return specs


# --------------------------------------------------------------------------- 7. optimizers

# 2: paper-gpt@2 (the paper's Muon scale, momentum form, bf16 Newton–Schulz, the schedule
# as run); 1 used paper-gpt@1, whose Muon steps were 8–16× smaller than the paper's.
OPTIMIZERS_VERSION = "2"


def _optimizers_grid(size: str, seeds: int) -> list[RunSpec]:
    """Muon (the paper-gpt@2 recipe) vs AdamW vs SGD on GPT-nano 4×64 with the recipe's model
    and schedule (reports/optimizer_compare.py): ``cpu`` at its GRID_STEPS, ``tiny`` 8 steps."""
    from driftlab.reports.optimizer_compare import GRID_STEPS, OPTIMIZERS, optimizer_configs

    steps = GRID_STEPS if size == "cpu" else 8
    specs = []
    configs = optimizer_configs(steps, range(seeds), "unused", log_every=50 if size == "cpu"
                                else 1)
    for cfg in configs:
        opt = OPTIMIZERS[len(specs) // seeds]
        cfg = dataclasses.replace(cfg, out=None).validate()
        specs.append(RunSpec("optimizers", OPTIMIZERS_VERSION, "train", cfg,
                             tuple(sorted({"arch": "gpt", "act": cfg.act, "optimizer": opt,
                                           "seed": cfg.seed, "size": size,
                                           "data": cfg.data}.items())),
                             f"optimizers_{opt}_s{cfg.seed}"))
    return specs


PRESETS: dict[str, Preset] = {
    p.name: p for p in (
        Preset("init", INIT_VERSION, "claim 1b: E[g | p > 0] at the initial parameters, "
               f"{INIT_BATCHES} batches per seed, the decisive scale's models", _init_grid,
               {"tiny": 2, "cpu": CPU_SEEDS}),
        Preset("drift", DRIFT_VERSION, "downstream weight mean and E[g | p > 0] over "
               "training, every architecture × activation (cpu: the plan's cells)",
               _drift_grid, {"tiny": 3, "cpu": CPU_SEEDS, "small": 3, "gpu": 1, "paper": 5}),
        Preset("pins", PINS_VERSION, "causal test: sparsity and loss with each pin, paired "
               "with the drift preset's unpinned runs", _pins_grid,
               {"tiny": 3, "cpu": CPU_SEEDS, "gpu": 1}),
        Preset("first_step", FIRST_STEP_VERSION, "one SGD step of the 3-layer block vs the "
               "analytic −lr·E[∂ℓ/∂W2]", _first_step_grid,
               {"tiny": 2, "cpu": 1, "small": 4, "paper": 8}),
        Preset("sparsity_law", SPARSITY_LAW_VERSION, "measured ReLU sparsity vs the "
               "drift → sparsity law during training", _sparsity_law_grid),
        Preset("tradeoff", TRADEOFF_VERSION, "accuracy vs sparsity and the cliff",
               _tradeoff_grid, {"tiny": 1, "cpu": 3, "small": 2, "paper": 1}),
        Preset("spikes", SPIKES_VERSION, "GPT-nano activation spikes: relu² vs clipped "
               "vs gelu²", _spikes_grid, {"tiny": 3, "cpu": CPU_SEEDS, "small": 3, "gpu": 1,
                                          "paper": 5}),
        Preset("optimizers", OPTIMIZERS_VERSION, "drift and sparsity under Muon (paper-gpt@2 "
               "recipe) vs AdamW vs SGD", _optimizers_grid, {"tiny": 2, "cpu": 3}),
    )
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ValueError naming the valid presets otherwise."""
    if name not in PRESETS:
        raise _bad("preset", name, ", ".join(PRESETS))
    return PRESETS[name]
