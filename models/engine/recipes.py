"""Named, versioned training recipes: TrainConfig fields plus model-config overrides.

A recipe is applied first; explicit arguments (CLI flags, ``--set``, keyword overrides)
then replace any of its fields. The applied recipe's ``name@version`` is stored in
``TrainConfig.recipe`` and therefore in the run's ``config.json``. A recipe's content never
changes under the same version: changing it means a new version. A bare name means its
latest version; ``name@version`` picks an older one (so that old runs still resume).

The paper's GPT-nano code (On-Point-RND/BugOrFeature: models/model_gpt_orig.py,
models/muon_optim.py, runner.py, configs/config.yaml) in three recipes (docs/recipes.md):

* ``paper-gpt@2`` (``paper-gpt``): the code as it runs.

  - Muon for every 2-D matrix inside the transformer blocks with the paper's update
    scale √max(rows, cols) (w_q, w_k, w_v are separate D × D matrices: the paper's qkv
    split, √D each), its momentum form buf = 0.95·buf + g, U = g + 0.95·buf (Nesterov),
    Newton–Schulz in bfloat16 (models/engine/muon.py); AdamW (β 0.9/0.95, no weight decay) for
    the embedding / tied head and every 1-D parameter (models/optim.MUON_ROUTES); AdamW lr
    0.005, Muon lr 0.1 × that, no weight decay.
  - The schedule that runs: runner.py calls ``set_optimizers`` without its schedule
    arguments, so its defaults apply: warmup 0, a linear warmdown over 1450 steps ending at
    step 5800 (``num_iterations=5800``), then lr 0 for the rest of the 7168 iterations.
  - MLP activation min(ReLU(x)², 50) (``ReLUSquaredFunction``; zero gradient where the
    clip binds).

* ``paper-gpt-config@1``: the same, with the schedule its config.yaml states (warmup 2000,
  warmdown 2028, 7168 iterations, lr 0 only at the end). The code reads those numbers only
  in a commented-out function; this recipe is the run the config describes.

* ``paper-gpt@1``: the first port, kept so its runs resume: the reference Muon's scale
  √max(1, fan_out/fan_in) (8–55× smaller block steps than the paper's), EMA momentum,
  float32 Newton–Schulz, the config's schedule, no activation, absolute phases.

All three use PyTorch's default ``nn.Linear`` init U(±1/√fan_in), the head tied to the
embedding, RMSNorm with a learnable weight, attention branch × 1/√(2L), no biases. They fix
neither the model size nor the batch (the experiment's variables; the paper's own model is
``--size paper``) nor the compute dtype (the paper's forward runs under bf16 autocast).

Phases scale with the run (``scale_phases``; not ``paper-gpt@1``): when ``steps`` differs
from the recipe's own length L, every phase boundary b (end of warmup W, start of warmdown
E − D, its end E) moves to round(b·steps/L) (half up), and the warmdown is the distance of
the moved boundaries; a phase field given explicitly keeps its value. The scaling is written
to ``TrainConfig.phase_scaling`` (and so to ``config.json``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from driftlab.models.arch.base import current_field_names


@dataclass(frozen=True)
class Recipe:
    """A named, versioned set of TrainConfig fields (``train``) and model overrides;
    ``scale_phases``: rescale the schedule's phase boundaries to a different ``steps``."""

    name: str
    version: int
    train: tuple  # ((TrainConfig field, value), ...)
    model: tuple  # ((model config field, value), ...)
    description: str = ""
    scale_phases: bool = False

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"


# The paper's code (On-Point-RND/BugOrFeature) as driftlab fields, shared by its recipes.
_PAPER_MODEL = (("init", "torch_default"), ("gain", 1.0), ("norm", "rmsnorm"),
                ("norm_affine", True), ("branch_scale", "attn"))
_PAPER_OPTIM = (("arch", "gpt"), ("data", "embedded"), ("optimizer", "muon"), ("lr", 0.005),
                ("muon_lr_ratio", 0.1), ("adam_beta2", 0.95), ("weight_decay", 0.0))
_PAPER_MUON = (("muon_scale", "paper"), ("muon_momentum", "sum"),
               ("muon_ns_dtype", "bfloat16"), ("act", "clipped_relu2:50"))

