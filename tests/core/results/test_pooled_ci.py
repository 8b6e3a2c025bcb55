"""Pooled intervals over training seeds resample the seeds as well as the users.

A constructed case where the seeds disagree strongly (NDCG@10 of 1, about 0.5 and 0 on the same
users): averaging each user over the seeds and resampling users gives a narrow interval that hides
the training noise; the pooled intervals of `compare_seeds`, `pooled_ci` and reproduce's `user_ci`
are wider and say that they resample seeds. One seed: the users only, and they say so.
"""

import numpy as np

from core.eval.metrics import per_user_metric
from core.eval.stats import bootstrap_ci, paired_comparison
from core.results import compare, reproduce
from core.results.reproduce import PLANS, markdown

USERS = 200


def _seed_ranks() -> list[dict[int, int]]:
    """{user: rank} per seed: seed 0 ranks every target first, seed 1 half of them, seed 2 none in the top 10."""
    rng = np.random.default_rng(0)
    half = rng.permutation(np.arange(USERS) % 2)
    return [dict.fromkeys(range(USERS), 0), {u: 0 if half[u] else 50 for u in range(USERS)},
            dict.fromkeys(range(USERS), 50)]


def _values(ranks: dict[int, int]) -> np.ndarray:
    return per_user_metric(np.array([ranks[u] for u in range(USERS)]), "NDCG@10")


def test_pooled_ci_resamples_seeds_when_they_disagree():
    table = np.stack([_values(r) for r in _seed_ranks()])  # (seeds, users)
    users_only = bootstrap_ci(table.mean(axis=0))
    pooled, resampled = compare.pooled_ci(table)
    assert resampled == "seeds and users"
    assert pooled.high - pooled.low > 3 * (users_only.high - users_only.low)
    assert pooled.mean == users_only.mean  # the same point estimate, a wider interval
    one, resampled = compare.pooled_ci(table[1:2])  # one seed: the users-only bootstrap
    assert resampled == "users" and one == bootstrap_ci(table[1])


def test_compare_seeds_pooled_row_resamples_seeds():
    a = _seed_ranks()
    b = [dict.fromkeys(range(USERS), 5)] * 3  # a steady model: NDCG@10 1/log2(7) for every user and seed
    pairs = [(seed, ranks_a, ranks_b) for seed, (ranks_a, ranks_b) in enumerate(zip(a, b))]
    rows = compare.compare_seeds(pairs, "NDCG@10")
    assert [r["seed"] for r in rows] == [0, 1, 2, None]
    assert [r["resampled"] for r in rows] == ["users"] * 3 + ["seeds and users"]
    pooled = rows[-1]
    mean_a, mean_b = np.mean([_values(r) for r in a], axis=0), _values(b[0])
    users_only = paired_comparison(mean_a, mean_b)  # what the pooled row was before: seeds averaged away
    assert users_only.significant and not pooled["significant"]  # the seed spread covers the difference
    assert pooled["high"] - pooled["low"] > 3 * (users_only.high - users_only.low)
    assert abs(pooled["difference"] - users_only.difference) < 1e-12


def test_reproduce_ci_and_report_text_say_what_they_resample(monkeypatch):
    seeds = _seed_ranks()
    runs = [(f"run{i}", "student") for i in range(3)]
    monkeypatch.setattr(compare, "resolve", lambda paths, name: name.split(":")[0])
    monkeypatch.setattr(compare, "user_ranks", lambda paths, side, split, protocol: seeds[int(side[3:])])
    low, high, resampled = reproduce.user_ci(None, runs, "full")
    users_only = bootstrap_ci(np.mean([_values(r) for r in seeds], axis=0))
    assert resampled == "seeds and users" and high - low > 3 * (users_only.high - users_only.low)
    assert reproduce.user_ci(None, runs[:1], "full")[2] == "users"

    row = {"model": "E4SRec_4 (no distillation)", "seeds": 3, "full/NDCG@10 ci": (low, high, resampled),
           "sampled/NDCG@10 ci": (low, high, resampled)}
    text = markdown([row], "toy", "cpu", PLANS["cpu"], 1.0)
    assert f"[{100 * low:.2f}, {100 * high:.2f}] seeds and users |" in text
    assert "resamples its training seeds and the test users" in text and "the test users only" in text
