"""Token streams for the GPT model: synthetic, embedded stdlib text, or token shards on disk.

``load_text(source, seed, block_size)`` returns a :class:`Dataset` whose batches are
``{"x": int32 (B, T), "y": int32 (B, T)}`` with ``y`` the next token of ``x``
(T = block_size). Sources:

- ``"synthetic"``: i.i.d. uniform tokens over a small vocabulary (64), a fixed
  stream drawn from ``seed``. Nothing to learn beyond the unigram; the paper's drift
  appears on random inputs too, so this isolates the optimization effect.
- ``"embedded"`` / ``"embedded:char"`` / ``"embedded:byte"``: Python's own
  ``pydoc_data.topics.topics`` (~465K characters of documentation prose), encoded
  character-level (default; vocabulary = the sorted set of characters) or byte-level
  (UTF-8, vocabulary 256). First 90% train, last 10% val. Needs no download.
- a directory PATH holding either nanoGPT-speedrun shards ``*_train_NNNNNN.bin`` /
  ``*_val_NNNNNN.bin`` (256 int32 header: magic 20240520, version 1, token count;
  then uint16 tokens) or nanoGPT's legacy headerless uint16 ``train.bin`` / ``val.bin``.
  Files are memory-mapped (they can be GBs). Vocabulary: max(50257, max token + 1).

``sample(split, step, batch_size, seed)`` draws ``batch_size`` random windows; the
draw depends only on (split, step, seed), so resumed runs see the same batches.
Splits: "train", "val" ("test" is an alias of "val").
"""

from __future__ import annotations

import os
import re
from typing import Sequence

import numpy as np

from driftlab.models.data import Dataset

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
GPT2_VOCAB = 50257
SYNTHETIC_VOCAB = 64
SYNTHETIC_TOKENS = {"train": 1 << 16, "val": 1 << 13}
EMBEDDED_ENCODINGS = ("char", "byte")
VAL_FRACTION = 0.1
SPLITS = {"train": 0, "val": 1, "test": 1}  # split name -> stream index (test aliases val)

_SHARD_RE = re.compile(r"_(train|val)_(\d{6})\.bin$")


# --------------------------------------------------------------------------- shards


def write_shard(path: str | os.PathLike, tokens: np.ndarray) -> None:
    """Write ``tokens`` (values < 65536) as a speedrun-format shard at ``path``."""
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= 1 << 16):
        raise ValueError(f"{path}: tokens must lie in [0, 65535] to fit uint16")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = (SHARD_MAGIC, SHARD_VERSION, tokens.size)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2").tobytes())


def read_shard(path: str | os.PathLike) -> np.memmap:
    """Memory-map the uint16 tokens of one speedrun shard after checking its header.

    Raises ValueError naming the file for a short header, a wrong magic or version,
    or a file length that does not match the header's token count.
    """
    size = os.path.getsize(path)
    if size < HEADER_BYTES:
        raise ValueError(f"{path}: shard is {size} bytes, shorter than its "
                         f"{HEADER_BYTES}-byte header")
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    magic, version, count = (int(v) for v in header[:3])
    if magic != SHARD_MAGIC:
        raise ValueError(f"{path}: bad magic number {magic} (expected {SHARD_MAGIC}); "
                         f"not a token shard")
    if version != SHARD_VERSION:
        raise ValueError(f"{path}: unsupported shard version {version} "
                         f"(expected {SHARD_VERSION})")
    expected = HEADER_BYTES + 2 * count
    if count < 0 or size != expected:
        raise ValueError(f"{path}: header says {count} tokens ({expected} bytes) but the "
                         f"file has {size} bytes (truncated or corrupt)")
    return np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES, shape=(count,))


def read_legacy(path: str | os.PathLike) -> np.memmap:
    """Memory-map a headerless uint16 token file (nanoGPT's ``train.bin``/``val.bin``)."""
    size = os.path.getsize(path)
    if size == 0 or size % 2:
        raise ValueError(f"{path}: headerless uint16 token file must have a positive, "
                         f"even byte length (got {size})")
    return np.memmap(path, dtype="<u2", mode="r")


def _find_streams(root: str) -> tuple[dict[str, list[np.ndarray]], str]:
    """Open the train/val token arrays under directory ``root``; return them and the format."""
    if not os.path.isdir(root):
        raise ValueError(f"text source {root!r} is not 'synthetic', 'embedded[:char|:byte]' "
                         f"or an existing directory")
    names = sorted(os.listdir(root))
    shards: dict[str, list[str]] = {"train": [], "val": []}
    for name in names:
        m = _SHARD_RE.search(name)
        if m:
            shards[m.group(1)].append(os.path.join(root, name))
    if shards["train"] or shards["val"]:
        for split, files in shards.items():
            if not files:
                raise ValueError(f"{root}: found shards but no '*_{split}_NNNNNN.bin' file")
        return {s: [read_shard(f) for f in files] for s, files in shards.items()}, "shards"
    legacy = {s: os.path.join(root, f"{s}.bin") for s in ("train", "val")}
    if all(os.path.isfile(f) for f in legacy.values()):
        return {s: [read_legacy(f)] for s, f in legacy.items()}, "legacy"
    raise ValueError(f"{root}: no token data found; expected '*_train_NNNNNN.bin' and "
                     f"'*_val_NNNNNN.bin' shards or 'train.bin' and 'val.bin'")


