"""ensemble_profile's FLOPs (issue 34): XLA's cost analysis counts a while loop's body once,
so a lax.map ensemble's step must be counted S times its body, like the vmapped one."""

import pytest

from driftlab.bench.ensemble_profile import Bare


def test_map_ensemble_flops_count_every_member():
    one = Bare("mlp", "tiny", None).flops
    mapped, vmapped = Bare("mlp", "tiny", 4, "map"), Bare("mlp", "tiny", 4, "vmap")
    assert mapped.loop == "map" and vmapped.loop == "vmap"
    # tol: the guard's selects and the member slicing add a few FLOPs per program (≈1%
    # measured); a member count off by one would be off by 25%
    assert mapped.flops == pytest.approx(4 * one, rel=0.05)  # tol: as above
    assert vmapped.flops == pytest.approx(4 * one, rel=0.05)  # tol: as above
