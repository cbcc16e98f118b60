"""The engine loop without host stalls: cached/chunked batches equal the per-step sampler's
bit for bit (images, text, speech; from any start step, as a resumed run), one host read per
sync point equals the leaf-by-leaf read, deferred reads still stop a non-finite run at its
own step, and the engine benchmark compares the loop with the same compiled steps."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from driftlab.bench import engine_loop
from driftlab.models.engine import host_read, prefetch, sharding
from driftlab.models.data import images, speech, text
from driftlab.models.engine.train import NonFiniteLossError, TrainConfig, is_logged_step, train


def _reference_epoch_indices(n, split, step, batch_size, seed):
    """The sampler's indices as main computed them: a fresh permutation per step."""
    pos = step * batch_size + np.arange(batch_size, dtype=np.int64)
    epochs, offsets = np.divmod(pos, n)
    out = np.empty(batch_size, dtype=np.int64)
    for e in np.unique(epochs):
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, images.SPLITS.index(split), int(e)])
        out[epochs == e] = rng.permutation(n)[offsets[epochs == e]]
    return out


@pytest.mark.parametrize("n,batch_size", [(20, 4), (20, 6), (7, 16)])  # aligned, crossing, B > n
def test_cached_epoch_indices_equal_the_uncached_reference(n, batch_size):
    for seed in (0, 3):
        for split in ("train", "val"):
            for step in range(25):
                np.testing.assert_array_equal(
                    images.epoch_indices(n, split, step, batch_size, seed),
                    _reference_epoch_indices(n, split, step, batch_size, seed))
    cached = images._epoch_perm(0, "train", 0, n)
    with pytest.raises(ValueError):  # the cache hands out a read-only array
        cached[0] = 1


def test_image_sample_steps_equal_stacked_samples():
    ds = images.load_images("synthetic", 1)
    n, bs = ds.meta["n_train"], 48  # 2048 / 48: chunks cross epoch boundaries
    for first, count in ((0, 5), (40, 9), (85, 1)):
        stacked = ds.sample_steps("train", first, count, bs, 2)
        for i in range(count):
            one = ds.sample("train", first + i, bs, 2)
            for k in one:
                assert stacked[k].dtype == one[k].dtype
                np.testing.assert_array_equal(stacked[k][i], one[k])
    assert (first + count) * bs > n
    with pytest.raises(ValueError, match="count"):
        ds.sample_steps("train", 0, 0, bs, 0)


def _text_dataset():
    return text.load_text("synthetic", 0, 16)


def _speech_dataset():
    return speech.load_speech("synthetic", 0, 256)


@pytest.mark.parametrize("make", [lambda: images.load_images("synthetic", 0), _text_dataset,
                                  _speech_dataset], ids=["images", "text", "speech"])
@pytest.mark.parametrize("background", [True, False])
def test_prefetched_device_batches_equal_the_sampler(make, background):
    """The loop's batches (chunked transfer, prefetched) are the sampler's, from step 0
    and from a resume step, with a short last chunk."""
    ds, bs, seed = make(), 4, 5
    mesh = sharding.make_mesh()

    def produce(first, count):
        return sharding.shard_batches([ds.sample("train", s, bs, seed)
                                       for s in range(first, first + count)], mesh, bs)

    for start in (0, 7):
        with prefetch.Prefetcher(produce, start, start + 11, chunk=4, depth=2,
                                 background=background) as pf:
            for s in range(start, start + 11):
                got, want = pf.get(s), ds.sample("train", s, bs, seed)
                assert set(got) == set(want)
                for k in want:
                    np.testing.assert_array_equal(np.asarray(got[k]), want[k])
                    assert got[k].sharding == sharding.batch_sharding(mesh)


def test_prefetcher_order_errors_and_early_close():
    pf = prefetch.Prefetcher(lambda f, c: list(range(f, f + c)), 0, 100, chunk=8)
    assert [pf.get(s) for s in range(10)] == list(range(10))
    with pytest.raises(ValueError, match="out of order"):
        pf.get(20)
    pf.close()  # stops the producer although 90 steps remain

    def failing(first, count):
        if first >= 4:
            raise RuntimeError("bad shard")
        return list(range(first, first + count))

    with prefetch.Prefetcher(failing, 0, 12, chunk=4) as pf:
        assert [pf.get(s) for s in range(4)] == [0, 1, 2, 3]
        with pytest.raises(RuntimeError, match="bad shard"):
            pf.get(4)
    with pytest.raises(ValueError, match="chunk"):
        prefetch.Prefetcher(lambda f, c: [], 0, 1, chunk=0)


