"""The no-duplicates batch sampler for in-batch negatives, comparing patents instead of texts.

sentence-transformers' sampler keeps any value from appearing twice in a batch by reading every
row's texts (or hashing them all first). Our rows already name their patents by text-store row
number, so those numbers are the values compared: nothing is read or hashed. A module of its own
because the trainer pickles its arguments, sampler class included.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sentence_transformers.base.sampler import NoDuplicatesBatchSampler


class NoDuplicatePatentsBatchSampler(NoDuplicatesBatchSampler):
    """No patent appears twice in a batch (as anchor, positive or negative of any row)."""

    def __init__(self, dataset: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(dataset, *args, **kwargs)
        self.precompute_hashes = True

    def _build_hashes(self) -> None:
        if self._row_hashes is None:
            table = self.dataset.data
            self._row_hashes = np.stack([table.column(c).to_numpy() for c in self.dataset.column_names],
                                        axis=1).astype(np.int64)
