"""A run's settings as the Launch form's values ("Clone into Launch" on the Runs page).

A launch is a pipeline (sasrec -> teacher -> student -> analysis), so a clone takes the values the
form sets from the run and from the runs it links: a student gives its teacher's depth and epochs
from its teacher run; an analysis clones the student (or teacher) it analysed; a teacher or a
SASRec run keeps the form's defaults for what it does not have. Settings the form cannot set come
from the preset choice, so the choice is the one whose specs differ least from the run's; what
still differs is listed, so the user knows the form cannot recreate that part exactly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields, replace

import pandas as pd

from app import launch
from core.jobs import planning
from core.config import ConfigError, to_dict, valid_blocks

# LaunchSettings field -> where a run's spec keeps it (fields missing from the form are skipped).
SHARED = {"dataset": ("data", "dataset"), "max_len": ("data", "max_len"), "train_targets": ("data", "train_targets"),
          "n_negatives": ("data", "n_negatives"), "base": ("backbone", "base"), "training": ("backbone", "training"),
          "lr": ("train", "lr"), "batch_size": ("train", "batch_size"), "device": ("train", "device"),
          "seed": ("train", "seed"), "mask_history": ("rec", "mask_history")}
TEACHER = {"teacher_depth": ("backbone", "depth"), "teacher_epochs": ("train", "epochs")}
STUDENT = {"student_depth": ("backbone", "depth"), "student_epochs": ("train", "epochs"),
           "layer_selection": ("backbone", "layer_selection"), "blocks": ("distill", "blocks"),
           "lambda_cos": ("distill", "lambda_cos"), "lambda_norm": ("distill", "lambda_norm"),
           "lambda_sup": ("distill", "lambda_sup")}
LINKS = {("name",), ("sasrec_run",), ("distill", "teacher_run"), ("analysis", "run"), ("analysis", "against")}


class CloneError(ValueError):
    """The run has nothing the Launch form can recreate (e.g. an analysis of the pretrained model)."""


def _spec(runs: pd.DataFrame, run_id: str | None) -> dict:
    if not run_id:
        return {}
    rows = runs.loc[runs["run_id"] == run_id, "spec"]
    return json.loads(rows.iloc[0]) if len(rows) and isinstance(rows.iloc[0], str) else {}


def _values(spec: dict, table: dict) -> dict:
    known = {f.name for f in fields(launch.LaunchSettings)}
    return {k: spec[s][f] for k, (s, f) in table.items() if k in known and f in spec.get(s, {})}


def _flat(spec: dict, prefix: tuple = ()) -> dict:
    out = {}
    for key, value in spec.items():
        if isinstance(value, dict):
            out |= _flat(value, prefix + (key,))
        elif prefix + (key,) not in LINKS:
            out[".".join(prefix + (key,))] = value
    return out


def differences(run_spec: dict, built: dict) -> list[str]:
    """'section.field: run value (form gives value)' for each setting the built spec does not match."""
    run, form = _flat(run_spec), _flat(built)
    return [f"{k}: {run.get(k)!r} (the form gives {form.get(k)!r})" for k in sorted(set(run) | set(form))
            if run.get(k) != form.get(k) and not (isinstance(run.get(k), list) and tuple(run[k]) == form.get(k))]


def _built(settings: launch.LaunchSettings, kind: str) -> dict:
    plan = launch.build_plan(settings)
    spec = {"teacher": plan.teacher, "student": plan.student, "sasrec": planning.sasrec_parent(plan.teacher)}[kind]
    return to_dict(spec)


def _fit_student(s: launch.LaunchSettings) -> launch.LaunchSettings:
    """A teacher or SASRec clone keeps the form's student where it fits the cloned teacher depth."""
    student = min(s.student_depth, max(1, s.teacher_depth // 2))
    return replace(s, student_depth=student,
                   blocks=max(b for b in valid_blocks(s.teacher_depth, student) if b <= max(1, s.blocks)))


def launch_values(runs: pd.DataFrame, run_id: str) -> tuple[dict, list[str]]:
    """(LaunchSettings fields as a dict, the settings the form cannot match) for cloning `run_id`."""
    spec = _spec(runs, run_id)
    if spec.get("kind") == "analysis":
        target = spec.get("analysis", {}).get("run")
        if not target:
            raise CloneError("an analysis of the pretrained model trains nothing: the Launch form has no such run")
        spec = _spec(runs, target)
    kind = spec.get("kind")
    if kind not in ("sasrec", "teacher", "student"):
        raise CloneError(f"run {run_id}: cannot clone a run of kind {kind!r} (its spec is missing or unreadable)")
    teacher = _spec(runs, spec.get("distill", {}).get("teacher_run")) if kind == "student" else spec
    values = _values(spec, SHARED) | _values(teacher, TEACHER)
    values |= _values(spec, STUDENT) if kind == "student" else {}
    values["name"] = spec.get("name", "")
    best = None
    for choice in launch.CHOICES:
        settings = replace(launch.defaults(choice, values["dataset"]), **values)
        settings = settings if kind == "student" else _fit_student(settings)
        try:
            missed = differences(spec, _built(settings, kind))
        except ConfigError:  # e.g. the preset's blocks do not divide the cloned teacher's depth
            continue
        if best is None or len(missed) < len(best[1]):
            best = (settings, missed)
    if best is None:
        raise CloneError(f"run {run_id}: its settings are not valid for the Launch form")
    return asdict(best[0]), best[1]
