"""Top-K metrics from target ranks (docs/method.md section 4).

Every metric is a mean over users of a per-user value computed from the 0-based rank of the user's
target (see `core.eval.ranking`; rank 0 = top of the list):

- HR@K   = 1 if rank < K else 0
- NDCG@K = 1 / log2(rank + 2) if rank < K else 0 (one relevant item, so the ideal DCG is 1)
- MRR    = 1 / (rank + 1), the FULL reciprocal rank: not truncated at any K, so a target at rank
           500 still contributes 1/501.

The same functions serve full ranking and sampled 1+K ranking; only the ranks differ. Per-user
values (`per_user_metric`) are kept for bootstrap confidence intervals.
"""

from __future__ import annotations

import numpy as np

METRICS = ("HR@1", "HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR")


def _as_numpy(ranks) -> np.ndarray:
    """Ranks (numpy or torch) as a 1-D int64 numpy array, checked to be non-negative and non-empty."""
    if hasattr(ranks, "detach"):  # a torch tensor; torch itself is not imported so the app can use this
        ranks = ranks.detach().cpu().numpy()
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or ranks.size == 0:
        raise ValueError(f"ranks: expected a non-empty 1-D array (one rank per user), got shape {ranks.shape}")
    if not np.issubdtype(ranks.dtype, np.integer):
        raise ValueError(f"ranks: expected integer ranks, got dtype {ranks.dtype}")
    if ranks.min() < 0:
        raise ValueError(f"ranks: expected 0-based ranks >= 0, got minimum {ranks.min()}")
    return ranks.astype(np.int64)


def _parse(metric: str) -> tuple[str, int | None]:
    """'NDCG@10' -> ('NDCG', 10); 'MRR' -> ('MRR', None)."""
    if metric == "MRR":
        return "MRR", None
    name, _, k = metric.partition("@")
    if name not in ("HR", "NDCG") or not k.isdigit() or int(k) < 1:
        raise ValueError(f"metric: unknown metric '{metric}'; expected HR@K, NDCG@K (K >= 1) or MRR, "
                         f"e.g. one of {', '.join(METRICS)}")
    return name, int(k)


def per_user_metric(ranks: np.ndarray, metric: str) -> np.ndarray:
    """(U,) float64 per-user values of `metric` ('HR@K', 'NDCG@K' or 'MRR') from 0-based ranks (U,)."""
    ranks = _as_numpy(ranks)
    name, k = _parse(metric)
    if name == "MRR":
        return 1.0 / (ranks + 1.0)
    hit = ranks < k
    if name == "HR":
        return hit.astype(np.float64)
    return np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)


def metrics_from_ranks(ranks: np.ndarray, metrics: tuple[str, ...] = METRICS) -> dict[str, float]:
    """Mean of each metric over users, e.g. {'HR@1': 0.25, ..., 'MRR': 0.31}."""
    ranks = _as_numpy(ranks)
    return {metric: float(per_user_metric(ranks, metric).mean()) for metric in metrics}
