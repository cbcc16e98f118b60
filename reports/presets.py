"""Named, versioned experiment presets: each expands to a deterministic grid of runs.

    from driftlab.reports.presets import get_preset
    specs = get_preset("drift").grid("tiny", seeds=3)   # list[RunSpec]

A :class:`RunSpec` is one run: the preset it belongs to, a config (a
:class:`~driftlab.models.train.TrainConfig` run by the engine, or a
:class:`FirstStepConfig` run directly with JAX by ``reports/sweep.py``), the tags the
report groups by, and a stable id (a readable label plus a short hash of the config).
Bump a preset's ``version`` whenever its grid changes meaning; the version is part of
every run id, so a changed preset never reuses stale results.

Each preset is data: a table from scale to :class:`Grid`, which holds the grid's cells
(:class:`Cell`, one configuration before seeds) and its default seed count; one builder,
:meth:`Grid.expand`, turns a grid into runs, every cell × seed. Adding a scale is one entry
of a preset's table, adding a cell one entry of a grid. Run ids follow from the cells
alone (tests/test_preset_ids.py pins them), so finished run directories keep resuming.

Scales (the ``--size`` of ``driftlab sweep``, :data:`SCALES`; a preset need not have all):
``tiny`` (CPU, seconds per run, tens of steps: the tests' smoke scale), ``cpu`` (the
decisive reduced scale: 1000-2000 steps, the analysis plan's seeds (reports/plan.py),
synthetic and real data, SGD and AdamW; the whole reduced report in about an hour on a
2-core CPU), ``small`` (one GPU, minutes per run), ``gpu`` (GPT-nano 12×768, sequence
1024: the drift, pins and spikes presets in ~40 minutes of one H100), ``paper`` (the
paper's scales, accelerators).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable

from driftlab.activations import parse_activation
# TrainConfig (models/train_config.py) is imported where a run is built: its module starts
# JAX, and `driftlab sweep --help` lists PRESETS before any JAX starts.
from driftlab.reports.plan import CPU_SEEDS, PLANNED, cell_seeds
from driftlab.models.arch.base import current_name, legacy_name

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
    from driftlab.models.engine.train_config import TrainConfig

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
    from driftlab.models.engine.train_config import TrainConfig

    cls = FirstStepConfig if d["kind"] == "first_step" else TrainConfig
    cfg = dict(d["config"])
    if cls is TrainConfig:  # JSON turned the config's tuples into lists
        cfg = {k: _tuples(v) for k, v in cfg.items()}
        # run.json spells renamed model fields the old way (config_dict); run the new names
        cfg["model_overrides"] = tuple((current_name(cfg.get("arch", "mlp"), k), v)
                                       for k, v in cfg.get("model_overrides", ()))
    return RunSpec(d["preset"], d["version"], d["kind"], cls(**cfg),
                   tuple(sorted(d["tags"].items())), d.get("label", ""))


# --------------------------------------------------------------------------- grids

SCALES = ("tiny", "cpu", "small", "gpu", "paper")


@dataclass(frozen=True)
class Cell:
    """One configuration of a grid before seeds: the run label without its ``_s{seed}``,
    the tags the report groups by (without ``seed`` and ``size``, which every run gets)
    and the config's fields (without ``seed``); ``kind`` as in :class:`RunSpec`."""

    label: str
    tags: tuple = ()  # ((key, value), ...)
    fields: tuple = ()  # ((config field, value), ...)
    kind: str = "train"

    def spec(self, preset: str, version: str, size: str, seed: int) -> RunSpec:
        """The cell's run with ``seed`` at scale ``size``: a validated config."""
        from driftlab.models.engine.train_config import TrainConfig

        fields = {**dict(self.fields), "seed": seed}
        if self.kind == "first_step":
            config = FirstStepConfig(**fields)
        else:  # a sweep draws its own progress, not one bar per run
            config = TrainConfig(**{"progress": False, **fields})
        tags = tuple(sorted({**dict(self.tags), "seed": seed, "size": size}.items()))
        return RunSpec(preset, version, self.kind, config.validate(), tags,
                       f"{self.label}_s{seed}")


def _cell(label: str, tags: dict, fields: dict, kind: str = "train") -> Cell:
    return Cell(label, tuple(tags.items()), tuple(fields.items()), kind)


