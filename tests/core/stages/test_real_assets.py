"""The one end-to-end run on the real default assets: MovieLens-100K and SmolLM2, at a tiny size."""

from pathlib import Path

import pytest

from core.jobs import execution, planning
from core.data import assets
from core.config import apply_preset
from core.store.paths import Paths
from core.store.query import query

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_teacher_and_student_on_smollm2_and_movielens(tmp_path):
    assets.fetch_model(REPO / "checkpoints" / "base")  # idempotent: converts once per machine
    paths = Paths(tmp_path)
    assets.fetch_dataset(paths.raw)
    paths.checkpoints.mkdir(parents=True)
    (paths.checkpoints / "base").symlink_to(REPO / "checkpoints" / "base")
    small = {"data": {"dataset": "ml-100k", "max_users": 24, "max_len": 5, "n_negatives": 50},
             "train": {"epochs": 1, "max_steps": 1, "batch_size": 4}, "sasrec": {"epochs": 1, "hidden": 32}}
    teacher = apply_preset("cpu-quick", {**small, "backbone": {"depth": 2}}, "teacher")
    ids = planning.plan(paths, teacher)
    for run_id in ids:
        state = execution.execute(paths, run_id)
        assert state["status"] == "done", state.get("error")
    student = apply_preset("cpu-quick", {**small, "backbone": {"depth": 1},
                                         "distill": {"teacher_run": ids[-1], "blocks": 1}}, "student")
    (student_id,) = planning.plan(paths, student)
    state = execution.execute(paths, student_id)
    assert state["status"] == "done", state.get("error")
    rows = query(paths.data_root, "SELECT model, count(DISTINCT protocol) p FROM metrics WHERE split = 'test' "
                                  "GROUP BY model ORDER BY model")
    assert [(r["model"], r["p"]) for r in rows] == [("popularity", 2), ("sasrec", 2), ("student", 2), ("teacher", 2)]
