"""Uncertainty for ranking metrics: bootstrap confidence intervals and paired tests over users.

Every metric is a mean of a per-user value (core/eval/metrics.py `per_user_metric`), so its
uncertainty comes from resampling users. A comparison of two runs on the same users and split is
paired: per-user differences, a bootstrap CI of their mean, and a sign-flip permutation test.
A difference is called significant only when the paired CI excludes zero. All draws are seeded.

Runs repeated over training seeds give a (seeds, users) table per metric. Averaging each user over
seeds and resampling users ignores the training noise; `hierarchical_bootstrap_ci` and
`hierarchical_paired` resample the seeds (with replacement) as well as the users. Users are the
same test users for every seed (crossed, not nested), so one user draw serves all the seeds of a
resample: a hard user stays hard for every seed. With one seed they reduce to `bootstrap_ci` and
`paired_comparison`'s interval.
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


def _user_draws(n: int, resamples: int, rng: np.random.Generator, chunk: int = 200):
    """(chunk, n) user indices of bootstrap samples, `resamples` rows in all, in chunks to bound memory."""
    for start in range(0, resamples, chunk):
        yield rng.integers(0, n, size=(min(chunk, resamples - start), n))


def _resample_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `resamples` bootstrap samples of `values`."""
    return np.concatenate([values[idx].mean(axis=1) for idx in _user_draws(len(values), resamples, rng)])


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


def _seeds_by_users(values, name: str) -> np.ndarray:
    """values as a (seeds, users) float64 array, refusing other shapes or fewer than 2 users."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 2:
        raise ValueError(f"{name}: expected a (seeds, users) array with >= 1 seed and >= 2 users, "
                         f"got shape {values.shape}")
    return values


def _hierarchical_means(tables: list[np.ndarray], resamples: int, seed: int) -> list[np.ndarray]:
    """Per table (seeds, users): `resamples` means over a draw of its seeds and a draw of the users.

    The user draws are shared by the tables (the same users, paired) and come from the same stream
    as `bootstrap_ci`'s; each table's seeds are drawn independently from a second stream.
    """
    users_rng, seeds_rng = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    out: list[list[np.ndarray]] = [[] for _ in tables]
    for idx in _user_draws(tables[0].shape[1], resamples, users_rng):  # idx: (chunk, users)
        for table, means in zip(tables, out):
            per_seed = np.stack([row[idx].mean(axis=1) for row in table], axis=1)  # (chunk, seeds)
            drawn = seeds_rng.integers(0, table.shape[0], size=per_seed.shape)  # seeds of each resample
            means.append(np.take_along_axis(per_seed, drawn, axis=1).mean(axis=1))
    return [np.concatenate(means) for means in out]


def hierarchical_bootstrap_ci(values, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                              level: float = 0.95) -> Interval:
    """Percentile CI of the mean of a (seeds, users) table, resampling seeds and users (n: users)."""
    values = _seeds_by_users(values, "hierarchical bootstrap")
    means = _hierarchical_means([values], resamples, seed)[0]
    alpha = (1 - level) / 2
    return Interval(float(values.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)),
                    values.shape[1])


def hierarchical_paired(a, b, resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = 0.95) -> Paired:
    """Compare two (seeds, users) tables over the same users; each side's seeds are resampled on
    their own (the seed counts may differ). p: two-sided bootstrap p-value, (1 + resamples on the
    far side of 0) / (1 + resamples), doubled."""
    a, b = _seeds_by_users(a, "hierarchical paired (a)"), _seeds_by_users(b, "hierarchical paired (b)")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired comparison: {a.shape[1]} users against {b.shape[1]}; runs must cover the same users")
    means_a, means_b = _hierarchical_means([a, b], resamples, seed)
    differences = means_a - means_b
    alpha = (1 - level) / 2
    far = min((differences <= 0).sum(), (differences >= 0).sum())
    return Paired(float(a.mean() - b.mean()), float(np.quantile(differences, alpha)),
                  float(np.quantile(differences, 1 - alpha)), min(1.0, 2 * (far + 1) / (resamples + 1)), a.shape[1])
