"""Ranking metrics from stored ranks, and seeded bootstrap confidence intervals over users.

Every ranking metric is a mean over users of a per-user value computed from the 0-based rank of
the target item (DESIGN.md section 6): HR@K = [rank < K], NDCG@K = [rank < K] / log2(rank + 2),
MRR = 1 / (rank + 1). A 95% interval resamples users with replacement (`n_boot` times, fixed
seed) and takes the 2.5th and 97.5th percentiles of the resampled means. The same seed gives the
same resampled users to every run with the same user list, so intervals of runs evaluated on the
same users are paired.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METRICS = ("HR@1", "HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR")


def per_user(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Each user's contribution to `metric` (HR@K, NDCG@K or MRR) from 0-based ranks."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if metric == "MRR":
        return 1.0 / (ranks + 1.0)
    name, _, k = metric.partition("@")
    hit = ranks < int(k)
    if name == "HR":
        return hit.astype(np.float64)
    if name == "NDCG":
        return np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
    raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """(low, high) percentile interval of the mean of `values` over bootstrap resamples."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // len(values))  # bound the (resamples, users) index matrix
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        means[start:stop] = values[rng.integers(0, len(values), size=(stop - start, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def metric_table(ranks: pd.DataFrame, metric: str, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per (run_id, model, protocol): users, the metric from ranks, and its 95% bootstrap interval."""
    rows = []
    for (run_id, model, protocol), group in ranks.groupby(["run_id", "model", "protocol"], sort=False):
        ordered = group.sort_values("user_id")
        values = per_user(ordered["rank"].to_numpy(), metric)
        low, high = bootstrap_ci(values, n_boot, seed)
        rows.append({"run_id": run_id, "model": model, "protocol": protocol, "metric": metric,
                     "users": len(values), "value": float(values.mean()), "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["run_id", "model", "protocol", "metric", "users", "value", "ci_low", "ci_high"])
