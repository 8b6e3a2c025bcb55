"""The Results page's tables: the reproduction table, the config diff, and the frames its charts plot.

Rows are units (app/stats.py): single runs, or seed groups shown as mean ± std over their seeds.
"""

from __future__ import annotations

import json

import pandas as pd

from app import stats

# The paper's table (SLMRec, ICLR 2025): sampled 1+999, percent (HR@1 / MRR), Amazon Movies and TV.
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


def run_ids(members: pd.DataFrame) -> dict[str, str]:
    """unit -> its run ids, ';'-separated (a seed group has one run per seed)."""
    return members.groupby("unit", sort=False)["run_id"].agg(";".join).to_dict()


def export(frame: pd.DataFrame, members: pd.DataFrame) -> pd.DataFrame:
    """A unit-keyed frame for CSV: each row's label and run ids first, so a row names its runs."""
    names = dict(zip(members["unit"], members["unit_label"]))
    out = frame.drop(columns=["label", "run_ids"], errors="ignore")
    out.insert(0, "run_ids", out["unit"].map(run_ids(members)))
    out.insert(0, "label", out["unit"].map(names))
    return out


def paired_export(paired: pd.DataFrame, members: pd.DataFrame, unit_a: str, unit_b: str) -> pd.DataFrame:
    """The paired table for CSV: which runs are A and which are B, by label and run ids."""
    names, ids = dict(zip(members["unit"], members["unit_label"])), run_ids(members)
    sides = {"A label": names[unit_a], "A run_ids": ids[unit_a], "B label": names[unit_b], "B run_ids": ids[unit_b]}
    return paired.assign(**sides)


def flatten(value, prefix: str = "") -> dict:
    """A nested spec as {'section.field': value} (lists and dicts as JSON text)."""
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}{key}."))
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
        values = flatten({"kind": row["kind"], **json.loads(row["spec"] or "{}")})
        keep = RELEVANT.get(row["kind"], ("",))
        flat[row["label"]] = {k: v for k, v in values.items() if k.startswith(keep)}
    frame = pd.DataFrame(flat)
    if frame.empty or len(flat) < 2:
        return frame.reset_index(names="setting")
    text = frame.map(lambda v: None if v is None or v != v else str(v))  # v != v: NaN, a setting not used
    differs = (text.nunique(axis=1) > 1) | (frame.index == "kind")
    return frame[differs].reset_index(names="setting")


def parallel_frame(runs: pd.DataFrame, metrics: pd.DataFrame, metric: str, members: pd.DataFrame) -> pd.DataFrame:
    """The picked teacher and student units (`members`, app/stats.py): depths, blocks, lambdas, lr and the final
    full-ranking metric, one line per unit (a seed group's line is the mean over its seeds)."""
    trained = runs[runs["kind"].isin(["teacher", "student"]) & (runs["status"] == "done")]
    final = metrics[(metrics["protocol"] == "full") & (metrics["metric"] == metric)]
    final = final[final["model"] == final["run_id"].map(dict(zip(runs["run_id"], runs["kind"])))]
    frame = members[["run_id", "unit", "unit_label"]].merge(trained, on="run_id").merge(final[["run_id", "value"]],
                                                                                         on="run_id")
    if frame.empty:
        return frame
    value = frame.groupby("unit")["value"].mean()
    frame = frame.drop_duplicates("unit").assign(value=lambda f: f["unit"].map(value))
    teacher = frame["kind"] == "teacher"
    return pd.DataFrame({
        "run": frame["unit_label"], "run_ids": frame["unit"].map(run_ids(members)),
        "teacher layers": frame["teacher_depth"],
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