def test_host_reader_equals_leaf_by_leaf_read():
    mesh = sharding.make_mesh()
    reader = host_read.HostReader(mesh)
    tree = sharding.replicate({"a": np.float32(1.5), "b": {"c": np.arange(6, dtype=np.int32).reshape(2, 3),
                                                        "d": np.asarray(True)},
                               "e": np.linspace(0, 1, 5, dtype=np.float32), "none": None,
                               "f": np.float32(np.nan)}, mesh)
    got = reader.read(tree)
    want = jax.tree_util.tree_map(np.asarray, tree)
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)
    scalars = {"x": tree["a"], "y": tree["b"]["d"], "z": jnp.int32(-7), "w": jnp.float32(2.5),
               "v": jnp.int32(4), "u": jnp.asarray(False)}
    assert reader.floats(scalars) == {"x": 1.5, "y": 1.0, "z": -7.0, "w": 2.5, "v": 4.0, "u": 0.0}
    with pytest.raises(ValueError, match="scalar"):
        reader.floats(tree)
    # a pack computed elsewhere, read with the structure from eval_shape
    make = lambda v: {"p": v * 2, "q": (v > 0).astype(jnp.int32)}
    v = jnp.float32(3.25)
    packed = jax.jit(lambda v: host_read.pack(make(v)))(v)
    assert reader.packed(packed, reader.layout(jax.eval_shape(make, v))).floats() == {"p": 6.5, "q": 1.0}
    assert reader.read({}) == {}


BASE = dict(arch="mlp", act="relu", data="synthetic", size="tiny", batch_size=8, lr=0.05,
            optimizer="adamw", eval_batches=1, progress=False)


def test_deferred_reads_stop_a_nan_run_at_its_own_step(tmp_path, monkeypatch):
    """Logged steps are read a few steps late; a NaN at step 13 (between logged steps 10
    and 15) still stops the run with step 13, no record from step 15 on, and the state on
    the device never includes a NaN update (checkpoint at 12 is the last good one)."""
    real = images.load_images

    def poisoned(source, seed, **kw):
        ds = real(source, seed, **kw)

        def sample_steps(split, first, count, batch_size, seed_):
            batch = ds.sample_steps(split, first, count, batch_size, seed_)
            if split == "train" and first <= 13 < first + count:
                batch["x"][13 - first, 0, 0, 0, 0] = np.nan
            return batch

        return type(ds)(sample=ds.sample, meta=ds.meta, sample_steps=sample_steps)

    monkeypatch.setattr(images, "load_images", poisoned)
    out = tmp_path / "nan"
    cfg = TrainConfig(**BASE, steps=40, log_every=5, checkpoint_every=12, out=str(out))
    with pytest.raises(NonFiniteLossError, match="step 13.*last good checkpoint: step 12") as err:
        train(cfg)
    assert err.value.step == 13
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [0, 5, 10, 13] and lines[-1]["event"] == "non_finite"
    with np.load(out / "checkpoint.npz", allow_pickle=False) as z:
        assert int(z["step"]) == 12
        assert all(np.isfinite(z[k]).all() for k in z.files if k.startswith(("params/", "opt/")))


def test_records_identical_with_and_without_background_prefetch(tmp_path, monkeypatch):
    """Same seed, same records: the prefetch thread changes timing, not numbers."""
    import driftlab.models.engine.train as engine

    records = {}
    for background in (True, False):
        monkeypatch.setattr(engine, "PREFETCH_THREAD", background)
        out = tmp_path / f"bg{background}"
        train(TrainConfig(**BASE, steps=45, log_every=4, out=str(out)))
        records[background] = [{k: v for k, v in json.loads(x).items()
                                if k not in ("steps_per_s", "time")}
                               for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[True] == records[False] and len(records[True]) == 12  # 0, 4, …, 44


def test_bare_steps_and_engine_measure():
    cfg = TrainConfig(**BASE, steps=30, log_every=10)
    assert [s for s in range(30) if is_logged_step(s, cfg)] == [0, 10, 20, 29]
    m = engine_loop.measure(cfg, from_step=10, repeats=1)
    assert m["window"] == (10, 29) and m["steps"] == 30
    for k in ("bare_s", "whole_s"):
        assert 0 < m[k] < 1
    # The steady state is a difference of wall times: a positive rate or "too noisy",
    # whichever the machine's load gives, never a value <= 0.
    assert (m["steady_s"] is None) == m["steady_note"].startswith("too noisy")
    assert m["steady_s"] is None or m["steady_s"] > 0
    with pytest.raises(ValueError, match="from_step"):
        engine_loop.measure(cfg, from_step=29, repeats=1)
    with pytest.raises(ValueError, match="repeats"):
        engine_loop.measure(cfg, from_step=10, repeats=0)