@dataclass(frozen=True)
class Grid:
    """A preset's runs at one scale: each of ``cells`` with seeds 0 … n-1 (cell-major,
    the order the shards split), n the preset's seed count (``seeds`` unless the sweep's
    ``--seeds`` says otherwise) or, where ``planned``, the analysis plan's seeds for the
    cell's arch at that count (reports/plan.py ``cell_seeds``). ``cells`` may be a
    function returning them, for cells built by a module imported only when needed."""

    seeds: int
    cells: tuple | Callable[[], tuple] = ()
    planned: bool = False

    def expand(self, preset: str, version: str, size: str, seeds: int) -> list[RunSpec]:
        cells = self.cells() if callable(self.cells) else self.cells
        return [cell.spec(preset, version, size, seed) for cell in cells
                for seed in range(cell_seeds(dict(cell.tags)["arch"], seeds, preset,
                                             dict(cell.tags).get("data", ""))
                                  if self.planned else seeds)]


@dataclass(frozen=True)
class Preset:
    """A named, versioned experiment: a table from scale to :class:`Grid`.
    ``grid(size, seeds)`` -> list of RunSpec; ``size`` is one of the preset's ``scales``."""

    name: str
    version: str
    description: str
    grids: dict = field(repr=False)  # scale -> Grid

    def __post_init__(self):
        for size in self.grids:
            if size not in SCALES:
                raise _bad(f"Preset.grids (preset {self.name!r}) scale", size,
                           ", ".join(SCALES))

    @property
    def scales(self) -> tuple[str, ...]:
        return tuple(s for s in SCALES if s in self.grids)

    @property
    def default_seeds(self) -> dict:
        """{scale: the seed count a sweep uses without ``--seeds``}."""
        return {s: self.grids[s].seeds for s in self.scales}

    def grid(self, size: str = "tiny", seeds: int | None = None) -> list[RunSpec]:
        """Every run of this preset at scale ``size`` with seeds 0 … seeds-1 (deterministic
        order)."""
        if size not in self.grids:
            raise _bad(f"size (preset {self.name!r})", size, ", ".join(self.scales))
        grid = self.grids[size]
        seeds = grid.seeds if seeds is None else seeds
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise _bad("seeds", seeds, "a positive integer")
        specs = grid.expand(self.name, self.version, size, seeds)
        ids = [s.run_id for s in specs]
        if len(set(ids)) != len(ids):  # a preset bug, not a user error
            raise RuntimeError(f"preset {self.name!r} produced duplicate run ids")
        return specs


def _label(preset: str, axes: dict, parts: tuple) -> str:
    """``{preset}_{axis}_{axis}…`` over the ``parts`` that ``axes`` sets, in that order."""
    forms = {"lr": "lr{:g}", "norm": "norm-{}"}
    return "_".join([preset] + [forms.get(k, "{}").format(axes[k]) for k in parts
                                if k in axes])


# --------------------------------------------------------------------------- scales


@dataclass(frozen=True)
class ModelScale:
    """How one architecture trains at one scale: model size + overrides, batch, steps,
    the learning rates of AdamW and of SGD with momentum 0.9, the dtype, the logging
    interval and the batches each evaluation averages."""

    size: str
    overrides: tuple = ()
    batch_size: int = 32
    steps: int = 100
    lr_adamw: float = 1e-3
    lr_sgd: float = 1e-2
    dtype: str = "float32"
    log_every: int = 50
    eval_batches: int = 8

    def train_fields(self, optimizer: str) -> dict:
        return dict(size=self.size, model_overrides=self.overrides, batch_size=self.batch_size,
                    steps=self.steps, optimizer=optimizer, dtype=self.dtype,
                    lr=self.lr_adamw if optimizer == "adamw" else self.lr_sgd,
                    log_every=self.log_every, eval_batches=self.eval_batches)


