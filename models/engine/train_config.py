"""The training run's configuration: :class:`TrainConfig` (a frozen dataclass whose
``validate()`` names the bad field and its allowed values), the model config it implies,
the run identity a checkpoint must match, and which steps are logged."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import numpy as np

from driftlab.activations import parse_activation
from driftlab.models.engine import pins
from driftlab.models.arch.base import ARCH_MODULES, SIZES, legacy_field_names
from driftlab.models.engine.muon import MOMENTUM_FORMS, NS_DTYPES, SCALINGS
from driftlab.models.engine.optim import OPTIMIZERS, SCHEDULES
from driftlab.names import DTYPES  # noqa: F401 (declared in driftlab/names.py)
from driftlab.models.engine.writers import json_default


def _bad(field: str, value, allowed: str) -> ValueError:
    return ValueError(f"TrainConfig.{field}={value!r} invalid; allowed: {allowed}")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. ``validate()`` checks every field."""

    arch: str = "mlp"
    act: str = "relu"
    data: str = "synthetic"  # "synthetic", "embedded" or a path in the arch's data format
    size: str = "tiny"
    steps: int = 100
    batch_size: int = 32  # global batch, split over all devices
    lr: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "constant"
    warmdown_steps: int = 0  # schedule="wcd": linear decay to 0 over the last warmdown_steps
    adam_beta2: float = 0.999  # AdamW's β₂ (also the AdamW part of optimizer="muon")
    muon_lr_ratio: float = 0.1  # optimizer="muon": Muon's lr = muon_lr_ratio · lr
    # optimizer="muon": update scale rule, momentum form, Newton–Schulz dtype (models/engine/muon.py)
    muon_scale: str = "jordan"
    muon_momentum: str = "ema"
    muon_ns_dtype: str = "float32"
    warmdown_end: int | None = None  # schedule="wcd": the step lr reaches 0 (None: steps)
    recipe: str | None = None  # "name@version" of the recipe applied (models/engine/recipes.py)
    phase_scaling: str | None = None  # how the recipe's phases were scaled to ``steps``
    grad_clip: float | None = None
    dtype: str = "float32"
    seed: int = 0
    out: str | None = None
    log_every: int = 10
    checkpoint_every: int = 0  # 0: no step cadence (the wall-time cadence still applies)
    checkpoint_minutes: float = 10.0  # also checkpoint after this much wall time; 0: off
    overwrite: bool = False  # replace an earlier run found in ``out`` (else refused)
    eps: float = 1e-3  # |h| < eps counts as (near-)sparse for smooth activations
    model_overrides: tuple = ()  # ((field, value), ...) for arch.config
    instrument: bool = True
    resume: bool = False
    eval_batches: int = 4  # validation batches evaluated at the end
    progress: bool = True
    # λ of the L1 activation penalty λ·mean_taps(mean|h|) added to the training loss: a
    # knob that raises ReLU sparsity without a larger lr (reports' trade-off sweep).
    act_l1: float = 0.0
    pins: tuple = ()  # causal interventions after every update, names from pins.PINS

    def validate(self) -> "TrainConfig":
        """Raise ValueError naming the first bad field and its allowed values."""
        self._validate_choices()
        self._validate_numbers()
        self._validate_run()
        return self

    def _validate_choices(self) -> None:
        if self.arch not in ARCH_MODULES:
            raise _bad("arch", self.arch, ", ".join(ARCH_MODULES))
        try:
            parse_activation(self.act)
        except ValueError as err:
            raise ValueError(f"TrainConfig.act: {err}") from None
        if not isinstance(self.data, str) or not self.data:
            raise _bad("data", self.data, "'synthetic', 'embedded' or a path")
        if self.size not in SIZES:
            raise _bad("size", self.size, ", ".join(SIZES))
        if self.optimizer not in OPTIMIZERS:
            raise _bad("optimizer", self.optimizer, ", ".join(OPTIMIZERS))
        if self.schedule not in SCHEDULES:
            raise _bad("schedule", self.schedule, ", ".join(SCHEDULES))
        if self.dtype not in DTYPES:
            raise _bad("dtype", self.dtype, ", ".join(DTYPES))
        if self.recipe is not None and not isinstance(self.recipe, str):
            raise _bad("recipe", self.recipe, "None or a 'name@version' string")
        if self.phase_scaling is not None and not isinstance(self.phase_scaling, str):
            raise _bad("phase_scaling", self.phase_scaling, "None or a string")
        pins.validate_pins(self.pins, self.arch)

    def _validate_numbers(self) -> None:
        for name in ("steps", "batch_size", "log_every"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise _bad(name, v, "a positive integer")
        for name in ("warmup_steps", "warmdown_steps", "checkpoint_every", "eval_batches",
                     "seed"):
            v = getattr(self, name)
            if not _is_int(v) or v < 0:
                raise _bad(name, v, "a non-negative integer")
        if not _is_num(self.lr) or not (self.lr > 0 and math.isfinite(self.lr)):
            raise _bad("lr", self.lr, "a positive finite number")
        if not _is_num(self.weight_decay) or not self.weight_decay >= 0:
            raise _bad("weight_decay", self.weight_decay, "a number >= 0")
        if not _is_num(self.act_l1) or not (self.act_l1 >= 0 and math.isfinite(self.act_l1)):
            raise _bad("act_l1", self.act_l1, "a finite number >= 0")
        if not _is_num(self.eps) or not self.eps >= 0:
            raise _bad("eps", self.eps, "a number >= 0")
        if self.grad_clip is not None and (not _is_num(self.grad_clip) or not self.grad_clip > 0):
            raise _bad("grad_clip", self.grad_clip, "None or a positive number")
        if self.warmdown_end is not None and (not _is_int(self.warmdown_end)
                                              or not 1 <= self.warmdown_end <= self.steps):
            raise _bad("warmdown_end", self.warmdown_end,
                       f"None or an integer in [1, steps = {self.steps}]")
        end = self.steps if self.warmdown_end is None else self.warmdown_end
        if self.schedule == "wcd" and self.warmup_steps + self.warmdown_steps > end:
            raise _bad("warmdown_steps", self.warmdown_steps,
                       f"warmup_steps + warmdown_steps <= "
                       f"{'steps' if self.warmdown_end is None else 'warmdown_end'} = {end}")
        for name, allowed in (("muon_scale", SCALINGS), ("muon_momentum", MOMENTUM_FORMS),
                              ("muon_ns_dtype", NS_DTYPES)):
            if getattr(self, name) not in allowed:
                raise _bad(name, getattr(self, name), ", ".join(allowed))
        if not _is_num(self.adam_beta2) or not 0 <= self.adam_beta2 < 1:
            raise _bad("adam_beta2", self.adam_beta2, "a number in [0, 1)")
        if not _is_num(self.muon_lr_ratio) or not (self.muon_lr_ratio > 0
                                                   and math.isfinite(self.muon_lr_ratio)):
            raise _bad("muon_lr_ratio", self.muon_lr_ratio, "a positive finite number")
        if not _is_num(self.checkpoint_minutes) or not self.checkpoint_minutes >= 0:
            raise _bad("checkpoint_minutes", self.checkpoint_minutes, "a number >= 0 (0: off)")

    def _validate_run(self) -> None:
        for name in ("instrument", "resume", "progress", "overwrite"):
            if getattr(self, name) not in (True, False):
                raise _bad(name, getattr(self, name), "True, False")
        if self.out is not None and (not isinstance(self.out, str) or not self.out.strip()):
            raise _bad("out", self.out, "None or a non-empty directory path")
        if self.resume and self.out is None:
            raise _bad("resume", True, "True only together with an out directory")
        if not isinstance(self.model_overrides, tuple) or not all(
                isinstance(kv, tuple) and len(kv) == 2 and isinstance(kv[0], str)
                for kv in self.model_overrides):
            raise _bad("model_overrides", self.model_overrides,
                       "a tuple of (field, value) pairs")
        for field, _ in self.model_overrides:
            if field in ("act", "size"):  # arch.config takes them as arguments
                raise _bad("model_overrides", f"{field}=...",
                           f"model config fields other than {field!r} (set it with --{field})")


# --------------------------------------------------------------------------- helpers


def is_logged_step(step: int, cfg: TrainConfig) -> bool:
    """Whether ``train()`` logs ``step`` (and runs the instrumented step there): every
    ``log_every``-th step and the last one."""
    return step % cfg.log_every == 0 or step == cfg.steps - 1


def model_config(arch, cfg: TrainConfig):
    """arch.config(size, act, **overrides), with ``compute_dtype`` following ``cfg.dtype``."""
    overrides = dict(cfg.model_overrides)
    base = arch.config(cfg.size, cfg.act)
    fields = {f.name for f in dataclasses.fields(base)}
    if "compute_dtype" in fields and "compute_dtype" not in overrides \
            and cfg.dtype != "float32":
        overrides["compute_dtype"] = cfg.dtype
    return arch.config(cfg.size, cfg.act, **overrides)


# Options that define what metrics.jsonl and summary.json measure, not the trajectory
# (so not in the run identity): a resumed run keeps them, else one metrics.jsonl would
# mix two definitions. {field: its command-line flag}.
MEASUREMENT_FIELDS = {"eps": "--eps", "log_every": "--log-every",
                      "instrument": "--no-instrument", "eval_batches": "--eval-batches"}


def check_resume_measurement(stored: dict, given: dict, source: str = "config.json") -> None:
    """Refuse (ValueError naming the option and both values) a measurement option of
    :data:`MEASUREMENT_FIELDS` in ``given`` that differs from the resumed run's ``stored``
    configuration."""
    for field, flag in MEASUREMENT_FIELDS.items():
        if field in given and field in stored and given[field] != stored[field]:
            raise ValueError(f"{flag} ({field}={given[field]!r}) differs from the resumed "
                             f"run's {field}={stored[field]!r} ({source}); allowed on "
                             f"--resume: the run's own value, since one metrics.jsonl must "
                             f"not mix two definitions (start a new run with another --out)")


def run_identity(cfg: TrainConfig, mcfg) -> dict:
    """The fields that determine a run's trajectory; a checkpoint must match them to resume."""
    keep = ("arch", "act", "data", "size", "batch_size", "lr", "optimizer", "weight_decay",
            "warmup_steps", "schedule", "grad_clip", "dtype", "seed")
    ident = {k: getattr(cfg, k) for k in keep}
    for k in ("warmdown_steps", "adam_beta2", "muon_lr_ratio", "muon_scale", "muon_momentum",
              "muon_ns_dtype", "warmdown_end"):  # only when not default,
        if getattr(cfg, k) != getattr(TrainConfig, k):  # so earlier checkpoints keep theirs
            ident[k] = getattr(cfg, k)
    if cfg.act_l1:  # only when set, so earlier checkpoints keep their identity
        ident["act_l1"] = cfg.act_l1
    # Spelled as before the field renames, so earlier checkpoints keep their identity.
    ident["model"] = legacy_field_names(cfg.arch, dataclasses.asdict(mcfg))
    if cfg.pins:  # only when set, so unpinned checkpoints keep their identity
        ident["pins"] = list(cfg.pins)
    return json.loads(json.dumps(ident, sort_keys=True, default=json_default))
