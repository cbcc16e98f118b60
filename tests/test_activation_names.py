"""Issue 10: a clip threshold must be a positive finite number."""

import pytest

from driftlab.activations import parse_activation


@pytest.mark.parametrize("spec", ["clipped_relu2:inf", "clipped_gelu2:-inf", "clipped_relu2:nan",
                                  "clipped_relu2:0", "clipped_relu2:-3"])
def test_bad_clip_is_rejected(spec):
    with pytest.raises(ValueError, match="positive finite"):
        parse_activation(spec)


def test_good_clip_is_kept():
    assert parse_activation("clipped_relu2:8").clip == 8.0
    assert parse_activation("clipped_relu2").clip == 15.0