def _tenths(size: str, overrides: tuple, batch_size: int, steps: int, **kw) -> ModelScale:
    """A ModelScale that logs ten times per run."""
    return ModelScale(size, overrides, batch_size, steps, log_every=max(1, steps // 10), **kw)


# GPT-nano at CPU scale: nanoGPT's CPU recipe (4 layers, 4 heads, block 64) at width 64.
GPT_CPU = (("n_embd", 64),)
# The decisive CPU scale. Step counts: ≥ 2000 for GPT-nano and ≥ 1000 for the vision
# models (issue 9); MP-SENet as long as fits (~0.09 s per step at batch 4 on 2 cores).
# SGD learning rates from 300-step pilots (the largest of 0.01/0.03/0.1 that trains
# stably on both data sources). The MLP logs every 10 steps: its drift changes sign
# within the first ~100 steps (issue 18, item 7), and the zero-crossing step is read
# from the logged trajectory.
CPU_MODELS = {
    "mlp": ModelScale("small", (("width", 128),), 64, 1000, 1e-3, 3e-2, log_every=10),
    "resnet": ModelScale("tiny", (), 64, 1000, 1e-3, 3e-2),
    "vit": ModelScale("tiny", (), 64, 1000, 1e-3, 3e-2),
    "gpt": ModelScale("small", GPT_CPU, 16, 2000, 3e-3, 1e-1),
    "mpsenet": ModelScale("tiny", (), 4, 300, 1e-3, 1e-2),
}
# GPT-nano 12×768 (the paper's width and depth), sequence 1024, bf16: each run ~4-5 min of
# one H100, so drift (1 seed × 2 optimizers), pins (2) and spikes (4) fit in ~40 minutes.
GPU_GPT = ModelScale("paper", (("block_size", 1024), ("init", "torch_default")), 16, 1500,
                     6e-4, 1e-1, "bfloat16", log_every=100)
# Paper-matching scales (``paper``, ``gpu``) use the paper code's init, PyTorch's default
# nn.Linear U(±1/√fan_in) (models/init.py); MP-SENet's default already is.
PAPER_INIT = (("init", "torch_default"),)


def _paper_init(arch: str) -> tuple:
    return () if arch == "mpsenet" else PAPER_INIT


# --------------------------------------------------------------------------- 1. drift

DRIFT_VERSION = "3"
TINY_HEAVY_ARCHS = ("resnet", "mpsenet")
TINY_HEAVY_ACTS = ("relu", "tanh")
TINY_MPSENET_BATCH = 4  # MP-SENet steps cost ~1 s at batch 16 on 2 cores
DRIFT_DATA = ("synthetic", "embedded")
DRIFT_OPTIMIZERS = ("momentum", "adamw")


def _smoke_models(size: str, batch_size: int, steps: int, log_every: int,
                  paper_init: bool = False, batch_of: dict | None = None) -> dict:
    """{arch: ModelScale} of the smoke/one-GPU drift grids: the engine's size ``size``,
    AdamW lr 1e-3, ``batch_of[arch]`` or ``batch_size``, the paper code's init where
    ``paper_init``."""
    return {arch: ModelScale(size, _paper_init(arch) if paper_init else (),
                             (batch_of or {}).get(arch, batch_size), steps,
                             log_every=log_every, eval_batches=2) for arch in DRIFT_ARCHS}


SMOKE_MODELS = {
    "tiny": _smoke_models("tiny", 16, 30, 1, batch_of={"mpsenet": TINY_MPSENET_BATCH}),
    "small": _smoke_models("small", 64, 500, 5),
    "paper": _smoke_models("paper", 256, 5000, 25, paper_init=True),
}
# Labels: the decisive grids name every axis of the cell; the smoke grids (older ids) name
# the arch and the activation (drift) or the pin (pins).
DECISIVE_LABEL = ("arch", "act", "data", "optimizer", "lr", "norm", "pin")


def _run(preset: str, ms: ModelScale, arch: str, act: str = "relu", data: str = "synthetic",
         optimizer: str = "adamw", lr: float | None = None, norm: str | None = None,
         pins: tuple = (), label: tuple = DECISIVE_LABEL) -> Cell:
    """A cell of the drift family (drift, pins, the decisive spikes): ``arch`` with ``act``
    trained on ``data`` by ``optimizer`` as ``ms`` says, at learning rate ``lr`` and with
    ResNet's ``norm`` where set, with ``pins`` (models/pins.py). Tagged by arch, act,
    data, optimizer and whichever of lr, norm, pin is set; labelled by ``label``'s axes."""
    axes = {"arch": arch, "act": act, "data": data, "optimizer": optimizer}
    fields = dict(ms.train_fields(optimizer), arch=arch, act=act, data=data)
    if lr is not None:
        axes["lr"] = fields["lr"] = lr
    if norm is not None:
        axes["norm"] = norm
        fields["model_overrides"] = tuple(fields["model_overrides"]) + (("norm", norm),)
    if pins:
        axes["pin"] = "+".join(pins)
        fields["pins"] = pins
    return _cell(_label(preset, axes, label), axes, fields)


@dataclass(frozen=True)
class DriftCell:
    """One cell of the decisive (cpu) drift grid: the configuration before seeds."""

    arch: str
    act: str = "relu"
    data: str = "synthetic"
    optimizer: str = "adamw"
    lr: float | None = None  # None: the arch's CPU_MODELS learning rate for the optimizer
    norm: str | None = None  # ResNet only: None = the default (BatchNorm)


# The MLP's learning-rate factor (issue 18, item 7): the sparsity-law MLP drifted +0.08
# at lr 1e-3 but −0.9 at 1e-2 and −1.4 at 3e-2; 1e-3 is the base cell (CPU_MODELS).
MLP_DRIFT_LRS = (1e-2, 3e-2)


def drift_cells_cpu() -> tuple[DriftCell, ...]:
    """The cells of the decisive drift grid, cheapest architectures first, each one a
    cell of a claim in reports/plan.py (cells no claim needs are cut: ViT's and
    MP-SENet's SGD-momentum cells, whose drift was a structural zero of ~1e-8 in the
    pilot, and GPT-nano on synthetic tokens, whose drift SD of 0.16 would need thousands
    of seeds, see the plan). Claim 3's GELU/SiLU cells and the ResNet norm=none control
    run on the embedded digits, the cheaper data source of those archs. MP-SENet's
    "embedded" source is real speech only where Debian's pocketsphinx-testdata is
    installed (models/data/speech.py) and otherwise the synthetic generator itself, so
    MP-SENet runs on synthetic speech only rather than duplicate it."""
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


def _drift_smoke(size: str, acts_of: dict | None = None) -> tuple[Cell, ...]:
    """Every architecture × ``acts_of[arch]`` (default :data:`DRIFT_ACTS`) on synthetic
    data, AdamW, at :data:`SMOKE_MODELS` ``[size]``."""
    return tuple(_run("drift", SMOKE_MODELS[size][arch], arch, act, label=("arch", "act"))
                 for arch in DRIFT_ARCHS for act in (acts_of or {}).get(arch, DRIFT_ACTS))


# Downstream-weight drift and E[g | p > 0] over training.
DRIFT_GRIDS = {
    # Every architecture × {relu, gelu, silu, tanh} × seed on synthetic data, AdamW lr
    # 1e-3; ResNet and MP-SENet run relu and the tanh control only, MP-SENet at batch 4:
    # their compilation would dominate the smoke scale.
    "tiny": Grid(3, _drift_smoke("tiny", dict.fromkeys(TINY_HEAVY_ARCHS, TINY_HEAVY_ACTS))),
    # The decisive grid: the cells of drift_cells_cpu × seed (see CPU_MODELS); seeds per
    # cell from the analysis plan (``seeds`` for the cheap archs, fewer for GPT-nano and
    # MP-SENet).
    "cpu": Grid(CPU_SEEDS, tuple(_run("drift", CPU_MODELS[c.arch], c.arch, c.act, c.data,
                                      c.optimizer, c.lr, c.norm) for c in drift_cells_cpu()),
                planned=True),
    # Every architecture × {relu, gelu, silu, tanh} on synthetic data, AdamW lr 1e-3.
    "small": Grid(3, _drift_smoke("small")),
    # GPT-nano 12×768 with ReLU on the embedded text, both optimizers.
    "gpu": Grid(1, tuple(_run("drift", GPU_GPT, "gpt", "relu", "embedded", o)
                         for o in DRIFT_OPTIMIZERS)),
    # As ``small``, at the paper's model sizes and init.
    "paper": Grid(5, _drift_smoke("paper")),
}


# --------------------------------------------------------------------------- 1b. init

INIT_VERSION = "2"  # v2: the taps log grad_pos_abs_mean (claim 1's scale)
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
TINY_INIT_MODELS = {arch: ModelScale("tiny", (), TINY_MPSENET_BATCH if arch == "mpsenet"
                                     else 8) for arch in DRIFT_ARCHS}


def _init_cells(models: dict, batches: int) -> tuple[Cell, ...]:
    """The ReLU models ``models[arch]`` at init, ``batches`` batches per seed, for every
    cell of :data:`INIT_CELLS`."""
    cells = []
    for arch, data, norm in INIT_CELLS:
        tags = {"arch": arch, "act": "relu", "data": data, **({"norm": norm} if norm else {})}
        fields = dict(models[arch].train_fields("adamw"), arch=arch, act="relu", data=data,
                      steps=batches, lr=INIT_LR, log_every=1, eval_batches=1)
        if norm:
            fields["model_overrides"] = tuple(fields["model_overrides"]) + (("norm", norm),)
        cells.append(_cell(_label("init", tags, ("arch", "data", "norm")), tags, fields))
    return tuple(cells)


# Claim 1b: the decisive scale's ReLU models at init, INIT_BATCHES batches per seed, every
# architecture's data source of the per-layer theorem's default variants plus the ResNet
# norm=none control.
INIT_GRIDS = {
    "tiny": Grid(2, _init_cells(TINY_INIT_MODELS, 4)),  # the engine's tiny sizes
    # the plan's n per cell (reports/plan.py); the grid's seed count is the largest
    "cpu": Grid(max(CPU_SEEDS, *(n for key, n in PLANNED.items() if key[0] == "init")),
                _init_cells(CPU_MODELS, INIT_BATCHES), planned=True),
}


# --------------------------------------------------------------------------- 2. pins

PINS_VERSION = "2"
# The paper's pin first; the reader pin (driftlab's competing mechanism, exploratory) and
# its sham control (models/pins.py) after it.
PIN_NAMES = ("downstream-mean", "sham", "reader-stream-mean")
PIN_CELLS = (("mlp", "synthetic"), ("gpt", "embedded"))

# The causal test: the drift grid's runs with one pin each (models/pins.py), paired by seed
# with the unpinned run of the ``drift`` preset that has the same config.
PINS_GRIDS = {
    # The drift preset's tiny config (smoke scale; its baselines are tiny drift runs).
    "tiny": Grid(3, tuple(_run("pins", SMOKE_MODELS["tiny"][arch], arch, pins=(pin,),
                               label=("arch", "pin"))
                          for arch, _ in PIN_CELLS for pin in PIN_NAMES)),
    # The MLP on synthetic data and GPT-nano on the embedded text, both with AdamW, each
    # pin × seed (the plan's seeds per arch).
    "cpu": Grid(CPU_SEEDS, tuple(_run("pins", CPU_MODELS[arch], arch, "relu", data, "adamw",
                                      pins=(pin,))
                                 for arch, data in PIN_CELLS for pin in PIN_NAMES),
                planned=True),
    # GPT-nano 12×768 on the embedded text.
    "gpu": Grid(1, tuple(_run("pins", GPU_GPT, "gpt", "relu", "embedded", "adamw",
                              pins=(pin,)) for pin in PIN_NAMES)),
}


# --------------------------------------------------------------------------- 3. first_step

FIRST_STEP_VERSION = "1"
FIRST_STEP_ACTS = ("relu", "gelu", "silu", "tanh")


def _first_step_cells(widths: tuple, draws: int) -> tuple[Cell, ...]:
    return tuple(_cell(f"first_step_{act}_n{width}", {"act": act, "width": width},
                       {"act": act, "width": width, "draws": draws}, kind="first_step")
                 for act in FIRST_STEP_ACTS for width in widths)


# The 3-layer block (d=32, k=10, gain 1, lr 0.1, batch 16) at several widths; each seed is
# one run of ``draws`` independent weight draws (so draws × seeds in all).
FIRST_STEP_GRIDS = {
    "tiny": Grid(2, _first_step_cells((16, 64, 256), 256)),
    "cpu": Grid(1, _first_step_cells((16, 64, 256, 1024), 2048)),
    "small": Grid(4, _first_step_cells((16, 64, 256, 1024), 2048)),
    "paper": Grid(8, _first_step_cells((16, 64, 256, 1024, 4096), 8192)),
}


# --------------------------------------------------------------------------- 4. sparsity_law

SPARSITY_LAW_VERSION = "2"
# Learning rates that span little to strong drift within the run.
SPARSITY_LAW_LRS = (1e-3, 1e-2, 3e-2)
# Steps (from 0) at which the sweep evaluates the law on a checkpoint.
SPARSITY_LAW_POINTS = 4


def sparsity_law_steps(total: int) -> list[int]:
    """The evaluation steps of a sparsity_law run: 0 … total, SPARSITY_LAW_POINTS + 1 points."""
    return sorted({round(total * i / SPARSITY_LAW_POINTS) for i in range(SPARSITY_LAW_POINTS + 1)})


def _law_mlp(size: str, depth: int, batch_size: int, steps: int, log_every: int,
             extra: tuple = ()) -> ModelScale:
    """The law's MLP: ``depth`` hidden layers, no biases, fan_in_normal init (so every
    hidden pre-activation is exactly Σ_j W_ij h_j, the law's setting)."""
    return ModelScale(size, (("bias", False), ("depth", depth), ("init", "fan_in_normal"))
                      + extra, batch_size, steps, log_every=log_every, eval_batches=2)


def _law_cells(ms: ModelScale) -> tuple[Cell, ...]:
    return tuple(_cell(f"sparsity_law_lr{lr:g}", {"arch": "mlp", "act": "relu", "lr": lr},
                       dict(ms.train_fields("adamw"), lr=lr, arch="mlp", act="relu",
                            data="synthetic"), kind="sparsity_law")
                 for lr in SPARSITY_LAW_LRS)


# ReLU MLP with three hidden layers (four at ``paper``), no biases and fan_in_normal init,
# on synthetic data, AdamW at several learning rates.
SPARSITY_LAW_GRIDS = {
    "tiny": Grid(2, _law_cells(_law_mlp("tiny", 3, 16, 60, 5))),
    "cpu": Grid(3, _law_cells(_law_mlp("small", 3, 64, 1000, 50, (("width", 128),)))),
    "small": Grid(3, _law_cells(_law_mlp("small", 3, 64, 1000, 50))),
    "paper": Grid(5, _law_cells(_law_mlp("paper", 4, 256, 10000, 50))),
}


# --------------------------------------------------------------------------- 5. tradeoff

TRADEOFF_VERSION = "2"
# The stable base every trade-off knob moves away from (the cliff's near-dead reference).
TRADEOFF_BASE = dict(act="relu", lr=3e-3, weight_decay=0.0, gain=1.0, depth=3, act_l1=0.0)


def _tradeoff_knobs(base: dict) -> list[dict]:
    """Knobs that move sparsity *without* instability around a stable AdamW base (lr 3e-3,
    gain 1, depth 3): init gain, decoupled weight decay, an L1 activation penalty
    (TrainConfig.act_l1) and clipped-ReLU² thresholds, plus a learning-rate ladder whose
    top rungs may diverge (the report flags them and fits the knee with and without
    them)."""
    configs = [dict(base, lr=lr) for lr in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)]
    configs += [dict(base, gain=g) for g in (0.5, 2.0, 3.0, 4.0)]
    configs += [dict(base, weight_decay=wd) for wd in (0.3, 1.0, 3.0)]
    configs += [dict(base, act_l1=l1) for l1 in (0.01, 0.03, 0.1, 0.3, 1.0)]
    configs += [dict(base, act=a) for a in ("relu2", "clipped_relu2:1", "clipped_relu2:4")]
    return configs


def _tradeoff_smoke(base: dict) -> list[dict]:
    """A learning-rate ladder at depth 2 and, at gain 2 and depth 4, one that diverges;
    weight decay at gain 0.5; GELU and ReLU²."""
    base = dict(base, depth=2)
    configs = [dict(base, lr=lr) for lr in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)]
    configs += [dict(base, lr=lr, gain=2.0, depth=4) for lr in (1e-2, 3e-2, 1e-1, 3e-1)]
    configs += [dict(base, lr=3e-2, weight_decay=wd, gain=0.5) for wd in (0.0, 1.0)]
    configs += [dict(base, lr=1e-2, act=a) for a in ("gelu", "relu2")]
    return configs


