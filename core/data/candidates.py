"""Sampled-evaluation negatives: per user and split, items the user never interacted with.

Drawn once at preparation and stored with the prepared data (docs/method.md section 5: the paper's public code re-drew
them on every evaluation). For each user, `n_negatives` distinct items are drawn uniformly from the
items absent from the user's WHOLE sequence (so never the validation or test target, never 0), with
a generator seeded by (seed, split index). Rows are int32 (999 negatives x 1.2M users x 2 splits
is 9.6 GB as int32, twice that as int64); the order within a row carries no meaning.

Users are processed `CHUNK_USERS` at a time (`candidate_chunks`, so the caller can write each
block and drop it):
- a user with plenty of unseen items (at least DENSE x n_negatives, every user of a large
  catalogue) gets uniform draws over all items, sorted per row; each duplicate or seen item is
  replaced by a fresh draw that is accepted only if it is new to the row and unseen (see `_many`:
  a permutation-invariant procedure, so every set of distinct unseen items is equally likely). At
  377k items a row of 999 has about one duplicate, so this costs about one sort per row;
- a user with few unseen items is drawn exactly, one at a time: distinct "unseen ranks", mapped to
  items, or, when there are fewer unseen items than `n_negatives` (a heavy MovieLens-100K user:
  1,682 items, 999 negatives), every unseen item once and the rest of the row padded with 0, which
  the sampled ranking does not count (core/eval/ranking.py `sampled_ranks`): repeats would count an
  item scoring above the target several times and make the metric pessimistic. The number of
  such short lists is reported in the stats.
Rows always have the same width; 0 appears only as the padding of a short list, after its items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from core.data.errors import DataError
from core.data.sequences import Ragged, unique_sorted

SPLITS = ("valid", "test")
CHUNK_USERS = 8192
DENSE = 2


@dataclass(frozen=True)
class Seen:
    """Each user's distinct seen items, sorted: `items[starts[u] : starts[u] + counts[u]]`, and the
    same pairs as sorted keys `user * (n_items + 1) + item` for membership tests."""

    keys: np.ndarray
    items: np.ndarray
    starts: np.ndarray
    counts: np.ndarray

    def of(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position of the user in `users`, item) of every seen item of the given users."""
        chosen = Ragged(self.items, self.starts[users], self.counts[users])
        return chosen.row_ids(), chosen.values()

    def has(self, users: np.ndarray, items: np.ndarray, width: int) -> np.ndarray:
        """Whether each user has seen the item paired with it."""
        return _member(self.keys, users * width + items)


