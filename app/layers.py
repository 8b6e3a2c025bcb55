"""What the Layers page needs beyond plain queries: aligned block pairs, per-model groupings, what an
analysis run looked at, the model names it writes, and the depth sweep's groups of comparable teachers."""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd

from app import labels, results
from core.config import ConfigError, block_pairs, from_dict, settings_hash

# The model names of the analysis stage's rows (core/stages/analysis.py), for the page's words.
MODEL_NAMES = {
    "base": "the pretrained LLM alone, before any training for recommendation",
    "teacher": "the deeper trained model (E4SRec over the LLM's first M layers)",
    "student": "the shallower model distilled from the teacher",
    "student-adapter": "the student's block adapters: the small trained maps at each block boundary that rank "
                       "items from that layer's state (the multiple-supervision term λ3)",
    "teacher2": "a second teacher run", "student2": "a second student run",
}
STATES = ("A layer's *state* is the hidden vector at the last prompt position after that layer (the residual "
          "stream), one per analysed user (test or validation users: the line above says which); the measures "
          "compare those vectors across users.")


def analysed(runs: pd.DataFrame, run_id: str) -> dict:
    """The teacher/student behind an analysis run: ids, depths and blocks (None where unknown)."""
    by_id = runs.set_index("run_id")
    row = by_id.loc[run_id]
    ids = [row["analysis_run"], row["analysis_against"]] if row["kind"] == "analysis" else [run_id]
    found = {"teacher": None, "student": None}
    for rid in ids:
        if isinstance(rid, str) and rid in by_id.index and by_id.at[rid, "kind"] in found:
            found[by_id.at[rid, "kind"]] = rid
    student = found["student"]
    if student and not found["teacher"]:
        teacher = by_id.at[student, "teacher_run"]
        found["teacher"] = teacher if isinstance(teacher, str) and teacher in by_id.index else None
    info = {**found, "teacher_depth": None, "student_depth": None, "blocks": None}
    if student:
        for key in ("teacher_depth", "student_depth", "blocks"):
            value = by_id.at[student, key]
            info[key] = int(value) if pd.notna(value) else None
    elif found["teacher"]:
        value = by_id.at[found["teacher"], "teacher_depth"]
        info["teacher_depth"] = int(value) if pd.notna(value) else None
    return info


def pairs_for(a_model: str, b_model: str, info: dict) -> list[tuple[int, int]] | None:
    """Aligned pairs in (a_layer, b_layer) order for a teacher x student heatmap, else None."""
    known = None not in (info["teacher_depth"], info["student_depth"], info["blocks"])
    if {a_model, b_model} != {"teacher", "student"} or not known:
        return None
    pairs = block_pairs(info["teacher_depth"], info["student_depth"], info["blocks"])
    return pairs if a_model == "teacher" else [(s, t) for t, s in pairs]


def order(a_model: str, b_model: str) -> tuple:
    """Heatmaps in reading order: within each model (teacher first), then across models."""
    rank = {"base": 0, "teacher": 1, "student": 2}
    return (a_model != b_model, rank.get(a_model, 3), rank.get(b_model, 3), a_model, b_model)


def glossary(models) -> str:
    """'**base**: …' lines for the model names shown."""
    return "  \n".join(f"**{m}**: {MODEL_NAMES[m]}" for m in sorted(set(models), key=order_key) if m in MODEL_NAMES)


def order_key(model: str) -> int:
    return list(MODEL_NAMES).index(model) if model in MODEL_NAMES else len(MODEL_NAMES)


def subject(runs: pd.DataFrame, run_id: str, info: dict) -> str:
    """What an analysis run looked at, in words (a pretrained analysis names its base)."""
    row = runs.set_index("run_id").loc[run_id]
    spec = json.loads(row["spec"] or "{}")
    names = labels.label_map(runs[runs["run_id"].isin([info["teacher"], info["student"]])])
    if row["kind"] == "analysis" and not row["analysis_run"]:
        base = labels.base_name(spec.get("backbone", {}).get("base", "?"))
        return (f"The pretrained {base} alone, all its decoder layers, before any training: its states are "
                "shown as **base**. There is no teacher or student in this run.")
    parts = [f"{role}: {names[info[role]]}" for role in ("teacher", "student") if info[role] in names]
    text = " · ".join(parts + [f"blocks: {info['blocks']}"] if info["blocks"] else parts) or "no trained run found"
    split = spec.get("analysis", {}).get("split", "test")
    # a drop run's rules read an analysis on the valid split: its states are of validation users
    return text if split == "test" else f"{text} · measured on the **{split}** users, not the test users"


def sweep_key(spec_json: str) -> str:
    """A teacher's settings hash with its depth (and its SASRec run's id) left out: teachers with the same key
    differ only in depth (base, data settings, training budget and seed are the same)."""
    try:
        spec = from_dict(json.loads(spec_json))
    except (ConfigError, ValueError, TypeError):
        return spec_json
    return settings_hash(replace(spec, backbone=replace(spec.backbone, depth=1), sasrec_run=""))


def sweep_groups(sweep: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The depth sweep's rows with `group` (sweep_key) and `group_label`: the group's settings, the settings on
    which the groups differ, its depths, e.g. 'tiny · toy · seed 0 · data.max_len=1 · depths 1, 2, 4 · 3f2a1c'."""
    specs = dict(zip(runs["run_id"], runs["spec"]))
    frame = sweep.assign(group=sweep["run_id"].map(lambda r: sweep_key(specs.get(r) or "{}")))
    first = frame.drop_duplicates("group")
    differs = _differences({g: json.loads(specs.get(r) or "{}") for g, r in zip(first["group"], first["run_id"])})
    # each group's first run as a plain dict, picked in one pass (a row lookup per group cost ~5 ms each)
    first_runs = {r["run_id"]: r for r in runs[runs["run_id"].isin(set(first["run_id"]))].to_dict("records")}
    names = {}
    for group, rows in frame.groupby("group", sort=False):
        run = first_runs[rows["run_id"].iloc[0]]
        depths = ", ".join(str(int(d)) for d in sorted(rows["depth"].unique()))
        names[group] = " · ".join([labels.settings_label(run), *differs[group], f"depths {depths}", group[:6]])
    return frame.assign(group_label=frame["group"].map(names))


# Settings that are shown elsewhere in a group's label, do not apply to a teacher, or change speed only.
SWEEP_IGNORED = ("name", "backbone.depth", "sasrec_run", "train.seed", "distill.", "analysis.", "depths",
                 "train.device", "train.compile", "train.nproc_per_node", "train.eval_batch_size")


def _differences(specs: dict[str, dict], most: int = 3) -> dict[str, list[str]]:
    """group -> 'section.field=value' for the settings on which the groups' specs disagree (at most `most`)."""
    flat = {g: {k: v for k, v in results.flatten(spec).items() if not k.startswith(SWEEP_IGNORED)}
            for g, spec in specs.items()}
    keys = sorted({k for values in flat.values() for k in values})
    varying = [k for k in keys if len({repr(values.get(k)) for values in flat.values()}) > 1][:most]
    return {g: [f"{k}={values.get(k)}" for k in varying] for g, values in flat.items()}


def default_group(groups: pd.DataFrame) -> str | None:
    """The group with the most depths: the sweep most worth drawing."""
    if groups.empty:
        return None
    count = groups.groupby("group", sort=False)["depth"].nunique()
    return count.idxmax()
