"""Named, versioned experiment presets: each expands to a deterministic grid of runs.

    from driftlab.reports.presets import get_preset
    specs = get_preset("drift").grid("tiny", seeds=3)   # list[RunSpec]

A :class:`RunSpec` is one run: the preset it belongs to, a config (a
:class:`~driftlab.models.train.TrainConfig` run by the engine, or a
:class:`FirstStepConfig` run directly with JAX by ``reports/sweep.py``), the tags the
report groups by, and a stable id (a readable label plus a short hash of the config).
Bump a preset's ``version`` whenever its grid changes meaning; the version is part of
every run id, so a changed preset never reuses stale results.

Sizes: ``tiny`` (CPU, seconds per run, tens of steps), ``small`` (CPU/one GPU, hundreds
of steps), ``paper`` (accelerators, the paper's scales).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable

from driftlab.activations import parse_activation
from driftlab.models.base import SIZES
from driftlab.models.train import TrainConfig

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


def config_dict(config) -> dict:
    """The config as JSON-ready plain data (tuples become lists), without ``out``/``progress``
    (where a run is written and whether a bar is shown do not change its result)."""
    d = dataclasses.asdict(config)
    d.pop("out", None)
    d.pop("progress", None)
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


def spec_from_dict(d: dict) -> RunSpec:
    """Rebuild a RunSpec from :meth:`RunSpec.as_dict` output (for cluster jobs)."""
    cls = FirstStepConfig if d["kind"] == "first_step" else TrainConfig
    cfg = dict(d["config"])
    if cls is TrainConfig:
        cfg["model_overrides"] = tuple(tuple(kv) for kv in cfg.get("model_overrides", ()))
    return RunSpec(d["preset"], d["version"], d["kind"], cls(**cfg),
                   tuple(sorted(d["tags"].items())), d.get("label", ""))


@dataclass(frozen=True)
class Preset:
    """A named, versioned experiment. ``grid(size, seeds)`` -> list of RunSpec."""

    name: str
    version: str
    description: str
    build: Callable[[str, int], list] = field(repr=False)
    default_seeds: dict = field(default_factory=lambda: {"tiny": 2, "small": 3, "paper": 5})

    def grid(self, size: str = "tiny", seeds: int | None = None) -> list[RunSpec]:
        """Every run of this preset at ``size`` with seeds 0 … seeds-1 (deterministic order)."""
        if size not in SIZES:
            raise _bad("size", size, ", ".join(SIZES))
        seeds = self.default_seeds[size] if seeds is None else seeds
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise _bad("seeds", seeds, "a positive integer")
        specs = self.build(size, seeds)
        ids = [s.run_id for s in specs]
        if len(set(ids)) != len(ids):  # a preset bug, not a user error
            raise RuntimeError(f"preset {self.name!r} produced duplicate run ids")
        return specs


# --------------------------------------------------------------------------- helpers

_STEPS = {"tiny": 30, "small": 500, "paper": 5000}
_BATCH = {"tiny": 16, "small": 64, "paper": 256}


def _train(preset: str, version: str, label: str, tags: dict, kind: str = "train",
           **cfg) -> RunSpec:
    cfg.setdefault("progress", False)
    tc = TrainConfig(**cfg).validate()
    return RunSpec(preset, version, kind, tc, tuple(sorted(tags.items())), label)


# --------------------------------------------------------------------------- 1. drift

DRIFT_VERSION = "1"
TINY_HEAVY_ARCHS = ("resnet", "mpsenet")
TINY_HEAVY_ACTS = ("relu", "tanh")
TINY_MPSENET_BATCH = 4  # MP-SENet steps cost ~1 s at batch 16 on 2 cores


def _drift_grid(size: str, seeds: int) -> list[RunSpec]:
    """Every architecture × {relu, gelu, silu, tanh} × seed on synthetic data (the paper:
    drift comes from the optimization, not the data), AdamW without weight decay,
    logged every step at tiny size to resolve the first steps.

    At ``tiny`` size ResNet and MP-SENet run relu and the tanh control only: on a
    2-core CPU their compilation (~30-60 s per activation) would dominate the reduced
    report's time budget; ``small`` and ``paper`` run every activation. MP-SENet
    uses batch 4 at ``tiny`` size (its steps are ~50× an MLP's).
    """
    log_every = {"tiny": 1, "small": 5, "paper": 25}[size]
    specs = []
    for arch in DRIFT_ARCHS:
        acts = TINY_HEAVY_ACTS if size == "tiny" and arch in TINY_HEAVY_ARCHS else DRIFT_ACTS
        for act in acts:
            for seed in range(seeds):
                specs.append(_train("drift", DRIFT_VERSION, f"drift_{arch}_{act}_s{seed}",
                                    {"arch": arch, "act": act, "seed": seed, "size": size},
                                    arch=arch, act=act, data="synthetic", size=size,
                                    steps=_STEPS[size], lr=1e-3,
                                    batch_size=(TINY_MPSENET_BATCH if size == "tiny"
                                                and arch == "mpsenet" else _BATCH[size]),
                                    optimizer="adamw", seed=seed, log_every=log_every,
                                    eval_batches=2))
    return specs


# --------------------------------------------------------------------------- 2. first_step

FIRST_STEP_VERSION = "1"
FIRST_STEP_WIDTHS = {"tiny": (16, 64, 256), "small": (16, 64, 256, 1024),
                     "paper": (16, 64, 256, 1024, 4096)}
FIRST_STEP_DRAWS = {"tiny": 256, "small": 2048, "paper": 8192}
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


# --------------------------------------------------------------------------- 3. sparsity_law

SPARSITY_LAW_VERSION = "1"
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
    data, AdamW at several learning rates."""
    depth = {"tiny": 3, "small": 3, "paper": 4}[size]
    specs = []
    for lr in SPARSITY_LAW_LRS:
        for seed in range(seeds):
            specs.append(_train("sparsity_law", SPARSITY_LAW_VERSION,
                                f"sparsity_law_lr{lr:g}_s{seed}",
                                {"arch": "mlp", "act": "relu", "lr": lr, "seed": seed,
                                 "size": size}, kind="sparsity_law",
                                arch="mlp", act="relu", data="synthetic", size=size,
                                steps=_STEPS[size] * 2, batch_size=_BATCH[size], lr=lr,
                                optimizer="adamw", seed=seed, log_every=5, eval_batches=2,
                                model_overrides=(("bias", False), ("depth", depth),
                                                 ("init", "fan_in_normal"))))
    return specs


# --------------------------------------------------------------------------- 4. tradeoff

TRADEOFF_VERSION = "1"


def tradeoff_axes(size: str) -> list[dict]:
    """The configurations of the trade-off sweep (before seeds): learning rate, weight
    decay, init gain, depth and activation, chosen to push ReLU-family sparsity from
    ~0 (tanh/gelu have no exact zeros) past 90% (large lr/gain kill units)."""
    if size == "tiny":
        configs = [dict(act="relu", lr=lr, weight_decay=0.0, gain=1.0, depth=2)
                   for lr in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)]
        configs += [dict(act="relu", lr=lr, weight_decay=0.0, gain=2.0, depth=4)
                    for lr in (1e-2, 3e-2, 1e-1, 3e-1)]
        configs += [dict(act="relu", lr=3e-2, weight_decay=wd, gain=0.5, depth=2)
                    for wd in (0.0, 1.0)]
        configs += [dict(act=a, lr=1e-2, weight_decay=0.0, gain=1.0, depth=2)
                    for a in ("gelu", "relu2")]
        return configs
    lrs = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1) if size == "paper" else (1e-3, 1e-2, 1e-1)
    configs = []
    for act in ("relu", "relu2", "clipped_relu2:15"):
        for lr in lrs:
            for wd in (0.0, 0.1):
                for gain in ((0.5, 1.0, 2.0) if size == "paper" else (1.0, 2.0)):
                    configs.append(dict(act=act, lr=lr, weight_decay=wd, gain=gain,
                                        depth={"small": 3, "paper": 4}[size]))
    return configs  # paper: 3 × 5 × 2 × 3 = 90 configurations (the paper had 79)


