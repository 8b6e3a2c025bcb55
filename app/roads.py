"""The data of "Roads to a small recommender" (Layers page): every way from one trained run to fewer layers.

The *source* is a finished teacher (or student). A *road* is one way to a shallower model of it:
- its drop runs (kind "drop", drop.run == source), the same weights with layers removed and no
  retraining (model "drop"): truncation (rule last), block-influence drop, angular drop, and the
  layers a user picked (rule list); each also healed by a short LoRA fine-tune when
  drop.heal_steps > 0 (model "drop-healed", its own road per number of steps);
- its students (distill.teacher_run == source), trained at their own depth: SLMRec (any λ > 0)
  and no distillation (every λ = 0).
The source at its depth and its SASRec run are the reference lines. Each point is the newest
finished run of its road at that number of kept layers. Values and 95% intervals resample test
users from the stored ranks with app/stats.py, so they are the Results page's numbers.
"""

from __future__ import annotations

import json

import pandas as pd

from app import queries, stats
from app.context import Store

RULE_ROADS = {"last": "truncation", "influence": "block-influence drop", "angular": "angular drop",
              "list": "picked layers"}
STUDENT_ROADS = {True: "SLMRec student", False: "no-distillation student"}
HEALED = ", healed"
ROAD_TEXT = {
    "truncation": "drop the last n layers (the baseline: the first layers alone, as a shallower teacher would "
                  "keep them, without retraining).",
    "block-influence drop": "drop the n layers whose output changes their input least (lowest block influence, "
                            "ShortGPT, Men et al. 2024), no retraining.",
    "angular drop": "drop the run of n consecutive layers whose input and output are closest in angle (Gromov et "
                    "al. 2024), no retraining.",
    "picked layers": "drop the layers you picked, no retraining.",
    "healed": "the same dropped model after a short LoRA fine-tune (its steps in the name) with the usual loss.",
    "SLMRec student": "a shallower model trained from the start with block-wise distillation from this teacher.",
    "no-distillation student": "the same shallower model trained on the task alone (every λ = 0).",
    "reference": "dashed: this run at its full depth, and the SASRec run whose item table it uses.",
}
COLUMNS = ["road", "kept", "run_id", "label", "model", "heal_steps", "dropped", "reference"]
SOURCE_KINDS = ("teacher", "student")


def _json(text) -> dict:
    if isinstance(text, dict):
        return text
    try:
        return json.loads(text) if isinstance(text, str) and text else {}
    except ValueError:
        return {}


def sources(runs: pd.DataFrame) -> pd.DataFrame:
    """Finished teachers and students (the runs whose layers can be dropped), newest first."""
    return runs[runs["kind"].isin(SOURCE_KINDS) & (runs["status"] == "done")]


def depth_of(runs: pd.DataFrame, run_id: str) -> int | None:
    """A teacher's or student's number of decoder layers (None when unknown)."""
    row = runs[runs["run_id"] == run_id]
    if row.empty:
        return None
    value = row["teacher_depth" if row["kind"].iloc[0] == "teacher" else "student_depth"].iloc[0]
    return int(value) if pd.notna(value) else None


def default_source(runs: pd.DataFrame, info: dict | None) -> str | None:
    """The analysed teacher (else student) when it is finished, else the newest finished teacher or student."""
    found = sources(runs)
    for role in ("teacher", "student"):
        if info and info.get(role) in set(found["run_id"]):
            return info[role]
    teachers = found[found["kind"] == "teacher"]
    return (teachers if not teachers.empty else found)["run_id"].iloc[0] if not found.empty else None


def drops(runs: pd.DataFrame, source: str) -> pd.DataFrame:
    """The drop runs of `source`, any status: run_id, status, label, rule, n, heal_steps, kept, dropped,
    analysis_run (the analysis the rule reads), created_at."""
    depth = depth_of(runs, source)
    rows = []
    for row in runs[runs["kind"] == "drop"].to_dict("records"):
        drop, result = _json(row["spec"]).get("drop", {}), _json(row["result"])
        if drop.get("run") != source:
            continue
        removed = len(drop.get("layers") or ()) if drop.get("rule") == "list" else int(drop.get("n", 0))
        kept = result.get("kept", depth - removed if depth is not None else None)
        dropped = ", ".join(str(x) for x in result.get("dropped", ()))
        rows.append({"run_id": row["run_id"], "status": row["status"], "label": row["label"],
                     "rule": drop.get("rule", ""), "n": removed, "heal_steps": int(drop.get("heal_steps", 0)),
                     "kept": kept, "dropped": dropped, "analysis_run": drop.get("analysis_run", ""),
                     "created_at": row["created_at"]})
    return pd.DataFrame(rows, columns=["run_id", "status", "label", "rule", "n", "heal_steps", "kept", "dropped",
                                       "analysis_run", "created_at"])


