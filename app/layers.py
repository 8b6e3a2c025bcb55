"""What the Layers page needs beyond plain queries: aligned block pairs and per-model groupings."""

from __future__ import annotations

import pandas as pd


def aligned_pairs(teacher_depth: int, student_depth: int, blocks: int) -> list[tuple[int, int]]:
    """(teacher layer k*m, student layer k*n) for k = 1..B (PAPER.md section 4)."""
    m, n = teacher_depth // blocks, student_depth // blocks
    return [(k * m, k * n) for k in range(1, blocks + 1)]


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
    pairs = aligned_pairs(info["teacher_depth"], info["student_depth"], info["blocks"])
    return pairs if a_model == "teacher" else [(s, t) for t, s in pairs]


def order(a_model: str, b_model: str) -> tuple:
    """Heatmaps in reading order: within each model (teacher first), then across models."""
    rank = {"base": 0, "teacher": 1, "student": 2}
    return (a_model != b_model, rank.get(a_model, 3), rank.get(b_model, 3), a_model, b_model)
