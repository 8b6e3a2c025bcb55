"""A synthetic results store for app tests and the page benchmark: pipelines of finished runs.

`build_store(root, pipelines, valid_steps)` writes data/runs/ under `root` with, per pipeline, a
sasrec, a teacher, a student and an analysis run (specs from core.config presets, linked as
core.jobs.planning links them), and their metrics, ranks, losses, similarity and timings rows through
EventWriter.append_columns. Values are random but shaped like real ones (deeper is a bit better).
Plus one running, one queued, one failed run. Also a toy dataset in data/raw/toy/toy.csv.

`build_seed_store(root)` writes seed groups with planted ranks instead, for the Results page's
seed-aggregation and paired-comparison tests (their numbers can be worked out by hand).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.config import apply_preset, settings_hash, to_dict
from core.eval.metrics import METRICS, metrics_from_ranks
from core.store import runs as run_store
from core.store.events import EventWriter
from core.store.paths import Paths

PROTOCOLS = ("full", "sampled")
LOSSES = ("total", "ce", "cos", "norm", "ms", "lr", "grad_norm")


def write_toy_csv(root: Path, users: int = 60, items: int = 30, seed: int = 0) -> Path:
    """data/raw/toy/toy.csv: users walk through items mostly in order (as tests/conftest.py)."""
    rng = np.random.default_rng(seed)
    rows = ["user,item,timestamp,rating"]
    for u in range(users):
        item = int(rng.integers(1, items + 1))
        for t in range(int(rng.integers(6, 14))):
            rows.append(f"u{u},i{item},{1000 + 10 * t},{int(rng.integers(1, 6))}")
            item = item % items + 1 if rng.random() < 0.8 else int(rng.integers(1, items + 1))
    path = root / "data" / "raw" / "toy" / "toy.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")
    return path


def _create(paths: Paths, spec, status: str = "done", parent: str | None = None, **state) -> str:
    run_id = run_store.create_run(paths.runs, to_dict(spec), spec.kind, spec.name, parent, settings_hash(spec))
    run_store.update_state(paths.runs, run_id, status=status, phase=status, progress=1.0 if status == "done" else 0.4,
                           device="cpu", started_at=run_store.now_iso(), **state)
    return run_id


def _metric_columns(rng, steps: np.ndarray, split: str, model: str, quality: float, layer=None) -> dict:
    """metrics rows: every step x protocol x metric, values growing with step and `quality`."""
    n = len(steps) * len(PROTOCOLS) * len(METRICS)
    step = np.repeat(steps, len(PROTOCOLS) * len(METRICS))
    protocol = np.tile(np.repeat(PROTOCOLS, len(METRICS)), len(steps))
    metric = np.tile(METRICS, len(steps) * len(PROTOCOLS))
    base = np.tile(np.linspace(0.02, 0.3, len(METRICS)), len(steps) * len(PROTOCOLS))
    growth = 1 - 0.5 * np.exp(-step / max(1, steps.max() / 3))
    value = base * quality * growth * (1 + 0.5 * (protocol == "sampled")) + rng.normal(0, 0.002, n)
    return {"step": step.astype(np.int64), "split": [split] * n, "protocol": protocol.astype(object),
            "model": [model] * n, "layer": np.full(n, -1 if layer is None else layer, dtype=np.int32),
            "metric": metric.astype(object), "value": value}


def _write_trained(paths: Paths, run_id: str, model: str, quality: float, rng, valid_steps: int,
                   users: int, tiny: bool) -> None:
    with EventWriter(paths.run_dir(run_id)) as events:
        steps = np.arange(1, valid_steps + 1, dtype=np.int64)
        for split, at in (("valid", steps), ("test", steps[-1:])):
            cols = _metric_columns(rng, at, split, model, quality)
            cols["layer"] = [None] * len(cols["step"])
            events.append_columns("metrics", cols)
        for protocol, scale in (("full", 60.0 / quality), ("sampled", 15.0 / quality)):
            ranks = rng.geometric(1 / scale, users).astype(np.int64) - 1
            events.append_columns("ranks", {"step": np.full(users, steps[-1]), "split": ["test"] * users,
                                            "protocol": [protocol] * users, "model": [model] * users,
                                            "layer": [None] * users, "user_id": np.arange(users), "rank": ranks})
        names = LOSSES if model == "student" else ("total", "ce", "lr", "grad_norm")
        loss_steps = np.arange(1, 41, dtype=np.int64)
        events.append_columns("losses", {
            "step": np.tile(loss_steps, len(names)), "epoch": np.tile(loss_steps / 40.0, len(names)),
            "name": np.repeat(names, len(loss_steps)).astype(object),
            "value": np.concatenate([np.exp(-loss_steps / 20) * (i + 1) + rng.random(len(loss_steps)) * 0.05
                                     for i in range(len(names))])})
        seconds = 0.5 if tiny else 30.0 * quality
        events.append("timings", [
            {"phase": "train", "samples": 1000, "seconds": seconds * 10, "samples_per_s": 100 / seconds,
             "peak_mem_mb": 100.0, "device": "cpu"},
            {"phase": "inference", "samples": users, "seconds": seconds, "samples_per_s": users / seconds,
             "peak_mem_mb": 80.0, "device": "cpu"}])


def _write_analysis(paths: Paths, run_id: str, teacher: int, student: int, rng) -> None:
    rows: dict[str, list] = {k: [] for k in ("measure", "a_model", "a_layer", "b_model", "b_layer", "value", "n")}

    def add(measure, a_model, a_layer, b_model, b_layer, value):
        for key, v in zip(rows, (measure, a_model, a_layer, b_model, b_layer, value, 256)):
            rows[key].append(v)

    for a_model, a_depth, b_model, b_depth in (("teacher", teacher, "teacher", teacher),
                                               ("student", student, "student", student),
                                               ("teacher", teacher, "student", student)):
        for i in range(a_depth + 1):
            for j in range(b_depth + 1):
                x, y = i / a_depth, j / b_depth
                add("cka", a_model, i, b_model, j, float(np.clip(1 - abs(x - y) + rng.normal(0, 0.02), 0, 1)))
    for model, depth in (("teacher", teacher), ("student", student)):
        for i in range(depth):
            add("block_influence", model, i + 1, model, i + 1, float(0.05 + 0.3 * rng.random()))
            for j in range(i + 1, depth + 1):
                add("angular", model, i, model, j, float(min(1.0, 0.08 * (j - i) + 0.02 * rng.random())))
    with EventWriter(paths.run_dir(run_id)) as events:
        events.append_columns("similarity", {k: v for k, v in rows.items()})
        for model, depth, quality in (("teacher", teacher, 1.0), ("student", student, 0.9)):
            for layer in range(depth + 1):
                cols = _metric_columns(rng, np.array([1]), "test", model, quality * (0.3 + 0.7 * layer / depth), layer)
                events.append_columns("metrics", cols)


def build_store(root: Path, pipelines: int = 3, valid_steps: int = 5, users: int = 200, seed: int = 0) -> dict:
    """Write the synthetic store; returns the ids of the first pipeline's runs and the extra ones."""
    paths, rng = Paths(root), np.random.default_rng(seed)
    write_toy_csv(root)
    first: dict = {}
    depths = [(8, 4), (4, 2), (8, 2), (2, 1)]
    for p in range(pipelines):
        teacher_depth, student_depth = depths[p % len(depths)]
        common = {"data": {"dataset": "toy"}, "train": {"seed": p}}
        sasrec = _create(paths, apply_preset("tiny", common, "sasrec"))
        _write_trained(paths, sasrec, "sasrec", 0.8, rng, valid_steps, users, True)
        teacher_spec = apply_preset("tiny", {**common, "backbone": {"depth": teacher_depth}, "sasrec_run": sasrec},
                                    "teacher")
        teacher = _create(paths, teacher_spec, parent=sasrec,
                          result={"parameters": {"inference": 40_000 * teacher_depth}})
        _write_trained(paths, teacher, "teacher", 1.0 + 0.02 * teacher_depth, rng, valid_steps, users, True)
        lambdas = {} if p % 3 else {"lambda_cos": 0.0, "lambda_norm": 0.0, "lambda_sup": 0.0}
        student_spec = apply_preset("tiny", {**common, "backbone": {"depth": student_depth}, "sasrec_run": sasrec,
                                             "distill": {"teacher_run": teacher, "blocks": student_depth, **lambdas}},
                                    "student")
        student = _create(paths, student_spec, parent=teacher,
                          result={"parameters": {"inference": 40_000 * student_depth}})
        _write_trained(paths, student, "student", 1.0 + 0.02 * student_depth, rng, valid_steps, users, True)
        analysis_spec = apply_preset("tiny", {**common, "analysis": {"run": student, "against": teacher}}, "analysis")
        analysis = _create(paths, analysis_spec, parent=student)
        _write_analysis(paths, analysis, teacher_depth, student_depth, rng)
        if p == 0:
            first = {"sasrec": sasrec, "teacher": teacher, "student": student, "analysis": analysis}
    spec = apply_preset("tiny", {"data": {"dataset": "toy"}, "train": {"seed": 999}}, "teacher")
    first["running"] = _create(paths, spec, status="running", eta_s=42.0, samples_per_s=123.0,
                               heartbeat_at=run_store.now_iso())
    first["queued"] = run_store.create_run(paths.runs, to_dict(spec), "teacher", "", None, "q")
    first["failed"] = _create(paths, spec, status="failed", error="ValueError: a test failure")
    run_store.append_log(paths.runs, first["failed"], "step 1\nTraceback: ValueError: a test failure")
    return first


