"""One name per fact in the model configs (issue 23): the init gain is ``gain`` and the
attention head count ``n_heads`` in every architecture. The old names (GPT ``init_gain``,
``n_head``; ViT ``heads``; MP-SENet ``init_gain``) are still accepted with a note, and every
identity a run directory holds is unchanged, so runs written before the rename resume."""

from __future__ import annotations

import hashlib
import json

import pytest

from driftlab.models.arch.base import RENAMED_FIELDS, get_arch
from driftlab.models.engine.train import TrainConfig, model_config, run_identity


@pytest.mark.parametrize("arch", ["mlp", "resnet", "vit", "gpt", "mpsenet"])
def test_every_arch_spells_the_gain_gain(arch):
    cfg = get_arch(arch).config("tiny")
    assert isinstance(cfg.gain, float) and not hasattr(cfg, "init_gain")
    if arch in ("vit", "gpt", "mpsenet"):  # the archs with attention
        assert cfg.n_heads >= 1 and not hasattr(cfg, "heads") and not hasattr(cfg, "n_head")


@pytest.mark.parametrize("arch,old,new,value", [
    ("gpt", "init_gain", "gain", 2.0), ("gpt", "n_head", "n_heads", 4),
    ("vit", "heads", "n_heads", 4), ("mpsenet", "init_gain", "gain", 0.5)])
def test_old_names_are_accepted_with_a_note(arch, old, new, value, capsys):
    cfg = get_arch(arch).config("tiny", **{old: value})
    assert getattr(cfg, new) == value
    assert f"{old!r} is now called {new!r}" in capsys.readouterr().err
    with pytest.raises(ValueError, match=f"{old!r} is the old name of {new!r}"):
        get_arch(arch).config("tiny", **{old: value, new: value})


def test_a_run_config_with_old_names_builds_the_same_model():
    old = TrainConfig(arch="gpt", model_overrides=(("init_gain", 0.5), ("n_head", 4)),
                      progress=False).validate()
    new = TrainConfig(arch="gpt", model_overrides=(("gain", 0.5), ("n_heads", 4)),
                      progress=False).validate()
    arch = get_arch("gpt")
    assert model_config(arch, old) == model_config(arch, new)


# sha256[:16] of run_identity(TrainConfig(arch=…, act="relu"), default model), taken before
# the rename: a checkpoint written then must still match to resume.
IDENTITY_BEFORE_RENAME = {"gpt": "6f30eb48276fce54", "vit": "b2401008bf28454c",
                          "mpsenet": "b750f20b89a3dfa9", "mlp": "871352ab532109d4"}


@pytest.mark.parametrize("arch", sorted(IDENTITY_BEFORE_RENAME))
def test_checkpoint_identity_is_unchanged(arch):
    tc = TrainConfig(arch=arch, act="relu", progress=False).validate()
    ident = run_identity(tc, model_config(get_arch(arch), tc))
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    assert digest == IDENTITY_BEFORE_RENAME[arch]
    assert set(RENAMED_FIELDS.get(arch, {})) <= set(ident["model"])  # the old spelling


def test_recovering_overrides_from_an_old_identity_uses_the_new_names():
    from driftlab.models.engine.train_cli import _model_overrides

    meta = {"arch": "gpt", "size": "tiny", "act": "relu",
            "model": {**json.loads(json.dumps(get_arch("gpt").config("tiny").__dict__)),
                      "init_gain": 2.0, "n_head": 4}}
    meta["model"].pop("gain"), meta["model"].pop("n_heads")
    assert dict((k, v) for k, v in _model_overrides(meta)) == {"gain": 2.0, "n_heads": 4}


def test_preset_run_ids_with_renamed_fields_are_unchanged():
    from driftlab.reports.presets import PRESETS, spec_from_dict

    # ids issued before the rename (the optimizers grid sets n_head and init_gain)
    specs = PRESETS["optimizers"].grid("cpu")
    assert [s.run_id for s in specs[:3]] == [
        "optimizers_muon_s0-baac168cb9", "optimizers_muon_s1-efdcc74844",
        "optimizers_muon_s2-e871d958c1"]
    back = spec_from_dict(specs[0].as_dict())
    assert back.run_id == specs[0].run_id
    assert ("n_heads", 4) in back.config.model_overrides
