"""Named, versioned training recipes: TrainConfig fields plus model-config overrides.

A recipe is applied first; explicit arguments (CLI flags, ``--set``, keyword overrides)
then replace any of its fields. The applied recipe's ``name@version`` is stored in
``TrainConfig.recipe`` and therefore in the run's ``config.json``. A recipe's content never
changes under the same version: changing it means a new version.

``paper-gpt`` (v1) is the recipe of the paper's public GPT-nano code:

* Muon (Newton–Schulz quintic, 5 iterations, momentum 0.95, Nesterov; models/muon.py) for
  every 2-D matrix inside the transformer blocks, AdamW (β 0.9/0.95, no weight decay) for
  the embedding / tied head and every 1-D parameter (routing: models/optim.MUON_ROUTES);
  AdamW lr 0.005, Muon lr 0.1 × that.
* Warmup–constant–warmdown to 0: 7168 steps, 2000 warmup, 2028 warmdown.
* PyTorch's default ``nn.Linear`` init U(±1/√fan_in), head tied to the embedding (GPT's
  only head today), RMSNorm with a learnable weight, attention branch × 1/√(2L), no biases.

It fixes neither the activation nor the model size nor the batch size (those are the
experiment's variables; the paper's own model is ``--size paper``). Its step counts are
absolute: a shorter run must also override ``warmup_steps``/``warmdown_steps``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """A named, versioned set of TrainConfig fields (``train``) and model overrides."""

    name: str
    version: int
    train: tuple  # ((TrainConfig field, value), ...)
    model: tuple  # ((model config field, value), ...)
    description: str = ""

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"


RECIPES = {
    "paper-gpt": Recipe(
        name="paper-gpt", version=1,
        train=(("arch", "gpt"), ("data", "embedded"), ("optimizer", "muon"), ("lr", 0.005),
               ("muon_lr_ratio", 0.1), ("adam_beta2", 0.95), ("weight_decay", 0.0),
               ("schedule", "wcd"), ("steps", 7168), ("warmup_steps", 2000),
               ("warmdown_steps", 2028)),
        model=(("init", "torch_default"), ("init_gain", 1.0), ("norm", "rmsnorm"),
               ("norm_affine", True), ("branch_scale", "attn")),
        description="the paper's GPT-nano code: Muon (blocks) + AdamW (rest), wcd schedule"),
}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; ValueError listing the known names otherwise."""
    if name not in RECIPES:
        raise ValueError(f"recipe={name!r} invalid; allowed: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


def recipe_config(name: str, **overrides):
    """TrainConfig from recipe ``name`` with ``overrides`` (TrainConfig fields) on top.

    ``model_overrides`` in ``overrides`` are merged field by field over the recipe's model
    overrides (the explicit value wins). Returns a validated TrainConfig.
    """
    from driftlab.models.train import TrainConfig

    recipe = get_recipe(name)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ValueError(f"TrainConfig.{bad[0]} invalid field; allowed: {', '.join(sorted(known))}")
    model = dict(recipe.model)
    model.update(dict(overrides.pop("model_overrides", ())))
    fields = {**dict(recipe.train), **overrides, "model_overrides": tuple(model.items()),
              "recipe": recipe.tag}
    return TrainConfig(**fields).validate()
