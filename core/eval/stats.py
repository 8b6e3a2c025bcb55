"""Uncertainty for ranking metrics: bootstrap confidence intervals and paired tests over users.

Every metric is a mean of a per-user value (core/eval/metrics.py `per_user_metric`), so its
uncertainty comes from resampling users. A comparison of two runs on the same users and split is
paired: per-user differences, a bootstrap CI of their mean, and a sign-flip permutation test.
A difference is called significant only when the paired CI excludes zero. All draws are seeded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_RESAMPLES = 1000


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class Paired:
    difference: float  # mean(a - b)
    low: float
    high: float
    p_value: float
    n: int

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict:
        return {**asdict(self), "significant": self.significant}


def _resample_means(values: np.ndarray, resamples: int, rng: np.random.Generator, chunk: int = 200) -> np.ndarray:
    """Means of `resamples` bootstrap samples of `values`, drawn in chunks to bound memory."""
    n = len(values)
    means = []
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        means.append(values[idx].mean(axis=1))
    return np.concatenate(means)


def bootstrap_ci(values, resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = 0.95) -> Interval:
    """Percentile bootstrap CI of the mean of per-user values."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        raise ValueError(f"bootstrap: need at least 2 users, got {len(values)}")
    means = _resample_means(values, resamples, np.random.default_rng(seed))
    alpha = (1 - level) / 2
    return Interval(float(values.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)),
                    len(values))


def sign_flip_p_value(differences: np.ndarray, resamples: int, rng: np.random.Generator) -> float:
    """Two-sided p-value of mean(differences) = 0 by randomly flipping each user's sign."""
    observed = abs(differences.mean())
    if observed == 0:
        return 1.0
    hits = 0
    for start in range(0, resamples, 200):
        signs = rng.choice((-1.0, 1.0), size=(min(200, resamples - start), len(differences)))
        hits += int((np.abs((signs * differences).mean(axis=1)) >= observed - 1e-15).sum())
    return (hits + 1) / (resamples + 1)


def paired_comparison(a, b, resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = 0.95) -> Paired:
    """Compare per-user values of two runs on the same users (aligned arrays)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired comparison: {len(a)} users against {len(b)}; runs must cover the same users")
    diff = a - b
    ci = bootstrap_ci(diff, resamples, seed, level)
    p = sign_flip_p_value(diff, resamples, np.random.default_rng(seed + 1))
    return Paired(ci.mean, ci.low, ci.high, p, len(diff))
