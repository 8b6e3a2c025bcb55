"""The background worker: claims queued runs and runs each one in a child process.

`slmrec worker` loops: recover runs whose process died (`core.jobs.scheduler.recover`, at start and
every RECOVER_EVERY_S, or `stale_s` if shorter, also while a run goes on), settle queued runs
that can never start, claim the oldest runnable run and run it in a child process,
`python -m core.jobs.worker run-one RUN_ID`, one run at a time on the worker's device. The child
calls `core.jobs.execution.execute`, which writes the state (phase, progress, ETA, samples/s, heartbeat,
pid, device), the log and the events; its own stdout and stderr go to the run's log.txt too.
So a crash or an out-of-memory kill ends that run as failed while the worker goes on, and the
worker process never imports torch. A run whose spec asks for N > 1 processes
(train.nproc_per_node) runs as `torchrun --standalone --nproc-per-node N -m core.jobs.worker run-one`
on this machine: rank 0 records the run, and the worker treats torchrun like any child. A child
exits by itself when its worker dies (a parent watchdog), so a killed worker leaves no run
training unseen: the next worker re-queues it and the stage resumes from its last checkpoint.
Stopping a worker (SIGTERM, Ctrl-C) stops its child and re-queues the run without counting an
attempt. Live workers register in data/workers/<worker_id>.json (pid, host, device, heartbeat,
current run); "alive" means pid running and heartbeat fresh. `start_detached` and `stop_process`
serve `slmrec app`, which starts a worker only when none is alive.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from core.jobs import launch, scheduler
from core.jobs.launch import child_env
from core.jobs.registry import alive_workers, is_alive, list_workers
from core.jobs.scheduler import STALE_S, pid_running
from core.store import runs as run_store
from core.store.atomic import NO_SPACE, disk_full, write_json_atomic
from core.store.paths import Paths

WORKER_BEAT_S = 2.0  # registry heartbeat interval
RECOVER_EVERY_S = 10.0
POLL_S = 1.0  # idle wait between looks at the queue
CANCEL_GRACE_S = 30.0  # a run still going this long after a cancel request is killed
STOP_GRACE_S = 10.0  # a child still alive this long after SIGTERM is killed
DISK_FULL = "the disk is full; free space and run it again (it resumes from its last checkpoint)"


def exit_reason(code: int) -> str:
    """Why a child that left its run unfinished ended, in words."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"the run's process was killed by {name}{hint} before the run finished"
    return f"the run's process exited with code {code} before the run finished; see log.txt"


