"""Top-K and ranks in one chunked pass, and the user-batch driver, against a dense reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.data.sequences import Ragged
from core.eval.batched import rank_users
from core.eval.ranking import full_ranks, full_ranks_from_scores, full_ranks_topk


def _case(seed: int = 0, users: int = 37, items: int = 50, dim: int = 4):
    g = torch.Generator().manual_seed(seed)
    vectors, table = torch.randn(users, dim, generator=g), torch.randn(items + 1, dim, generator=g)
    table[items // 2] = table[items // 2 + 1]  # an exact tie
    targets = torch.randint(1, items + 1, (users,), generator=g)
    rng = np.random.default_rng(seed)
    history = Ragged.from_lists([rng.integers(1, items + 1, rng.integers(0, 9)) for _ in range(users)])
    return vectors, table, targets, history


def _dense_topk(vectors, table, targets, history, k):
    scores = vectors @ table.T
    scores[:, 0] = float("-inf")
    for row, items in enumerate(history):
        hidden = [i for i in items.tolist() if i != targets[row].item()]
        scores[row, hidden] = float("-inf")
    return scores.topk(k, dim=1)


@pytest.mark.parametrize("chunk", [1, 7, 16, 1000])
def test_topk_and_ranks_in_one_pass_match_dense(chunk):
    vectors, table, targets, history = _case()
    padded = torch.as_tensor(history.padded(np.arange(len(history))))
    ranks, top = full_ranks_topk(vectors, table, targets, padded, top_k=5, item_chunk=chunk)
    assert torch.equal(ranks, full_ranks_from_scores(vectors @ table.T, targets, padded))
    assert torch.equal(ranks, full_ranks(vectors, table, targets, padded, item_chunk=chunk))
    best, _ = _dense_topk(vectors, table, targets, history, 5)
    got = (vectors @ table.T).gather(1, top)
    assert torch.allclose(got, best)  # the same scores (ids may differ only between exact ties)
    assert (top > 0).all()
    hit = (top == targets[:, None]).any(dim=1)
    assert torch.equal(hit[ranks < 4], torch.ones(int((ranks < 4).sum()), dtype=torch.bool))


def test_topk_refuses_more_than_the_catalogue():
    vectors, table, targets, _ = _case(items=5)
    with pytest.raises(ValueError, match="top_k: expected at most the 5 items"):
        full_ranks_topk(vectors, table, targets, top_k=6)


@pytest.mark.parametrize("batch", [1, 10, 64])
def test_rank_users_in_batches_equals_one_big_batch(batch):
    vectors, table, targets, history = _case(seed=1)
    target_np = targets.numpy()
    whole = full_ranks(vectors, table, targets, torch.as_tensor(history.padded(np.arange(len(history)))))
    ranks, top = rank_users(vectors, table, target_np, history, batch_size=batch, item_chunk=9, top_k=3)
    assert np.array_equal(ranks, whole.numpy()) and top.shape == (len(target_np), 3)
    subset = np.array([3, 5, 30])
    calls = []
    ranks, top = rank_users(lambda rows: vectors[torch.as_tensor(rows)], table, target_np, history, users=subset,
                            batch_size=2, on_batch=lambda done, total: calls.append((done, total)))
    assert np.array_equal(ranks, whole.numpy()[subset]) and top is None
    assert calls == [(2, 3), (3, 3)]
