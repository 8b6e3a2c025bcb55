"""Sampled-evaluation negatives: never seen, distinct, 0 only as a short list's padding, fixed by seed and stored."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.config import DataConfig
from core.data.candidates import draw_candidates
from core.data.errors import DataError
from core.data.prepare import prepare
from core.eval.ranking import sampled_ranks

# 12 users over 40 items, 6 to 12 interactions each.
ROWS = [(u, (u * 7 + k * 3) % 40, k) for u in range(12) for k in range(6 + u % 7)]
CSV = "user,item,timestamp\n" + "".join(f"u{u},i{i},{t}\n" for u, i, t in ROWS)


def test_rank_mapping_hits_exactly_the_unseen_items():
    rng = np.random.default_rng(1)
    # user n has seen n + 1 distinct items (some twice); users 25..28 have fewer than 5 unseen.
    distinct = [rng.permutation(30)[: n + 1] + 1 for n in range(29)]
    sequences = [np.concatenate([d, d[:2]]) for d in distinct]
    negatives, short = draw_candidates(sequences, 30, 5, 0, "valid", [str(u) for u in range(29)])
    for sequence, row in zip(sequences, negatives):
        unseen = np.setdiff1d(np.arange(1, 31), sequence)
        if len(unseen) <= 5:  # every unseen item once, then padding
            assert np.array_equal(row, np.concatenate([unseen, np.zeros(5 - len(unseen), dtype=int)]))
        else:
            assert set(row) <= set(unseen) and len(set(row)) == 5
    assert short == 4


def test_candidates_avoid_the_users_items_and_padding(put, data_root):
    put("toy/toy.csv", CSV)
    prepared = prepare(DataConfig(dataset="toy", kcore=0, n_negatives=20, seed=3), data_root)
    for split in ("valid", "test"):
        negatives = prepared.candidates(split)
        assert negatives.shape == (prepared.n_users, 20) and negatives.dtype == np.int32  # int32: 1.2M users x 999 x 2 splits
        for user, sequence in enumerate(prepared.sequences):
            row = negatives[user]
            assert len(np.unique(row)) == 20  # without replacement
            assert not np.isin(row, sequence).any()  # includes both targets
            assert row.min() >= 1 and row.max() <= prepared.n_items


def test_candidates_are_fixed_by_seed_and_split(put, data_root, tmp_path):
    put("toy/toy.csv", CSV)
    cfg = DataConfig(dataset="toy", kcore=0, n_negatives=20, seed=3)
    first = prepare(cfg, data_root)
    other_root = tmp_path / "other"
    (other_root / "raw" / "toy").mkdir(parents=True)
    (other_root / "raw" / "toy" / "toy.csv").write_text(CSV)
    rebuilt = prepare(cfg, other_root)  # built from scratch elsewhere: same draw
    assert np.array_equal(first.candidates("test"), rebuilt.candidates("test"))
    assert not np.array_equal(first.candidates("test"), first.candidates("valid"))
    reseeded = prepare(DataConfig(dataset="toy", kcore=0, n_negatives=20, seed=4), data_root)
    assert not np.array_equal(first.candidates("test"), reseeded.candidates("test"))


def test_too_few_unseen_items_are_each_given_once_then_padded_and_counted():
    sequences = [np.array([1, 2, 3]), np.array([1])]
    negatives, short = draw_candidates(sequences, 5, 4, 0, "test", ["a", "b"])
    assert short == 1
    assert negatives[0].tolist() == [4, 5, 0, 0]  # both unseen items once, then padding
    assert len(set(negatives[1])) == 4 and 1 not in negatives[1] and 0 not in negatives[1]


def test_a_padded_list_ranks_the_target_among_the_unique_unseen_items():
    # 5 items scored by a user vector (1,) against embeddings 1..5 (score = item id); the padding row
    # scores highest of all, so counting it (or repeats of 4 and 5) would push the target down.
    sequences = [np.array([1, 2, 3])]  # test target 3; unseen: 4 and 5, both scoring above it
    negatives, _ = draw_candidates(sequences, 5, 4, 0, "test", ["a"])
    table = torch.tensor([[10.0], [1.0], [2.0], [3.0], [4.0], [5.0]])  # row 0: padding
    target, row = torch.tensor([3]), torch.as_tensor(negatives)
    assert sampled_ranks(torch.tensor([[1.0]]), table, target, row).tolist() == [2]  # 4 and 5 above: rank 2 of 3
    assert sampled_ranks(torch.tensor([[-1.0]]), table, target, row).tolist() == [0]  # scores reversed: first


def test_user_with_every_item_and_bad_split_are_refused(put, data_root):
    with pytest.raises(DataError, match="user 'a' interacted with all 2 items"):
        draw_candidates([np.array([1, 2])], 2, 3, 0, "test", ["a"])
    put("toy/toy.csv", CSV)
    prepared = prepare(DataConfig(dataset="toy", kcore=0, n_negatives=2), data_root)
    with pytest.raises(DataError, match="split: expected one of valid, test, got 'train'"):
        prepared.candidates("train")


def test_large_catalogue_rows_are_distinct_unseen_and_uniform():
    # 60 items, 12 negatives: every user takes the vectorised path (>= 2 x 12 unseen items).
    sequences = [np.array([3, 7, 8, 3])] * 3000 + [np.arange(1, 40)]
    negatives, repeats = draw_candidates(sequences, 60, 12, 0, "valid", [str(u) for u in range(len(sequences))])
    assert repeats == 0 and negatives.dtype == np.int32
    for sequence, row in zip(sequences, negatives):
        assert len(set(row.tolist())) == 12 and not np.isin(row, sequence).any() and row.min() >= 1
    frequency = np.bincount(negatives[:3000].ravel(), minlength=61)[1:] / 3000
    unseen = np.setdiff1d(np.arange(1, 61), [3, 7, 8]) - 1
    assert frequency[[2, 6, 7]].sum() == 0
    assert np.abs(frequency[unseen] - 12 / 57).max() < 0.04  # uniform over the 57 unseen items


def test_mixed_chunks_match_one_user_at_a_time_rules():
    # Users with few unseen items (exact path) and many (vectorised path) in one chunk.
    rng = np.random.default_rng(5)
    sequences = [rng.permutation(100)[: rng.integers(1, 95)] + 1 for _ in range(200)]
    negatives, short = draw_candidates(sequences, 100, 10, 1, "test", [str(u) for u in range(200)])
    for sequence, row in zip(sequences, negatives):
        unseen = np.setdiff1d(np.arange(1, 101), sequence)
        items = row[row > 0]  # a short list ends in padding
        assert set(items.tolist()) <= set(unseen.tolist()) and (row[len(items):] == 0).all()
        assert len(set(items.tolist())) == len(items) == min(10, len(unseen))
    assert short == sum(100 - len(s) < 10 for s in sequences)
