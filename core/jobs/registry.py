"""Live workers, as their registrations in data/workers/<worker_id>.json say (pid, host, device,
heartbeat, current run). "Alive" means its pid runs and its heartbeat is fresh. Read-only and
torch-free: the app shows the workers through this without importing the worker itself.
"""

from __future__ import annotations

from core.jobs.scheduler import STALE_S, age_s, pid_running
from core.store.atomic import CorruptFileError, read_json
from core.store.paths import Paths


def list_workers(paths: Paths) -> list[dict]:
    """Every worker registration on disk (alive or not); unreadable files are skipped."""
    found = []
    for path in sorted(paths.workers.glob("*.json")):
        try:
            found.append(read_json(path))
        except (FileNotFoundError, CorruptFileError):
            continue
    return found


def is_alive(info: dict, stale_s: float = STALE_S) -> bool:
    return pid_running(info.get("pid")) and age_s(info.get("heartbeat_at")) <= stale_s


def alive_workers(paths: Paths, stale_s: float = STALE_S) -> list[dict]:
    return [w for w in list_workers(paths) if is_alive(w, stale_s)]