def _max_token(arrays: Sequence[np.ndarray], chunk: int = 1 << 24) -> int:
    """Largest token over memory-mapped arrays, read in chunks to bound memory."""
    best = -1
    for a in arrays:
        for start in range(0, a.shape[0], chunk):
            best = max(best, int(np.max(a[start:start + chunk])))
    return best


# --------------------------------------------------------------------------- sources


def embedded_text() -> str:
    """The stdlib's pydoc topics joined in sorted-key order (deterministic per Python)."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


def _embedded(encoding: str) -> tuple[dict[str, list[np.ndarray]], int, dict]:
    if encoding not in EMBEDDED_ENCODINGS:
        raise ValueError(f"embedded text encoding {encoding!r} unknown; valid: "
                         f"{', '.join(EMBEDDED_ENCODINGS)}")
    text = embedded_text()
    extra: dict = {}
    if encoding == "byte":
        tokens = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)
        vocab = 256
    else:
        alphabet = "".join(sorted(set(text)))
        # Map characters to indices through a lookup table over code points.
        table = np.zeros(max(map(ord, alphabet)) + 1, dtype=np.uint16)
        table[[ord(c) for c in alphabet]] = np.arange(len(alphabet), dtype=np.uint16)
        tokens = table[np.fromiter(map(ord, text), dtype=np.int64, count=len(text))]
        vocab = len(alphabet)
        extra["alphabet"] = alphabet
    n_val = int(len(tokens) * VAL_FRACTION)
    streams = {"train": [tokens[:-n_val]], "val": [tokens[-n_val:]]}
    return streams, vocab, extra


def _synthetic(seed: int) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng([seed, 0x7E57])
    return {s: [rng.integers(0, SYNTHETIC_VOCAB, n, dtype=np.uint16)]
            for s, n in SYNTHETIC_TOKENS.items()}


# --------------------------------------------------------------------------- sampler


def make_sampler(streams: dict[str, list[np.ndarray]], block_size: int):
    """Return sample(split, step, batch_size, seed) drawing random length-(T+1) windows.

    A window never crosses a shard boundary; shards are weighted by their number of
    valid window starts, so every start position is equally likely.
    """
    starts = {}
    for split, arrays in streams.items():
        counts = np.array([max(a.shape[0] - block_size, 0) for a in arrays], dtype=np.int64)
        if counts.sum() == 0:
            raise ValueError(f"{split} split has no sequence of block_size+1 = "
                             f"{block_size + 1} tokens (longest stream: "
                             f"{max(a.shape[0] for a in arrays)} tokens)")
        starts[split] = np.cumsum(counts)

    def sample(split: str, step: int, batch_size: int, seed: int) -> dict[str, np.ndarray]:
        """Batch of ``batch_size`` windows: x = tokens[s:s+T], y = tokens[s+1:s+T+1]."""
        if split not in SPLITS:
            raise ValueError(f"split {split!r} unknown; valid: {', '.join(SPLITS)}")
        if step < 0 or seed < 0 or batch_size < 1:
            raise ValueError(f"step and seed must be >= 0 and batch_size >= 1 (got step="
                             f"{step}, seed={seed}, batch_size={batch_size})")
        name = "train" if SPLITS[split] == 0 else "val"
        arrays, cum = streams[name], starts[name]
        rng = np.random.default_rng([seed, step, SPLITS[split]])
        flat = rng.integers(0, cum[-1], batch_size)
        which = np.searchsorted(cum, flat, side="right")
        offsets = flat - np.concatenate([[0], cum[:-1]])[which]
        windows = np.stack([np.asarray(arrays[w][o:o + block_size + 1])
                            for w, o in zip(which, offsets)]).astype(np.int32)
        return {"x": windows[:, :-1], "y": windows[:, 1:]}

    return sample


def load_text(source: str, seed: int, block_size: int) -> Dataset:
    """Open a text source (see module docstring) as a Dataset of next-token windows."""
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int (got {block_size!r})")
    source = os.fspath(source)
    extra: dict = {}
    if source == "synthetic":
        streams, vocab, encoding, name = _synthetic(seed), SYNTHETIC_VOCAB, "synthetic", source
    elif source == "embedded" or source.startswith("embedded:"):
        encoding = source.partition(":")[2] or "char"
        streams, vocab, extra = _embedded(encoding)
        name = f"pydoc_topics_{encoding}"
    else:
        streams, fmt = _find_streams(source)
        vocab = max(GPT2_VOCAB, _max_token([a for s in streams.values() for a in s]) + 1)
        encoding, name = "gpt2", f"{os.path.basename(os.path.normpath(source))}:{fmt}"
    meta = {
        "name": name,
        "vocab_size": int(vocab),
        "n_train_tokens": int(sum(a.shape[0] for a in streams["train"])),
        "n_val_tokens": int(sum(a.shape[0] for a in streams["val"])),
        "encoding": encoding,
        "block_size": block_size,
        **extra,
    }
    return Dataset(sample=make_sampler(streams, block_size), meta=meta)
