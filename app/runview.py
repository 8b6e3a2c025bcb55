"""The Runs page's table: which columns, how they read, and the log tail."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.widgets import duration
from core.store import runs as run_store
from core.store.paths import Paths

TABLE_COLUMNS = {
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
    "samples/s": st.column_config.NumberColumn("samples/s", format="%.0f"),
    "created": st.column_config.DatetimeColumn("created (UTC)", format="YYYY-MM-DD HH:mm:ss"),
}


def live_table_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The runs as the live table shows them."""
    return pd.DataFrame({
        "run": frame["label"], "kind": frame["kind"], "status": frame["status"],
        "phase": frame["phase"], "progress": frame["progress"].fillna(0.0).astype(float),
        "ETA": frame["eta_s"].map(duration), "samples/s": frame["samples_per_s"], "device": frame["device"],
        "dataset": frame["dataset"], "created": frame["created_at"], "error": frame["error"],
        "run_id": frame["run_id"]})


def log_tail(paths: Paths, run_id: str, lines: int = 60) -> str:
    """The last lines of the run's log."""
    return "\n".join(run_store.read_log(paths.runs, run_id, max_bytes=50_000).splitlines()[-lines:])
