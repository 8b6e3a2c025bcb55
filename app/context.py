"""Where the app finds the project, and the one read-only results handle every session shares.

The project root (the folder holding data/ and checkpoints/) is $SLMREC_ROOT or the current
folder. `store()` is a `st.cache_resource` handle over `core.store.query.ResultsDB`: an in-memory
DuckDB whose views read the run files. A DuckDB connection is not for concurrent use, and every
browser session runs its script in its own thread, so `Store` serialises queries with a lock. Its
views are rebuilt (new runs, new segments) at most every `REFRESH_S` seconds, or at once after
this app submits or cancels something.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from core.store.paths import Paths
from core.store.query import ResultsDB

REFRESH_S = 1.0


def project_root() -> Path:
    """$SLMREC_ROOT, else the current folder."""
    return Path(os.environ.get("SLMREC_ROOT") or os.getcwd()).resolve()


def paths() -> Paths:
    return Paths(project_root())


class Store:
    """A thread-safe, throttled-refresh wrapper of one ResultsDB (read-only)."""

    def __init__(self, data_root: Path):
        self.db = ResultsDB(data_root)
        self.lock = threading.Lock()
        self.refreshed_at = time.monotonic()

    def refresh(self, force: bool = False) -> None:
        """See runs and segments written since the last refresh (at most every REFRESH_S)."""
        with self.lock:
            if force or time.monotonic() - self.refreshed_at >= REFRESH_S:
                self.db.refresh()
                self.refreshed_at = time.monotonic()

    def df(self, sql: str, params: list | None = None) -> pd.DataFrame:
        """One read-only statement as a DataFrame."""
        with self.lock:
            return self.db.query_df(sql, params)


@st.cache_resource(show_spinner=False)
def _store(data_root: str) -> Store:
    return Store(Path(data_root))


def store() -> Store:
    """The shared results handle of this project, refreshed if it is older than REFRESH_S."""
    handle = _store(str(paths().data_root))
    handle.refresh()
    return handle