def _tradeoff_factorial(base: dict, lrs: tuple, gains: tuple, depth: int) -> list[dict]:
    """Activation × learning rate × weight decay × gain at ``depth``."""
    return [dict(base, act=act, lr=lr, weight_decay=wd, gain=gain, depth=depth)
            for act in ("relu", "relu2", "clipped_relu2:15") for lr in lrs
            for wd in (0.0, 0.1) for gain in gains]


# The configurations of the trade-off sweep (before seeds).
TRADEOFF_AXES = {
    "tiny": _tradeoff_smoke(TRADEOFF_BASE),
    "cpu": _tradeoff_knobs(TRADEOFF_BASE),
    "small": _tradeoff_factorial(TRADEOFF_BASE, (1e-3, 1e-2, 1e-1), (1.0, 2.0), 3),
    # 3 × 5 × 2 × 3 = 90 configurations (the paper had 79)
    "paper": _tradeoff_factorial(TRADEOFF_BASE, (1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
                                 (0.5, 1.0, 2.0), 4),
}


def tradeoff_axes(size: str) -> list[dict]:
    """The configurations of the trade-off sweep at scale ``size`` (before seeds)."""
    if size not in TRADEOFF_AXES:
        raise _bad("size (preset 'tradeoff')", size, ", ".join(TRADEOFF_AXES))
    return [dict(c) for c in TRADEOFF_AXES[size]]


def _tradeoff_cells(ms: ModelScale, size: str) -> tuple[Cell, ...]:
    """The MLP ``ms`` with each configuration's depth and gain, AdamW."""
    cells = []
    for c in TRADEOFF_AXES[size]:
        label = (f"tradeoff_{c['act']}_lr{c['lr']:g}_wd{c['weight_decay']:g}"
                 f"_g{c['gain']:g}_d{c['depth']}_l1{c['act_l1']:g}")
        fields = dict(ms.train_fields("adamw"), arch="mlp", act=c["act"], data="embedded",
                      lr=c["lr"], weight_decay=c["weight_decay"], act_l1=c["act_l1"],
                      model_overrides=(("depth", c["depth"]), ("gain", c["gain"]))
                      + ms.overrides)
        cells.append(_cell(label, {**c, "arch": "mlp"}, fields))
    return tuple(cells)


# MLP on the embedded real digits (accuracy is meaningful), AdamW, per config × seed.
TRADEOFF_GRIDS = {
    "tiny": Grid(1, _tradeoff_cells(_tenths("tiny", (), 32, 150), "tiny")),
    "cpu": Grid(3, _tradeoff_cells(_tenths("small", (("width", 128),), 64, 1000), "cpu")),
    "small": Grid(2, _tradeoff_cells(_tenths("small", (), 64, 2000), "small")),
    "paper": Grid(1, _tradeoff_cells(_tenths("paper", PAPER_INIT, 256, 10000), "paper")),
}


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
_SPIKE_ACTS_SMOKE = ("relu", "relu2", *(f"clipped_relu2:{c:g}" for c in SPIKE_CLIPS), "gelu",
                     "gelu2", "clipped_gelu2:8")
# The activations the report shows per scale: relu (the reference), relu2, clipped_relu2
# at the scale's thresholds, gelu2 and clipped_gelu2 (the smoke scales also gelu); at cpu
# relu (from the drift preset) and SPIKE_ACTS_CPU.
SPIKE_ACTS = {
    "tiny": _SPIKE_ACTS_SMOKE,
    "cpu": ("relu", *SPIKE_ACTS_CPU),
    "small": _SPIKE_ACTS_SMOKE,
    "gpu": ("relu", "relu2", *(f"clipped_relu2:{c:g}" for c in SPIKE_CLIPS_DECISIVE),
            "gelu2", f"clipped_gelu2:{GELU2_CLIP_DECISIVE:g}"),
    "paper": _SPIKE_ACTS_SMOKE,
}


def spike_activations(size: str = "tiny") -> list[str]:
    """The activations of the spikes report at scale ``size`` (:data:`SPIKE_ACTS`)."""
    if size not in SPIKE_ACTS:
        raise _bad("size (preset 'spikes')", size, ", ".join(SPIKE_ACTS))
    return list(SPIKE_ACTS[size])


def _spike_cells(ms: ModelScale, size: str) -> tuple[Cell, ...]:
    return tuple(_cell(f"spikes_{act}", {"arch": "gpt", "act": act},
                       dict(ms.train_fields("adamw"), arch="gpt", act=act, data="embedded"))
                 for act in SPIKE_ACTS[size])


# GPT-nano on the embedded stdlib text, AdamW, per activation × seed.
SPIKES_GRIDS = {
    "tiny": Grid(3, _spike_cells(_tenths("tiny", (), 16, 60, lr_adamw=3e-3,
                                         eval_batches=4), "tiny")),
    # The drift grid's 4-layer GPT for 2000 steps, relu² only (SPIKE_ACTS_CPU).
    "cpu": Grid(CPU_SEEDS, tuple(_run("spikes", CPU_MODELS["gpt"], "gpt", act, "embedded")
                                 for act in SPIKE_ACTS_CPU), planned=True),
    "small": Grid(3, _spike_cells(_tenths("small", (), 64, 2000, eval_batches=4), "small")),
    # 12×768, sequence 1024.
    "gpu": Grid(1, tuple(_run("spikes", GPU_GPT, "gpt", act, "embedded")
                         for act in SPIKE_ACTS["gpu"])),
    "paper": Grid(5, _spike_cells(_tenths("paper", PAPER_INIT, 256, 7000, eval_batches=4),
                                  "paper")),
}


# --------------------------------------------------------------------------- 7. optimizers

# 2: paper-gpt@2 (the paper's Muon scale, momentum form, bf16 Newton–Schulz, the schedule
# as run); 1 used paper-gpt@1, whose Muon steps were 8–16× smaller than the paper's.
OPTIMIZERS_VERSION = "2"


def _optimizer_cells(log_every: int, steps: int | None = None) -> tuple[Cell, ...]:
    """Each optimizer's config of reports/optimizer_compare.py (the paper-gpt@2 recipe's
    model and schedule) at ``steps`` (default its GRID_STEPS)."""
    from driftlab.reports.optimizer_compare import GRID_STEPS, OPTIMIZERS, optimizer_configs

    cells = []
    for opt in OPTIMIZERS:
        (cfg,) = optimizer_configs(steps or GRID_STEPS, [0], "unused", optimizers=(opt,),
                                   log_every=log_every)
        fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
                  if f.name != "seed"}
        cells.append(_cell(f"optimizers_{opt}", {"arch": "gpt", "act": cfg.act,
                                                 "optimizer": opt, "data": cfg.data},
                           dict(fields, out=None)))
    return tuple(cells)


