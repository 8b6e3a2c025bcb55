"""The run queue: which queued run goes next, and every status change a run does not make itself.

A run leaves "queued" only through whoever holds its claim file (an exclusive create, so of any
number of workers exactly one wins): a worker that runs it, `settle` when a parent failed or was
cancelled, or `cancel`. A finished run keeps its claim as a record, so a worker holding a stale
listing can never claim it again. A run is runnable when every run it names (parent_id,
sasrec_run, distill.teacher_run, analysis.run, analysis.against) is done; runnable runs go oldest
first. `recover` finds runs whose process died: status "running", heartbeat older than `stale_s`,
pid gone and claiming worker not alive. It re-queues them (attempt += 1, claim released; the
stage resumes from its last checkpoint) or, after MAX_ATTEMPTS, marks them failed. Recovery runs
under one lock file so two workers never re-queue the same run twice. Pids are checked on this
machine: workers sharing a runs folder across machines would need a host field first.
No torch here: the worker loop and the CLI import this module.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

from core.store import runs as run_store
from core.store.atomic import CorruptFileError, file_lock, pid_alive, read_json
from core.store.paths import PREVIOUS_STATE_FILE, RESUME_STATE_FILE, Paths

STALE_S = 15.0  # a heartbeat older than this, with its process gone, marks a dead run
MAX_ATTEMPTS = 3  # re-queues after a dead process; one more death marks the run failed


def age_s(iso: str | None) -> float:
    """Seconds since an ISO-8601 timestamp of the store (infinity for None or garbage)."""
    try:
        then = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return float("inf")
    return (datetime.now(timezone.utc) - then).total_seconds()


def log(paths: Paths, run_id: str, text: str) -> None:
    """A line in the run's log.txt, stamped like the stage's own lines."""
    run_store.append_log(paths.runs, run_id, f"{time.strftime('%H:%M:%S')} {text}")


def dependencies(run: dict) -> list[str]:
    """The run ids this run needs finished first, in a stable order without repeats."""
    spec = run.get("spec") or {}
    named = [run.get("parent_id"), spec.get("sasrec_run"), (spec.get("distill") or {}).get("teacher_run"),
             (spec.get("analysis") or {}).get("run"), (spec.get("analysis") or {}).get("against"),
             (spec.get("drop") or {}).get("run"), (spec.get("drop") or {}).get("analysis_run")]
    return list(dict.fromkeys(i for i in named if i))


def parent_verdict(run: dict, by_id: dict[str, dict]) -> tuple[str, str | None]:
    """("ready" | "wait" | "failed" | "cancelled", reason) for a queued run, from its parents."""
    waiting = False
    for parent_id in dependencies(run):
        parent = by_id.get(parent_id)
        if parent is None:
            return "failed", f"parent {parent_id} does not exist"
        status = parent.get("status")
        if status == "failed":
            return "failed", f"parent {parent_id} failed: {parent.get('error') or 'no reason recorded'}"
        if status == "cancelled":
            return "cancelled", f"parent {parent_id} was cancelled"
        if status == "unknown":
            return "failed", f"parent {parent_id} is unreadable: {parent.get('error')}"
        waiting |= status != "done"
    return ("wait" if waiting else "ready"), None


def _claimed(paths: Paths, run_id: str) -> bool:
    return (paths.run_dir(run_id) / "claim").exists()


def _end_queued(paths: Paths, run_id: str, status: str, reason: str) -> None:
    """Finish a queued run we hold the claim of (the claim stays, as the record of who ended it)."""
    run_store.update_state(paths.runs, run_id, status=status, phase=status, error=reason, eta_s=0)
    log(paths, run_id, f"{status}: {reason}")


def settle(paths: Paths, worker_id: str) -> list[str]:
    """End queued runs that can never start: a parent failed or was cancelled, or a cancel is pending.

    Runs are visited oldest first and the listing is updated as we go, so a whole chain below a
    failed run is settled in one call. Returns the run ids settled.
    """
    runs = run_store.list_runs(paths.runs)
    by_id = {r["run_id"]: r for r in runs}
    settled = []
    for run in runs:
        if run.get("status") != "queued" or _claimed(paths, run["run_id"]):
            continue
        if run_store.cancel_requested(paths.runs, run["run_id"]):
            verdict, reason = "cancelled", "cancelled before it started"
        else:
            verdict, reason = parent_verdict(run, by_id)
        if verdict not in ("failed", "cancelled") or not run_store.claim(paths.runs, run["run_id"], worker_id):
            continue
        if run_store.read_state(paths.runs, run["run_id"]).get("status") == "queued":
            _end_queued(paths, run["run_id"], verdict, reason)
            run.update(status=verdict, error=reason)
            settled.append(run["run_id"])
    return settled


def claim_next(paths: Paths, worker_id: str) -> str | None:
    """Claim the oldest runnable queued run for `worker_id`; its id, or None if there is none."""
    runs = run_store.list_runs(paths.runs)
    by_id = {r["run_id"]: r for r in runs}
    for run in runs:
        run_id = run["run_id"]
        if run.get("status") != "queued" or _claimed(paths, run_id) or parent_verdict(run, by_id)[0] != "ready":
            continue
        if run_store.claim(paths.runs, run_id, worker_id):
            if run_store.read_state(paths.runs, run_id).get("status") == "queued":
                return run_id
            # it ended between our listing and our claim: the claim stays as its record
    return None


def cancel(paths: Paths, run_id: str) -> str:
    """Cancel a run: a queued one ends "cancelled" now, a running one at its next training step.

    Returns the run's status afterwards; ValueError if the run has already ended.
    """
    status = run_store.read_state(paths.runs, run_id).get("status")
    if status in run_store.FINISHED:
        raise ValueError(f"run {run_id} has already ended ({status}); nothing to cancel")
    run_store.request_cancel(paths.runs, run_id)
    if status == "queued" and run_store.claim(paths.runs, run_id, "cancel"):
        if run_store.read_state(paths.runs, run_id).get("status") == "queued":
            _end_queued(paths, run_id, "cancelled", "cancelled before it started")
    settle(paths, "cancel")  # its queued children end now too, whether or not a worker runs
    return run_store.read_state(paths.runs, run_id)["status"]


def resume_step(paths: Paths, run_id: str) -> int | None:
    """The step of the run's latest resumable checkpoint (read from its JSON half; the previous state
    when the newest is unreadable, as the resume itself falls back), or None."""
    for name in (RESUME_STATE_FILE, PREVIOUS_STATE_FILE):
        try:
            return int(read_json(paths.checkpoint_dir(run_id) / name)["state"]["step"])
        except (FileNotFoundError, CorruptFileError, KeyError, TypeError, ValueError):
            continue
    return None


exclusive = file_lock  # kept as the scheduler's name for it


def recovery_lock(paths: Paths):
    return exclusive(paths.workers / ".recover.lock")


def pid_running(pid: int | None) -> bool:
    """Whether a process with this pid runs here; a zombie (killed, not yet reaped) does not."""
    if not pid or not pid_alive(int(pid)):
        return False
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
    except OSError:  # no /proc (macOS) or it just ended
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _gone(pid) -> bool:
    return not pid_running(pid)


def orphaned(paths: Paths, run_id: str, state: dict, live_workers: set[str], stale_s: float) -> bool:
    """Whether a running run's process is dead: stale heartbeat, pid gone, claiming worker not alive."""
    claim = run_store.read_claim(paths.runs, run_id) or {}
    return (state.get("status") == "running" and age_s(state.get("heartbeat_at") or state.get("started_at")) > stale_s
            and _gone(state.get("pid")) and claim.get("worker_id") not in live_workers)


