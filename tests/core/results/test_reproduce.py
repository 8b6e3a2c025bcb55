"""`reproduce` end to end on the tiny random backbone with the paper preset's settings, with the
training budget of every trained row checked against the prepared data."""

import math
from dataclasses import replace

from core.config import from_dict
from core.data.examples import sasrec_examples, training_examples
from core.data.prepare import prepare
from core.results.budget import budget_lines, run_budgets
from core.results.reproduce import (
    PLANS,
    markdown,
    run_rows,
    significance,
    summarise,
    write_report,
)
from core.store import runs as run_store
from core.store.paths import Paths
from core.store.query import query


def test_paper_preset_runs_end_to_end_on_the_tiny_backbone(project):
    paths = Paths(project)
    plan = replace(PLANS["paper"], seeds=(0,))
    overrides = {"backbone": {"base": "tiny"}, "data": {"dataset": "toy", "kcore": 0, "n_negatives": 20},
                 "train": {"epochs": 1, "batch_size": 64}, "sasrec": {"epochs": 2}}
    rows = run_rows(paths, "toy", plan, overrides)
    assert list(rows) == ["Popularity", "SASRec", "E4SRec_8 (teacher)", "E4SRec_4 (no distillation)",
                          "SLMRec 4<-8 (cos)", "SLMRec 4<-8 (cos+norm)", "SLMRec 4<-8 (cos+sup)", "SLMRec 4<-8 (all)"]
    table = summarise(paths, rows)
    for row in table:
        assert 0 <= row["full/NDCG@10"] <= 1 and 0 <= row["sampled/HR@1"] <= 1
    teacher = next(r for r in table if "teacher" in r["model"])
    student = table[-1]
    assert student["params"] < teacher["params"]
    text = markdown(table, "toy", "paper", plan, 1.0, significance(paths, rows, plan), budget=budget_lines(paths, rows))
    assert "Sampled 1 + 999" in text and "SLMRec 4<-8 (all)" in text and "| 0 | sampled | MRR |" in text
    assert "faster" not in text and "`slmrec bench`" in text  # wall times listed, no ratio drawn from them
    assert f"| {student['model']} | {student['params'] / 1e6:.1f}M | {student['train_s_per_epoch']:.1f} |" in text
    assert "] users |" in text  # one seed: the CI says it resamples the users only
    _check_budget(paths, rows, text)
    md, csv_path = write_report(project / "docs", "toy-paper", table, text)
    assert md.read_text() == text and csv_path.read_text().startswith("model,")
    # a second reproduction reuses every finished run: no new run, none run again
    before = {r["run_id"]: r["finished_at"] for r in run_store.list_runs(paths.runs)}
    again = run_rows(paths, "toy", plan, overrides)
    assert again == rows
    assert {r["run_id"]: r["finished_at"] for r in run_store.list_runs(paths.runs)} == before


def _check_budget(paths, rows, text):
    """Budget lines against counts made from the prepared data and the spec (paper preset: prefixes)."""
    teacher_run = rows["E4SRec_8 (teacher)"][0][0]
    spec = from_dict(run_store.read_spec(paths.runs, teacher_run)["spec"])
    prepared = prepare(spec.data, paths.data_root)
    prefixes = len(training_examples(prepared, 30, "prefixes")[0])
    sequences = len(sasrec_examples(prepared, 30)[0])
    steps = math.ceil(prefixes / 64)  # batch 64, 1 epoch
    assert f"| E4SRec_8 (teacher) | 1 | 1 / 1 | {prefixes} | {steps} | 64 | 30 | prefixes |" in text
    assert f"| SLMRec 4<-8 (all) | 1 | 1 / 1 | {prefixes} | {steps} | 64 | 30 | prefixes |" in text
    # SASRec: its own schedule (2 epochs here, batch 128): one sequence per user, one step per epoch
    assert f"| SASRec | 1 | 2 / 2 | {sequences} | {2 * math.ceil(sequences / 128)} | 128 | 30 | every position |" in text
    assert "Popularity |" not in text.split("## Training budget")[1].split("## Wall times")[0]
    budget = run_budgets(paths, [(teacher_run, "teacher")])[(teacher_run, "teacher")]
    (timing,) = query(paths.data_root, "SELECT seconds FROM timings WHERE run_id = ? AND phase = 'train'", [teacher_run])
    state = run_store.read_state(paths.runs, teacher_run)
    assert budget.train_s == timing["seconds"] and 0 < budget.train_s < budget.wall_s
    assert state["started_at"] and state["finished_at"]