class Worker:
    """One worker: one device, one run at a time, each run in a child process."""

    def __init__(self, paths: Paths, device: str | None = None, once: bool = False,
                 stale_s: float = STALE_S, poll_s: float = POLL_S, echo: bool = True):
        self.paths, self.device, self.once = paths, device, once
        self.stale_s, self.poll_s, self.echo = stale_s, poll_s, echo
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self.registration = paths.workers / f"{self.worker_id}.json"
        self.started_at = run_store.now_iso()
        self.current: str | None = None
        self._stop = threading.Event()
        self._last_beat = self._last_recover = -float("inf")

    def stop(self) -> None:
        """Ask the loop to end: a running child is stopped and its run re-queued."""
        self._stop.set()

    def say(self, text: str) -> None:
        if self.echo:
            print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)

    def beat(self, force: bool = False) -> None:
        """Refresh this worker's registration (at most every WORKER_BEAT_S unless forced)."""
        if not force and time.monotonic() - self._last_beat < WORKER_BEAT_S:
            return
        try:
            write_json_atomic(self.registration, {
                "worker_id": self.worker_id, "pid": os.getpid(), "host": socket.gethostname(),
                "device": self.device or "auto", "started_at": self.started_at,
                "heartbeat_at": run_store.now_iso(), "current_run": self.current})
        except OSError as exc:
            if not disk_full(exc):
                raise
            self.say(f"cannot refresh {self.registration.name}: {DISK_FULL} ({exc})")
        self._last_beat = time.monotonic()

    def recover(self, if_due: bool = False) -> None:
        """Re-queue runs whose process died; forget registrations of dead workers.

        With `if_due`, only if the last look is older than RECOVER_EVERY_S (or `stale_s`).
        """
        if if_due and time.monotonic() - self._last_recover < min(RECOVER_EVERY_S, self.stale_s):
            return
        self._last_recover = time.monotonic()
        workers = list_workers(self.paths)
        live = {w["worker_id"] for w in workers if is_alive(w, self.stale_s)} | {self.worker_id}
        for run_id, status in scheduler.recover(self.paths, live, self.stale_s).items():
            self.say(f"{run_id}: its process had died; now {status}")
        for info in workers:
            pid = info.get("pid")
            if info.get("worker_id") not in live and not pid_running(pid):
                (self.paths.workers / f"{info['worker_id']}.json").unlink(missing_ok=True)

    def run(self) -> int:
        """The loop; returns when stopped, or with `once` when nothing is runnable."""
        self.paths.workers.mkdir(parents=True, exist_ok=True)
        self.beat(force=True)
        self.say(f"worker {self.worker_id} on {self.device or 'the device each run asks for'}, "
                 f"watching {self.paths.runs}")
        try:
            while not self._stop.is_set():
                try:
                    took = self._serve_once()
                except OSError as exc:  # a full disk ends the run it hit, never the worker
                    if not disk_full(exc):
                        raise
                    self.say(f"{DISK_FULL} ({exc}); the worker goes on")
                    took, self.current = False, None
                if not took and self.once:
                    break
                if not took:
                    self._stop.wait(self.poll_s)
        finally:
            self.registration.unlink(missing_ok=True)
        self.say(f"worker {self.worker_id} stopped")
        return 0

    def _serve_once(self) -> bool:
        """One turn of the loop: heartbeat, recovery, then the oldest runnable run; False when none was."""
        self.beat()
        self.recover(if_due=True)
        for run_id in scheduler.settle(self.paths, self.worker_id):
            self.say(f"{run_id}: {run_store.read_state(self.paths.runs, run_id).get('error')}")
        run_id = scheduler.claim_next(self.paths, self.worker_id)
        if run_id:
            self.run_claimed(run_id)
        return bool(run_id)

    def run_claimed(self, run_id: str) -> None:
        """Run one claimed run in a child process and make sure it ends in a settled state."""
        self.current = run_id
        self.beat(force=True)
        header = run_store.read_spec(self.paths.runs, run_id)
        nproc = launch.processes(header.get("spec") or {})
        self.say(f"{run_id}: {header.get('kind')} starts" + (f" on {nproc} processes" if nproc > 1 else ""))
        module = ["core.jobs.worker", "run-one", run_id, "--root", str(self.paths.root), "--worker-id", self.worker_id,
                  "--parent-pid", str(os.getpid()), *(["--device", self.device] if self.device else [])]
        command = launch.torchrun_command(nproc, module) if nproc > 1 else [sys.executable, "-m", *module]
        with open(self.paths.run_dir(run_id) / "log.txt", "ab") as log:
            child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=child_env())
        how = self._wait(child, run_id)
        self._settle_child(run_id, child.returncode, how)
        self.current = None
        self.beat(force=True)

    def _wait(self, child: subprocess.Popen, run_id: str) -> str:
        """Wait for the child: "exited", "stopped" (this worker is stopping) or "killed" (cancel ignored)."""
        cancel_seen = None
        while True:
            try:
                child.wait(timeout=0.2)
                return "exited"
            except subprocess.TimeoutExpired:
                pass
            self.beat()
            self.recover(if_due=True)  # runs other workers left behind go back to the queue meanwhile
            if self._stop.is_set():
                stop_process(child)
                return "stopped"
            if cancel_seen is None and run_store.cancel_requested(self.paths.runs, run_id):
                cancel_seen = time.monotonic()
            if cancel_seen is not None and time.monotonic() - cancel_seen > CANCEL_GRACE_S:
                child.kill()
                child.wait()
                return "killed"

    def _settle_child(self, run_id: str, code: int, how: str) -> None:
        """After the child: report its end, or end the run ourselves if the child could not."""
        with scheduler.recovery_lock(self.paths):
            state = run_store.read_state(self.paths.runs, run_id)
            if state.get("status") in run_store.FINISHED:
                self.say(f"{run_id}: {state['status']}" + (f": {state['error']}" if state.get("error") else ""))
                return
            if how == "stopped":
                status = scheduler.requeue(self.paths, run_id, "the worker stopped", count_attempt=False)
                self.say(f"{run_id}: interrupted, {status}")
                return
            if how == "killed":
                status = "cancelled"
                error = f"cancelled: stopped by the worker {CANCEL_GRACE_S:.0f} s after the request"
            else:
                status = "failed"
                tail = run_store.read_log(self.paths.runs, run_id, max_bytes=4000)
                error = f"{exit_reason(code)}: {DISK_FULL}" if NO_SPACE in tail else exit_reason(code)
            run_store.update_state(self.paths.runs, run_id, status=status, phase=status, error=error, pid=None, eta_s=0)
            scheduler.log(self.paths, run_id, f"{status}: {error}")
            self.say(f"{run_id}: {status}: {error}")


