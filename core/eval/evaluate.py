"""Evaluate any model that maps an input sequence to a user vector, under both protocols.

A model is given as `user_vectors(inputs (B, L)) -> (B, d)` plus the item table `(n_items + 1, d)`
it scores against (row 0 is padding and never ranked). The result is each user's 0-based target
rank, from which every metric follows (core/eval/metrics.py). Users are processed in batches and
items in chunks, so no users x items matrix is ever built for the whole catalogue. In a run of
several processes each rank ranks every N-th batch and the ranks are gathered back in order, so
every rank holds the same result a single process computes, batch for batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from core.data.examples import eval_examples, history
from core.eval.ranking import check_targets, full_ranks, sampled_ranks
from core.runtime.device import host_to_device
from core.runtime.distributed import SINGLE, Dist, batches_of_rank, gather_batches

UserVectors = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SplitRanks:
    """0-based target ranks of one split, per protocol, aligned with `users`."""

    split: str
    users: np.ndarray
    ranks: dict[str, np.ndarray]  # protocol -> ranks


def eval_users(n_users: int, limit: int) -> np.ndarray:
    """The users evaluated: all, or the first `limit` (0 = all) for quick runs."""
    return np.arange(n_users if not limit else min(limit, n_users))


@torch.no_grad()
def evaluate_split(user_vectors: UserVectors, item_table: torch.Tensor, prepared, split: str, max_len: int,
                   *, batch_size: int = 256, mask_history: bool = True, users: np.ndarray | None = None,
                   protocols: tuple[str, ...] = ("full", "sampled"), dist: Dist = SINGLE) -> SplitRanks:
    """Rank every evaluated user's target for `split` under the requested protocols."""
    inputs, targets, user_ids = eval_examples(prepared, split, max_len)
    evaluated = np.arange(len(user_ids)) if users is None else np.searchsorted(user_ids, users)
    keep = batches_of_rank(evaluated, batch_size, dist)  # this rank's batches (all of them for one process)
    seen = history(prepared, split) if mask_history else None
    negatives = prepared.candidates(split) if "sampled" in protocols else None
    device = item_table.device
    table = item_table.float()  # once, not per batch
    check_targets(torch.as_tensor(targets), table.shape[0] - 1)  # here, on the host, not per batch on the device
    # Ranks stay on the device until the split is done: nothing is read back per batch, so on a GPU
    # the host queues the next batch while this one runs.
    out: dict[str, list[torch.Tensor]] = {p: [] for p in protocols}
    for start in range(0, len(keep), batch_size):
        rows = keep[start:start + batch_size]
        vectors = user_vectors(host_to_device(inputs[rows], device)).float()
        target = host_to_device(targets[rows], device)
        if "full" in protocols:  # history: (B, H) padded with 0, built without a loop over users
            masked = host_to_device(seen.padded(user_ids[rows]), device) if seen is not None else None
            out["full"].append(full_ranks(vectors, table, target, masked, validate=False))
        if "sampled" in protocols:
            neg = host_to_device(negatives[user_ids[rows]], device)
            out["sampled"].append(sampled_ranks(vectors, table, target, neg))
    ranks = {p: torch.cat(v).cpu().numpy() if v else np.zeros(0, dtype=np.int64) for p, v in out.items()}
    ranks = {p: gather_batches(r, batch_size, dist) for p, r in ranks.items()}
    return SplitRanks(split, user_ids[evaluated], ranks)