PLANTED_USERS = 40


def planted_ranks(hits: int, users: int = PLANTED_USERS) -> np.ndarray:
    """Ranks with HR@10 = hits / users: the first `hits` users rank the target 3rd (0-based 2), the rest 50th."""
    return np.where(np.arange(users) < hits, 2, 49).astype(np.int64)


def write_planted(paths: Paths, spec, ranks: np.ndarray, step: int = 1) -> str:
    """A finished run whose test ranks (both protocols) are `ranks` and whose metrics are computed from them."""
    run_id = _create(paths, spec)
    model, users = spec.kind, len(ranks)
    values = metrics_from_ranks(ranks)
    with EventWriter(paths.run_dir(run_id)) as events:
        events.append("metrics", [{"step": step, "split": "test", "protocol": protocol, "model": model, "layer": None,
                                   "metric": metric, "value": value}
                                  for protocol in PROTOCOLS for metric, value in values.items()])
        for protocol in PROTOCOLS:
            events.append_columns("ranks", {"step": np.full(users, step), "split": ["test"] * users,
                                            "protocol": [protocol] * users, "model": [model] * users,
                                            "layer": [None] * users, "user_id": np.arange(users), "rank": ranks})
    return run_id


def build_seed_store(root: Path) -> dict:
    """Teacher seed groups over 40 users with planted HR@10, and one run on other data.

    "base" (depth 4): seeds 0, 1, 2 with HR@10 0.25, 0.50, 0.75 (mean 0.5, sample std 0.25).
    "same" (depth 4, lr 2e-3): the same ranks seed by seed, so no difference at all.
    "better" (depth 8): every user's target first in every seed (HR@10 1.0).
    "other": one depth-4 run, seed 0, on the dataset "other". Returns {name: {seed: run_id}}.
    """
    paths = Paths(root)
    write_toy_csv(root)
    plan = {"base": ({}, {0: 10, 1: 20, 2: 30}), "same": ({"train": {"lr": 2e-3}}, {0: 10, 1: 20, 2: 30}),
            "better": ({"backbone": {"depth": 8}}, {0: 40, 1: 40, 2: 40}),
            "other": ({"data": {"dataset": "other"}}, {0: 10})}
    ids: dict = {}
    for name, (overrides, hits) in plan.items():
        for seed, count in hits.items():
            sections = {"data": {"dataset": "toy"}, "backbone": {"depth": 4}, **overrides}
            sections["train"] = {**sections.get("train", {}), "seed": seed}
            spec = apply_preset("tiny", sections, "teacher")
            ids.setdefault(name, {})[seed] = write_planted(paths, spec, planted_ranks(count))
    return ids
