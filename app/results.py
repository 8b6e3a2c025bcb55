"""The Results page's tables: the reproduction table, the config diff, and the frames its charts plot.

Rows are units (app/stats.py): single runs, or seed groups shown as mean ± std over their seeds.
"""

from __future__ import annotations

import json

import pandas as pd

from app import stats

# PAPER.md section 6: sampled 1+999, percent (HR@1 / MRR), Amazon Movies and TV.
PAPER_MOVIE = {"SASRec": (5.57, 12.08), "E4SRec, 32 layers": (14.74, 19.74), "E4SRec, 8 layers": (13.32, 18.46),
               "E4SRec, 4 layers": (11.80, 17.20), "SLMRec 4←8": (15.29, 20.36)}
REPRO_COLUMNS = [("sampled", "HR@1"), ("sampled", "HR@5"), ("sampled", "NDCG@5"), ("sampled", "MRR"),
                 ("full", "HR@10"), ("full", "NDCG@10"), ("full", "MRR")]


def paper_name(row) -> str:
    """The paper's name for a run: SASRec, E4SRec L layers, SLMRec s←t (a student with all λ = 0 is E4SRec)."""
    if row["kind"] == "sasrec":
        return "SASRec"
    if row["kind"] == "teacher":
        return f"E4SRec, {int(row['teacher_depth'])} layers" if pd.notna(row["teacher_depth"]) else "E4SRec"
    lambdas = [row[k] for k in ("lambda_cos", "lambda_norm", "lambda_sup")]
    depth = int(row["student_depth"]) if pd.notna(row["student_depth"]) else "?"
    if all(pd.notna(v) and v == 0 for v in lambdas):
        return f"E4SRec, {depth} layers (student, no distillation)"
    teacher = int(row["teacher_depth"]) if pd.notna(row["teacher_depth"]) else "?"
    return f"SLMRec {depth}←{teacher}"


def reproduction_table(units: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """One row per unit (app/stats.py) in the paper's terms; percent (mean ± std over seeds), paper values beside."""
    rows = []
    for _, unit in units.iterrows():
        mine = summary[(summary["unit"] == unit["unit"]) & (summary["model"] == unit["kind"])]
        values = {(p, m): (mean, std, n) for p, m, mean, std, n in
                  zip(mine["protocol"], mine["metric"], mine["mean"], mine["std"], mine["n"])}
        name = paper_name(unit)
        row = {"model": name, "run": unit["label"], "dataset": unit["dataset"], "seeds": int(unit["n"])}
        row.update({f"{m} ({p}) %": stats.cell(*values[(p, m)], digits=2, scale=100) if (p, m) in values else None
                    for p, m in REPRO_COLUMNS})
        paper = PAPER_MOVIE.get(name.split(" (")[0])
        row["paper Movie HR@1 / MRR (sampled) %"] = f"{paper[0]:.2f} / {paper[1]:.2f}" if paper else ""
        rows.append(row)
    return pd.DataFrame(rows)


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: json.dumps(value) if isinstance(value, (list, dict)) else value}


# The spec sections that change each kind's result (a SASRec run carries default backbone settings
# it never reads; showing them as differences would mislead).
RELEVANT = {"sasrec": ("kind", "data.", "sasrec.", "train.seed", "train.device", "train.max_steps", "train.eval_users"),
            "teacher": ("kind", "data.", "train.", "backbone.", "rec.", "sasrec_run"),
            "student": ("kind", "data.", "train.", "backbone.", "rec.", "sasrec_run", "distill."),
            "analysis": ("kind", "analysis.", "data.", "backbone.base", "rec.prompt")}


def config_diff(runs: pd.DataFrame) -> pd.DataFrame:
    """Setting x run: the settings on which the runs that use them disagree (blank: not used by that kind)."""
    flat = {}
    for _, row in runs.iterrows():
        values = _flatten({"kind": row["kind"], **json.loads(row["spec"] or "{}")})
        keep = RELEVANT.get(row["kind"], ("",))
        flat[row["label"]] = {k: v for k, v in values.items() if k.startswith(keep)}
    frame = pd.DataFrame(flat)
    if frame.empty or len(flat) < 2:
        return frame.reset_index(names="setting")
    text = frame.map(lambda v: None if v is None or v != v else str(v))  # v != v: NaN, a setting not used
    differs = (text.nunique(axis=1) > 1) | (frame.index == "kind")
    return frame[differs].reset_index(names="setting")


def parallel_frame(runs: pd.DataFrame, metrics: pd.DataFrame, metric: str,
                   groups: pd.DataFrame | None = None) -> pd.DataFrame:
    """Finished teacher and student runs: depths, blocks, lambdas, lr and the final full-ranking metric.

    With `groups` (app/stats.py `seed_groups`), one line per seed group: the metric's mean over its seeds.
    """
    trained = runs[runs["kind"].isin(["teacher", "student"]) & (runs["status"] == "done")]
    final = metrics[(metrics["protocol"] == "full") & (metrics["metric"] == metric)]
    final = final[final["model"] == final["run_id"].map(dict(zip(runs["run_id"], runs["kind"])))]
    frame = trained.merge(final[["run_id", "value"]], on="run_id")
    if frame.empty:
        return frame
    if groups is not None:
        frame = frame.merge(groups[["run_id", "group"]], on="run_id", how="left")
        frame["group"] = frame["group"].fillna(frame["run_id"])
        value = frame.groupby("group")["value"].mean()
        frame = frame.drop_duplicates("group").assign(value=lambda f: f["group"].map(value))
    teacher = frame["kind"] == "teacher"
    return pd.DataFrame({
        "run": frame["label"], "teacher layers": frame["teacher_depth"],
        "student layers": frame["student_depth"].where(~teacher, frame["teacher_depth"]),
        "blocks": frame["blocks"].fillna(0), "λ1 cos": frame["lambda_cos"].where(~teacher, 0),
        "λ2 norm": frame["lambda_norm"].where(~teacher, 0), "λ3 sup": frame["lambda_sup"].where(~teacher, 0),
        "lr": frame["lr"], metric: frame["value"]}).fillna(0)


def tradeoff_frame(units: pd.DataFrame, table: pd.DataFrame, timings: pd.DataFrame,
                   members: pd.DataFrame) -> pd.DataFrame:
    """Units with inference parameters, inference seconds (mean over the unit's runs) and the metric's interval."""
    seconds = timings.groupby("run_id")["seconds"].sum()
    infer = members.assign(inference_s=members["run_id"].map(seconds)).groupby("unit")["inference_s"].mean()
    full = table[table["protocol"] == "full"][["unit", "model", "value", "std", "seeds", "ci_low", "ci_high"]]
    frame = full.merge(units[["unit", "label", "kind", "inference_params"]], on="unit")
    frame = frame[frame["model"] == frame["kind"]].assign(inference_s=lambda f: f["unit"].map(infer))
    names = {row["unit"]: paper_name(row) for _, row in units.iterrows()}
    return frame.assign(short=frame["unit"].map(names)).dropna(subset=["inference_params"])
