"""`reproduce` end to end on the tiny random backbone with the paper preset's settings."""

from dataclasses import replace

from core.store import runs as run_store
from core.results.reproduce import PLANS, markdown, run_rows, significance, summarise, write_report
from core.store.paths import Paths


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
    text = markdown(table, "toy", "paper", plan, 1.0, significance(paths, rows, plan))
    assert "Sampled 1 + 999" in text and "SLMRec 4<-8 (all)" in text and "faster per epoch" in text
    assert "| 0 | sampled | MRR |" in text
    md, csv_path = write_report(project / "docs", "toy-paper", table, text)
    assert md.read_text() == text and csv_path.read_text().startswith("model,")
    # a second reproduction reuses every finished run: no new run, none run again
    before = {r["run_id"]: r["finished_at"] for r in run_store.list_runs(paths.runs)}
    again = run_rows(paths, "toy", plan, overrides)
    assert again == rows
    assert {r["run_id"]: r["finished_at"] for r in run_store.list_runs(paths.runs)} == before
