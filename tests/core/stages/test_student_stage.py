"""The student stage: distillation moves the student toward the teacher (cached == live teacher states:
test_teacher_cache.py)."""

from dataclasses import replace

import pytest
import torch

from core.config import ConfigError, teacher_mismatch
from core.jobs import execution, planning
from core.stages.context import RunContext
from core.stages.llm import load_finished_model
from core.store import checkpoints
from core.store import runs as run_store
from core.store.paths import Paths
from core.store.query import query
from tests.conftest import toy_spec, write_toy_dataset


spec = toy_spec


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("student")
    write_toy_dataset(root)
    paths = Paths(root)
    ids = planning.plan(paths, spec("teacher", backbone={"depth": 4}))
    for run_id in ids:
        assert execution.execute(paths, run_id)["status"] == "done"
    return paths, ids[-1]


def run_student(paths, teacher_id, sasrec_run="", **distill):
    s = spec("student", backbone={"depth": 2}, distill={"teacher_run": teacher_id, "blocks": 2, **distill},
             train={"epochs": 3, "lr": 3e-3}, name=str(distill), sasrec_run=sasrec_run)
    run_id = planning.plan(paths, s, reuse=False)[-1]
    state = execution.execute(paths, run_id)
    assert state["status"] == "done", state.get("error")
    return run_id


def losses(paths, run_id, name):
    rows = query(paths.data_root, "SELECT value FROM losses WHERE run_id = ? AND name = ? ORDER BY step",
                 [run_id, name])
    return [r["value"] for r in rows]


def test_distillation_pulls_student_states_toward_the_teacher(teacher_run):
    paths, teacher_id = teacher_run
    distilled = run_student(paths, teacher_id, lambda_cos=1.0, lambda_norm=0.1, lambda_sup=1.0)
    cos = losses(paths, distilled, "cos")
    assert cos[-1] < cos[0] * 0.8
    assert {"ce", "cos", "norm", "ms", "total"} <= {r["name"] for r in query(
        paths.data_root, "SELECT DISTINCT name FROM losses WHERE run_id = ?", [distilled])}


def test_baseline_is_untouched_by_the_alignment_terms(teacher_run):
    paths, teacher_id = teacher_run
    with_teacher = run_student(paths, teacher_id, lambda_cos=0.0, lambda_norm=0.0, lambda_sup=0.0)
    without = run_student(paths, "", _sasrec_of(paths, teacher_id), lambda_cos=0.0, lambda_norm=0.0, lambda_sup=0.0)
    a, _ = checkpoints.load_checkpoint(paths.checkpoints / with_teacher)
    b, _ = checkpoints.load_checkpoint(paths.checkpoints / without)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert losses(paths, with_teacher, "cos")  # still measured, never optimised


def _sasrec_of(paths, run_id):
    from core.store.runs import read_spec
    return read_spec(paths.runs, run_id)["spec"]["sasrec_run"]


def test_blocks_not_dividing_both_depths_are_refused_when_planned_and_when_run(teacher_run):
    paths, teacher_id = teacher_run
    s = spec("student", backbone={"depth": 3}, distill={"teacher_run": teacher_id, "blocks": 2})
    says = "B=2 must divide both the teacher depth 4 and the student depth 3; valid B: 1"
    with pytest.raises(ConfigError, match=says):
        planning.plan(paths, s)
    sasrec_run = run_store.read_spec(paths.runs, teacher_id)["spec"]["sasrec_run"]
    run_id, _ = planning.submit(paths, replace(s, sasrec_run=sasrec_run))  # queued without the plan's check
    state = execution.execute(paths, run_id)
    assert state["status"] == "failed" and says in state["error"]


def test_alignment_without_teacher_is_refused(project):
    paths = Paths(project)
    s = spec("student", backbone={"depth": 2}, distill={"teacher_run": "", "blocks": 2, "lambda_cos": 1.0})
    ids = planning.plan(paths, s)
    execution.execute(paths, ids[0])
    state = execution.execute(paths, ids[-1])
    assert state["status"] == "failed" and "need a finished teacher run" in state["error"]


def test_a_finished_model_is_loaded_in_the_precision_of_the_run_using_it(teacher_run):
    paths, teacher_id = teacher_run
    ctx = RunContext("probe", paths, torch.device("cpu"), events=None)
    train = spec("student").train
    dtype = lambda model: model.backbone.layers[0].mlp.gate_up_proj.weight.dtype  # noqa: E731
    assert dtype(load_finished_model(ctx, teacher_id, train)[1]) == torch.float32
    assert dtype(load_finished_model(ctx, teacher_id, replace(train, precision="bf16"))[1]) == torch.bfloat16


def test_teacher_mismatch_names_the_field_and_both_values():
    teacher = spec("teacher", backbone={"depth": 4})
    student = spec("student", backbone={"depth": 2})
    assert teacher_mismatch(teacher, student) is None  # depth, training and the rest may differ
    assert teacher_mismatch(teacher, replace(student, backbone=replace(student.backbone, base="smollm2"))) == (
        "backbone.base: the teacher's is 'tiny', the student's 'smollm2'")
    other_prompt = replace(student, rec=replace(student.rec, prompt="Items: {items}. Next?"))
    assert teacher_mismatch(teacher, other_prompt) == (
        f"rec.prompt: the teacher's is {teacher.rec.prompt!r}, the student's 'Items: {{items}}. Next?'")
    other_data = replace(student, data=replace(student.data, kcore=2, seed=3))
    assert teacher_mismatch(teacher, other_data) == ("data.kcore: the teacher's is 0, the student's 2; "
                                                     "data.seed: the teacher's is 0, the student's 3")


def test_a_teacher_with_another_prompt_is_refused_when_planned_and_before_training(teacher_run):
    paths, teacher_id = teacher_run
    s = spec("student", backbone={"depth": 2}, distill={"teacher_run": teacher_id, "blocks": 2},
             rec={"prompt": "Items: {items}. Next?"}, name="other prompt")
    with pytest.raises(ConfigError, match=f"teacher '{teacher_id}' differs from this student in rec.prompt"):
        planning.plan(paths, s, reuse=False)
    sasrec_run = run_store.read_spec(paths.runs, teacher_id)["spec"]["sasrec_run"]
    run_id, _ = planning.submit(paths, replace(s, sasrec_run=sasrec_run), reuse=False)  # without the plan's check
    state = execution.execute(paths, run_id)
    assert state["status"] == "failed"
    assert f"teacher '{teacher_id}' differs from this student in rec.prompt" in state["error"]
    assert "the student's 'Items: {items}. Next?'" in state["error"]
    assert not losses(paths, run_id, "total")  # not one training step ran
