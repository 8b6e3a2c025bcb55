"""The ragged sequence container reads like the list of arrays it replaces."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.sequences import Ragged, unique_sorted

ROWS = [np.array([5, 3, 8]), np.array([], dtype=np.int64), np.array([4, 6, 9, 2])]


def test_reads_like_a_list_of_arrays():
    seqs = Ragged.from_lists(ROWS)
    assert len(seqs) == 3 and [s.tolist() for s in seqs] == [r.tolist() for r in ROWS]
    assert seqs[2].tolist() == [4, 6, 9, 2] and seqs[-1].tolist() == [4, 6, 9, 2]
    assert [s.tolist() for s in seqs[:2]] == [[5, 3, 8], []]
    assert seqs.values().tolist() == [5, 3, 8, 4, 6, 9, 2] and seqs.row_ids().tolist() == [0, 0, 0, 2, 2, 2, 2]
    with pytest.raises(ValueError):
        seqs[0][0] = 1  # read-only views


def test_from_sorted_and_truncated():
    seqs = Ragged.from_sorted(np.array([0, 0, 2, 2, 2]), np.array([1, 2, 3, 4, 5]), 4)
    assert [s.tolist() for s in seqs] == [[1, 2], [], [3, 4, 5], []]
    short = seqs.truncated(1)
    assert [s.tolist() for s in short] == [[1], [], [3, 4], []]
    assert short.values().tolist() == [1, 3, 4]  # rows no longer contiguous: gathered


def test_padded_batches_without_a_loop():
    seqs = Ragged.from_lists(ROWS)
    assert seqs.padded(np.array([2, 0, 1])).tolist() == [[4, 6, 9, 2], [5, 3, 8, 0], [0, 0, 0, 0]]
    assert seqs.padded(np.array([1])).tolist() == [[0]]  # at least one column
    assert seqs.padded(np.array([2]), width=2).tolist() == [[4, 6]]


def test_caller_array_stays_writeable():
    flat = np.arange(4)
    Ragged(flat, np.array([0]), np.array([4]))
    flat[0] = 9  # the container took a read-only view, not the caller's array


def test_unique_sorted_matches_numpy():
    values = np.random.default_rng(0).integers(0, 50, 300)
    assert np.array_equal(unique_sorted(values), np.unique(values))
    assert unique_sorted(np.array([], dtype=np.int64)).tolist() == []
