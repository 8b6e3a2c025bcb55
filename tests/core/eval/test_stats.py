"""Bootstrap coverage, paired tests finding planted differences and not inventing them."""

import numpy as np
import pytest

from core.eval.metrics import per_user_metric
from core.eval.stats import bootstrap_ci, hierarchical_bootstrap_ci, hierarchical_paired, paired_comparison


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


def _seeds_table(seed_means, users, user_sd, rng):
    """(seeds, users): a per-seed level plus a shared per-user effect plus small noise."""
    user_effect = rng.normal(0, user_sd, users)
    return np.array(seed_means)[:, None] + user_effect[None, :] + rng.normal(0, user_sd / 10, (len(seed_means), users))


def test_hierarchical_ci_carries_the_seed_spread_that_a_users_only_ci_hides():
    rng = np.random.default_rng(3)
    seed_means = [0.40, 0.50, 0.60]  # training noise far larger than the user noise
    values = _seeds_table(seed_means, 2000, 0.01, rng)
    users_only = bootstrap_ci(values.mean(axis=0))
    both = hierarchical_bootstrap_ci(values)
    assert users_only.high - users_only.low < 0.002
    assert both.high - both.low > 50 * (users_only.high - users_only.low)
    # three seeds: a resample of all-lowest (or all-highest) seeds has probability 1/27 > 2.5%, so the
    # 95% interval runs from the lowest seed mean to the highest
    observed = values.mean(axis=1)
    assert both.low == pytest.approx(observed.min(), abs=0.002)
    assert both.high == pytest.approx(observed.max(), abs=0.002)
    assert both.mean == pytest.approx(values.mean()) and both.n == 2000


def test_hierarchical_ci_of_one_seed_is_the_users_only_ci():
    values = np.random.default_rng(4).random((1, 300))
    assert hierarchical_bootstrap_ci(values, resamples=300, seed=7) == bootstrap_ci(values[0], resamples=300, seed=7)
    a, b = np.random.default_rng(5).random((2, 1, 300))
    nested, flat = hierarchical_paired(a, b, resamples=300, seed=7), paired_comparison(a[0], b[0], 300, 7)
    assert (nested.low, nested.high) == pytest.approx((flat.low, flat.high), abs=1e-12)
    assert nested.difference == pytest.approx(flat.difference)


def test_hierarchical_paired_needs_a_gap_larger_than_the_seed_noise():
    rng = np.random.default_rng(6)
    users = _seeds_table([0.0, 0.0, 0.0], 1000, 0.05, rng)[0]  # one shared user effect for both runs
    noisy = lambda means: users[None, :] + np.array(means)[:, None] + rng.normal(0, 0.005, (len(means), 1000))
    small = hierarchical_paired(noisy([0.52, 0.46, 0.55]), noisy([0.50, 0.44, 0.53, 0.49]))
    assert not small.significant and small.p_value > 0.05  # +0.02 against seeds spread by 0.09
    assert paired_comparison(noisy([0.52, 0.46, 0.55]).mean(0), noisy([0.50, 0.44, 0.53]).mean(0)).significant
    large = hierarchical_paired(noisy([0.80, 0.78, 0.82]), noisy([0.50, 0.44, 0.53]))
    assert large.significant and large.p_value < 0.05 and large.difference == pytest.approx(0.31, abs=0.01)


def test_hierarchical_refuses_bad_shapes():
    with pytest.raises(ValueError, match=r"\(seeds, users\)"):
        hierarchical_bootstrap_ci(np.zeros(5))
    with pytest.raises(ValueError, match="same users"):
        hierarchical_paired(np.zeros((2, 3)), np.zeros((2, 4)))
