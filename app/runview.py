"""The Runs page's table: which runs it lists (search, filters, archive), its columns, the log tail.

Missing values are blank, never "None": the table passes `placeholder=""` to st.dataframe, and an
ETA is shown only while a run is running (a cancelled or finished run's stored ETA is stale).
Each row links to its Layers view (an analysis run, or a run an analysis names) and its Results
view (a finished sasrec, teacher or student run) as relative addresses with ?run= (app/links.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from app import links
from app.widgets import duration
from core.store import runs as run_store
from core.store.paths import Paths

TABLE_COLUMNS = {
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
    "samples/s": st.column_config.NumberColumn("samples/s", format="%.0f"),
    "created": st.column_config.DatetimeColumn("created (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    "layers": st.column_config.LinkColumn("layers", display_text="Layers", help="Open this run on the Layers page"),
    "results": st.column_config.LinkColumn("results", display_text="Results",
                                           help="Open this run on the Results page"),
}
RESULT_KINDS = ("sasrec", "teacher", "student")


@dataclass(frozen=True)
class RunFilter:
    """What the Runs page lists: a search text and, per column, the values kept (empty: all)."""

    search: str = ""
    kinds: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    bases: tuple[str, ...] = ()
    presets: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    archived: bool = False  # also list archived runs


def filter_runs(frame: pd.DataFrame, f: RunFilter) -> pd.DataFrame:
    """The rows `f` keeps: every given column filter, and the search in label, id, name, tags or note."""
    keep = pd.Series(True, index=frame.index)
    for column, values in (("kind", f.kinds), ("status", f.statuses), ("dataset", f.datasets), ("base", f.bases),
                           ("preset", f.presets)):
        if values:
            keep &= frame[column].fillna("").isin(values)
    if f.tags:
        keep &= frame["tags"].map(lambda tags: bool(set(tags) & set(f.tags)))
    if not f.archived:
        keep &= ~frame["archived"]
    words = f.search.lower().split()
    if words:
        text = (frame["label"].fillna("") + " " + frame["run_id"] + " " + frame["name"].fillna("") + " "
                + frame["tags"].map(" ".join) + " " + frame["note"]).str.lower()
        for word in words:
            keep &= text.str.contains(word, regex=False)
    return frame[keep]


def link_targets(frame: pd.DataFrame, every: pd.DataFrame) -> tuple[list, list]:
    """Per row of `frame`: its Layers address (None: no layer analysis in `every`) and its Results address."""
    analysed = set(every.loc[every["kind"] == "analysis", "analysis_run"].dropna()) | set(
        every.loc[every["kind"] == "analysis", "analysis_against"].dropna())
    layers = [links.page_url("layers", r) if k == "analysis" or r in analysed else None
              for r, k in zip(frame["run_id"], frame["kind"])]
    results = [links.page_url("results", r) if k in RESULT_KINDS and s == "done" else None
               for r, k, s in zip(frame["run_id"], frame["kind"], frame["status"])]
    return layers, results


def live_table_frame(frame: pd.DataFrame, every: pd.DataFrame | None = None) -> pd.DataFrame:
    """The runs as the table shows them; `every` (all runs) tells which have a layer analysis."""
    layers, results = link_targets(frame, frame if every is None else every)
    eta = [duration(e) if s == "running" else "" for e, s in zip(frame["eta_s"], frame["status"])]
    blank = {"phase", "device", "error", "dataset", "base", "preset", "name"}
    text = {c: frame[c].astype(object).where(frame[c].notna(), "") for c in blank if c in frame.columns}
    return pd.DataFrame({
        "run": frame["label"], "kind": frame["kind"], "status": frame["status"], "phase": text["phase"],
        "progress": frame["progress"].fillna(0.0).astype(float), "ETA": eta, "samples/s": frame["samples_per_s"],
        "device": text["device"], "dataset": text["dataset"], "base": text["base"], "preset": text["preset"],
        "tags": frame["tags"].map(", ".join) if "tags" in frame.columns else "",
        "note": frame["note"] if "note" in frame.columns else "",
        "created": frame["created_at"], "error": text["error"], "layers": layers, "results": results,
        "run_id": frame["run_id"]})


def log_tail(paths: Paths, run_id: str, lines: int = 60) -> str:
    """The last lines of the run's log."""
    return "\n".join(run_store.read_log(paths.runs, run_id, max_bytes=50_000).splitlines()[-lines:])
