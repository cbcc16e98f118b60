"""driftlab inspect (issue 33): bad input gets one clear line and exit code 2, for each case
the issue lists; the traced readers follow gates and stop at residual additions."""

import textwrap

import pytest

from driftlab.cli import main

HEAD = """
import jax, jax.numpy as jnp
import driftlab
LOSS = "mse"
def init(key):
    k1, k2 = jax.random.split(key)
    return {"w1": jax.random.normal(k1, (4, 8)) / 2.0, "w2": jax.random.normal(k2, (8, 3)) / 3.0}
def batch(key, n):
    kx, ky = jax.random.split(key)
    return jax.random.normal(kx, (n, 4)), jax.random.normal(ky, (n, 3))
"""
GOOD_APPLY = """
def apply(params, x):
    h = jax.nn.relu(driftlab.tap("hidden", x @ params["w1"]))
    return h @ params["w2"]
"""

CASES = {
    "missing": ("LOSS = 'mse'\ndef init(key):\n    return {}\n", "missing apply, batch"),
    "no_tap": (HEAD + "def apply(params, x):\n    return jax.nn.relu(x @ params['w1']) @ params['w2']\n",
               "no tap found"),
    "unread": (HEAD + "def apply(params, x):\n"
               "    h = jax.nn.relu(driftlab.tap('hidden', x @ params['w1']))\n"
               "    return (x @ params['w1']) @ params['w2'] + h.sum(-1, keepdims=True)\n",
               "tap 'hidden': no parameter reads its value"),
    "nonfinite": (HEAD + "def apply(params, x):\n"
                  "    h = jax.nn.relu(driftlab.tap('hidden', x @ params['w1']))\n"
                  "    return jnp.log(-jnp.abs(h @ params['w2']) - 1.0)\n",
                  "non-finite outputs at init"),
    "not_arrays": (HEAD.replace('"w2": jax.random.normal(k2, (8, 3)) / 3.0', '"w2": "abc"') + GOOD_APPLY,
                   "params leaf 'w2' is a str, not an array"),
    "float_leaf": (HEAD.replace('"w2": jax.random.normal(k2, (8, 3)) / 3.0', '"w2": [0.5, 1.0]') + GOOD_APPLY,
                   "params leaf 'w2/0' is a float, not an array"),
    "shapes": (HEAD.replace("(n, 4)), jax", "(n, 5)), jax") + GOOD_APPLY,
               "apply(params, x) fails on batch() with x shapes (32, 5)"),
    "twice": (HEAD + "def apply(params, x):\n"
              "    h = jax.nn.relu(driftlab.tap('hidden', x @ params['w1']))\n"
              "    h = jax.nn.relu(driftlab.tap('hidden', h))\n"
              "    return h @ params['w2']\n",
              "tap name 'hidden' used twice"),
    "bad_loss": (HEAD.replace('LOSS = "mse"', 'LOSS = "l1"') + GOOD_APPLY, "LOSS='l1' invalid"),
    "y_shape": (HEAD.replace("(n, 3))\n", "(n, 7))\n") + GOOD_APPLY, "do not fit y of batch()"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_one_line_exit_2(case, tmp_path, capsys):
    source, expected = CASES[case]
    path = tmp_path / f"{case}.py"
    path.write_text(textwrap.dedent(source))
    assert main(["inspect", str(path), "--seeds", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("driftlab inspect: error: ") and expected in err, err


def test_missing_file(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope.py")]) == 2
    assert "no such file" in capsys.readouterr().err


def _readers(source: str, x_shape=(2, 4)):
    import jax
    import jax.numpy as jnp

    from driftlab.models.arch import user_model as um

    ns: dict = {}
    exec(textwrap.dedent(source), ns)
    model = um.load(type("M", (), {k: staticmethod(v) if callable(v) else v for k, v in ns.items()
                                   if k in ("init", "apply", "batch", "LOSS")}))
    params = model.init(jax.random.PRNGKey(0))
    return {t.name: set(t.readers) for t in um.discover(model, params, jnp.ones(x_shape))}


def test_readers_follow_gates_and_stop_at_residuals():
    src = """
    import jax, jax.numpy as jnp, driftlab
    LOSS = "mse"
    def init(key):
        ks = jax.random.split(key, 5)
        return {"wg": jax.random.normal(ks[0], (4, 8)), "wu": jax.random.normal(ks[1], (4, 8)),
                "wd": jax.random.normal(ks[2], (8, 4)), "wr": jax.random.normal(ks[3], (4, 4)),
                "emb": jax.random.normal(ks[4], (3, 4))}
    def batch(key, n):
        return jnp.ones((n, 4)), jnp.ones((n, 3))
    def apply(params, x):
        g = jax.nn.silu(driftlab.tap("gate", x @ params["wg"]))
        u = driftlab.tap("up", x @ params["wu"])
        r = x + jax.nn.gelu(driftlab.tap("res", x @ params["wr"]))   # a residual sum
        h = driftlab.tap("sq", r @ params["wr"].T, lambda z: jnp.square(jax.nn.relu(z)))
        return (g * u) @ params["wd"] @ params["emb"].T + (r @ params["emb"].T) + h @ params["emb"].T
    """
    readers = _readers(src)
    assert readers["gate"] == {"wd"} and readers["up"] == {"wd"}
    assert readers["res"] == set()  # x + σ(p): the reader of r reads the residual stream
    assert readers["sq"] == {"emb"}  # a tied (transposed) matrix reads it


def test_planted_wrong_walk_is_caught():
    """Power of the reader check: a model whose gate product is replaced by a residual-style
    sum with an untapped value loses its reader (the walk does not pass additions)."""
    src = """
    import jax, jax.numpy as jnp, driftlab
    LOSS = "mse"
    def init(key):
        return {"wg": jnp.ones((4, 8)), "wd": jnp.ones((8, 4)), "wx": jnp.ones((4, 8))}
    def batch(key, n):
        return jnp.ones((n, 4)), jnp.ones((n, 4))
    def apply(params, x):
        g = jax.nn.silu(driftlab.tap("gate", x @ params["wg"]))
        return (g + x @ params["wx"]) @ params["wd"]
    """
    assert _readers(src)["gate"] == set()
