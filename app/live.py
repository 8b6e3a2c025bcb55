"""Live sections: re-rendered every LIVE_S seconds only while something they show moves.

A Streamlit fragment with `run_every` re-runs its function on a timer for as long as the page is
open; rendering tables and plotly charts every two seconds cost the server a quarter to a half of
a core with nothing running. So `section(render, busy)` decides at each full run of the page:
- busy (a run it shows is queued with a worker alive, or running): `render` runs in a fragment
  every LIVE_S; when it finds nothing busy any more it re-runs the whole page once, which then
  renders the final state statically;
- idle: `render` runs once, and an empty fragment looks every WATCH_S whether something started
  (a run queued from another tab or the command line), which costs a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pandas as pd
import streamlit as st

from core.store.paths import Paths
from core.jobs.registry import alive_workers

LIVE_S = 2.0
WATCH_S = 10.0


def moving(runs: pd.DataFrame, paths: Paths, run_ids: Iterable[str] | None = None) -> bool:
    """Whether one of these runs (all when None) is running, or queued while a worker is alive to start it."""
    shown = runs if run_ids is None else runs[runs["run_id"].isin(list(run_ids))]
    statuses = set(shown["status"])
    if "running" in statuses:
        return True
    return "queued" in statuses and bool(alive_workers(paths))


def section(render: Callable[..., None], busy: Callable[[], bool], *args, every: float = LIVE_S) -> None:
    """render(*args), live while busy() (see the module docstring); busy() must be cheap (memoised reads)."""
    if busy():
        def live(*args) -> None:
            if not busy():
                st.rerun(scope="app")  # the last refresh: render the final state without a timer
            render(*args)
        st.fragment(run_every=every)(live)(*args)
        return
    render(*args)

    def watch() -> None:
        if busy():
            st.rerun(scope="app")
    st.fragment(run_every=WATCH_S)(watch)()
