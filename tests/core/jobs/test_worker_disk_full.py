"""A full disk ends the run it hit, with advice, and never the worker (which goes on serving)."""

import errno
import subprocess
import sys

from core.jobs import execution, worker
from core.jobs.worker import DISK_FULL, Worker
from core.store import runs as run_store
from core.store.atomic import disk_full
from core.store.paths import Paths
from tests.conftest import toy_spec

FULL = OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_under_the_heartbeat_does_not_stop_the_worker(tmp_path, monkeypatch):
    paths = Paths(tmp_path)
    ran = []
    run_id = run_store.create_run(paths.runs, {"kind": "sasrec"}, "sasrec")

    def full(*_):
        raise FULL

    monkeypatch.setattr(worker, "write_json_atomic", full)  # every registration write fails
    monkeypatch.setattr(Worker, "run_claimed", lambda self, r: (ran.append(r),
                                                                run_store.update_state(paths.runs, r, status="done")))
    said = []
    w = Worker(paths, once=True, echo=False)
    monkeypatch.setattr(w, "say", said.append)
    assert w.run() == 0
    assert ran == [run_id]
    assert any(DISK_FULL in line for line in said)


def test_a_full_disk_while_claiming_is_said_and_the_worker_goes_on(tmp_path, monkeypatch):
    paths = Paths(tmp_path)
    calls = []

    def claim_next(*_):
        calls.append(1)
        if len(calls) == 1:
            raise FULL
        return None

    monkeypatch.setattr(worker.scheduler, "claim_next", claim_next)
    said = []
    w = Worker(paths, once=True, echo=False, poll_s=0.01)
    monkeypatch.setattr(w, "say", said.append)
    w.run()
    assert len(calls) == 1 and any("the worker goes on" in line for line in said)


def test_a_child_that_died_of_a_full_disk_is_recorded_with_the_advice(tmp_path):
    paths = Paths(tmp_path)
    run_id = run_store.create_run(paths.runs, {"kind": "sasrec"}, "sasrec")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_store.update_state(paths.runs, run_id, status="running", pid=dead.pid)
    run_store.append_log(paths.runs, run_id, "OSError: [Errno 28] No space left on device\n")
    Worker(paths, echo=False)._settle_child(run_id, 1, "exited")
    state = run_store.read_state(paths.runs, run_id)
    assert state["status"] == "failed" and DISK_FULL in state["error"]


def test_safetensors_reports_of_a_full_disk_get_the_advice():
    wrapped = RuntimeError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                           'message: "No space left on device" })')
    chained = ValueError("could not save")
    chained.__cause__ = FULL
    assert disk_full(wrapped) and disk_full(chained) and disk_full(FULL) and not disk_full(ValueError("x"))
    message = execution.failure_message(wrapped, toy_spec("teacher"), Paths("/project"))
    assert message.startswith("the disk is full") and "free space on the disk holding /project" in message
