"""Text data sources: synthetic, embedded stdlib text, speedrun shards and legacy .bin files."""

from __future__ import annotations

import numpy as np
import pytest

from driftlab.models.data.text import (GPT2_VOCAB, HEADER_BYTES, SYNTHETIC_VOCAB, load_text,
                                       read_shard, write_shard)


def _check_batch(batch, B, T, vocab):
    assert set(batch) == {"x", "y"}
    for a in batch.values():
        assert a.dtype == np.int32 and a.shape == (B, T)
        assert a.min() >= 0 and a.max() < vocab
    # y is x shifted by one token.
    np.testing.assert_array_equal(batch["x"][:, 1:], batch["y"][:, :-1])


def test_synthetic_batches_are_deterministic_and_shifted():
    ds = load_text("synthetic", seed=3, block_size=16)
    assert ds.meta["vocab_size"] == SYNTHETIC_VOCAB and ds.meta["encoding"] == "synthetic"
    a = ds.sample("train", 5, 8, 0)
    _check_batch(a, 8, 16, SYNTHETIC_VOCAB)
    b = load_text("synthetic", seed=3, block_size=16).sample("train", 5, 8, 0)
    np.testing.assert_array_equal(a["x"], b["x"])
    # Different step, split or sampling seed give different batches.
    assert not np.array_equal(a["x"], ds.sample("train", 6, 8, 0)["x"])
    assert not np.array_equal(a["x"], ds.sample("val", 5, 8, 0)["x"])
    assert not np.array_equal(a["x"], ds.sample("train", 5, 8, 1)["x"])
    # A different data seed gives a different token stream.
    assert not np.array_equal(a["x"], load_text("synthetic", 4, 16).sample("train", 5, 8, 0)["x"])


@pytest.mark.parametrize("source,vocab", [("embedded", None), ("embedded:byte", 256)])
def test_embedded_text(source, vocab):
    ds = load_text(source, seed=0, block_size=32)
    meta = ds.meta
    assert meta["n_train_tokens"] > 300_000 and meta["n_val_tokens"] > 30_000
    if vocab is None:  # char level: the alphabet of the text
        assert meta["encoding"] == "char" and 60 < meta["vocab_size"] < 256
        assert len(meta["alphabet"]) == meta["vocab_size"]
    else:
        assert meta["encoding"] == "byte" and meta["vocab_size"] == vocab
    batch = ds.sample("train", 0, 4, 0)
    _check_batch(batch, 4, 32, meta["vocab_size"])
    if vocab is None:  # decodes to real prose: mostly letters and spaces
        text = "".join(meta["alphabet"][t] for t in batch["x"].ravel())
        assert sum(c.isalpha() or c == " " for c in text) > 0.6 * len(text)


def test_bad_embedded_encoding_and_unknown_source(tmp_path):
    with pytest.raises(ValueError, match="encoding"):
        load_text("embedded:utf16", 0, 8)
    with pytest.raises(ValueError, match="not 'synthetic'"):
        load_text(str(tmp_path / "missing"), 0, 8)
    with pytest.raises(ValueError, match="no token data"):
        load_text(str(tmp_path), 0, 8)


def test_bad_split_and_block_size():
    ds = load_text("synthetic", 0, 8)
    with pytest.raises(ValueError, match="split"):
        ds.sample("validation", 0, 2, 0)
    with pytest.raises(ValueError, match="block_size"):
        load_text("synthetic", 0, 0)


def _write_shards(root, train_parts, val):
    for j, part in enumerate(train_parts):
        write_shard(root / f"fineweb_train_{j:06d}.bin", part)
    write_shard(root / "fineweb_val_000000.bin", val)


