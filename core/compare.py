"""Paired comparison of two evaluated runs over the store's per-user ranks (`slmrec compare`).

A run is named `RUN_ID` (its own model: sasrec, teacher or student) or `RUN_ID:MODEL` (e.g. a
SASRec run's popularity rows). Both must be evaluated on the same prepared users and split: runs
on different data settings are refused with the reason. Imports no torch (the app uses it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.eval.metrics import per_user_metric
from core.eval.stats import DEFAULT_RESAMPLES, bootstrap_ci, paired_comparison
from core.store import runs as run_store
from core.store.paths import Paths
from core.store.query import query

# DataConfig fields that change which users are evaluated or their candidates
_USER_FIELDS = ("dataset", "min_rating", "kcore", "min_seq_len", "max_users", "seed", "n_negatives")


class CompareError(ValueError):
    """Two runs cannot be compared; the message says why."""


@dataclass(frozen=True)
class Side:
    run_id: str
    model: str
    spec: dict


def resolve(paths: Paths, name: str) -> Side:
    """`RUN_ID` or `RUN_ID:MODEL` -> the run, the model whose rows to read, and its spec."""
    run_id, _, model = name.partition(":")
    try:
        spec = run_store.read_spec(paths.runs, run_id)
    except Exception as exc:  # a missing or unreadable run folder: say which
        raise CompareError(f"run '{run_id}': {exc}") from exc
    return Side(run_id, model or spec["kind"], spec["spec"])


def user_ranks(paths: Paths, side: Side, split: str, protocol: str, layer: int | None = None) -> dict[int, int]:
    """{user_id: rank} of a run's latest evaluation of `split` under `protocol`."""
    layer_sql = "layer IS NULL" if layer is None else "layer = ?"
    params = [side.run_id, side.model, split, protocol] + ([] if layer is None else [layer])
    rows = query(paths.data_root, f"""
        SELECT user_id, rank FROM ranks WHERE run_id = ? AND model = ? AND split = ? AND protocol = ? AND {layer_sql}
        QUALIFY step = max(step) OVER ()""", params)
    if not rows:
        raise CompareError(f"run '{side.run_id}' has no {split}/{protocol} ranks for model '{side.model}'")
    return {r["user_id"]: r["rank"] for r in rows}


def _check_same_users(a: Side, b: Side) -> None:
    da, db = a.spec["data"], b.spec["data"]
    differ = [f for f in _USER_FIELDS if da.get(f) != db.get(f)]
    if differ:
        shown = ", ".join(f"{f}: {da.get(f)!r} vs {db.get(f)!r}" for f in differ)
        raise CompareError(f"runs '{a.run_id}' and '{b.run_id}' were evaluated on different data ({shown}); "
                           "a paired comparison needs the same users")


def compare(paths: Paths, name_a: str, name_b: str, metric: str = "NDCG@10", split: str = "test",
            protocol: str = "full", resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict:
    """Difference A - B of a metric with its paired 95% bootstrap CI and sign-flip p-value."""
    a, b = resolve(paths, name_a), resolve(paths, name_b)
    _check_same_users(a, b)
    ranks_a, ranks_b = user_ranks(paths, a, split, protocol), user_ranks(paths, b, split, protocol)
    if set(ranks_a) != set(ranks_b):
        raise CompareError(f"runs cover different users ({len(ranks_a)} vs {len(ranks_b)}); "
                           "evaluate both on all users (train.eval_users 0)")
    users = sorted(ranks_a)
    values_a = per_user_metric(np.array([ranks_a[u] for u in users]), metric)
    values_b = per_user_metric(np.array([ranks_b[u] for u in users]), metric)
    paired = paired_comparison(values_a, values_b, resamples, seed)
    return {"a": name_a, "b": name_b, "metric": metric, "split": split, "protocol": protocol,
            "a_value": float(values_a.mean()), "b_value": float(values_b.mean()),
            "a_ci": _interval(bootstrap_ci(values_a, resamples, seed)),
            "b_ci": _interval(bootstrap_ci(values_b, resamples, seed)), **paired.as_dict()}


def _interval(ci) -> list[float]:
    return [ci.low, ci.high]
