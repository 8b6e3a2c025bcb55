"""Model-ready int64 arrays from prepared sequences (numpy only; the trainer wraps them in tensors).

Every input row is LEFT-padded with 0 and keeps the LAST max_len items, so the newest item is always
in the final column. Leave-one-out, for a user sequence s of length L >= 3:

    test        input s[:L-1]   target s[L-1]
    valid       input s[:L-2]   target s[L-2]
    training    items s[:L-2]:
      "last"      input s[:L-3], target s[L-3]  (one example per user; users with L = 3 are skipped)
      "prefixes"  input s[:t],   target s[t]    for t = 1 .. L-3 (the paper's text)
      sasrec      input s[:L-3], target s[1:L-2] (next item at every position; users with L = 3 skipped)

All rows are built at once with index arithmetic on the concatenated sequences (`_windows`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from core.data.errors import DataError
from core.data.sequences import Ragged

if TYPE_CHECKING:
    from core.data.prepare import PreparedData

SPLIT_OFFSETS = {"valid": 2, "test": 1}  # target = s[L - offset]


def _flatten(seqs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat items, start of each sequence in it, length of each sequence), without copying a Ragged."""
    seqs = Ragged.from_lists(seqs)
    return seqs.flat, seqs.starts, seqs.lengths


def _windows(flat: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int) -> np.ndarray:
    """Rows flat[max(start, end - max_len):end], left-padded with 0 to (n, max_len)."""
    if len(ends) == 0 or len(flat) == 0:
        return np.zeros((len(ends), max_len), dtype=np.int64)
    positions = ends[:, None] + np.arange(-max_len, 0)[None, :]  # (n, max_len)
    inside = positions >= starts[:, None]
    return np.where(inside, flat[np.clip(positions, 0, None)], 0).astype(np.int64)


def left_pad(seqs: Ragged | list[np.ndarray], max_len: int) -> np.ndarray:
    """(n, max_len) int64: the last max_len items of each sequence, left-padded with 0."""
    flat, starts, lengths = _flatten(seqs)
    return _windows(flat, starts, starts + lengths, max_len)


def training_examples(prepared: PreparedData, max_len: int,
                      targets: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs (n, max_len), target (n,), user (n,)) for the E4SRec-style models."""
    flat, starts, lengths = _flatten(prepared.sequences)
    per_user = np.maximum(lengths - 3, 0)  # training targets available: positions 1..L-3
    if targets == "last":
        user = np.flatnonzero(per_user > 0)
        ends = starts[user] + per_user[user]
    elif targets == "prefixes":
        user = np.repeat(np.arange(len(lengths)), per_user)
        first_of_user = np.repeat(np.cumsum(per_user) - per_user, per_user)
        ends = starts[user] + (np.arange(len(user)) - first_of_user) + 1  # t = 1..L-3
    else:
        raise DataError(f"data.train_targets: expected 'last' or 'prefixes', got {targets!r}")
    return _windows(flat, starts[user], ends, max_len), flat[ends], user.astype(np.int64)


def sasrec_examples(prepared: PreparedData, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (n, max_len), targets (n, max_len)): the next training item at every position."""
    flat, starts, lengths = _flatten(prepared.sequences)
    user = np.flatnonzero(lengths >= 4)  # at least two training items
    begin, end = starts[user], starts[user] + lengths[user] - 3
    return _windows(flat, begin, end, max_len), _windows(flat, begin + 1, end + 1, max_len)


def _offset(split: str) -> int:
    if split not in SPLIT_OFFSETS:
        raise DataError(f"split: expected one of {', '.join(SPLIT_OFFSETS)}, got {split!r}")
    return SPLIT_OFFSETS[split]


def eval_examples(prepared: PreparedData, split: str,
                  max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs (n_users, max_len), target (n_users,), user (n_users,)) for 'valid' or 'test'."""
    offset = _offset(split)
    flat, starts, lengths = _flatten(prepared.sequences)
    ends = starts + lengths - offset
    return _windows(flat, starts, ends, max_len), flat[ends], np.arange(len(lengths), dtype=np.int64)


def history(prepared: PreparedData, split: str) -> Ragged:
    """Per user, the items to mask in full ranking for that split: all of its input items.

    A `Ragged` view over the prepared sequences (no copy); `.padded(users)` gives a batch.
    """
    return prepared.sequences.truncated(_offset(split))
