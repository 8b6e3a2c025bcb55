"""One readable label per run, used by every page, chart and CSV export.

A label carries what tells runs apart: the kind and depths, distilled or not (every λ = 0 is
"no distillation"), the base model, the preset or training budget, the dataset, the seed, the
name, the time and the id's end, e.g.
'student 2←4 no distillation · tiny · toy · seed 0 · 07-03 12:00 · 824faf'. A pretrained
analysis names its base: 'analysis of smollm2 (pretrained) · …'.

`run_label` reads one row of the runs view (app/queries.py): run_id, kind, name, created_at, the
spec as JSON text or a dict, and, for a student, `teacher_depth` (its teacher run's depth).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from core.config import PRESETS

# The settings each kind's result depends on, where a preset can set them (depth, blocks and the
# lambdas are shown in the label's head, so they do not make a run "not the preset").
PRESET_SECTIONS = {"sasrec": ("data", "sasrec"), "teacher": ("data", "train", "backbone"),
                   "student": ("data", "train", "backbone"), "analysis": ("data", "backbone")}
NOT_BUDGET = {("backbone", "depth"), ("train", "log_every")}  # shown in the head; not a budget


def _spec(run: Mapping) -> dict:
    spec = run.get("spec")
    if isinstance(spec, str) and spec:
        try:
            return json.loads(spec)
        except ValueError:
            return {}
    return dict(spec) if isinstance(spec, Mapping) else {}


def _known(value) -> bool:
    return value is not None and not (isinstance(value, float) and pd.isna(value))


def base_name(base: str) -> str:
    """'smollm2', 'tiny', or a local model folder's name."""
    return Path(str(base)).name or str(base)


def preset_of(spec: dict) -> str | None:
    """The core preset whose budget settings this spec has (none when the form changed one)."""
    kind = spec.get("kind", "")
    for name, preset in PRESETS.items():
        pairs = [(section, key, value) for section in PRESET_SECTIONS.get(kind, ())
                 for key, value in preset.get(section, {}).items() if (section, key) not in NOT_BUDGET]
        if pairs and all(spec.get(section, {}).get(key) == value for section, key, value in pairs):
            return name
    return None


def budget(spec: dict) -> str:
    """The preset's name, else the training budget: '3 ep', '1 ep ≤4 steps', plus '64 users' if capped."""
    preset = preset_of(spec)
    if preset:
        return preset
    kind, train = spec.get("kind"), spec.get("train", {})
    parts = []
    epochs = spec.get("sasrec", {}).get("epochs") if kind == "sasrec" else train.get("epochs")
    if kind in ("sasrec", "teacher", "student") and epochs:
        parts.append(f"{epochs} ep" + (f" ≤{train['max_steps']} steps" if train.get("max_steps") else ""))
    users = spec.get("data", {}).get("max_users")
    if users:
        parts.append(f"{users} users")
    return ", ".join(parts)


def _head(run: Mapping, spec: dict) -> str:
    kind = run.get("kind") or spec.get("kind", "run")
    backbone, distill = spec.get("backbone", {}), spec.get("distill", {})
    if kind == "teacher":
        return f"teacher L{backbone.get('depth', '?')}"
    if kind == "student":
        teacher = run.get("teacher_depth")
        teacher = int(teacher) if _known(teacher) else "?"
        lambdas = [distill.get(k, 0) for k in ("lambda_cos", "lambda_norm", "lambda_sup")]
        how = "no distillation" if all(v == 0 for v in lambdas) else "distilled"
        return f"student {backbone.get('depth', '?')}←{teacher} {how}"
    if kind == "analysis":
        analysis = spec.get("analysis", {})
        if not analysis.get("run"):
            return f"analysis of {base_name(backbone.get('base', '?'))} (pretrained)"
        against = f" vs ·{analysis['against'][-6:]}" if analysis.get("against") else ""
        return f"analysis of ·{analysis['run'][-6:]}{against}"
    if kind == "drop":  # e.g. 'drop 2 (angular) of ·abc123 healed 50', 'drop layers 3, 4 of ·abc123'
        drop = spec.get("drop", {})
        what = (f"layers {', '.join(map(str, drop.get('layers', ())))}" if drop.get("rule") == "list"
                else f"{drop.get('n', '?')} ({drop.get('rule', '?')})")
        healed = f" healed {drop['heal_steps']}" if drop.get("heal_steps") else ""
        return f"drop {what} of ·{str(drop.get('run', ''))[-6:]}{healed}"
    return str(kind)


def _settings(run: Mapping, spec: dict) -> list[str]:
    """The label's parts that name the settings: head, base and budget, dataset."""
    kind = run.get("kind") or spec.get("kind")
    model = base_name(spec.get("backbone", {}).get("base", "")) if kind in ("teacher", "student") else ""
    size = " ".join(dict.fromkeys(p for p in (model, budget(spec)) if p))  # 'tiny', not 'tiny tiny'
    return [_head(run, spec), size, str(spec.get("data", {}).get("dataset", ""))]


def _name(run: Mapping) -> list[str]:
    name = run.get("name")
    return [f"“{name}”"] if isinstance(name, str) and name else []


def run_label(run: Mapping) -> str:
    """e.g. 'teacher L4 · tiny · toy · seed 0 · 07-03 12:00 · 824faf' (see the module docstring)."""
    spec = _spec(run)
    parts = _settings(run, spec) + [f"seed {spec.get('train', {}).get('seed', 0)}"] + _name(run)
    created = run.get("created_at")
    if _known(created) and created != "":
        parts.append(pd.Timestamp(created).strftime("%m-%d %H:%M"))
    parts.append(str(run.get("run_id", ""))[-6:])
    return " · ".join(p for p in parts if p)


def group_label(run: Mapping, seeds: list[int], key: str) -> str:
    """A seed group's label from one of its runs: 'teacher L4 · tiny · toy · seeds 0, 1, 2 · <key's start>'."""
    seeds_text = "seeds " + ", ".join(str(s) for s in sorted(seeds))
    return " · ".join(p for p in _settings(run, _spec(run)) + [seeds_text] + _name(run) + [key[:6]] if p)


def settings_label(run: Mapping) -> str:
    """The label's settings without the kind: 'tiny · toy · seed 0' (for groups of runs of one kind)."""
    spec = _spec(run)
    parts = _settings(run, spec)[1:] + [f"seed {spec.get('train', {}).get('seed', 0)}"]
    return " · ".join(p for p in parts if p)


def label_map(runs: pd.DataFrame) -> dict[str, str]:
    """run_id -> run_label for every row of a runs frame (its `label` column where app/queries.py made one)."""
    if "label" in runs.columns:
        return dict(zip(runs["run_id"], runs["label"]))
    return {row["run_id"]: run_label(row) for row in runs.to_dict("records")}


def with_labels(frame: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """`frame` (with a run_id column) with each row's run label beside its run id, for exports."""
    names = label_map(runs[runs["run_id"].isin(set(frame["run_id"]))])
    out = frame.drop(columns=["label"], errors="ignore")
    out.insert(list(out.columns).index("run_id") + 1, "label", out["run_id"].map(names))
    return out
