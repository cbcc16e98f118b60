"""Data sources in memory (images, text, speech), each a :class:`Dataset`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """A data source already in memory.

    ``sample(split, step, batch_size, seed)`` returns a batch (dict of numpy arrays)
    that depends only on its arguments, so an interrupted and resumed run sees the
    same batches. ``meta`` describes the data (e.g. ``num_classes``, ``vocab_size``,
    ``input_shape``, ``name``) and is saved with the run.
    """

    sample: Callable[[str, int, int, int], dict[str, np.ndarray]]
    meta: Mapping[str, Any]
    # Optional: sample_steps(split, first, count, batch_size, seed) -> the batches of steps
    # first … first+count-1 stacked on a new leading axis, equal to stacking sample()'s;
    # the engine's prefetcher uses it to sample many steps in one go.
    sample_steps: Callable[[str, int, int, int, int], dict[str, np.ndarray]] | None = None