_ALL = (
    Recipe(
        name="paper-gpt", version=1,
        train=_PAPER_OPTIM + (("schedule", "wcd"), ("steps", 7168), ("warmup_steps", 2000),
                              ("warmdown_steps", 2028)),
        model=_PAPER_MODEL,
        description="first port (superseded by paper-gpt@2): reference Muon scale, "
                    "config-file schedule"),
    Recipe(
        name="paper-gpt", version=2,
        train=_PAPER_OPTIM + _PAPER_MUON + (
            ("schedule", "wcd"), ("steps", 7168), ("warmup_steps", 0),
            ("warmdown_steps", 1450), ("warmdown_end", 5800)),
        model=_PAPER_MODEL, scale_phases=True,
        description="the paper's GPT-nano code as it runs: its Muon (scale, momentum, bf16 "
                    "Newton-Schulz), warmdown 1450 ending at 5800 of 7168, clipped ReLU² 50"),
    Recipe(
        name="paper-gpt-config", version=1,
        train=_PAPER_OPTIM + _PAPER_MUON + (
            ("schedule", "wcd"), ("steps", 7168), ("warmup_steps", 2000),
            ("warmdown_steps", 2028)),
        model=_PAPER_MODEL, scale_phases=True,
        description="paper-gpt@2 with the schedule of the paper's config.yaml "
                    "(warmup 2000, warmdown 2028, 7168 steps)"),
)
# Every version by tag, and each name's latest version by name.
RECIPE_VERSIONS = {r.tag: r for r in _ALL}
RECIPES = {r.name: r for r in sorted(_ALL, key=lambda r: r.version)}
PHASE_FIELDS = ("warmup_steps", "warmdown_steps", "warmdown_end")


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name`` (its latest version) or ``name@version``; ValueError
    listing the known names otherwise."""
    found = RECIPE_VERSIONS.get(name) or RECIPES.get(name)
    if found is None:
        allowed = sorted(RECIPES) + sorted(RECIPE_VERSIONS)
        raise ValueError(f"recipe={name!r} invalid; allowed: {', '.join(allowed)}")
    return found


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def scaled_phases(recipe: Recipe, steps: int, explicit=()) -> tuple[dict, str | None]:
    """({phase field: value}, note) of ``recipe``'s schedule scaled to ``steps`` (see the
    module doc); fields in ``explicit`` are left out (their given value wins). ({}, None)
    when the recipe does not scale or ``steps`` is its own length."""
    fields = dict(recipe.train)
    length = fields["steps"]
    if not recipe.scale_phases or steps == length:
        return {}, None
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        return {}, None  # TrainConfig.validate names the bad steps

    def move(b):
        return _round_half_up(b * steps / length)

    warmup, warmdown = fields.get("warmup_steps", 0), fields.get("warmdown_steps", 0)
    end = fields.get("warmdown_end")
    end_now = length if end is None else end
    new = {"warmup_steps": move(warmup),
           "warmdown_steps": move(end_now) - move(end_now - warmdown)}
    if end is not None:
        new["warmdown_end"] = move(end)
    new = {k: v for k, v in new.items() if k not in explicit}
    old = {k: fields.get(k) for k in new}
    changes = ", ".join(f"{k} {old[k]}→{new[k]}" for k in PHASE_FIELDS if k in new)
    note = (f"{recipe.tag}: phases scaled by {steps}/{length} (boundaries rounded half up)"
            + (f": {changes}" if changes else "")
            + (f"; explicit {', '.join(sorted(set(explicit) & set(PHASE_FIELDS)))} kept"
               if set(explicit) & set(PHASE_FIELDS) else ""))
    return new, note


def recipe_config(name: str, **overrides):
    """TrainConfig from recipe ``name`` with ``overrides`` (TrainConfig fields) on top.

    ``model_overrides`` in ``overrides`` are merged field by field over the recipe's model
    overrides (the explicit value wins). A ``steps`` other than the recipe's scales its
    phases (:func:`scaled_phases`). Returns a validated TrainConfig.
    """
    from driftlab.models.engine.train import TrainConfig

    recipe = get_recipe(name)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ValueError(f"TrainConfig.{bad[0]} invalid field; allowed: {', '.join(sorted(known))}")
    arch = overrides.get("arch", dict(recipe.train)["arch"])
    model = dict(recipe.model)
    model.update(current_field_names(arch, dict(overrides.pop("model_overrides", ()))))
    phases, note = scaled_phases(recipe, overrides.get("steps", dict(recipe.train)["steps"]),
                                 explicit=set(overrides) & set(PHASE_FIELDS))
    fields = {**dict(recipe.train), **phases, **overrides, "model_overrides": tuple(model.items()),
              "recipe": recipe.tag, "phase_scaling": note}
    return TrainConfig(**fields).validate()
