"""Where the app finds the project, and the one read-only results handle every session shares.

The project root (the folder holding data/ and checkpoints/) is $SLMREC_ROOT or the current
folder. `store()` is a `st.cache_resource` handle over `core.store.query.ResultsDB`: an in-memory
DuckDB whose views read the run files. A DuckDB connection is not for concurrent use, and every
browser session runs its script in its own thread, so `Store` serialises queries with a lock.

Rebuilding the views costs a scan of every run folder, so `refresh` first compares a cheap
fingerprint (the modification times of the runs folder, of each run's state.json and of its
events/ folder; a new segment, a compaction or a state change moves one of them) and rebuilds only
when it moved. Query results are memoised per table version (a hash of the view's definition,
which lists its files), so a page re-reads only what changed since it last asked.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import streamlit as st

from core.store.paths import Paths
from core.store.query import ResultsDB
from core.store.tables import SCHEMAS

REFRESH_S = 1.0
MEMO_ENTRIES = 256


def project_root() -> Path:
    """$SLMREC_ROOT, else the current folder."""
    return Path(os.environ.get("SLMREC_ROOT") or os.getcwd()).resolve()


def paths() -> Paths:
    return Paths(project_root())


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def fingerprint(runs_root: Path) -> tuple:
    """What changes when a run appears, changes state, or gets new or compacted segments."""
    if not runs_root.is_dir():
        return ()
    marks = [_mtime(runs_root)]
    with os.scandir(runs_root) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.is_dir() and not entry.name.startswith("."):
                folder = Path(entry.path)
                marks += [entry.name, _mtime(folder / "state.json"), _mtime(folder / "events")]
    return tuple(marks)


class Store:
    """A thread-safe ResultsDB with change-aware refresh and memoised reads (read-only)."""

    def __init__(self, data_root: Path):
        self.runs_root = Path(data_root) / "runs"
        self.lock = threading.RLock()
        self.memo: OrderedDict[tuple, Any] = OrderedDict()
        self.fingerprint = fingerprint(self.runs_root)
        self.db = ResultsDB(data_root)
        self.checked_at = time.monotonic()
        self.versions = self._versions()

    def _versions(self) -> dict[str, str]:
        rows = self.db.con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall()
        versions = {name: hashlib.sha1(sql.encode()).hexdigest() for name, sql in rows if name in SCHEMAS}
        versions["runs"] = hashlib.sha1(repr(self.fingerprint).encode()).hexdigest()
        return versions

    def refresh(self, force: bool = False) -> None:
        """See runs and segments written since the last look (checked at most every REFRESH_S)."""
        with self.lock:
            if not force and time.monotonic() - self.checked_at < REFRESH_S:
                return
            now = fingerprint(self.runs_root)
            self.checked_at = time.monotonic()
            if force or now != self.fingerprint:
                self.fingerprint = now
                self.db.refresh()
                self.versions = self._versions()

    def df(self, sql: str, params: Any = None):
        """One read-only statement as a DataFrame (not memoised)."""
        with self.lock:
            return self.db.query_df(sql, params)

    def cached(self, key: tuple, tables: Iterable[str], compute: Callable[[], Any]) -> Any:
        """compute(), memoised until one of `tables` changes. Treat the result as read-only."""
        with self.lock:
            full_key = (key, tuple(self.versions.get(t, "") for t in tables))
            if full_key in self.memo:
                self.memo.move_to_end(full_key)
                return self.memo[full_key]
            value = compute()
            self.memo[full_key] = value
            if len(self.memo) > MEMO_ENTRIES:
                self.memo.popitem(last=False)
            return value


@st.cache_resource(show_spinner=False)
def _store(data_root: str) -> Store:
    return Store(Path(data_root))


def store() -> Store:
    """The shared results handle of this project, refreshed if runs changed."""
    handle = _store(str(paths().data_root))
    handle.refresh()
    return handle
