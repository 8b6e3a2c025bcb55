"""Unreadable checkpoint files. A resume state: the run resumes from the previous one, or starts over,
with the rows of an uninterrupted run (nothing lost, nothing doubled). A finished run's weights: the
run that reads them fails naming the file and what to do."""

import json

import pytest

from core.jobs import execution, planning
from core.store import checkpoints
from core.store.paths import Paths
from core.store.query import query
from tests.conftest import toy_spec, write_toy_dataset

# With these settings the teacher saves resume states at steps 2, 4 (after the epoch's evaluation), 6, 8.
SPEC = {"train": {"checkpoint_every": 2}}
METRICS = "SELECT step, split, protocol, metric, value FROM metrics WHERE run_id = ? ORDER BY ALL"
LOSSES = "SELECT step, name, value FROM losses WHERE run_id = ? ORDER BY ALL"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A project with an uninterrupted teacher run: (paths, its metric rows, its loss rows)."""
    root = tmp_path_factory.mktemp("fallback")
    write_toy_dataset(root)
    paths = Paths(root)
    ids = planning.plan(paths, toy_spec("teacher", **SPEC))
    assert all(execution.execute(paths, run_id)["status"] == "done" for run_id in ids)
    return paths, query(paths.data_root, METRICS, [ids[-1]]), query(paths.data_root, LOSSES, [ids[-1]]), ids


def _interrupted(paths, monkeypatch, name: str, killed_at_save: int) -> str:
    """A teacher with the reference's settings, killed as it saves its `killed_at_save`-th resume state
    (its rows up to there are written); its id. As after a kill, its segments stay uncompacted (an
    attempt that ends in its own process is never resumed: the worker resumes killed ones)."""
    ids = planning.plan(paths, toy_spec("teacher", name=name, **SPEC), reuse=False)
    assert execution.execute(paths, ids[0])["status"] == "done"  # its own SASRec parent, same seed
    save, calls = checkpoints.save_resume_state, {"n": 0}

    def killed(*args):
        calls["n"] += 1
        if calls["n"] == killed_at_save:
            raise KeyboardInterrupt
        save(*args)
    with monkeypatch.context() as patch:
        patch.setattr(checkpoints, "save_resume_state", killed)
        patch.setattr(execution, "compact", lambda run_dir: {})
        assert execution.execute(paths, ids[-1])["status"] == "cancelled"
    return ids[-1]


def _assert_rows_as_uninterrupted(paths, run_id, metrics, losses):
    for query_text, expected in ((METRICS, metrics), (LOSSES, losses)):
        got = query(paths.data_root, query_text, [run_id])
        assert [row["step"] for row in got] == [row["step"] for row in expected]  # none lost, none doubled
        for a, b in zip(got, expected):
            assert {**a, "value": 0} == {**b, "value": 0} and a["value"] == pytest.approx(b["value"], abs=1e-6)


def _newest_tensors(folder):
    return folder / json.loads((folder / "resume.json").read_text())["tensors"]


def test_a_corrupt_newest_state_resumes_from_the_previous_one(reference, monkeypatch):
    paths, metrics, losses, _ = reference
    run_id = _interrupted(paths, monkeypatch, "newest corrupt", killed_at_save=3)  # states of steps 2 and 4
    folder = paths.checkpoint_dir(run_id)
    newest = _newest_tensors(folder)
    newest.write_bytes(newest.read_bytes()[:-64])  # a cut copy: step 4 and its evaluation are lost
    state = execution.execute(paths, run_id)
    assert state["status"] == "done", state.get("error")
    log = (paths.runs / run_id / "log.txt").read_text()
    assert f"resume state skipped: {newest}" in log and "truncated or corrupt" in log
    assert "resuming from step 2" in log
    _assert_rows_as_uninterrupted(paths, run_id, metrics, losses)
    assert len(list(folder.glob("resume-*.safetensors"))) <= 2


def test_an_only_state_that_is_cut_starts_the_run_over(reference, monkeypatch):
    paths, metrics, losses, _ = reference
    run_id = _interrupted(paths, monkeypatch, "only state cut", killed_at_save=2)  # the state of step 2
    only = _newest_tensors(paths.checkpoint_dir(run_id))
    only.write_bytes(only.read_bytes()[:100])
    state = execution.execute(paths, run_id)
    assert state["status"] == "done", state.get("error")
    log = (paths.runs / run_id / "log.txt").read_text()
    assert f"resume state skipped: {only}" in log and "starting over" in log and "resuming from" not in log
    _assert_rows_as_uninterrupted(paths, run_id, metrics, losses)


def test_a_cut_teacher_or_sasrec_file_fails_the_run_that_reads_it_by_name(reference):
    paths, _, _, (sasrec_id, teacher_id) = reference
    for parent, kind in ((teacher_id, "teacher"), (sasrec_id, "sasrec")):
        weights = paths.checkpoint_dir(parent) / "model.safetensors"
        whole = weights.read_bytes()
        weights.write_bytes(whole[:-64])
        try:
            student = toy_spec("student", backbone={"depth": 2}, distill={"teacher_run": teacher_id, "blocks": 2},
                               name=f"reads a cut {kind}")
            state = execution.execute(paths, planning.plan(paths, student, reuse=False)[-1])
        finally:
            weights.write_bytes(whole)
        assert state["status"] == "failed"
        assert f"{weights}: not a readable safetensors file (truncated or corrupt" in state["error"]
        assert f"run that {kind} again" in state["error"]