def watched(runs: pd.DataFrame, source: str) -> list[str]:
    """The runs the drop section shows while they move: the drop runs of `source` and the analyses they read."""
    found = drops(runs, source)
    return list(found["run_id"]) + [r for r in found["analysis_run"] if r]


def _members(runs: pd.DataFrame, source: str) -> pd.DataFrame:
    """(road, kept, run_id, label, model, heal_steps, dropped, reference) of every finished run on the chart."""
    rows = []
    for d in drops(runs, source).query("status == 'done'").to_dict("records"):
        road = RULE_ROADS.get(d["rule"], d["rule"])
        rows.append({**d, "road": road, "model": "drop", "heal_steps": 0, "reference": False})
        if d["heal_steps"] > 0:
            rows.append({**d, "road": f"{road}{HEALED} ({d['heal_steps']} steps)", "model": "drop-healed",
                         "reference": False})
    done = runs[runs["status"] == "done"]
    for s in done[(done["kind"] == "student") & (done["teacher_run"] == source)].to_dict("records"):
        distilled = any(s[k] > 0 for k in ("lambda_cos", "lambda_norm", "lambda_sup"))
        rows.append({"road": STUDENT_ROADS[distilled], "kept": s["student_depth"], "run_id": s["run_id"],
                     "label": s["label"], "model": "student", "heal_steps": 0, "dropped": "", "reference": False,
                     "created_at": s["created_at"]})
    row = runs[runs["run_id"] == source].iloc[0]
    rows.append({"road": row["kind"], "kept": depth_of(runs, source), "run_id": source, "label": row["label"],
                 "model": row["kind"], "heal_steps": 0, "dropped": "", "reference": True,
                 "created_at": row["created_at"]})
    sasrec = done[(done["run_id"] == row["sasrec_run"]) & (done["kind"] == "sasrec")]
    if not sasrec.empty:
        rows.append({"road": "SASRec", "kept": None, "run_id": sasrec["run_id"].iloc[0],
                     "label": sasrec["label"].iloc[0], "model": "sasrec", "heal_steps": 0, "dropped": "",
                     "reference": True, "created_at": sasrec["created_at"].iloc[0]})
    frame = pd.DataFrame(rows)
    # the newest run per road and depth: one point each, so a road is a line
    frame = frame.sort_values("created_at", ascending=False).drop_duplicates(["road", "kept"])
    return frame[COLUMNS].reset_index(drop=True)


def points(ranks: pd.DataFrame, members: pd.DataFrame, metric: str, protocol: str,
           resamples: int = stats.DEFAULT_RESAMPLES) -> pd.DataFrame:
    """`members` with the metric's value over test users and its 95% bootstrap interval (runs without ranks
    are left out), in road order then by layers kept."""
    wanted = ranks.merge(members[["run_id", "model"]], on=["run_id", "model"])
    table = stats.metric_table(wanted[wanted["protocol"] == protocol], metric, resamples=resamples)
    out = members.merge(table[["run_id", "model", "protocol", "metric", "users", "value", "ci_low", "ci_high"]],
                        on=["run_id", "model"])
    order = {road: i for i, road in enumerate(road_order(out["road"]))}
    return out.assign(at=out["road"].map(order)).sort_values(["at", "kept"]).drop(columns="at").reset_index(drop=True)


def road_order(roads) -> list[str]:
    """Drop roads (each healed one after its unhealed one), then students, then the references."""
    fixed = [*RULE_ROADS.values(), *STUDENT_ROADS.values(), *SOURCE_KINDS, "SASRec"]

    def key(road: str) -> tuple:
        base = road.split(HEALED)[0]
        return (fixed.index(base) if base in fixed else len(fixed), HEALED in road, road)
    return sorted(set(roads), key=key)


def chart_rows(store: Store, runs: pd.DataFrame, source: str, metric: str, protocol: str) -> pd.DataFrame:
    """points() for `source` from the store, memoised until the runs or the ranks change."""
    members = _members(runs, source)
    ids = tuple(sorted(members["run_id"]))
    return store.cached(("roads", source, ids, metric, protocol), ["runs", "ranks"],
                        lambda: points(queries.final_ranks(store, list(ids)), members, metric, protocol))


def caption(shown) -> str:
    """One line per road on the chart: what it is."""
    present = {road.split(HEALED)[0] for road in shown}
    lines = [f"**{road}**: {text}" for road, text in ROAD_TEXT.items() if road in present]
    if any(HEALED in road for road in shown):
        lines.append(f"**healed** (dotted): {ROAD_TEXT['healed']}")
    return "  \n".join(lines + [f"**reference lines**: {ROAD_TEXT['reference']}"])
