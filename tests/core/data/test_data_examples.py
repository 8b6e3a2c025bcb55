"""Leave-one-out splits and training examples on hand-worked sequences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.data.errors import DataError
from core.data.examples import eval_examples, history, left_pad, sasrec_examples, training_examples
from core.data.prepare import PreparedData


def _prepared(sequences: list[list[int]]) -> PreparedData:
    seqs = [np.array(s, dtype=np.int64) for s in sequences]
    n_items = max(max(s) for s in sequences)
    return PreparedData(key="k", folder=Path("."), n_users=len(seqs), n_items=n_items, sequences=seqs,
                        item_ids=[""] + [str(i) for i in range(1, n_items + 1)], item_titles=[""] * (n_items + 1),
                        user_ids=[str(u) for u in range(len(seqs))], stats={}, negatives={})


# user 0: 6 items; user 1: the minimum of 3 items.
DATA = _prepared([[5, 3, 8, 1, 7, 2], [4, 6, 9]])


def test_left_pad_keeps_the_last_items():
    out = left_pad([np.array([1, 2, 3, 4]), np.array([7]), np.array([], dtype=np.int64)], 3)
    assert out.tolist() == [[2, 3, 4], [0, 0, 7], [0, 0, 0]] and out.dtype == np.int64
    assert left_pad([], 3).shape == (0, 3)


def test_leave_one_out_eval_examples():
    inputs, target, user = eval_examples(DATA, "test", 4)
    assert inputs.tolist() == [[3, 8, 1, 7], [0, 0, 4, 6]]
    assert target.tolist() == [2, 9] and user.tolist() == [0, 1]
    inputs, target, _ = eval_examples(DATA, "valid", 4)
    assert inputs.tolist() == [[5, 3, 8, 1], [0, 0, 0, 4]]
    assert target.tolist() == [7, 6]


def test_history_is_the_split_input():
    assert [h.tolist() for h in history(DATA, "valid")] == [[5, 3, 8, 1], [4]]
    assert [h.tolist() for h in history(DATA, "test")] == [[5, 3, 8, 1, 7], [4, 6]]
    with pytest.raises(DataError, match="split"):
        history(DATA, "train")


def test_training_examples_last():
    inputs, target, user = training_examples(DATA, 2, "last")
    # training items of user 0: 5 3 8 1 -> input 5 3 8 (last 2 kept), target 1; user 1 has none.
    assert inputs.tolist() == [[3, 8]] and target.tolist() == [1] and user.tolist() == [0]


def test_training_examples_prefixes():
    inputs, target, user = training_examples(DATA, 2, "prefixes")
    assert inputs.tolist() == [[0, 5], [5, 3], [3, 8]]
    assert target.tolist() == [3, 8, 1] and user.tolist() == [0, 0, 0]
    with pytest.raises(DataError, match="data.train_targets"):
        training_examples(DATA, 2, "all")


def test_prefixes_over_several_users_never_use_eval_items():
    data = _prepared([[1, 2, 3, 4, 5], [6, 7, 8, 9], [10, 11, 12]])
    inputs, target, user = training_examples(data, 3, "prefixes")
    assert inputs.tolist() == [[0, 0, 1], [0, 1, 2], [0, 0, 6]]
    assert target.tolist() == [2, 3, 7] and user.tolist() == [0, 0, 1]


def test_sasrec_examples_shift_by_one():
    inputs, targets = sasrec_examples(DATA, 5)
    assert inputs.tolist() == [[0, 0, 5, 3, 8]]
    assert targets.tolist() == [[0, 0, 3, 8, 1]]
    inputs, targets = sasrec_examples(DATA, 2)
    assert inputs.tolist() == [[3, 8]] and targets.tolist() == [[8, 1]]
