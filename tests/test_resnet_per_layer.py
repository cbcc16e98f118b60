"""The per-layer Stein prediction for ResNet (models/measure/conv_readers.py): conv readers as im2col,
the pooled head, the exact identity-shortcut term, the ReLU-kink part of ∇²ℓ, what batch-statistics
normalisation does to T, and the refusals. Fixed seeds throughout."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from driftlab.models.arch import resnet
from driftlab.models.arch.base import get_arch
from driftlab.models.arch.params import flatten_dict
from driftlab.models.arch.readers import reading_matrices
from driftlab.models.arch.stein_readers import LinearReader, TapReaders
from driftlab.models.measure import conv_readers as C
from driftlab.models.measure.per_layer import LayersSpec, agreement_threshold, run_layers
from driftlab.models.measure.per_layer import per_seed as dense_per_seed
from driftlab.montecarlo.relu_kink import relu_with_kink_kernel

ARCH = get_arch("resnet")


def _setup(norm="batch", act="relu", seed=0, batch_size=8):
    cfg, ds = ARCH.data("synthetic", ARCH.config("tiny", act, norm=norm), 0)
    params = ARCH.init(jax.random.PRNGKey(seed), cfg)
    batch = {k: jnp.asarray(v) for k, v in ds.sample("train", seed, batch_size, seed).items()}
    return cfg, params, batch


def test_declared_readers_match_the_traced_program():
    """readers(cfg) names exactly the weights models/arch/readers.py finds reading each tap, and the
    identity shortcut sits where the block has no projection."""
    cfg, params, batch = _setup()
    traced = reading_matrices(ARCH, cfg, params, batch)
    decls = resnet.readers(cfg)
    assert set(decls) == set(traced)
    for tap, decl in decls.items():
        assert {r.weight for r in decl.readers} == traced[tap], tap
    assert decls["stem.act"].identity_into == "stage1.block0.act2"
    assert all(decls[t].identity_into is None for t in decls if t != "stem.act")
    assert [r.kind for r in decls["stage3.block0.act2"].readers] == ["pool_dense"]


def test_reader_out_hook_is_the_identity_by_default():
    cfg, params, batch = _setup()

    class Hooked:
        def __call__(self, name, p, act):
            return act(p)

        def reader_out(self, path, z):
            return z

    a = ARCH.apply(params, batch, cfg)
    b = ARCH.apply(params, batch, cfg, Hooked())
    assert float(jnp.max(jnp.abs(a - b))) == 0.0


def test_kink_kernel_relu_keeps_value_and_slope_and_puts_unit_mass_in_sigma_second():
    r = relu_with_kink_kernel(0.2)
    x = jnp.linspace(-3, 3, 6001)
    assert jnp.array_equal(r(x), jax.nn.relu(x))
    assert jnp.array_equal(jax.vmap(jax.grad(r))(x), (x > 0).astype(x.dtype))
    second = jax.vmap(jax.grad(jax.grad(r)))(x)
    # tol: a float32 Riemann sum over 6001 points (dx = 1e-3) of the kernel: grid and summation error
    assert float(jnp.sum(second) * (x[1] - x[0])) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="width"):
        relu_with_kink_kernel(0.0)


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_batch_norm_makes_row_sums_of_T_vanish(norm):
    """BN after a reader: H·1_c = 0 per channel, so Σ_y' T_yy' = 0 and Σ_y ∂ℓ/∂z_yc = 0 to float
    precision; any norm that is scale-invariant gives H·z = −∇_z ℓ. GroupNorm (per example)
    and no norm are the controls where the row sums are O(1)."""
    cfg, params, batch = _setup(norm)
    for reader in ("stage1/block0/conv2/w", "stage2/block0/short_conv/w"):
        res = C.norm_invariance_residuals(ARCH, cfg, params, batch, reader)
        if norm == "batch":
            assert res["row_sum"] < 1e-5 and res["grad_sum"] < 1e-5, (reader, res)
        else:
            assert res["row_sum"] > 0.05 and res["grad_sum"] > 0.05, (reader, res)
        if norm == "none":
            assert res["scale"] > 0.1, (reader, res)
        else:  # scale invariance up to the norm's ε
            assert res["scale"] < 1e-3, (reader, res)


def _fixed_p_draws(norm, tap, draws, act="relu", **kw):
    """Reader weights redrawn ``draws`` times at one fixed p (conv_readers.fixed_p_draws)."""
    cfg, params, batch = _setup(norm, act)
    return C.fixed_p_draws(ARCH, cfg, params, batch, tap, draws, **kw)


def _z(a, b):
    d = a - b
    return d.mean() / (d.std(ddof=1) / np.sqrt(d.size))


@pytest.mark.slow
def test_stein_agrees_at_fixed_p_and_needs_the_kink_term():
    """act1 → conv2 → BN → (+ shortcut) → ReLU: without the δ(p) part of ReLU'' the prediction is
    wrong by many SE (autodiff's Hessian is not the weak one); with it they agree. Planted errors
    in the Stein term (curvature sign flipped) are caught on the same draws."""
    z_star = agreement_threshold(4)
    v = _fixed_p_draws("batch", "stage1.block0.act1", 120)
    assert abs(_z(v["predicted"], v["measured"])) <= z_star
    no_kink = v["predicted"] - v["kink"]
    assert abs(_z(no_kink, v["measured"])) > 2 * z_star
    flipped = _fixed_p_draws("batch", "stage1.block0.act1", 120, planted_curvature_sign=-1.0)
    assert abs(_z(flipped["predicted"], flipped["measured"])) > z_star


@pytest.mark.slow
def test_planted_scale_in_the_conv_stein_term_is_caught():
    """GELU (no kink term: the Stein term has little noise), norm=none, where the Stein term is
    large: ×1.5 on it disagrees, ×1 agrees, on the same draws; GELU's kink column is exactly 0."""
    z_star = agreement_threshold(4)
    ok = _fixed_p_draws("none", "stage1.block0.act1", 60, act="gelu")
    bad = _fixed_p_draws("none", "stage1.block0.act1", 60, act="gelu", planted_scale=1.5)
    assert np.all(ok["kink"] == 0.0)
    assert abs(_z(ok["predicted"], ok["measured"])) <= z_star
    assert abs(_z(bad["predicted"], bad["measured"])) > z_star


@pytest.mark.slow
def test_stem_and_head_taps_agree_across_seeds_with_the_shortcut_term():
    """stem.act (conv1 + identity shortcut) and the pooled-head tap, clustered over 8 inits."""
    z_star = agreement_threshold(2)
    rows = run_layers(LayersSpec("resnet", seeds=8, batch_size=8, probes=2),
                      n_checks=2, taps=["stem.act", "stage3.block0.act2"])
    assert all(abs(r.z) <= z_star for r in rows), [(r.tap, r.z) for r in rows]
    stem, head = rows
    assert stem.shortcut != 0.0 and "identity" in stem.readers
    # tol: a term that vanishes for this tap (its kink is exactly 0): 1e-9 leaves room for rounding only
    assert head.shortcut == 0.0 and head.kink == 0.0 and head.curvature == pytest.approx(0, abs=1e-9)
    assert head.sign_verdict == "positive"  # GN only: pooled head read by CE


def test_undeclared_reader_is_refused(monkeypatch):
    """Dropping short_conv from a tap's declared readers: the completeness check refuses it."""
    real = resnet.readers

    def missing(cfg):
        decls = dict(real(cfg))
        d = decls["stage1.block0.act2"]
        decls["stage1.block0.act2"] = dataclasses.replace(d, readers=d.readers[:1])
        return decls

    monkeypatch.setattr(resnet, "ARCH", dataclasses.replace(resnet.ARCH, readers=missing))
    with pytest.raises(ValueError, match="more than the declared readers"):
        run_layers(LayersSpec("resnet", seeds=2, batch_size=2, probes=1),
                   taps=["stage1.block0.act2"])


def test_unsupported_readers_and_activations_are_refused():
    with pytest.raises(ValueError, match="kind"):
        LinearReader("head/w", "attention", "fan_in_normal", 1.0)
    with pytest.raises(ValueError, match="clip"):
        run_layers(LayersSpec("resnet", act="clipped_relu2", seeds=2, batch_size=2))
    with pytest.raises(ValueError, match="w_draws"):
        run_layers(LayersSpec("resnet", seeds=2, batch_size=2, w_draws=2))
    cfg, params, batch = _setup()
    with pytest.raises(ValueError, match="no linear reader"):
        C.per_seed(ARCH, cfg, params, batch, "stem.act", TapReaders(()), 1, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="dense"):  # the dense estimator refuses a conv reader
        dense_per_seed(ARCH, cfg, params, batch, "stage1.block0.act1", 1, jax.random.PRNGKey(0))
    assert flatten_dict(params)["stage1/block0/conv2/w"].ndim == 4


def test_conv_stein_form_symbolically_and_its_power():
    from driftlab.theory.per_layer import check_conv_stein

    assert check_conv_stein(3, 2, 1, 2) and check_conv_stein(4, 2, 2, 1)
    assert not check_conv_stein(3, 2, 1, 2, unshifted=True)  # T_{x−dx,y'} needs the shift


@pytest.mark.slow
def test_cli_layers_resnet_json_rows(capsys):
    import json

    from driftlab.cli import main

    assert main(["theory", "layers", "--arch", "resnet", "--seeds", "2", "--batch-size", "2",
                 "--probes", "1", "--set", "norm=none", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["tap"] for r in rows] == list(resnet.readers(ARCH.config("tiny")))
    for key in ("predicted", "predicted_se", "measured", "measured_se", "z", "gauss_newton",
                "curvature", "sign_verdict", "shortcut", "kink", "readers"):
        assert all(key in r for r in rows), key
    assert main(["theory", "layers", "--arch", "resnet", "--seeds", "2", "--act",
                 "clipped_relu2"]) == 2
    assert "clip" in capsys.readouterr().err


def test_deciding_term_names_the_shortcut_and_the_kinks():
    from driftlab.reports.per_layer import deciding_term

    base = dict(gauss_newton=6e-4, curvature=1.4e-3, curvature_se=3e-4, predicted_se=5e-4)
    assert deciding_term({**base, "predicted": 4.3e-3, "shortcut": 2.3e-3, "kink": 1.4e-3}) \
        == "identity shortcut (exact)"
    assert deciding_term({**base, "predicted": 2.0e-3, "shortcut": 0.0, "kink": 1.4e-3}) \
        == "curvature (ReLU kinks)"
    assert deciding_term({**base, "predicted": 2.0e-3, "shortcut": 0.0, "kink": 0.2e-3}) \
        == "curvature"
    assert deciding_term({**base, "predicted": 2.0e-3}) == "curvature"  # dense rows: no keys
