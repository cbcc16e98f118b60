"""Image loaders: determinism, splits, CIFAR-10 binary parsing and its error messages."""

import gzip

import numpy as np
import pytest

from driftlab.models.data.images import (CIFAR_RECORD, epoch_indices, load_images,
                                         read_cifar_bin, read_mnist_csv)


def _write_cifar(path, labels, rng):
    """Fake CIFAR-10 batch: per record 1 label byte + 3072 pixel bytes (CHW)."""
    pixels = rng.integers(0, 256, (len(labels), 3, 32, 32), dtype=np.uint8)
    rec = np.concatenate([np.asarray(labels, np.uint8)[:, None],
                          pixels.reshape(len(labels), -1)], axis=1)
    rec.tofile(path)
    return pixels


def test_synthetic_shapes_meta_and_determinism():
    ds = load_images("synthetic", 3, num_classes_synthetic=5, image_shape_synthetic=(4, 6, 2))
    assert ds.meta["num_classes"] == 5 and ds.meta["input_shape"] == (4, 6, 2)
    assert ds.meta["n_train"] > 0 and ds.meta["n_val"] > 0
    b = ds.sample("train", 7, 16, 1)
    assert b["x"].shape == (16, 4, 6, 2) and b["x"].dtype == np.float32
    assert b["y"].dtype == np.int32 and b["y"].min() >= 0 and b["y"].max() < 5
    # A pure function of its arguments, also across separately loaded datasets.
    again = load_images("synthetic", 3, num_classes_synthetic=5,
                        image_shape_synthetic=(4, 6, 2)).sample("train", 7, 16, 1)
    np.testing.assert_array_equal(b["x"], again["x"])
    assert not np.array_equal(b["x"], ds.sample("train", 8, 16, 1)["x"])
    assert not np.array_equal(b["x"], ds.sample("train", 7, 16, 2)["x"])
    other = load_images("synthetic", 4, num_classes_synthetic=5, image_shape_synthetic=(4, 6, 2))
    assert not np.array_equal(b["x"], other.sample("train", 7, 16, 1)["x"])
    # Roughly standardized.
    big = ds.sample("train", 0, 512, 0)["x"]
    assert abs(big.mean()) < 0.1 and 0.8 < big.std() < 1.2


def test_epoch_indices_cover_each_epoch_once():
    n, bs = 10, 4
    seq = np.concatenate([epoch_indices(n, "train", s, bs, 0) for s in range(5)])  # 20 = 2 epochs
    assert sorted(seq[:10]) == list(range(10)) and sorted(seq[10:]) == list(range(10))
    assert not np.array_equal(seq[:10], seq[10:])  # reshuffled per epoch
    with pytest.raises(ValueError, match="split"):
        epoch_indices(n, "test", 0, bs, 0)


def test_embedded_digits():
    ds = load_images("embedded", 0)
    assert ds.meta["input_shape"] == (8, 8, 1) and ds.meta["num_classes"] == 10
    assert ds.meta["n_train"] + ds.meta["n_val"] == 1797
    b = ds.sample("val", 0, 32, 0)
    assert b["x"].shape == (32, 8, 8, 1) and np.isfinite(b["x"]).all()
    assert set(np.unique(ds.sample("train", 0, 512, 0)["y"])) == set(range(10))


def test_bad_sources():
    with pytest.raises(ValueError, match="embedded:mnist"):
        load_images("embedded:nope", 0)
    with pytest.raises(ValueError, match="directory"):
        load_images("/nonexistent/dir", 0)
    with pytest.raises(ValueError, match="num_classes_synthetic"):
        load_images("synthetic", 0, num_classes_synthetic=1)


def test_cifar_directory(tmp_path):
    rng = np.random.default_rng(0)
    px1 = _write_cifar(tmp_path / "data_batch_1.bin", [0, 1, 2, 3, 9], rng)
    _write_cifar(tmp_path / "data_batch_2.bin", [4, 5, 6], rng)
    _write_cifar(tmp_path / "test_batch.bin", [7, 8], rng)
    x, y = read_cifar_bin(tmp_path / "data_batch_1.bin")
    assert x.shape == (5, 32, 32, 3) and list(y) == [0, 1, 2, 3, 9]
    # CHW on disk -> HWC in memory: pixel (row 3, col 5) of the green plane.
    assert x[2, 3, 5, 1] == px1[2, 1, 3, 5]
    ds = load_images(str(tmp_path), 0)
    assert ds.meta["n_train"] == 8 and ds.meta["n_val"] == 2
    assert ds.meta["input_shape"] == (32, 32, 3) and ds.meta["num_classes"] == 10
    b = ds.sample("train", 0, 8, 0)
    assert sorted(b["y"]) == [0, 1, 2, 3, 4, 5, 6, 9]
    assert b["x"].dtype == np.float32 and abs(b["x"].mean()) < 0.2
    assert sorted(ds.sample("val", 0, 2, 0)["y"]) == [7, 8]


def test_cifar_corrupt_files_name_the_file(tmp_path):
    rng = np.random.default_rng(1)
    _write_cifar(tmp_path / "data_batch_1.bin", [0, 1], rng)
    bad = tmp_path / "data_batch_2.bin"
    bad.write_bytes(b"\x01" * (CIFAR_RECORD + 7))  # truncated second record
    with pytest.raises(ValueError, match=r"data_batch_2\.bin.*multiple"):
        load_images(str(tmp_path), 0)
    _write_cifar(bad, [3, 12], rng)  # label 12 is not a CIFAR-10 class
    with pytest.raises(ValueError, match=r"data_batch_2\.bin.*label 12"):
        load_images(str(tmp_path), 0)
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match=r"data_batch_2\.bin.*empty"):
        load_images(str(tmp_path), 0)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(ValueError, match="no CIFAR-10"):
        load_images(str(empty_dir), 0)


def test_mnist_csv_reader(tmp_path):
    good = tmp_path / "mnist.csv.gz"
    rows = np.zeros((3, 785), int)
    rows[:, -1] = [4, 0, 9]
    rows[1, 10] = 255
    with gzip.open(good, "wt") as fh:
        np.savetxt(fh, rows, fmt="%d", delimiter=",")
    x, y = read_mnist_csv(good)
    assert x.shape == (3, 28, 28, 1) and list(y) == [4, 0, 9] and x[1, 0, 10, 0] == 255
    bad = tmp_path / "bad.csv.gz"
    with gzip.open(bad, "wt") as fh:
        np.savetxt(fh, rows[:, :100], fmt="%d", delimiter=",")
    with pytest.raises(ValueError, match=r"bad\.csv\.gz.*785 columns"):
        read_mnist_csv(bad)
