"""Run folders: create, read and update a run's spec and state; log, cancel and claim files.

A run is the folder data/runs/<run_id>/. spec.json is written once at submit:
{"run_id", "kind", "name", "parent_id", "settings_hash", "created_at", "spec": <the submitted spec>}.
state.json holds what changes: status (queued running done failed cancelled), phase, progress 0..1,
eta_s, samples_per_s, the timestamps (ISO-8601 UTC strings), pid, device, error. A run folder is
built under a hidden temporary name and renamed into place, so it appears complete or not at all.
`update_state` is a locked read-modify-write, so a heartbeat thread cannot undo a status change made
at the same moment. `claim` is an exclusive create of the claim file: of several workers racing for
one run, exactly one wins. An unreadable run is listed with status "unknown" and an error, never
raised, so one broken folder cannot hide the others from the app.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.store.atomic import CorruptFileError, file_lock, read_json, write_bytes_atomic, write_json_atomic
from core.store.paths import check_run_id

STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
REUSABLE = ("done", "queued", "running")  # a new request with the same settings hash reuses these
STATE_FIELDS = (
    "status", "phase", "progress", "eta_s", "samples_per_s", "created_at", "started_at",
    "finished_at", "heartbeat_at", "pid", "device", "error",
    "worker_id", "attempt", "resume_step", "result",  # for the worker: who runs it, resumes, summary
)
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")


class RunNotFoundError(FileNotFoundError):
    """No run folder with this id under the runs root."""


def now_iso() -> str:
    """The current time as an ISO-8601 UTC string, e.g. 2026-11-27T06:45:12.123456+00:00."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def new_run_id(kind: str) -> str:
    """A unique id that sorts by creation time: <UTC date>-<time>-<microseconds>-<kind>-<random>.

    The microseconds keep ids made in the same second in creation order; the random part keeps
    ids made by different processes in the same microsecond distinct.
    """
    if not _KIND.fullmatch(kind):
        raise ValueError(f"invalid run kind {kind!r}: expected lowercase letters, digits and '_'")
    now = datetime.now(timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{now.microsecond:06d}-{kind}-{secrets.token_hex(3)}"


def run_dir(runs_root: Path, run_id: str) -> Path:
    """The folder of an existing run; RunNotFoundError if there is none."""
    path = Path(runs_root) / check_run_id(run_id)
    if not path.is_dir():
        raise RunNotFoundError(f"no run {run_id!r} under {runs_root}")
    return path


def create_run(
    runs_root: Path,
    spec: dict,
    kind: str,
    name: str = "",
    parent_id: str | None = None,
    settings_hash: str = "",
    status: str = "queued",
) -> str:
    """Create a complete run folder (spec.json, state.json, events/) and return its id."""
    _check_status(status)
    if parent_id is not None:
        check_run_id(parent_id)
    runs_root = Path(runs_root)
    runs_root.mkdir(parents=True, exist_ok=True)
    for _ in range(5):  # a clash needs the same microsecond and random part: retry, do not overwrite
        run_id, created_at = new_run_id(kind), now_iso()
        tmp = runs_root / f".creating-{run_id}"
        tmp.mkdir()
        try:
            (tmp / "events").mkdir()
            header = dict(run_id=run_id, kind=kind, name=name, parent_id=parent_id,
                          settings_hash=settings_hash, created_at=created_at)
            write_json_atomic(tmp / "spec.json", {**header, "spec": spec})
            state = {f: None for f in STATE_FIELDS} | dict(status=status, phase="", progress=0.0,
                                                             created_at=created_at, attempt=0)
            write_json_atomic(tmp / "state.json", state)
            if (runs_root / run_id).exists():
                raise FileExistsError(run_id)
            os.rename(tmp, runs_root / run_id)  # fails on an existing non-empty folder
            return run_id
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not (runs_root / run_id).exists():
                raise  # a real error (disk full, permissions), not a clash
    raise RuntimeError(f"could not create a unique run folder under {runs_root}")


def read_spec(runs_root: Path, run_id: str) -> dict:
    """The run's spec.json: header fields plus "spec", the spec as submitted."""
    return read_json(run_dir(runs_root, run_id) / "spec.json")


def read_state(runs_root: Path, run_id: str) -> dict:
    """The run's state.json as a dict."""
    return read_json(run_dir(runs_root, run_id) / "state.json")


def update_state(runs_root: Path, run_id: str, **fields: Any) -> dict:
    """Set some state fields atomically and return the new state.

    Entering "running" stamps started_at (if unset); entering "queued" or "running" clears
    finished_at; entering done/failed/cancelled stamps finished_at. An explicit value always wins.
    """
    unknown = sorted(set(fields) - set(STATE_FIELDS))
    if unknown:
        raise ValueError(f"unknown state field(s) {', '.join(unknown)}; expected some of {', '.join(STATE_FIELDS)}")
    if "status" in fields:
        _check_status(fields["status"])
    progress = fields.get("progress")
    if progress is not None and not 0.0 <= float(progress) <= 1.0:
        raise ValueError(f"progress must be within 0..1, got {progress}")
    folder = run_dir(runs_root, run_id)
    with file_lock(folder / ".state.lock"):
        state = read_json(folder / "state.json")
        status = fields.get("status")
        if status in ("queued", "running"):
            state["finished_at"] = None
        if status == "running" and not state.get("started_at"):
            state["started_at"] = now_iso()
        if status in FINISHED and state.get("status") != status:
            state["finished_at"] = now_iso()
        state.update(fields)
        write_json_atomic(folder / "state.json", state)
    return state


def list_runs(runs_root: Path) -> list[dict]:
    """Every run, oldest first: spec header, "spec" and state merged; unreadable ones as "unknown"."""
    runs_root = Path(runs_root)
    if not runs_root.is_dir():
        return []
    return [describe_run(folder) for folder in sorted(runs_root.iterdir())
            if folder.is_dir() and not folder.name.startswith(".")]


def describe_run(folder: Path) -> dict:
    """One run folder as a flat dict; a missing or corrupt file gives status "unknown" and an error."""
    row: dict[str, Any] = {"run_id": folder.name}
    try:
        row |= read_json(folder / "spec.json")
        state = read_json(folder / "state.json")
        row |= state
        if state.get("status") not in STATUSES:
            row |= {"status": "unknown", "error": f"{folder / 'state.json'}: unknown status {state.get('status')!r}"}
    except (FileNotFoundError, CorruptFileError, AttributeError, TypeError) as err:
        message = f"{err.filename}: missing" if isinstance(err, FileNotFoundError) else str(err)
        row |= {"status": "unknown", "error": f"unreadable run: {message}"}
    return row


def find_run_by_hash(runs_root: Path, kind: str, settings_hash: str,
                     statuses: tuple[str, ...] = ("done",)) -> str | None:
    """The newest run of this kind and settings hash whose status is in `statuses`, or None."""
    matches = [r["run_id"] for r in list_runs(runs_root)
               if r.get("kind") == kind and r.get("settings_hash") == settings_hash
               and r.get("status") in statuses]
    return max(matches) if matches else None


def append_log(runs_root: Path, run_id: str, text: str) -> None:
    """Append text (one or more lines) to the run's log.txt."""
    with open(run_dir(runs_root, run_id) / "log.txt", "a", encoding="utf-8") as f:
        f.write(text if text.endswith("\n") else text + "\n")


def read_log(runs_root: Path, run_id: str, max_bytes: int = 200_000) -> str:
    """The last `max_bytes` of the run's log ("" if there is none yet)."""
    path = run_dir(runs_root, run_id) / "log.txt"
    if not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - max_bytes))
        return f.read().decode("utf-8", errors="replace")