def _member(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Whether each key is in `sorted_keys` (a search: np.isin hashes, which is slow in numpy 2.4)."""
    if not len(sorted_keys):
        return np.zeros(len(keys), dtype=bool)
    found = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[found] == keys


def _first_copies(keys: np.ndarray) -> np.ndarray:
    """True for the first occurrence of each distinct key."""
    order = np.argsort(keys, kind="stable")
    first = np.ones(len(keys), dtype=bool)
    first[order[1:][keys[order[1:]] == keys[order[:-1]]]] = False
    return first


def seen_items(sequences: Sequence[np.ndarray], n_items: int) -> Seen:
    """Computed for all users at once (one sort of user-major keys)."""
    seqs = Ragged.from_lists(sequences)
    width = n_items + 1
    keys = unique_sorted(seqs.row_ids() * width + seqs.values())  # distinct (user, item), sorted
    counts = np.bincount(keys // width, minlength=len(seqs))
    return Seen(keys, keys % width, np.cumsum(counts) - counts, counts)


def _few(rng: np.random.Generator, seen_row: np.ndarray, n_items: int, n_negatives: int) -> np.ndarray:
    """One user with few unseen items, exactly: distinct unseen ranks (all of them, then 0 padding,
    when there are too few), mapped to items. `seen_row - 1 - j` counts the unseen items below the
    j-th seen item, so rank k is item k + 1 + (number of j with that count <= k)."""
    n_unseen = n_items - len(seen_row)
    ranks = rng.choice(n_unseen, n_negatives, replace=False) if n_unseen >= n_negatives else np.arange(n_unseen)
    below = seen_row - 1 - np.arange(len(seen_row))
    items = np.sort(ranks + np.searchsorted(below, ranks, side="right") + 1)
    return np.concatenate([items, np.zeros(n_negatives - len(items), dtype=items.dtype)])


def _first_at_least(rows_sorted: np.ndarray, row: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Per query, the first position in sorted row `row` holding a value >= `value` (width: none).

    A binary search run for all queries at once: log2(width) steps of one gather each, so it
    costs O(queries x log width) instead of building a searchable copy of the whole matrix.
    """
    width = rows_sorted.shape[1]
    flat, base = rows_sorted.ravel(), row * width
    low, high = np.zeros(len(row), dtype=np.int64), np.full(len(row), width, dtype=np.int64)
    while True:
        active = low < high
        if not active.any():
            return low
        middle = (low + high) // 2
        right = flat[base + np.minimum(middle, width - 1)] < value
        low = np.where(active & right, middle + 1, low)
        high = np.where(active & ~right, middle, high)


def _bad_positions(items: np.ndarray, seen_row: np.ndarray, seen_item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of duplicates (all but the first copy) and of seen items, in sorted rows."""
    rows, cols = np.nonzero(items[:, 1:] == items[:, :-1])
    position = _first_at_least(items, seen_row, seen_item)
    hit = position < items.shape[1]
    hit[hit] = items[seen_row[hit], position[hit]] == seen_item[hit]
    return np.concatenate([rows, seen_row[hit]]), np.concatenate([cols + 1, position[hit]])


def _in_rows(items: np.ndarray, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Whether each value occurs in its sorted row."""
    position = np.minimum(_first_at_least(items, rows, values), items.shape[1] - 1)
    return items[rows, position] == values


def _many(rng: np.random.Generator, seen: Seen, users: np.ndarray, n_items: int, n_negatives: int) -> np.ndarray:
    """(R, n_negatives) distinct unseen items of users with many unseen items.

    Uniform draws over all items, sorted per row; each duplicate or seen item is replaced by a new
    draw, accepted when it is in neither the row, the user's seen items nor the replacements
    accepted so far (a permutation-invariant procedure, so every set of distinct unseen items is
    equally likely). Replacements are written at the end, so the rows stay sorted for the search.
    """
    width = n_items + 1
    items = rng.integers(1, width, (len(users), n_negatives), dtype=np.int32)
    items.sort(axis=1)
    rows, cols = _bad_positions(items, *seen.of(users))
    done_rows, done_cols, done_values = [], [], []
    taken = np.zeros(0, dtype=np.int64)  # sorted keys row * width + item of accepted replacements
    while len(rows):
        values = rng.integers(1, width, len(rows))
        keys = rows * width + values
        ok = _first_copies(keys) & ~(_member(taken, keys) | _in_rows(items, rows, values)
                                     | seen.has(users[rows], values, width))
        done_rows.append(rows[ok])
        done_cols.append(cols[ok])
        done_values.append(values[ok])
        taken = np.sort(np.concatenate([taken, keys[ok]]))
        rows, cols = rows[~ok], cols[~ok]
    if done_rows:
        items[np.concatenate(done_rows), np.concatenate(done_cols)] = np.concatenate(done_values)
    return items


def _chunk(rng: np.random.Generator, seen: Seen, first: int, last: int, n_items: int,
           n_negatives: int) -> np.ndarray:
    users = np.arange(first, last)
    many = n_items - seen.counts[users] >= DENSE * n_negatives
    if many.all():  # the usual case in a large catalogue
        return _many(rng, seen, users, n_items, n_negatives)
    out = np.empty((len(users), n_negatives), dtype=np.int32)
    if many.any():
        out[many] = _many(rng, seen, users[many], n_items, n_negatives)
    for row in np.flatnonzero(~many):  # few unseen items: exact, one user at a time
        user = users[row]
        out[row] = _few(rng, seen.items[seen.starts[user]: seen.starts[user] + seen.counts[user]], n_items,
                        n_negatives)
    return out


def check_candidates(seen: Seen, n_items: int, n_negatives: int, split: str, user_ids: Sequence[str]) -> int:
    """Refuse a bad split or a user who has seen every item; return the users with a short list
    (fewer unseen items than n_negatives, so their rows end in 0 padding)."""
    if split not in SPLITS:
        raise DataError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
    n_unseen = n_items - seen.counts
    if (n_unseen <= 0).any():
        user = int(np.flatnonzero(n_unseen <= 0)[0])
        raise DataError(f"user {user_ids[user]!r} interacted with all {n_items} items, so no evaluation "
                        "negatives can be drawn; use more data or a filter that keeps more items")
    return int((n_unseen < n_negatives).sum())


def candidate_chunks(seen: Seen, n_items: int, n_negatives: int, seed: int, split: str,
                     chunk_users: int = CHUNK_USERS) -> Iterator[np.ndarray]:
    """The (chunk, n_negatives) int32 rows of consecutive users; call `check_candidates` first."""
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    n_users = len(seen.counts)
    for first in range(0, n_users, chunk_users):
        yield _chunk(rng, seen, first, min(first + chunk_users, n_users), n_items, n_negatives)


def draw_candidates(sequences: Sequence[np.ndarray], n_items: int, n_negatives: int, seed: int,
                    split: str, user_ids: Sequence[str]) -> tuple[np.ndarray, int]:
    """(negatives (n_users, n_negatives) int32 in 1..n_items, 0 padding a short list; number of users
    with a short list), in memory."""
    seen = seen_items(sequences, n_items)
    short = check_candidates(seen, n_items, n_negatives, split, user_ids)
    rows = list(candidate_chunks(seen, n_items, n_negatives, seed, split))
    return (np.concatenate(rows) if rows else np.zeros((0, n_negatives), dtype=np.int32)), short