def requeue(paths: Paths, run_id: str, reason: str, count_attempt: bool = True,
            max_attempts: int = MAX_ATTEMPTS) -> str:
    """Put a run whose process stopped back in the queue (or end it); call under `recovery_lock`.

    A pending cancel ends it "cancelled"; more than `max_attempts` deaths end it "failed".
    Returns the new status.
    """
    state = run_store.read_state(paths.runs, run_id)
    attempt = (state.get("attempt") or 0) + (1 if count_attempt else 0)
    step = resume_step(paths, run_id)
    if run_store.cancel_requested(paths.runs, run_id):
        status, fields = "cancelled", {"error": f"cancelled ({reason})"}
    elif attempt > max_attempts:
        status, fields = "failed", {"error": f"{reason}; not resumed again after {max_attempts} attempts"
                                             f" (last checkpoint at step {step})"}
    else:
        status, fields = "queued", {"error": None, "attempt": attempt, "resume_step": step, "progress": 0.0,
                                    "eta_s": None, "samples_per_s": None}
    run_store.update_state(paths.runs, run_id, status=status, phase="requeued" if status == "queued" else status,
                           pid=None, **fields)
    log(paths, run_id, f"{reason}: " + (
        f"re-queued (attempt {attempt}), resumes from step {step}" if status == "queued" and step is not None
        else f"re-queued (attempt {attempt}), starts over" if status == "queued" else status))
    if status == "queued":
        run_store.release_claim(paths.runs, run_id)  # after the state says queued: see module docstring
    return status


def recover(paths: Paths, live_workers: set[str], stale_s: float = STALE_S,
            max_attempts: int = MAX_ATTEMPTS) -> dict[str, str]:
    """Re-queue (or end) every run whose process died; free claims left by dead workers.

    `live_workers` are the ids of workers known alive. Returns {run_id: new status}.
    """
    changed = {}
    with recovery_lock(paths):
        for run in run_store.list_runs(paths.runs):
            run_id = run["run_id"]
            if run.get("status") == "running":
                state = run_store.read_state(paths.runs, run_id)  # fresh, under the lock
                if orphaned(paths, run_id, state, live_workers, stale_s):
                    changed[run_id] = requeue(paths, run_id, f"its process (pid {state.get('pid')}) died",
                                              max_attempts=max_attempts)
            elif run.get("status") == "queued" and _stale_claim(paths, run_id, run, live_workers, stale_s):
                run_store.release_claim(paths.runs, run_id)
                changed[run_id] = "queued"
    return changed


def _stale_claim(paths: Paths, run_id: str, state: dict, live_workers: set[str], stale_s: float) -> bool:
    """A queued run's claim whose worker died before the run started (and whose child is gone)."""
    path = paths.run_dir(run_id) / "claim"
    try:
        claim_age = age_s(datetime.fromtimestamp(os.stat(path).st_mtime, timezone.utc).isoformat())
    except FileNotFoundError:
        return False
    claim = run_store.read_claim(paths.runs, run_id) or {}
    return (claim_age > stale_s and claim.get("worker_id") not in live_workers
            and _gone(claim.get("pid")) and _gone(state.get("pid")))
