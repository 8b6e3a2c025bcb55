"""Runs: every run, live; one run's losses, log and cancel button; the runs to compare on Results."""

import pandas as pd
import streamlit as st

from app import context, figures, queries, widgets
from app.runview import live_table_frame, log_tail, TABLE_COLUMNS
from core import scheduler
from core.store import runs as run_store
from core.worker import alive_workers

st.title("Runs")
st.caption("Runs are executed by the background worker (`slmrec worker`, started by `slmrec app`); "
           "this page only reads them, and can ask the worker to cancel one.")
paths = context.paths()
statuses = st.pills("Show", [*run_store.STATUSES, "unknown"], selection_mode="multi",
                    default=[*run_store.STATUSES, "unknown"], key="runs_statuses")


frame = queries.runs(context.store())


@st.fragment(run_every=2)
def live_table(page_had_runs: bool):
    frame = queries.runs(context.store())
    if not frame.empty and not page_had_runs:
        st.rerun(scope="app")  # the first run appeared: show the rest of the page too
    if frame.empty:
        widgets.empty("No runs yet. Open **Launch** to queue a pipeline (sasrec → teacher → student → analysis), "
                      "or press a Run button on the **Tour**.")
        return
    counts = frame["status"].value_counts()
    st.caption(" · ".join(f"{widgets.status_text(s)} {counts.get(s, 0)}" for s in run_store.STATUSES))
    workers = alive_workers(paths)
    if workers:
        st.caption("Worker: " + ", ".join(f"{w['worker_id']} on {w.get('device', '?')}"
                                          + (f", running {w['current_run'][-6:]}" if w.get("current_run") else ", idle")
                                          for w in workers))
    elif counts.get("queued", 0):
        st.warning("Runs are queued but no worker is alive: start one with `slmrec worker` (`slmrec app` starts "
                   "one for you).", icon=":material/warning:")
    unreadable = context.store().db.unreadable
    if unreadable:
        st.warning(f"{len(unreadable)} result file(s) cannot be read and are left out, e.g. "
                   f"{unreadable[0]['path']}: {unreadable[0]['error']}", icon=":material/warning:")
    unknown = frame[frame["status"] == "unknown"]
    if not unknown.empty:
        st.warning(f"{len(unknown)} run folder(s) cannot be read and show as unknown, e.g. "
                   f"{unknown['run_id'].iloc[0]}: {unknown['error'].iloc[0]}", icon=":material/warning:")
    view = live_table_frame(frame[frame["status"].isin(statuses or [])])
    st.dataframe(view, hide_index=True, column_config=TABLE_COLUMNS, key="runs_live_table", height=320)
    widgets.csv_download(view, "runs")


live_table(not frame.empty)
if not frame.empty:
    st.subheader("One run")
    labels = dict(zip(frame["run_id"], frame["label"]))
    running = frame[frame["status"] == "running"]["run_id"].tolist()
    default = running[0] if running else frame["run_id"].iloc[0]
    if st.session_state.get("runs_inspect") not in labels:
        st.session_state["runs_inspect"] = default
    run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="runs_inspect")

    @st.fragment(run_every=2)
    def run_detail(run_id: str):
        row = queries.runs(context.store()).set_index("run_id").loc[run_id]
        cols = st.columns(5)
        cols[0].metric("Status", row["status"])
        cols[1].metric("Phase", row["phase"] if pd.notna(row["phase"]) and row["phase"] else "–")
        cols[2].metric("ETA", widgets.duration(row["eta_s"]) or "–")
        cols[3].metric("Samples/s", f"{row['samples_per_s']:.0f}" if pd.notna(row["samples_per_s"]) else "–")
        cols[4].metric("Device", row["device"] if pd.notna(row["device"]) else "–")
        st.progress(float(row["progress"] or 0.0), text=f"{100 * float(row['progress'] or 0):.0f}%")
        if pd.notna(row["error"]) and row["error"]:
            st.error(row["error"])
        if row["status"] in ("queued", "running"):
            if st.button("Cancel this run", key="runs_cancel", icon=":material/stop_circle:"):
                try:
                    status = scheduler.cancel(paths, run_id)
                    st.toast(f"Cancel requested: the run is {status}; a running run stops at its next step.")
                except ValueError as exc:  # it ended meanwhile
                    st.toast(str(exc))
                context.store().refresh(force=True)
        loss_rows = queries.losses(context.store(), [run_id])
        if loss_rows.empty and row["kind"] == "analysis":
            st.caption("An analysis run trains nothing: its results are on the Layers page.")
        elif loss_rows.empty:
            widgets.empty("No loss rows yet: they appear every few training steps once the run is training.")
        else:
            widgets.chart(figures.loss_curves(loss_rows, {run_id: row["label"]}), loss_rows, "runs_losses")
        with st.expander("Log (last lines)", expanded=row["status"] in ("running", "failed")):
            st.code(log_tail(paths, run_id) or "(empty)", language="text")

    run_detail(run_id)

    @st.fragment(run_every=5)
    def compare():
        st.subheader("Compare")
        frame = queries.runs(context.store())
        done = frame[frame["status"] == "done"]
        labels = dict(zip(done["run_id"], done["label"]))
        if any(r not in labels for r in st.session_state.get("runs_compare", [])):
            st.session_state["runs_compare"] = [r for r in st.session_state["runs_compare"] if r in labels]
        st.multiselect("Runs to compare on Results", list(labels), format_func=labels.get, key="runs_compare",
                       persist_state="session", placeholder="Finished runs")
        st.page_link("app/pages/results.py", label="Open Results", icon=":material/leaderboard:")

    compare()
