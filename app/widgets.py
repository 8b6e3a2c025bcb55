"""Small UI pieces every page shares: a chart with its CSV, a table with its CSV, empty states.

Every chart is plotly: its modebar camera button saves a PNG (set up here), and a download
button beside it gives the data behind it as CSV.
"""

from __future__ import annotations

import re

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

STATUS_ICONS = {"queued": ":material/schedule:", "running": ":material/play_circle:", "done": ":material/check_circle:",
                "failed": ":material/error:", "cancelled": ":material/cancel:", "unknown": ":material/help:"}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "chart"


def chart(fig: go.Figure, data: pd.DataFrame, key: str) -> None:
    """The figure (PNG from its modebar) and a CSV download of `data`."""
    config = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": _slug(key), "scale": 2}}
    st.plotly_chart(fig, key=f"{key}_chart", config=config)
    csv_download(data, key)


def csv_download(data: pd.DataFrame, key: str, label: str = "Data as CSV") -> None:
    st.download_button(label, data.to_csv(index=False).encode(), file_name=f"{_slug(key)}.csv", mime="text/csv",
                       key=f"{key}_csv", on_click="ignore", icon=":material/download:")


def table(data: pd.DataFrame, key: str, csv: pd.DataFrame | None = None, **kwargs) -> None:
    """A dataframe and its CSV (`csv`, e.g. the numbers behind a table of formatted text, else `data`)."""
    st.dataframe(data, key=f"{key}_table", hide_index=True, **kwargs)
    csv_download(data if csv is None else csv, key)


def empty(message: str) -> None:
    """An empty state: what is missing and what to do next."""
    st.info(message, icon=":material/lightbulb:")


def status_text(status: str) -> str:
    """A status with its icon, for markdown (captions, metrics, headers); tables show the word alone."""
    return f"{STATUS_ICONS.get(status, '')} {status}"


def duration(seconds: float | None) -> str:
    """'1h 02m', '3m 05s', '12s' or '' for unknown."""
    if seconds is None or pd.isna(seconds):
        return ""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds}s"


def unreadable_warning(unreadable: list[dict]) -> None:
    """Say which result files the store left out because they cannot be read (every other run still shows)."""
    if unreadable:
        st.warning(f"{len(unreadable)} result file(s) cannot be read and are left out, e.g. "
                   f"{unreadable[0]['path']}: {unreadable[0]['error']}", icon=":material/warning:")