def _tradeoff_grid(size: str, seeds: int) -> list[RunSpec]:
    """MLP on the embedded real digits (accuracy is meaningful), AdamW, per config × seed."""
    steps = {"tiny": 150, "small": 2000, "paper": 10000}[size]
    specs = []
    for c in tradeoff_axes(size):
        for seed in range(seeds):
            label = (f"tradeoff_{c['act']}_lr{c['lr']:g}_wd{c['weight_decay']:g}"
                     f"_g{c['gain']:g}_d{c['depth']}_s{seed}")
            specs.append(_train("tradeoff", TRADEOFF_VERSION, label,
                                {**c, "arch": "mlp", "seed": seed, "size": size},
                                arch="mlp", act=c["act"], data="embedded", size=size,
                                steps=steps, batch_size=max(32, _BATCH[size]), lr=c["lr"],
                                weight_decay=c["weight_decay"], optimizer="adamw", seed=seed,
                                log_every=max(1, steps // 10), eval_batches=8,
                                model_overrides=(("depth", c["depth"]), ("gain", c["gain"]))))
    return specs


# --------------------------------------------------------------------------- 5. spikes

SPIKES_VERSION = "1"
SPIKE_CLIPS = (2.0, 8.0, 50.0)


def spike_activations() -> list[str]:
    """relu (the reference), relu2, clipped_relu2 at SPIKE_CLIPS, gelu, gelu2, clipped_gelu2."""
    return (["relu", "relu2"] + [f"clipped_relu2:{c:g}" for c in SPIKE_CLIPS]
            + ["gelu", "gelu2", "clipped_gelu2:8"])


def _spikes_grid(size: str, seeds: int) -> list[RunSpec]:
    """GPT-nano on the embedded stdlib text, AdamW, per activation × seed."""
    steps = {"tiny": 60, "small": 2000, "paper": 7000}[size]
    specs = []
    for act in spike_activations():
        for seed in range(seeds):
            specs.append(_train("spikes", SPIKES_VERSION, f"spikes_{act}_s{seed}",
                                {"arch": "gpt", "act": act, "seed": seed, "size": size},
                                arch="gpt", act=act, data="embedded", size=size, steps=steps,
                                batch_size=_BATCH[size], lr=3e-3 if size == "tiny" else 1e-3,
                                optimizer="adamw", seed=seed, log_every=max(1, steps // 10),
                                eval_batches=4))
    return specs


PRESETS: dict[str, Preset] = {
    p.name: p for p in (
        Preset("drift", DRIFT_VERSION, "downstream weight mean and E[g | p > 0] over the "
               "first steps, every architecture × activation", _drift_grid,
               {"tiny": 3, "small": 3, "paper": 5}),
        Preset("first_step", FIRST_STEP_VERSION, "one SGD step of the 3-layer block vs the "
               "analytic −lr·E[∂ℓ/∂W2]", _first_step_grid,
               {"tiny": 2, "small": 4, "paper": 8}),
        Preset("sparsity_law", SPARSITY_LAW_VERSION, "measured ReLU sparsity vs the "
               "drift → sparsity law during training", _sparsity_law_grid),
        Preset("tradeoff", TRADEOFF_VERSION, "accuracy vs sparsity and the cliff",
               _tradeoff_grid, {"tiny": 1, "small": 2, "paper": 1}),
        Preset("spikes", SPIKES_VERSION, "GPT-nano activation spikes: relu² vs clipped "
               "vs gelu²", _spikes_grid, {"tiny": 3, "small": 3, "paper": 5}),
    )
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ValueError naming the valid presets otherwise."""
    if name not in PRESETS:
        raise _bad("preset", name, ", ".join(PRESETS))
    return PRESETS[name]
