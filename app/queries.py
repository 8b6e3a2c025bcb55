"""Every read the app makes of the results store, as SQL over the views of core.store.query.

Each function takes the shared `Store` (app/context.py) and returns a pandas DataFrame; pages never
write SQL themselves. "Final" results are a run's rows at its last evaluated step with `layer` NULL
(the final head); per-layer rows have `layer` set. Spec fields are read from the runs view's JSON
`spec` column with DuckDB's JSON functions, so no spec is parsed in Python per row.
"""

from __future__ import annotations

import json

import pandas as pd

from app import labels, stats
from app.context import Store
from core.eval.metrics import METRICS


# One row per run, with the spec fields the pages filter, label and plot by. A student's teacher
# depth comes from its teacher run's spec.
RUNS_SQL = """
SELECT r.run_id, r.kind, r.name, r.status, r.phase, r.progress, r.eta_s, r.samples_per_s, r.device,
       r.created_at, r.started_at, r.finished_at, r.heartbeat_at, r.error, r.parent_id, r.result,
       r.settings_hash,
       json_extract_string(r.spec, '$.data.dataset') AS dataset,
       json_extract_string(r.spec, '$.backbone.base') AS base,
       CASE WHEN r.kind = 'teacher' THEN CAST(json_extract(r.spec, '$.backbone.depth') AS INTEGER)
            WHEN r.kind = 'student' THEN CAST(json_extract(t.spec, '$.backbone.depth') AS INTEGER) END
           AS teacher_depth,
       CASE WHEN r.kind = 'student' THEN CAST(json_extract(r.spec, '$.backbone.depth') AS INTEGER) END
           AS student_depth,
       CASE WHEN r.kind = 'student' THEN CAST(json_extract(r.spec, '$.distill.blocks') AS INTEGER) END AS blocks,
       CAST(json_extract(r.spec, '$.distill.lambda_cos') AS DOUBLE) AS lambda_cos,
       CAST(json_extract(r.spec, '$.distill.lambda_norm') AS DOUBLE) AS lambda_norm,
       CAST(json_extract(r.spec, '$.distill.lambda_sup') AS DOUBLE) AS lambda_sup,
       json_extract_string(r.spec, '$.distill.teacher_run') AS teacher_run,
       json_extract_string(r.spec, '$.sasrec_run') AS sasrec_run,
       json_extract_string(r.spec, '$.analysis.run') AS analysis_run,
       json_extract_string(r.spec, '$.analysis.against') AS analysis_against,
       CASE WHEN r.kind = 'sasrec' THEN CAST(json_extract(r.spec, '$.sasrec.lr') AS DOUBLE)
            ELSE CAST(json_extract(r.spec, '$.train.lr') AS DOUBLE) END AS lr,
       CAST(json_extract(r.result, '$.parameters.inference') AS BIGINT) AS inference_params,
       r.spec
FROM runs r LEFT JOIN runs t ON t.run_id = json_extract_string(r.spec, '$.distill.teacher_run')
ORDER BY r.created_at DESC, r.run_id DESC
"""


def runs(store: Store) -> pd.DataFrame:
    """Every run, newest first, with its `label` (app/labels.py) and `preset` (a core preset or '')."""
    def compute() -> pd.DataFrame:
        frame = store.df(RUNS_SQL)
        rows = frame.to_dict("records")
        specs = [json.loads(row["spec"]) if isinstance(row["spec"], str) and row["spec"] else {} for row in rows]
        frame["label"] = [labels.run_label({**row, "spec": spec}) for row, spec in zip(rows, specs)]
        frame["preset"] = [labels.preset_of(spec) or "" for spec in specs]
        return frame
    return store.cached(("runs",), ["runs"], compute)


def seed_groups(store: Store) -> pd.DataFrame:
    """(run_id, group, seed) of every run (app/stats.py `seed_groups`), memoised until the runs change."""
    return store.cached(("seed_groups",), ["runs"], lambda: stats.seed_groups(runs(store)))


FINAL_SQL = """
SELECT run_id, model, protocol, metric, value, step FROM metrics
WHERE split = ? AND layer IS NULL
QUALIFY step = max(step) OVER (PARTITION BY run_id, model)
"""


def final_metrics(store: Store, run_ids: list[str] | None = None, split: str = "test") -> pd.DataFrame:
    """Long rows (run_id, model, protocol, metric, value, step) of each run's last evaluation.

    One query over every run, memoised until the metrics change; `run_ids` selects from it.
    """
    every = store.cached(("final", split), ["metrics"], lambda: store.df(FINAL_SQL, [split]))
    return every if run_ids is None else every[every["run_id"].isin(list(run_ids))]


