"""Run folders: creation, listing, state updates, unreadable runs, cancel, log and the claim race."""

import multiprocessing
import os
import threading

import pytest

from core.store import runs


def test_create_run_writes_spec_and_state(paths):
    run_id = runs.create_run(paths.runs, {"kind": "teacher", "train": {"lr": 0.1}}, "teacher",
                             name="t1", settings_hash="abc")
    assert "-teacher-" in run_id
    spec = runs.read_spec(paths.runs, run_id)
    assert spec["spec"] == {"kind": "teacher", "train": {"lr": 0.1}}
    assert spec["kind"] == "teacher" and spec["name"] == "t1" and spec["settings_hash"] == "abc"
    state = runs.read_state(paths.runs, run_id)
    assert state["status"] == "queued" and state["progress"] == 0.0
    assert state["created_at"] == spec["created_at"] and state["created_at"].endswith("+00:00")
    assert (paths.runs / run_id / "events").is_dir()
    assert [p.name for p in paths.runs.iterdir()] == [run_id]  # no temporary folder left


def test_run_ids_unique_and_sorted_by_creation():
    ids = [runs.new_run_id("sasrec") for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    with pytest.raises(ValueError, match="invalid run kind"):
        runs.new_run_id("../x")


def test_update_state_and_timestamps(paths):
    run_id = runs.create_run(paths.runs, {}, "sasrec")
    state = runs.update_state(paths.runs, run_id, status="running", pid=os.getpid(), device="cpu")
    assert state["started_at"] and state["finished_at"] is None
    runs.update_state(paths.runs, run_id, phase="train", progress=0.5, eta_s=3.0)
    state = runs.update_state(paths.runs, run_id, status="done", progress=1.0)
    assert state["finished_at"] >= state["started_at"]
    assert runs.read_state(paths.runs, run_id) == state
    with pytest.raises(ValueError, match="unknown state field"):
        runs.update_state(paths.runs, run_id, statuss="done")
    with pytest.raises(ValueError, match="invalid run status"):
        runs.update_state(paths.runs, run_id, status="finished")
    with pytest.raises(ValueError, match="progress"):
        runs.update_state(paths.runs, run_id, progress=1.5)
    with pytest.raises(runs.RunNotFoundError):
        runs.read_state(paths.runs, "nope")


def test_concurrent_updates_lose_nothing(paths):
    """A heartbeat thread and a status change at the same time: neither overwrites the other."""
    run_id = runs.create_run(paths.runs, {}, "sasrec")

    def beat(field):
        for i in range(30):
            runs.update_state(paths.runs, run_id, **{field: float(i)})

    threads = [threading.Thread(target=beat, args=(f,)) for f in ("eta_s", "samples_per_s")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = runs.read_state(paths.runs, run_id)
    assert state["eta_s"] == 29.0 and state["samples_per_s"] == 29.0


def test_list_runs_reports_unreadable_runs(paths):
    good = runs.create_run(paths.runs, {}, "sasrec")
    corrupt = runs.create_run(paths.runs, {}, "teacher")
    (paths.runs / corrupt / "state.json").write_text("{not json")
    missing = runs.create_run(paths.runs, {}, "student")
    (paths.runs / missing / "state.json").unlink()
    (paths.runs / ".creating-half").mkdir()  # a folder still being created is not a run
    listed = {r["run_id"]: r for r in runs.list_runs(paths.runs)}
    assert list(listed) == [good, corrupt, missing]
    assert listed[good]["status"] == "queued" and listed[good]["error"] is None
    assert listed[corrupt]["status"] == "unknown" and "state.json" in listed[corrupt]["error"]
    assert listed[missing]["status"] == "unknown" and "missing" in listed[missing]["error"]


def test_find_run_by_hash_returns_newest_finished(paths):
    old = runs.create_run(paths.runs, {}, "teacher", settings_hash="h1")
    new = runs.create_run(paths.runs, {}, "teacher", settings_hash="h1")
    runs.create_run(paths.runs, {}, "teacher", settings_hash="h1")  # still queued
    runs.create_run(paths.runs, {}, "student", settings_hash="h1", status="done")
    for run_id in (old, new):
        runs.update_state(paths.runs, run_id, status="done")
    assert runs.find_run_by_hash(paths.runs, "teacher", "h1") == new
    assert runs.find_run_by_hash(paths.runs, "teacher", "h2") is None


def test_log_and_cancel(paths):
    run_id = runs.create_run(paths.runs, {}, "sasrec")
    assert runs.read_log(paths.runs, run_id) == ""
    runs.append_log(paths.runs, run_id, "epoch 1")
    runs.append_log(paths.runs, run_id, "epoch 2\n")
    assert runs.read_log(paths.runs, run_id) == "epoch 1\nepoch 2\n"
    assert not runs.cancel_requested(paths.runs, run_id)
    runs.request_cancel(paths.runs, run_id)
    assert runs.cancel_requested(paths.runs, run_id)
    runs.clear_cancel(paths.runs, run_id)
    assert not runs.cancel_requested(paths.runs, run_id)


def _claim_all(runs_root, run_ids, worker_id, barrier, results):
    barrier.wait()
    for run_id in run_ids:
        if runs.claim(runs_root, run_id, worker_id):
            results.put((run_id, worker_id))


def test_claim_race_two_processes(paths):
    run_ids = [runs.create_run(paths.runs, {}, "sasrec") for _ in range(10)]
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(paths.runs, ids, w, barrier, results))
             for w, ids in (("w1", run_ids), ("w2", run_ids[::-1]))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(20)
        assert p.exitcode == 0
    won = [results.get(timeout=5) for _ in range(10)]
    assert results.empty()
    assert sorted(r for r, _ in won) == sorted(run_ids)  # each claimed exactly once
    for run_id, worker in won:
        assert runs.read_claim(paths.runs, run_id)["worker_id"] == worker
    runs.release_claim(paths.runs, run_ids[0])
    assert runs.read_claim(paths.runs, run_ids[0]) is None
    assert runs.claim(paths.runs, run_ids[0], "w3")
