"""Paired comparison of two evaluated runs over the store's per-user ranks (`slmrec compare`).

A run is named `RUN_ID` (its own model: sasrec, teacher or student) or `RUN_ID:MODEL` (e.g. a
SASRec run's popularity rows). Both must be evaluated on the same prepared users and split: runs
on different data settings are refused with the reason. Two seed groups (core/results/seeds.py) are
compared seed by seed (`compare_seeds`): one paired comparison per seed over its users, then one
over every seed that resamples the training seeds as well as the users (core/eval/stats.py
`hierarchical_paired`), so its interval includes training noise. Imports no torch (the app uses it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from core.eval.metrics import per_user_metric
from core.eval.stats import (
    DEFAULT_RESAMPLES,
    Interval,
    bootstrap_ci,
    hierarchical_bootstrap_ci,
    hierarchical_paired,
    paired_comparison,
)
from core.store import runs as run_store
from core.store.paths import Paths
from core.store.query import query

# DataConfig fields that change which users are evaluated or their candidates
_USER_FIELDS = ("dataset", "min_rating", "kcore", "min_seq_len", "max_users", "seed", "n_negatives")
USERS, SEEDS_AND_USERS = "users", "seeds and users"  # what an interval resamples


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


def check_same_data(a: Side, b: Side) -> None:
    """Refuse two runs whose data settings give different users or candidates, naming the settings."""
    da, db = a.spec["data"], b.spec["data"]
    differ = [f for f in _USER_FIELDS if da.get(f) != db.get(f)]
    if differ:
        shown = ", ".join(f"{f}: {da.get(f)!r} vs {db.get(f)!r}" for f in differ)
        raise CompareError(f"runs '{a.run_id}' and '{b.run_id}' were evaluated on different data ({shown}); "
                           "a paired comparison needs the same users")


def paired_values(ranks_a: Mapping[int, int], ranks_b: Mapping[int, int], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-user values of `metric` of two runs, aligned by user id (sorted); refuses different users."""
    if set(ranks_a) != set(ranks_b):
        raise CompareError(f"runs cover different users ({len(ranks_a)} vs {len(ranks_b)}); "
                           "evaluate both on all users (train.eval_users 0)")
    users = sorted(ranks_a)
    return (per_user_metric(np.array([ranks_a[u] for u in users]), metric),
            per_user_metric(np.array([ranks_b[u] for u in users]), metric))


def compare(paths: Paths, name_a: str, name_b: str, metric: str = "NDCG@10", split: str = "test",
            protocol: str = "full", resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict:
    """Difference A - B of a metric with its paired 95% bootstrap CI and sign-flip p-value."""
    a, b = resolve(paths, name_a), resolve(paths, name_b)
    check_same_data(a, b)
    values_a, values_b = paired_values(user_ranks(paths, a, split, protocol), user_ranks(paths, b, split, protocol),
                                       metric)
    paired = paired_comparison(values_a, values_b, resamples, seed)
    return {"a": name_a, "b": name_b, "metric": metric, "split": split, "protocol": protocol,
            "a_value": float(values_a.mean()), "b_value": float(values_b.mean()),
            "a_ci": _interval(bootstrap_ci(values_a, resamples, seed)),
            "b_ci": _interval(bootstrap_ci(values_b, resamples, seed)), **paired.as_dict()}


def _interval(ci) -> list[float]:
    return [ci.low, ci.high]


def pooled_ci(values, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> tuple[Interval, str]:
    """95% CI of the mean of a (seeds, users) table of per-user values, and what it resamples:
    seeds and users for 2+ seeds (training noise included), users only for one seed."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 1:
        return bootstrap_ci(values[0], resamples, seed), USERS
    return hierarchical_bootstrap_ci(values, resamples, seed), SEEDS_AND_USERS


def pair_seeds(seeds_a: Mapping[int, str], seeds_b: Mapping[int, str]) -> list[tuple[int, str, str]]:
    """[(train seed, run of A, run of B)] for two seed groups; refuses groups with different seeds."""
    if set(seeds_a) != set(seeds_b):
        raise CompareError(f"the groups have different seeds ({sorted(seeds_a)} vs {sorted(seeds_b)}); pairing "
                           "seed by seed needs the same seeds: run the missing ones or compare single runs")
    return [(s, seeds_a[s], seeds_b[s]) for s in sorted(seeds_a)]


def compare_seeds(pairs: list[tuple[int, Mapping[int, int], Mapping[int, int]]], metric: str,
                  resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> list[dict]:
    """Paired A - B per train seed, then (2+ seeds) over all seeds: one row each (`seed` None for all).

    `pairs` holds (train seed, {user: rank} of A, {user: rank} of B). A seed's row resamples its
    users (sign-flip p); the row over all seeds resamples the seeds of each side and the users
    (hierarchical bootstrap, bootstrap p), so every seed must cover the same users. `resampled`
    says which.
    """
    rows, values = [], []
    for train_seed, ranks_a, ranks_b in pairs:
        values_a, values_b = paired_values(ranks_a, ranks_b, metric)
        paired = paired_comparison(values_a, values_b, resamples, seed)
        rows.append(_paired_row(train_seed, values_a, values_b, paired, USERS))
        values.append((frozenset(ranks_a), values_a, values_b))
    if len(values) > 1:
        if len({users for users, _, _ in values}) > 1:
            raise CompareError("the seeds were evaluated on different users; compare them seed by seed")
        table_a = np.stack([v for _, v, _ in values])  # (seeds, users)
        table_b = np.stack([v for _, _, v in values])
        paired = hierarchical_paired(table_a, table_b, resamples, seed)
        rows.append(_paired_row(None, table_a, table_b, paired, SEEDS_AND_USERS))
    return rows


def _paired_row(train_seed: int | None, values_a: np.ndarray, values_b: np.ndarray, paired, resampled: str) -> dict:
    return {"seed": train_seed, "a_value": float(values_a.mean()), "b_value": float(values_b.mean()),
            "resampled": resampled, **paired.as_dict()}