def wide_final(metrics: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """(run_id, model) x metric table of one protocol."""
    rows = metrics[metrics["protocol"] == protocol]
    if rows.empty:
        return pd.DataFrame(columns=["run_id", "model"])
    wide = rows.pivot_table(index=["run_id", "model"], columns="metric", values="value")
    order = [m for m in METRICS if m in wide.columns] + sorted(set(wide.columns) - set(METRICS))
    return wide[order].reset_index()


RANKS_SQL = """
SELECT run_id, model, protocol, user_id, rank FROM ranks
WHERE split = $split AND layer IS NULL AND list_contains($runs, run_id)
QUALIFY step = max(step) OVER (PARTITION BY run_id, model, protocol)
"""


def final_ranks(store: Store, run_ids: list[str], split: str = "test") -> pd.DataFrame:
    """Each user's 0-based target rank at each run's last evaluation (final head)."""
    ids = sorted(set(run_ids))
    return store.cached(("ranks", split, tuple(ids)), ["ranks"],
                        lambda: store.df(RANKS_SQL, {"split": split, "runs": ids}))


LAYER_SQL = """
SELECT run_id, model, layer, split, protocol, metric, value FROM metrics
WHERE layer IS NOT NULL
QUALIFY step = max(step) OVER (PARTITION BY run_id, model)
ORDER BY run_id, model, layer
"""


def layer_metrics(store: Store, run_ids: list[str]) -> pd.DataFrame:
    """Per-layer readout rows (metrics with a layer) of the given runs, at their last step."""
    every = store.cached(("layer_metrics",), ["metrics"], lambda: store.df(LAYER_SQL))
    return every[every["run_id"].isin(list(run_ids))]


def layer_runs(store: Store) -> pd.DataFrame:
    """Runs that have per-layer rows: similarity or per-layer metrics (run_id, similarity, readout)."""
    sim = store.cached(("similarity_runs",), ["similarity"], lambda: store.df(
        "SELECT run_id, count(*) AS similarity FROM similarity GROUP BY run_id"))
    every = store.cached(("layer_metrics",), ["metrics"], lambda: store.df(LAYER_SQL))
    readout = every.groupby("run_id").size().rename("readout").reset_index()
    return sim.merge(readout, on="run_id", how="outer").fillna(0)


def similarity(store: Store, run_id: str, measure: str) -> pd.DataFrame:
    """One run's rows of one measure: a_model, a_layer, b_model, b_layer, value, n."""
    return store.cached(("similarity", run_id, measure), ["similarity"], lambda: store.df(
        "SELECT a_model, a_layer, b_model, b_layer, value, n FROM similarity "
        "WHERE run_id = ? AND measure = ? ORDER BY a_model, b_model, a_layer, b_layer", [run_id, measure]))


def losses(store: Store, run_ids: list[str]) -> pd.DataFrame:
    """Loss rows (run_id, step, epoch, name, value) of the given runs."""
    ids = sorted(set(run_ids))
    return store.cached(("losses", tuple(ids)), ["losses"], lambda: store.df(
        "SELECT run_id, step, epoch, name, value FROM losses WHERE list_contains(?, run_id) "
        "ORDER BY run_id, name, step", [ids]))


def timings(store: Store, phase: str | None = None) -> pd.DataFrame:
    """Timing rows, optionally of one phase (train | inference)."""
    every = store.cached(("timings",), ["timings"], lambda: store.df("SELECT * FROM timings"))
    return every if phase is None else every[every["phase"] == phase]


def depth_sweep(store: Store, runs_frame: pd.DataFrame, metric: str, protocol: str) -> pd.DataFrame:
    """Finished teacher runs' final test metric by backbone depth, one row per run."""
    teachers = runs_frame[(runs_frame["kind"] == "teacher") & (runs_frame["status"] == "done")]
    if teachers.empty:
        return pd.DataFrame(columns=["run_id", "label", "dataset", "base", "depth", "value"])
    metrics = final_metrics(store, list(teachers["run_id"]))
    rows = metrics[(metrics["metric"] == metric) & (metrics["protocol"] == protocol) & (metrics["model"] == "teacher")]
    out = rows.merge(teachers[["run_id", "label", "dataset", "base", "teacher_depth"]], on="run_id")
    return out.rename(columns={"teacher_depth": "depth"})[["run_id", "label", "dataset", "base", "depth", "value"]]


def sasrec_reference(store: Store, runs_frame: pd.DataFrame, run_ids: list[str], metric: str,
                     protocol: str) -> float | None:
    """The final test metric of the SASRec run behind these runs (the first one that has it)."""
    by_id = runs_frame.set_index("run_id")
    candidates = [by_id.at[r, "sasrec_run"] for r in run_ids if r in by_id.index and by_id.at[r, "sasrec_run"]]
    candidates += [r for r in run_ids if r in by_id.index and by_id.at[r, "kind"] == "sasrec"]
    if not candidates:
        return None
    rows = final_metrics(store, candidates)
    rows = rows[(rows["model"] == "sasrec") & (rows["metric"] == metric) & (rows["protocol"] == protocol)]
    return float(rows["value"].iloc[0]) if not rows.empty else None
