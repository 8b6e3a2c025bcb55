"""The one foreground executor (`slmrec run`, `slmrec reproduce`): done runs are skipped, the others
claimed before they run (so no worker starts them too), and one a worker holds is waited for."""

import threading
import time

from core.jobs.foreground import run_planned, verdict
from core.jobs.planning import submit
from core.store import runs as run_store
from core.store.paths import Paths
from tests.conftest import toy_spec


def test_a_run_a_worker_holds_is_waited_for_not_run_twice(project):
    paths = Paths(project)
    run_id, _ = submit(paths, toy_spec("sasrec"))
    assert run_store.claim(paths.runs, run_id, "worker-1")
    said = []

    def worker_finishes():
        time.sleep(0.5)
        run_store.update_state(paths.runs, run_id, status="done")

    threading.Thread(target=worker_finishes).start()
    assert run_planned(paths, [run_id], say=said.append)
    assert said == [f"waiting for {run_id}, which a worker runs"]
    assert run_store.read_claim(paths.runs, run_id)["worker_id"] == "worker-1"  # never claimed here
    assert run_store.read_state(paths.runs, run_id).get("started_at") is None  # and never started here


def test_a_queued_run_is_claimed_then_run_and_a_done_one_skipped(project):
    paths = Paths(project)
    run_id, _ = submit(paths, toy_spec("sasrec", train={"max_steps": 2, "device": "cpu"}, sasrec={"epochs": 1}))
    said = []
    assert run_planned(paths, [run_id], say=said.append)
    assert said == [f"running {run_id}"]
    assert run_store.read_claim(paths.runs, run_id)["worker_id"] == "foreground"
    assert verdict(paths, run_id) == "skip"
    assert run_planned(paths, [run_id], say=said.append) and len(said) == 1


def test_it_stops_at_the_first_run_that_does_not_end_done(project):
    paths = Paths(project)
    failed = run_store.create_run(paths.runs, {"kind": "sasrec"}, "sasrec", status="failed")
    after, _ = submit(paths, toy_spec("sasrec"))
    assert not run_planned(paths, [failed, after], say=lambda _: None)
    assert run_store.read_state(paths.runs, after)["status"] == "queued"
