"""driftlab/testing.py: each assertion passes on what it should and fails on a planted error."""

import numpy as np
import pytest

from driftlab.montecarlo.stats import MCResult, suite_threshold
from driftlab.testing import (EPS, TEST_MC_CHECKS, TOLERANCES, assert_close, assert_mc_agrees,
                              assert_same, mc_threshold, tolerance)


def test_eps_table_is_each_dtypes_machine_epsilon():
    import ml_dtypes

    assert EPS["float64"] == np.finfo(np.float64).eps
    assert EPS["float32"] == np.finfo(np.float32).eps
    assert EPS["bfloat16"] == float(ml_dtypes.finfo(ml_dtypes.bfloat16).eps)
    for (dtype, _), (rtol, _) in TOLERANCES.items():
        assert EPS[dtype] <= rtol < 0.05  # never exact, never a statistical margin


def test_assert_same_pytrees_and_nan():
    tree = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [np.float64(np.nan), 3], "s": "x"}
    assert_same(tree, {"w": tree["w"].copy(), "b": [np.float64(np.nan), 3], "s": "x"})


@pytest.mark.parametrize("plant", ["ulp", "dtype", "shape", "structure", "signed_zero", "nan", "int"])
def test_assert_same_fails_on_each_difference(plant):
    a = {"w": np.linspace(0.1, 1, 6, dtype=np.float32).reshape(2, 3), "n": 3}
    b = {"w": a["w"].copy(), "n": 3}
    if plant == "ulp":  # one unit in the last place of one element
        b["w"][1, 2] = np.nextafter(b["w"][1, 2], np.float32(2))
    elif plant == "dtype":
        b["w"] = b["w"].astype(np.float64)
    elif plant == "shape":
        b["w"] = b["w"].reshape(3, 2)
    elif plant == "structure":
        b["extra"] = 0
    elif plant == "signed_zero":
        a["w"][0, 0], b["w"][0, 0] = 0.0, -0.0
    elif plant == "nan":
        b["w"][0, 1] = np.nan
    else:
        b["n"] = 4
    with pytest.raises(AssertionError):
        assert_same(a, b)


def test_assert_close_uses_the_dtype_table():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5))
    assert_close(x * (1 + 2 * EPS["float64"]), x)
    x32 = x.astype(np.float32)
    assert_close(x32 * np.float32(1 + 16 * EPS["float32"]), x32, kind="ops")
    assert_close({"a": x32, "b": [1.0]}, {"a": x32.astype(np.float64), "b": [1.0]})  # float32 rules
    assert (tolerance("float32", "reduction")[0] > tolerance("float32", "ops")[0]
            > tolerance("float32", "rounding")[0])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_assert_close_fails_on_a_10_eps_error(dtype):
    """A relative error of 10·ε fails the default kind ("rounding", 4 ε) and passes "ops";
    10× each kind's rtol fails that kind."""
    x = np.linspace(0.5, 2.0, 7).astype(dtype)
    assert_close(x, (x * (1 + EPS[dtype])).astype(dtype))
    with pytest.raises(AssertionError, match="not close"):
        assert_close(x * (1 + 10 * EPS[dtype]), x.astype(np.float64), dtype=dtype)
    assert_close(x * (1 + 10 * EPS[dtype]), x.astype(np.float64), dtype=dtype, kind="ops")
    for kind in ("ops", "reduction"):
        rtol, _ = tolerance(dtype, kind)
        with pytest.raises(AssertionError, match="not close"):
            assert_close(x * (1 + 10 * rtol), x.astype(np.float64), dtype=dtype, kind=kind)


def test_assert_close_zero_reference_is_held_to_zero():
    """An array that should be exactly 0 has max|b| = 0, so no error passes."""
    with pytest.raises(AssertionError):
        assert_close(np.array([0.0, 10 * EPS["float64"]]), np.zeros(2))


def test_assert_close_bfloat16_and_wrong_names():
    import ml_dtypes

    x = np.linspace(0.5, 2.0, 7).astype(ml_dtypes.bfloat16)
    assert_close(x, x.astype(np.float32))
    with pytest.raises(AssertionError):
        assert_close((x.astype(np.float32) * 1.1).astype(ml_dtypes.bfloat16), x)
    with pytest.raises(ValueError, match="kind="):
        assert_close(1.0, 1.0, kind="loose")
    with pytest.raises(ValueError, match="dtype="):
        assert_close(1.0, 1.0, dtype="float16")


def test_assert_mc_agrees_threshold_is_the_suites():
    assert mc_threshold() == suite_threshold(TEST_MC_CHECKS)
    assert mc_threshold(one_sided=True) == suite_threshold(TEST_MC_CHECKS, one_sided=True)
    assert 4 < mc_threshold() < 5


def test_assert_mc_agrees_passes_within_and_fails_on_a_planted_one_percent_error():
    """At se = 0.1% of the target a 1% error is z = 10 > z* ≈ 4.56: caught, with a message
    that states estimate, SE, z and threshold."""
    assert_mc_agrees(1.003, 0.001, 1.0)
    assert_mc_agrees(MCResult(1.003, 0.001, 100, 100), target=1.0)
    with pytest.raises(AssertionError) as err:
        assert_mc_agrees(1.01, 0.001, 1.0)
    msg = str(err.value)
    for part in ("estimate=1.01", "se=0.001", "z=10", f"z*={mc_threshold():.3f}"):
        assert part in msg, msg
    with pytest.raises(AssertionError):
        assert_mc_agrees(1.0, 0.001, 1.01, target_se=0.0005)  # the error on the target side


def test_assert_mc_agrees_sides_and_arrays():
    assert_mc_agrees(2.0, 0.001, 1.0, side="above")  # far above: fine for "not below"
    with pytest.raises(AssertionError):
        assert_mc_agrees(2.0, 0.001, 1.0, side="below")
    assert_mc_agrees(np.array([1.0, 2.0]), np.array([0.01, 0.01]), np.array([1.0, 2.02]))
    with pytest.raises(AssertionError, match=r"at \(1,\)"):
        assert_mc_agrees(np.array([1.0, 2.0]), np.array([0.01, 0.01]), np.array([1.0, 2.1]))
    with pytest.raises(ValueError, match="side="):
        assert_mc_agrees(1.0, 0.1, 1.0, side="two")
