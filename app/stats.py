"""The Results page's numbers: seed groups, mean ± std over seeds, 95% intervals, paired comparisons.

The statistics are core's, so the app and `slmrec compare` agree: per-user values from
core/eval/metrics.py, the bootstrap and the sign-flip test from core/eval/stats.py, refusals and
seed-by-seed pairing from core/results/compare.py, seedless keys and spread from core/results/seeds.py. This module
only shapes the store's frames for them.

A *unit* is what one row of the page shows: one run, or with seed grouping, every selected group
of finished runs whose settings differ only in train.seed (one run per seed). A unit's metric is
the mean over its runs with the sample std and n. Its 95% interval resamples the test users for one
run, and the seeds as well as the users for a group (core/results/compare.py `pooled_ci`; runs of a
group share their users), so a group's interval includes training noise; `ci_over` says which.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from app import labels
from core.config import ConfigError
from core.eval.metrics import METRICS, per_user_metric
from core.eval.stats import DEFAULT_RESAMPLES
from core.results.compare import (
    CompareError,
    Side,
    check_same_data,
    compare_seeds,
    pair_seeds,
    pooled_ci,
)
from core.results.seeds import seed_of, seedless_key, spread

PROTOCOLS = ("full", "sampled")
_MEMBER_COLUMNS = ["run_id", "kind", "seed", "unit", "unit_label"]


def seed_groups(runs: pd.DataFrame) -> pd.DataFrame:
    """(run_id, group, seed) for every run with a spec; a spec core cannot read is a group of its own."""
    specs = {r: json.loads(s) for r, s in zip(runs["run_id"], runs["spec"]) if isinstance(s, str) and s}
    rows = []
    for run_id, spec in specs.items():
        try:
            key = seedless_key(spec, specs)
        except ConfigError:  # an older or hand-edited spec: never grouped with another run
            key = run_id
        rows.append({"run_id": run_id, "group": key, "seed": seed_of(spec)})
    return pd.DataFrame(rows, columns=["run_id", "group", "seed"])


def members(done: pd.DataFrame, groups: pd.DataFrame, selected: list[str], grouped: bool) -> pd.DataFrame:
    """(run_id, kind, seed, unit, unit_label) of the runs behind the selection, units in selection order.

    Grouped, a selected run brings every finished run of its seed group, one per seed (a selected
    run first, else the newest); otherwise each selected run is its own unit.
    """
    frame = done[["run_id", "kind", "label"]].merge(groups, on="run_id", how="left")
    frame["group"] = frame["group"].fillna(frame["run_id"])
    frame["seed"] = frame["seed"].fillna(0).astype(int)
    position = {run_id: i for i, run_id in enumerate(selected)}
    picked = frame["run_id"].isin(list(position))
    if not grouped:
        frame = frame[picked].assign(unit=frame["run_id"], unit_label=frame["label"])
        return frame.sort_values("run_id", key=lambda s: s.map(position))[_MEMBER_COLUMNS].reset_index(drop=True)
    first = frame[picked].assign(at=frame["run_id"].map(position)).groupby("group")["at"].min()
    frame = frame.assign(other=~picked)[frame["group"].isin(first.index)]
    frame = frame.sort_values("other", kind="stable").drop_duplicates(["group", "seed"])
    frame = frame.assign(unit=frame["group"], at=frame["group"].map(first)).sort_values(["at", "seed"])
    by_id = done.set_index("run_id", drop=False)
    names = {unit: _group_label(rows, by_id) for unit, rows in frame.groupby("unit")}
    return frame.assign(unit_label=frame["unit"].map(names))[_MEMBER_COLUMNS].reset_index(drop=True)


def _group_label(rows: pd.DataFrame, by_id: pd.DataFrame) -> str:
    """A lone run keeps its label; a group: 'teacher L8 · smollm2 cpu-quick · toy · seeds 0, 1, 2 · <key>'."""
    if len(rows) == 1:
        return rows["label"].iloc[0]
    return labels.group_label(by_id.loc[rows["run_id"].iloc[0]].to_dict(), list(rows["seed"]), rows["unit"].iloc[0])


def units(done: pd.DataFrame, members: pd.DataFrame) -> pd.DataFrame:
    """One row per unit: its first run's columns, `label` the unit's, `seeds` its train seeds, `n` runs.

    In the unit's spec, train.seed becomes the list of seeds (so a settings diff shows them).
    """
    seeds = members.groupby("unit", sort=False)["seed"].agg(lambda s: ", ".join(map(str, sorted(s))))
    first = members.drop_duplicates("unit")[["run_id", "unit", "unit_label"]]
    frame = first.merge(done.drop(columns=["label"]), on="run_id")
    frame = frame.rename(columns={"unit_label": "label"}).assign(seeds=frame["unit"].map(seeds),
                                                                  n=frame["unit"].map(members["unit"].value_counts()))
    frame["spec"] = [_with_seeds(spec, s, n) for spec, s, n in zip(frame["spec"], frame["seeds"], frame["n"])]
    return frame


def _with_seeds(spec: str, seeds: str, n: int) -> str:
    if n == 1 or not spec:
        return spec
    values = json.loads(spec)
    values.setdefault("train", {})["seed"] = seeds
    return json.dumps(values)


def summarise(metrics: pd.DataFrame, members: pd.DataFrame) -> pd.DataFrame:
    """Each unit's own-model final metrics: (unit, model, protocol, metric, mean, std, n) over its runs."""
    rows = metrics.merge(members[["run_id", "kind", "unit"]], on="run_id")
    rows = rows[rows["model"] == rows["kind"]]
    out = []
    for (unit, model, protocol, metric), group in rows.groupby(["unit", "model", "protocol", "metric"], sort=False):
        s = spread(group["value"].to_numpy())
        out.append({"unit": unit, "model": model, "protocol": protocol, "metric": metric,
                    "mean": s.mean, "std": s.std, "n": s.n})
    return pd.DataFrame(out, columns=["unit", "model", "protocol", "metric", "mean", "std", "n"])


