"""Metrics from ranks against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from core.eval.metrics import METRICS, metrics_from_ranks, per_user_metric


def test_hand_values_for_small_rank_vector():
    got = metrics_from_ranks(np.array([0, 3, 12, 25]))
    assert list(got) == list(METRICS)
    # HR@K: ranks < K. NDCG: 1/log2(rank + 2) for hits. MRR: 1/(rank + 1), not truncated.
    expected = {
        "HR@1": 0.25,
        "HR@5": 0.5,
        "HR@10": 0.5,
        "HR@20": 0.75,
        "NDCG@5": 0.357669139,   # (1 + 1/log2(5)) / 4 = (1 + 0.430676558) / 4
        "NDCG@10": 0.357669139,
        "NDCG@20": 0.423331523,  # (1 + 1/log2(5) + 1/log2(14)) / 4, 1/log2(14) = 0.262649535
        "MRR": 0.341346154,      # (1 + 1/4 + 1/13 + 1/26) / 4
    }
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-8), name
    assert got["NDCG@5"] == pytest.approx((1 + 1 / math.log2(5)) / 4)


def test_tensor_input_and_per_user_values():
    ranks = torch.tensor([0, 1, 9])
    assert per_user_metric(ranks, "HR@1").tolist() == [1.0, 0.0, 0.0]
    np.testing.assert_allclose(per_user_metric(ranks, "NDCG@10"), [1.0, 1 / math.log2(3), 1 / math.log2(11)])
    np.testing.assert_allclose(per_user_metric(ranks, "MRR"), [1.0, 0.5, 0.1])
    assert metrics_from_ranks(ranks)["MRR"] == pytest.approx(1.6 / 3)


@pytest.mark.parametrize("bad", [np.array([]), np.array([[0, 1]]), np.array([-1, 2]), np.array([0.5])])
def test_bad_ranks_are_refused(bad):
    with pytest.raises(ValueError, match="ranks"):
        metrics_from_ranks(bad)


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="unknown metric 'AUC'"):
        per_user_metric(np.array([0]), "AUC")