def stop_process(process: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM, then SIGKILL after `grace_s`; returns once the process has exited."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def install_stop_handlers(worker: Worker) -> None:
    """SIGTERM and SIGINT end the loop cleanly (call from the main thread)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())


def start_detached(paths: Paths, device: str | None = None) -> subprocess.Popen | None:
    """Start a worker in its own session unless one is alive; its process, or None if one was alive.

    Check and start happen under a lock, so two apps starting at once still start one worker.
    """
    folder = paths.workers
    with scheduler.exclusive(folder / ".start.lock"):
        if alive_workers(paths):
            return None
        command = [sys.executable, "-m", "core.cli", "--root", str(paths.root), "worker"]
        command += ["--device", device] if device else []
        with open(folder / "worker.log", "ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True, env=child_env())
        deadline = time.monotonic() + 30
        while not any(w.get("pid") == process.pid for w in alive_workers(paths)):
            if process.poll() is not None:
                raise RuntimeError(f"the worker exited at once (code {process.returncode}); "
                                   f"see {folder / 'worker.log'}")
            if time.monotonic() > deadline:
                stop_process(process)
                raise RuntimeError(f"the worker did not register within 30 s; see {folder / 'worker.log'}")
            time.sleep(0.1)
        return process


def run_one(paths: Paths, run_id: str, worker_id: str, device: str | None, parent_pid: int) -> int:
    """The child's work: execute one claimed run (0 if it ends done); under torchrun, this rank's part."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the worker, which decides
    threading.Thread(target=_exit_with_parent, args=(parent_pid, os.getppid()), daemon=True).start()
    from core.runtime import distributed  # noqa: PLC0415 - the child is where torch loads

    dist = distributed.from_env()
    with distributed.process_group(dist):
        if not dist.is_main:
            return _follow_one(paths, run_id, device, dist)
        run_store.update_state(paths.runs, run_id, worker_id=worker_id, pid=os.getpid())
        if distributed.flag_from_main(run_store.cancel_requested(paths.runs, run_id), dist):
            run_store.update_state(paths.runs, run_id, status="cancelled", phase="cancelled",
                                   error="cancelled before it started")
            return 1
        return _execute_one(paths, run_id, device, dist)


def _execute_one(paths: Paths, run_id: str, device: str | None, dist) -> int:
    """Rank 0 (or the only process): execute the run and make sure it ends recorded."""
    from core.jobs.execution import execute  # noqa: PLC0415

    try:
        state = execute(paths, run_id, device_name=device, dist=dist)
    except Exception as exc:  # raised before the stage started (spec, device): the run still ends
        run_store.append_log(paths.runs, run_id, "".join(traceback.format_exception(exc)))
        run_store.update_state(paths.runs, run_id, status="failed", phase="failed",
                               error=f"{type(exc).__name__}: {exc}")
        return 1
    return 0 if state["status"] == "done" else 1


def _follow_one(paths: Paths, run_id: str, device: str | None, dist) -> int:
    """A rank > 0: take part in the run; rank 0 records how it ends."""
    from core.config import ConfigError  # noqa: PLC0415
    from core.jobs.execution import execute  # noqa: PLC0415
    from core.runtime import distributed  # noqa: PLC0415
    from core.train.loop import Cancelled  # noqa: PLC0415

    try:
        if distributed.flag_from_main(False, dist):  # rank 0 found a cancel before the start
            return 0
        execute(paths, run_id, device_name=device, dist=dist)
    except BaseException as exc:
        distributed.leave_after_failure(dist, exc, quiet=isinstance(exc, (ConfigError, Cancelled)))
    return 0


def _exit_with_parent(worker_pid: int, launcher_pid: int) -> None:
    """Exit when the worker that started us is gone (its successor re-queues and resumes the run), or
    when our launcher is: the worker itself, or torchrun's agent between the worker and its ranks."""
    while True:
        time.sleep(1.0)
        if os.getppid() != launcher_pid or not pid_running(worker_pid):
            os._exit(3)


def main(argv: list[str] | None = None) -> int:
    """`python -m core.jobs.worker run-one RUN_ID ...` (the child process; `slmrec worker` is the loop)."""
    parser = argparse.ArgumentParser(prog="python -m core.jobs.worker")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run-one", help="execute one claimed run (started by a worker)")
    p.add_argument("run_id")
    p.add_argument("--root", required=True)
    p.add_argument("--worker-id", required=True)
    p.add_argument("--parent-pid", type=int, required=True)
    p.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    return run_one(Paths(Path(args.root)), args.run_id, args.worker_id, args.device, args.parent_pid)


if __name__ == "__main__":
    launch.exit_process(main())
