"""The run queue and the background worker: order, dependencies, cancel, crash recovery, failures.

The first tests drive `core.jobs.scheduler` on hand-made run folders (no training). The rest start real
workers as processes (`slmrec worker`) over tiny SASRec runs on the generated toy dataset, with a
reader thread querying the store throughout, which must never fail.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.jobs import execution, planning, scheduler
from core.config import apply_preset
from core.store import runs as run_store
from core.store.atomic import write_json_atomic
from core.store.paths import Paths
from core.store.query import query
from core.jobs.worker import Worker, exit_reason

OLD = "2000-01-01T00:00:00.000000+00:00"


def tiny(seed: int = 0, sasrec: dict | None = None, data: dict | None = None, **train):
    """A tiny SASRec spec on the toy dataset (2 optimizer steps unless told otherwise)."""
    return apply_preset("tiny", {"data": {"dataset": "toy", "kcore": 0, **(data or {})},
                                 "sasrec": {"epochs": 1, **(sasrec or {})},
                                 "train": {"seed": seed, "max_steps": 2, "device": "cpu", **train}}, "sasrec")


def queue(paths: Paths, spec) -> str:
    return planning.submit(paths, spec, reuse=False)[0]


def fake_run(paths: Paths, status: str = "queued", parent: str | None = None, **spec) -> str:
    return run_store.create_run(paths.runs, {"kind": "sasrec", **spec}, "sasrec", parent_id=parent, status=status)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def start_worker(root: Path, *extra: str, threads: int | None = None) -> subprocess.Popen:
    log = open(root / f"worker-{time.monotonic_ns()}.log", "wb")
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    return subprocess.Popen([sys.executable, "-m", "core.cli", "--root", str(root), "worker", "--device", "cpu",
                             *extra], stdout=log, stderr=subprocess.STDOUT, env=env)


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Reader(threading.Thread):
    """Queries the store in a loop, as the app does while a worker writes; keeps any error."""

    def __init__(self, data_root: Path):
        super().__init__(daemon=True)
        self.data_root, self.errors, self.queries, self.done = data_root, [], 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                query(self.data_root, "SELECT status, count(*) FROM runs GROUP BY 1")
                query(self.data_root, "SELECT run_id, metric, avg(value) FROM metrics GROUP BY ALL")
                query(self.data_root, "SELECT count(*) FROM losses")
                self.queries += 1
            except Exception as exc:  # noqa: BLE001 - the test reports whatever went wrong
                self.errors.append(repr(exc))
            time.sleep(0.25)  # the app refreshes every few seconds; this is plenty and leaves CPU to the runs

    def finish(self) -> None:
        self.done.set()
        self.join()
        assert not self.errors, self.errors[:3]
        assert self.queries > 0


def test_oldest_runnable_first_and_parents_must_be_done(tmp_path):
    paths = Paths(tmp_path)
    parent = fake_run(paths)
    child = fake_run(paths, parent=parent)
    named = fake_run(paths, analysis={"run": child, "against": parent})  # parents named in the spec only
    other = fake_run(paths)
    assert scheduler.dependencies(run_store.list_runs(paths.runs)[2]) == [child, parent]
    assert scheduler.claim_next(paths, "w1") == parent
    assert scheduler.claim_next(paths, "w2") == other  # child waits for its parent; claimed runs are skipped
    assert scheduler.claim_next(paths, "w2") is None
    run_store.update_state(paths.runs, parent, status="done")
    assert scheduler.claim_next(paths, "w2") == child
    run_store.update_state(paths.runs, child, status="done")
    assert scheduler.claim_next(paths, "w1") == named
    assert not run_store.claim(paths.runs, named, "w2")  # exactly one claimant


def test_failed_or_cancelled_parent_ends_the_whole_chain(tmp_path):
    paths = Paths(tmp_path)
    failed = fake_run(paths, status="failed")
    run_store.update_state(paths.runs, failed, error="DataError: no such dataset")
    student = fake_run(paths, distill={"teacher_run": failed})
    analysis = fake_run(paths, parent=student)
    cancelled = fake_run(paths, status="cancelled")
    orphan = fake_run(paths, parent=cancelled)
    missing = fake_run(paths, sasrec_run="20000101-000000-000000-sasrec-abcdef")
    assert set(scheduler.settle(paths, "w")) == {student, analysis, orphan, missing}
    state = lambda r: run_store.read_state(paths.runs, r)  # noqa: E731
    assert state(student)["status"] == "failed"
    assert state(student)["error"] == f"parent {failed} failed: DataError: no such dataset"
    assert state(analysis)["error"] == f"parent {student} failed: parent {failed} failed: DataError: no such dataset"
    assert (state(orphan)["status"], state(orphan)["error"]) == ("cancelled", f"parent {cancelled} was cancelled")
    assert "does not exist" in state(missing)["error"]
    assert "parent" in run_store.read_log(paths.runs, analysis)


def test_cancel_of_a_queued_run_ends_it_at_once(tmp_path):
    paths = Paths(tmp_path)
    run_id = fake_run(paths)
    child = fake_run(paths, parent=run_id)
    assert scheduler.cancel(paths, run_id) == "cancelled"
    assert run_store.read_state(paths.runs, run_id)["error"] == "cancelled before it started"
    assert run_store.read_state(paths.runs, child)["status"] == "cancelled"  # its queued child too
    assert scheduler.claim_next(paths, "w") is None
    with pytest.raises(ValueError, match="already ended"):
        scheduler.cancel(paths, run_id)


def test_recover_requeues_dead_runs_then_gives_up(tmp_path):
    paths = Paths(tmp_path)
    run_id, alive, fresh, owned = (fake_run(paths) for _ in range(4))
    for r in (run_id, alive, fresh, owned):
        assert run_store.claim(paths.runs, r, "w-dead" if r != owned else "w-live")
        run_store.update_state(paths.runs, r, status="running", pid=dead_pid(), heartbeat_at=OLD)
    run_store.update_state(paths.runs, alive, pid=os.getpid())
    run_store.update_state(paths.runs, fresh, heartbeat_at=run_store.now_iso())
    (paths.checkpoints / run_id).mkdir(parents=True)
    write_json_atomic(paths.checkpoints / run_id / "resume.json", {"token": "t", "state": {"step": 6}})
    assert scheduler.recover(paths, {"w-live"}) == {run_id: "queued"}  # the other three are not dead
    state = run_store.read_state(paths.runs, run_id)
    assert (state["status"], state["attempt"], state["resume_step"]) == ("queued", 1, 6)
    assert run_store.read_claim(paths.runs, run_id) is None
    assert "resumes from step 6" in run_store.read_log(paths.runs, run_id)
    for attempt in (2, 3, 4):
        assert run_store.claim(paths.runs, run_id, "w-dead")
        run_store.update_state(paths.runs, run_id, status="running", pid=dead_pid(), heartbeat_at=OLD)
        scheduler.recover(paths, set())
    state = run_store.read_state(paths.runs, run_id)
    assert state["status"] == "failed" and "not resumed again after 3 attempts" in state["error"]


def test_stale_claim_of_a_dead_worker_is_released(tmp_path):
    paths = Paths(tmp_path)
    run_id = fake_run(paths)
    claim = paths.runs / run_id / "claim"
    write_json_atomic(claim, {"worker_id": "w-dead", "pid": dead_pid(), "claimed_at": OLD})
    assert scheduler.recover(paths, set()) == {}  # too fresh: the claim file was just written
    os.utime(claim, (0, 0))
    assert scheduler.recover(paths, set()) == {run_id: "queued"} and not claim.exists()


def test_a_child_that_dies_leaves_its_run_failed_with_the_reason(tmp_path):
    paths = Paths(tmp_path)
    run_id = fake_run(paths)
    run_store.update_state(paths.runs, run_id, status="running", pid=dead_pid())
    Worker(paths, echo=False)._settle_child(run_id, -signal.SIGKILL, "exited")
    state = run_store.read_state(paths.runs, run_id)
    assert state["status"] == "failed" and state["error"] == exit_reason(-9)
    assert "SIGKILL (out of memory?)" in state["error"]


def test_a_stopped_worker_puts_its_run_back_without_counting_an_attempt(tmp_path):
    paths = Paths(tmp_path)
    run_id = fake_run(paths)
    assert run_store.claim(paths.runs, run_id, "w")
    run_store.update_state(paths.runs, run_id, status="running", pid=dead_pid(), attempt=1)
    Worker(paths, echo=False)._settle_child(run_id, -signal.SIGTERM, "stopped")
    state = run_store.read_state(paths.runs, run_id)
    assert (state["status"], state["attempt"], state["pid"]) == ("queued", 1, None)
    assert run_store.read_claim(paths.runs, run_id) is None
    assert "the worker stopped: re-queued (attempt 1), starts over" in run_store.read_log(paths.runs, run_id)


def test_the_worker_loop_imports_no_torch():
    code = "import sys, core.jobs.worker, core.cli.parser; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_two_workers_run_each_of_ten_runs_exactly_once(project):
    paths = Paths(project)
    run_ids = [queue(paths, tiny(seed)) for seed in range(10)]
    reader = Reader(paths.data_root)
    reader.start()
    workers = [start_worker(project, "--once", threads=1) for _ in range(2)]  # 2 workers share 2 cores
    assert [w.wait(timeout=300) for w in workers] == [0, 0]  # about 30 s on 2 idle cores
    reader.finish()
    for run_id in run_ids:
        state = run_store.read_state(paths.runs, run_id)
        assert state["status"] == "done", state["error"]
        assert run_store.read_log(paths.runs, run_id).count(" sasrec run ") == 1  # executed once
    owners = {run_store.read_state(paths.runs, r)["worker_id"] for r in run_ids}
    assert len(owners) == 2  # both took part
    rows = query(paths.data_root, "SELECT run_id, count(*) n FROM metrics WHERE model = 'sasrec' "
                                  "AND split = 'test' AND protocol = 'full' AND metric = 'NDCG@10' GROUP BY 1")
    assert sorted(r["run_id"] for r in rows) == run_ids and {r["n"] for r in rows} == {1}


def test_cancel_stops_a_running_run_within_a_step(project):
    paths = Paths(project)
    run_id = queue(paths, tiny(sasrec={"epochs": 400, "batch_size": 8}, max_steps=0, checkpoint_every=0))
    worker = start_worker(project)
    try:
        def trained_a_while() -> bool:  # past the first epoch end: the step we time has no first-time imports
            state = run_store.read_state(paths.runs, run_id)
            assert state["status"] in ("queued", "running"), state["error"]
            return (state["progress"] or 0) > 0.005

        wait_until(trained_a_while, 120, "training")
        asked = time.monotonic()
        assert scheduler.cancel(paths, run_id) == "running"
        state = run_store.wait_for_status(paths.runs, run_id, run_store.FINISHED, timeout_s=20)
        assert time.monotonic() - asked < 10  # one step, plus a loaded machine
        assert state["status"] == "cancelled" and state["error"].startswith("cancelled at step")
        assert worker.poll() is None  # the worker goes on
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0


def test_failing_run_ends_failed_and_the_worker_takes_the_next(project):
    paths = Paths(project)
    bad = queue(paths, tiny(data={"dataset": "no-such-dataset"}))
    good = queue(paths, tiny(seed=2))
    worker = start_worker(project, "--once")
    assert worker.wait(timeout=300) == 0
    bad_state = run_store.read_state(paths.runs, bad)
    assert bad_state["status"] == "failed" and "no-such-dataset" in bad_state["error"], bad_state["error"]
    assert "Traceback" in run_store.read_log(paths.runs, bad)
    assert run_store.read_state(paths.runs, good)["status"] == "done"


def test_killed_worker_resumes_to_the_same_metrics_without_duplicate_rows(project):
    paths = Paths(project)
    spec = tiny(seed=3, sasrec={"epochs": 6, "batch_size": 8}, max_steps=0, checkpoint_every=2)
    reference = queue(paths, spec)
    assert execution.execute(paths, reference)["status"] == "done"
    run_id = queue(paths, spec)
    reader = Reader(paths.data_root)
    reader.start()

    def checkpointed() -> bool:
        assert run_store.read_state(paths.runs, run_id)["status"] in ("queued", "running"), "ended too soon"
        return scheduler.resume_step(paths, run_id) is not None

    worker = start_worker(project, "--stale-after", "1")
    wait_until(checkpointed, 120, "a resumable checkpoint")
    child = run_store.read_state(paths.runs, run_id)["pid"]
    worker.kill()  # kill -9 the worker, then its child (which would otherwise exit within a second)
    worker.wait()
    os.kill(child, signal.SIGKILL)
    assert run_store.read_state(paths.runs, run_id)["status"] == "running"  # left behind as "running"
    worker = start_worker(project, "--stale-after", "1")  # finds it dead, re-queues and resumes it
    state = run_store.wait_for_status(paths.runs, run_id, run_store.FINISHED, timeout_s=240)
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=20)
    reader.finish()
    assert state["status"] == "done" and state["attempt"] == 1, state
    assert run_store.read_log(paths.runs, run_id).count("resuming from step") == 1

    def test_metrics(r):
        return {(m["protocol"], m["metric"]): m["value"] for m in query(
            paths.data_root, "SELECT * FROM metrics WHERE run_id = ? AND split = 'test' AND model = 'sasrec'", [r])}
    assert test_metrics(run_id) == pytest.approx(test_metrics(reference), abs=1e-6)
    duplicates = query(paths.data_root, """
        SELECT run_id, step, split, protocol, model, layer, metric, count(*) FROM metrics GROUP BY ALL
        HAVING count(*) > 1 UNION ALL
        SELECT run_id, step, NULL, NULL, NULL, NULL, name, count(*) FROM losses GROUP BY ALL HAVING count(*) > 1""")
    assert duplicates == []
    steps = lambda r: [x["step"] for x in query(  # noqa: E731
        paths.data_root, "SELECT DISTINCT step FROM losses WHERE run_id = ? ORDER BY 1", [r])]
    assert steps(run_id) == steps(reference)
