"""Sampled-evaluation negatives: per user and split, items the user never interacted with.

Drawn once at preparation and stored with the prepared data (PAPER.md: the public code re-drew
them on every evaluation). For each user, `n_negatives` distinct items are drawn uniformly from the
items absent from the user's WHOLE sequence (so never the validation or test target, never 0), with
a generator seeded by (seed, split index). Drawing works in "unseen rank" space: pick distinct
ranks 0..n_unseen-1, then map rank k to the k-th unseen item with one searchsorted over the user's
sorted seen items, so no user ever costs O(n_items).

A user with fewer unseen items than `n_negatives` (e.g. a heavy MovieLens-100K user: 1,682 items,
999 negatives) gets every unseen item once, then uniform repeats to fill the row; the number of
such users is reported in the stats. Rows always have the same width and never contain 0.
"""

from __future__ import annotations

import numpy as np

from core.data.errors import DataError

SPLITS = ("valid", "test")


def _seen(sequences: list[np.ndarray], n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user's distinct seen items as (shifted, start of each user in it, count per user).

    For a user's sorted distinct 0-based seen items s, `shifted = s[j] - j` counts the unseen items
    below s[j], so the k-th unseen item is k plus the number of j with `shifted[j] <= k`. Computed
    for all users at once (one np.unique over user-major keys).
    """
    width = n_items + 1
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    user = np.repeat(np.arange(len(sequences)), lengths)
    pairs = np.unique(user * width + np.concatenate(sequences) - 1)  # distinct (user, item), sorted
    seen_user, seen_item = pairs // width, pairs % width
    n_seen = np.bincount(seen_user, minlength=len(sequences))
    starts = np.cumsum(n_seen) - n_seen
    return seen_item - (np.arange(len(pairs)) - starts[seen_user]), starts, n_seen


def _ranks(rng: np.random.Generator, n_unseen: int, n_negatives: int) -> np.ndarray:
    """Distinct ranks among unseen items; all of them then uniform repeats when there are too few."""
    if n_unseen >= n_negatives:
        return rng.choice(n_unseen, n_negatives, replace=False)
    return np.concatenate([rng.permutation(n_unseen), rng.integers(0, n_unseen, n_negatives - n_unseen)])


def draw_candidates(sequences: list[np.ndarray], n_items: int, n_negatives: int, seed: int,
                    split: str, user_ids: list[str]) -> tuple[np.ndarray, int]:
    """(negatives (n_users, n_negatives) int64 in 1..n_items, number of users with repeats)."""
    if split not in SPLITS:
        raise DataError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
    shifted, starts, n_seen = _seen(sequences, n_items)
    n_unseen = n_items - n_seen
    if (n_unseen <= 0).any():
        user = int(np.flatnonzero(n_unseen <= 0)[0])
        raise DataError(f"user {user_ids[user]!r} interacted with all {n_items} items, so no evaluation "
                        "negatives can be drawn; use more data or a filter that keeps more items")
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    out = np.empty((len(sequences), n_negatives), dtype=np.int64)
    for user in range(len(sequences)):  # distinct draws need one generator call per user
        ranks = _ranks(rng, int(n_unseen[user]), n_negatives)
        mine = shifted[starts[user]: starts[user] + n_seen[user]]  # small: searched in cache
        out[user] = ranks + np.searchsorted(mine, ranks, side="right") + 1
    return out, int((n_unseen < n_negatives).sum())
