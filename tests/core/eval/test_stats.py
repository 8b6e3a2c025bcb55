"""Bootstrap coverage, paired tests finding planted differences and not inventing them."""

import numpy as np
import pytest

from core.eval.metrics import per_user_metric
from core.eval.stats import bootstrap_ci, paired_comparison


def test_bootstrap_covers_the_true_ndcg_about_95_percent():
    # ranks from a known distribution: P(rank = r) geometric-ish; true NDCG@10 computed exactly
    rng = np.random.default_rng(0)
    support = np.arange(200)
    probs = 0.97 ** support
    probs /= probs.sum()
    truth = float((per_user_metric(support, "NDCG@10") * probs).sum())
    covered = 0
    for trial in range(200):
        ranks = rng.choice(support, size=400, p=probs)
        ci = bootstrap_ci(per_user_metric(ranks, "NDCG@10"), resamples=400, seed=trial)
        covered += ci.low <= truth <= ci.high
    assert 0.90 <= covered / 200 <= 0.99


def test_planted_difference_is_found():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 60, size=943)
    better = np.maximum(base - rng.integers(0, 8, size=943), 0)  # every user ranked a little higher
    result = paired_comparison(per_user_metric(better, "NDCG@10"), per_user_metric(base, "NDCG@10"))
    assert result.p_value < 0.01 and result.significant and result.difference > 0


def test_identical_runs_and_shuffled_ties_are_not_significant():
    rng = np.random.default_rng(2)
    ranks = rng.integers(0, 60, size=943)
    same = paired_comparison(per_user_metric(ranks, "NDCG@10"), per_user_metric(ranks, "NDCG@10"))
    assert same.p_value > 0.05 and not same.significant and same.difference == 0
    # two runs differing only in how ties were ordered: each user's rank moves by a random amount
    # within a tie group of 3 (up or down), with no systematic direction
    jitter = rng.integers(-1, 2, size=943)
    other = np.maximum(ranks + jitter, 0)
    shuffled = paired_comparison(per_user_metric(other, "HR@10"), per_user_metric(ranks, "HR@10"))
    assert shuffled.p_value > 0.05


def test_mismatched_users_are_refused():
    with pytest.raises(ValueError, match="same users"):
        paired_comparison(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="at least 2 users"):
        bootstrap_ci([1.0])