def cell(mean: float, std: float, n: int, digits: int = 4, scale: float = 1.0) -> str:
    """'0.1234 ± 0.0056' over seeds (sample std), '0.1234' for one run."""
    if n > 1:
        return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f}"


def wide(summary: pd.DataFrame, members: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """unit x metric text table of one protocol (mean ± std), with the unit's label and seed count."""
    rows = summary[summary["protocol"] == protocol]
    if rows.empty:
        return pd.DataFrame(columns=["run", "seeds"])
    out = []
    for unit, label in members.drop_duplicates("unit")[["unit", "unit_label"]].itertuples(index=False):
        group = rows[rows["unit"] == unit]
        if group.empty:
            continue
        row = {"run": label, "seeds": int(group["n"].max())}
        row.update({m: cell(mean, std, n) for m, mean, std, n in
                    zip(group["metric"], group["mean"], group["std"], group["n"])})
        out.append(row)
    frame = pd.DataFrame(out)
    order = [m for m in METRICS if m in frame.columns] + sorted(set(frame.columns) - set(METRICS) - {"run", "seeds"})
    return frame[["run", "seeds"] + order]


def metric_table(ranks: pd.DataFrame, metric: str, members: pd.DataFrame | None = None,
                 resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Per (unit, model, protocol): users, seeds, mean over seeds, their std, and the 95% bootstrap interval
    with what it resamples (`ci_over`: users for one run; seeds and users for a group).

    Without `members` every run is its own unit. `run_id` is the unit's first run.
    """
    if members is None:
        members = pd.DataFrame({"run_id": ranks["run_id"].unique()}).assign(unit=lambda f: f["run_id"])
    frame = ranks.merge(members[["run_id", "unit"]], on="run_id")
    rows = []
    for (unit, model, protocol), group in frame.groupby(["unit", "model", "protocol"], sort=False):
        grid = group.pivot_table(index="user_id", columns="run_id", values="rank").dropna()  # users of every run
        # (runs, users) per-user values of the metric
        values = np.stack([per_user_metric(grid[c].to_numpy().astype(np.int64), metric) for c in grid.columns])
        s = spread(values.mean(axis=1))
        low, high, over = _interval(values, resamples, seed)
        rows.append({"run_id": group["run_id"].iloc[0], "unit": unit, "model": model, "protocol": protocol,
                     "metric": metric, "users": values.shape[1], "seeds": s.n, "value": s.mean, "std": s.std,
                     "ci_low": low, "ci_high": high, "ci_over": over})
    return pd.DataFrame(rows, columns=["run_id", "unit", "model", "protocol", "metric", "users", "seeds", "value",
                                       "std", "ci_low", "ci_high", "ci_over"])


def _interval(values: np.ndarray, resamples: int, seed: int) -> tuple[float, float, str]:
    if values.shape[1] < 2:  # no interval from one user
        return float("nan"), float("nan"), ""
    ci, over = pooled_ci(values, resamples, seed)
    return ci.low, ci.high, over


PAIRED_COLUMNS = ["protocol", "seeds", "A", "B", "difference", "95% CI low", "95% CI high", "p-value", "users",
                  "resamples", "verdict"]


def paired_table(ranks: pd.DataFrame, members: pd.DataFrame, done: pd.DataFrame, unit_a: str, unit_b: str,
                 metric: str, resamples: int = DEFAULT_RESAMPLES) -> pd.DataFrame:
    """A - B of `metric` per protocol: per seed and over all seeds (groups) or once (single runs).

    Raises core.results.compare.CompareError when the units cannot be compared (different data, different
    seeds, no stored ranks); its message is for the user.
    """
    runs_a, runs_b = members[members["unit"] == unit_a], members[members["unit"] == unit_b]
    check_same_data(_side(runs_a, done), _side(runs_b, done))
    if len(runs_a) == 1 and len(runs_b) == 1:
        pairs = [(None, runs_a["run_id"].iloc[0], runs_b["run_id"].iloc[0])]
    else:
        pairs = pair_seeds(dict(zip(runs_a["seed"], runs_a["run_id"])), dict(zip(runs_b["seed"], runs_b["run_id"])))
    model = dict(zip(members["run_id"], members["kind"]))
    rows = []
    for protocol in PROTOCOLS:
        own = ranks[(ranks["protocol"] == protocol) & (ranks["model"] == ranks["run_id"].map(model))]
        by_run = {run_id: dict(zip(g["user_id"], g["rank"])) for run_id, g in own.groupby("run_id")}
        if any(a not in by_run or b not in by_run for _, a, b in pairs):
            continue
        results = compare_seeds([(s, by_run[a], by_run[b]) for s, a, b in pairs], metric, resamples)
        rows += [_paired_row(protocol, r, len(pairs)) for r in results]
    if not rows:
        raise CompareError("no protocol has stored test ranks for every run of both sides")
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def _side(runs: pd.DataFrame, done: pd.DataFrame) -> Side:
    run_id = runs["run_id"].iloc[0]
    spec = done.loc[done["run_id"] == run_id, "spec"].iloc[0]
    return Side(run_id, runs["kind"].iloc[0], json.loads(spec))


def _paired_row(protocol: str, r: dict, n_pairs: int) -> dict:
    if n_pairs == 1:
        seeds = "one run each"
    else:
        seeds = f"seed {r['seed']}" if r["seed"] is not None else f"all {n_pairs} seeds"
    return {"protocol": protocol, "seeds": seeds, "A": r["a_value"], "B": r["b_value"], "difference": r["difference"],
            "95% CI low": r["low"], "95% CI high": r["high"], "p-value": r["p_value"], "users": r["n"],
            "resamples": r["resampled"], "verdict": "significant" if r["significant"] else "inside the noise"}