def test_shard_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 1000, n).astype(np.uint16) for n in (50, 70)]
    val = rng.integers(0, 1000, 40).astype(np.uint16)
    _write_shards(tmp_path, parts, val)
    np.testing.assert_array_equal(read_shard(tmp_path / "fineweb_train_000001.bin"), parts[1])
    ds = load_text(str(tmp_path), 0, 8)
    assert ds.meta["vocab_size"] == GPT2_VOCAB and ds.meta["encoding"] == "gpt2"
    assert ds.meta["n_train_tokens"] == 120 and ds.meta["n_val_tokens"] == 40
    # Every window is a contiguous slice of one shard (never across a boundary).
    seen_shards = set()
    for step in range(20):
        batch = ds.sample("train", step, 4, 0)
        _check_batch(batch, 4, 8, GPT2_VOCAB)
        for x, y in zip(batch["x"], batch["y"]):
            window = np.concatenate([x, y[-1:]])
            hits = [j for j, part in enumerate(parts)
                    if any(np.array_equal(part[s:s + 9], window) for s in range(len(part) - 8))]
            assert hits, "window is not a slice of any shard"
            seen_shards.update(hits)
    assert seen_shards == {0, 1}
    v = ds.sample("val", 0, 3, 0)
    assert all(any(np.array_equal(val[s:s + 8], x) for s in range(33)) for x in v["x"])


def test_shard_vocab_grows_past_gpt2(tmp_path):
    _write_shards(tmp_path, [np.full(20, 60000, np.uint16)], np.arange(20, dtype=np.uint16))
    assert load_text(str(tmp_path), 0, 4).meta["vocab_size"] == 60001


def test_shard_corruption_errors_name_the_file(tmp_path):
    rng = np.random.default_rng(1)
    _write_shards(tmp_path, [rng.integers(0, 100, 64).astype(np.uint16)],
                  rng.integers(0, 100, 64).astype(np.uint16))
    path = tmp_path / "fineweb_train_000000.bin"
    good = path.read_bytes()

    path.write_bytes(good[:-6])  # truncated
    with pytest.raises(ValueError, match=r"fineweb_train_000000\.bin.*truncated"):
        load_text(str(tmp_path), 0, 8)

    bad = bytearray(good)
    bad[:4] = np.array([12345], "<i4").tobytes()
    path.write_bytes(bytes(bad))
    with pytest.raises(ValueError, match=r"fineweb_train_000000\.bin.*magic"):
        load_text(str(tmp_path), 0, 8)

    bad = bytearray(good)
    bad[4:8] = np.array([2], "<i4").tobytes()
    path.write_bytes(bytes(bad))
    with pytest.raises(ValueError, match=r"fineweb_train_000000\.bin.*version"):
        load_text(str(tmp_path), 0, 8)

    path.write_bytes(good[:HEADER_BYTES // 2])  # not even a full header
    with pytest.raises(ValueError, match=r"fineweb_train_000000\.bin.*header"):
        load_text(str(tmp_path), 0, 8)

    path.write_bytes(good)
    (tmp_path / "fineweb_val_000000.bin").unlink()
    with pytest.raises(ValueError, match="val"):
        load_text(str(tmp_path), 0, 8)


def test_shards_too_short_for_block(tmp_path):
    _write_shards(tmp_path, [np.arange(5, dtype=np.uint16)], np.arange(50, dtype=np.uint16))
    with pytest.raises(ValueError, match="block_size"):
        load_text(str(tmp_path), 0, 8)


def test_legacy_bin_files(tmp_path):
    train = np.arange(100, dtype=np.uint16)
    val = np.arange(100, 130, dtype=np.uint16)
    train.tofile(tmp_path / "train.bin")
    val.tofile(tmp_path / "val.bin")
    ds = load_text(str(tmp_path), 0, 10)
    assert ds.meta["n_train_tokens"] == 100 and ds.meta["n_val_tokens"] == 30
    b = ds.sample("train", 0, 5, 0)
    # Consecutive tokens: each window is an arithmetic run starting at its first token.
    np.testing.assert_array_equal(b["x"], b["x"][:, :1] + np.arange(10))
    np.testing.assert_array_equal(b["y"], b["x"] + 1)
    (tmp_path / "val.bin").write_bytes(val.tobytes()[:-1])  # odd length
    with pytest.raises(ValueError, match=r"val\.bin"):
        load_text(str(tmp_path), 0, 10)