def request_cancel(runs_root: Path, run_id: str) -> None:
    """Ask the worker to stop this run at its next step (it checks `cancel_requested`)."""
    write_bytes_atomic(run_dir(runs_root, run_id) / "cancel", now_iso().encode())


def cancel_requested(runs_root: Path, run_id: str) -> bool:
    return (run_dir(runs_root, run_id) / "cancel").exists()


def clear_cancel(runs_root: Path, run_id: str) -> None:
    """Remove a cancel request (before re-queuing a cancelled run)."""
    (run_dir(runs_root, run_id) / "cancel").unlink(missing_ok=True)


def claim(runs_root: Path, run_id: str, worker_id: str) -> bool:
    """Take the run for `worker_id`; True for exactly one of any number of racing callers."""
    path = run_dir(runs_root, run_id) / "claim"
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump({"worker_id": worker_id, "pid": os.getpid(), "claimed_at": now_iso()}, f)
        f.flush()
        os.fsync(f.fileno())
    return True


def read_claim(runs_root: Path, run_id: str) -> dict | None:
    """Who holds the run: {"worker_id", "pid", "claimed_at"}, {} while being written, None if free."""
    try:
        text = (run_dir(runs_root, run_id) / "claim").read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {}  # the winner has created the file and not yet written it


def release_claim(runs_root: Path, run_id: str) -> None:
    (run_dir(runs_root, run_id) / "claim").unlink(missing_ok=True)


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"invalid run status {status!r}; expected one of {', '.join(STATUSES)}")




def wait_for_status(runs_root: Path, run_id: str, statuses: tuple[str, ...], timeout_s: float) -> dict:
    """Poll until the run's status is one of `statuses`; TimeoutError after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = read_state(runs_root, run_id)
        if state.get("status") in statuses:
            return state
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} still {state.get('status')!r} after {timeout_s}s")
        time.sleep(0.05)
