"""Most-popular baseline: every user gets the same ranking, by training interaction count.

Exposed in the same factorised form as every other model, so the same ranking code scores it:
`user_vectors(inputs)` is a (B, 1) column of ones and `item_table()` is the (n_items + 1, 1) column
of counts, making each item's score its count. The padding row 0 holds 0, not -inf (a -inf row
would give 0 * -inf = NaN); the ranking never counts index 0, so it cannot matter.

Ties: items with equal counts get equal scores, and the ranking breaks ties pessimistically, so a
target tied with m other items is ranked below all of them. Counts are float32, exact up to 2**24.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn


def item_counts(sequences: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """(n_items + 1,) int64 count of each item id over all training sequences; padding 0 is dropped."""
    counts = np.zeros(n_items + 1, dtype=np.int64)
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        if seq.size and (seq.min() < 0 or seq.max() > n_items):
            raise ValueError(f"sequences: item ids must lie in 0..{n_items} (0 is padding), "
                             f"got values in {seq.min()}..{seq.max()}")
        counts += np.bincount(seq, minlength=n_items + 1)
    counts[0] = 0
    return counts


class Popularity(nn.Module):
    """Scores every item by how often it occurs in the training sequences."""

    def __init__(self, n_items: int, train_sequences: Sequence[np.ndarray]):
        super().__init__()
        self.n_items = n_items
        counts = torch.from_numpy(item_counts(train_sequences, n_items)).float()
        self.register_buffer("counts", counts[:, None])  # (n_items + 1, 1); a buffer moves with .to()

    def user_vectors(self, inputs: Tensor) -> Tensor:
        """(B, 1) ones for inputs (B, L): the ranking ignores the user's history."""
        return torch.ones(inputs.shape[0], 1, dtype=self.counts.dtype, device=inputs.device)

    def item_table(self) -> Tensor:
        """(n_items + 1, 1) training counts; row 0 (padding) is 0."""
        return self.counts