# Muon (the paper-gpt@2 recipe) vs AdamW vs SGD on GPT-nano 4×64 with the recipe's model
# and schedule (reports/optimizer_compare.py).
OPTIMIZERS_GRIDS = {
    "tiny": Grid(2, functools.partial(_optimizer_cells, 1, steps=8)),
    "cpu": Grid(3, functools.partial(_optimizer_cells, 50)),
}


PRESETS: dict[str, Preset] = {
    p.name: p for p in (
        Preset("init", INIT_VERSION, "claim 1b: E[g | p > 0] at the initial parameters, "
               f"{INIT_BATCHES} batches per seed, the decisive scale's models", INIT_GRIDS),
        Preset("drift", DRIFT_VERSION, "downstream weight mean and E[g | p > 0] over "
               "training, every architecture × activation (cpu: the plan's cells)",
               DRIFT_GRIDS),
        Preset("pins", PINS_VERSION, "causal test: sparsity and loss with each pin, paired "
               "with the drift preset's unpinned runs", PINS_GRIDS),
        Preset("first_step", FIRST_STEP_VERSION, "one SGD step of the 3-layer block vs the "
               "analytic −lr·E[∂ℓ/∂W2]", FIRST_STEP_GRIDS),
        Preset("sparsity_law", SPARSITY_LAW_VERSION, "measured ReLU sparsity vs the "
               "drift → sparsity law during training", SPARSITY_LAW_GRIDS),
        Preset("tradeoff", TRADEOFF_VERSION, "accuracy vs sparsity and the cliff",
               TRADEOFF_GRIDS),
        Preset("spikes", SPIKES_VERSION, "GPT-nano activation spikes: relu² vs clipped "
               "vs gelu²", SPIKES_GRIDS),
        Preset("optimizers", OPTIMIZERS_VERSION, "drift and sparsity under Muon (paper-gpt@2 "
               "recipe) vs AdamW vs SGD", OPTIMIZERS_GRIDS),
    )
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ValueError naming the valid presets otherwise."""
    if name not in PRESETS:
        raise _bad("preset", name, ", ".join(PRESETS))
    return PRESETS[name]
