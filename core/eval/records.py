"""Turn target ranks into rows of the store's `ranks` and `metrics` tables.

The metric rows are the aggregates of the rank rows they are written with, so the two tables
always agree (a test checks it through the store's views).
"""

from __future__ import annotations

import numpy as np

from core.eval.evaluate import SplitRanks
from core.eval.metrics import metrics_from_ranks


def rank_rows(run_id: str, step: int, model: str, layer: int | None, result: SplitRanks) -> list[dict]:
    """One `ranks` row per user and protocol."""
    rows = []
    for protocol, ranks in result.ranks.items():
        rows.extend({"run_id": run_id, "step": step, "split": result.split, "protocol": protocol, "model": model,
                     "layer": layer, "user_id": int(u), "rank": int(r)} for u, r in zip(result.users, ranks))
    return rows


def metric_values(rows: list[dict]) -> dict[str, float]:
    """{"protocol/metric": value} of `metric_rows` (or `metrics` view) rows: how results and manifests name them."""
    return {f"{r['protocol']}/{r['metric']}": r["value"] for r in rows}


def metric_rows(run_id: str, step: int, model: str, layer: int | None, result: SplitRanks) -> list[dict]:
    """One `metrics` row per protocol and metric: the aggregates of `rank_rows`."""
    rows = []
    for protocol, ranks in result.ranks.items():
        for metric, value in metrics_from_ranks(np.asarray(ranks)).items():
            rows.append({"run_id": run_id, "step": step, "split": result.split, "protocol": protocol,
                         "model": model, "layer": layer, "metric": metric, "value": float(value)})
    return rows
