"""The Runs page's "One run" section: status, links, notes, the reproducing command and the clone.

Each function renders one part for one row of the runs frame (app/queries.py `runs`, with the
notes of app/annotations.py). Writes go through core: notes through core.store.notes, cancel
through core.jobs.scheduler; "Clone into Launch" only hands values to the Launch page (app/links.py).
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from app import clone, links, reproduce, widgets
from app.runview import link_targets
from core.jobs import scheduler
from core.store import notes as run_notes
from core.store.paths import Paths


def _text(value, fmt: str = "{}") -> str:
    return fmt.format(value) if pd.notna(value) and value != "" else "–"


def status_metrics(row: pd.Series) -> None:
    """Status, phase, ETA (while running only), samples/s, device; progress bar and error."""
    cols = st.columns(5)
    cols[0].metric("Status", row["status"])
    cols[1].metric("Phase", _text(row["phase"]))
    cols[2].metric("ETA", (widgets.duration(row["eta_s"]) or "–") if row["status"] == "running" else "–")
    cols[3].metric("Samples/s", _text(row["samples_per_s"], "{:.0f}"))
    cols[4].metric("Device", _text(row["device"]))
    progress = float(row["progress"]) if pd.notna(row["progress"]) else 0.0
    st.progress(progress, text=f"{100 * progress:.0f}%")
    if pd.notna(row["error"]) and row["error"]:
        st.error(row["error"])


def cancel_button(paths: Paths, row: pd.Series, on_done) -> None:
    """'Cancel this run' while it is queued or running."""
    if row["status"] not in ("queued", "running"):
        return
    if st.button("Cancel this run", key="runs_cancel", icon=":material/stop_circle:"):
        try:
            status = scheduler.cancel(paths, row["run_id"])
            st.toast(f"Cancel requested: the run is {status}; a running run stops at its next step.")
        except ValueError as exc:  # it ended meanwhile
            st.toast(str(exc))
        on_done()


def page_links(row: pd.Series, every: pd.DataFrame) -> None:
    """Links to this run on Layers (when it has an analysis) and Results (when it is a finished result)."""
    [layers], [results] = link_targets(every[every["run_id"] == row["run_id"]], every)
    cols = st.columns(2)
    if layers:
        cols[0].page_link("app/pages/layers.py", label="This run on Layers", icon=":material/stacks:",
                          query_params={links.RUN: row["run_id"]})
    if results:
        cols[1].page_link("app/pages/results.py", label="This run on Results", icon=":material/leaderboard:",
                          query_params={links.RUN: row["run_id"]})


def notes_form(paths: Paths, row: pd.Series, on_saved) -> None:
    """Tags, a note and 'archived' for the run, saved to data/runs/<run_id>/notes.json."""
    run_id = row["run_id"]
    with st.form(f"runs_notes_{run_id}", border=False):
        tags = st.text_input("Tags (comma-separated)", value=", ".join(row["tags"]), key=f"runs_tags_{run_id}")
        note = st.text_area("Note", value=row["note"], key=f"runs_note_{run_id}", height=80)
        archived = st.checkbox("Archived (hidden from the table unless the Archived switch is on; nothing is deleted)",
                               value=bool(row["archived"]), key=f"runs_archived_{run_id}")
        if st.form_submit_button("Save notes", icon=":material/save:"):
            try:
                run_notes.update_notes(paths.runs, run_id, tags=run_notes.parse_tags(tags), note=note,
                                       archived=archived)
            except ValueError as exc:
                st.error(f"Not saved: {exc}", icon=":material/error:")
                return
            st.toast("Notes saved.")
            on_saved()


def reproduce_box(row: pd.Series) -> None:
    """The command that recreates the run, and its spec, each with Streamlit's copy button."""
    spec = json.loads(row["spec"]) if isinstance(row["spec"], str) else None
    if not spec:
        st.caption("This run's spec cannot be read, so there is no command to recreate it.")
        return
    st.caption("Run in the project folder (or a notebook cell, prefixed with `!`). It writes the spec as submitted "
               "and queues it for the worker (`slmrec run` instead of `submit` runs it in the foreground). With "
               "the same settings hash, a finished, queued or running run is found instead of trained again; "
               "the runs the spec names (sasrec_run, distill.teacher_run, analysis.run) must exist.")
    st.code(reproduce.command(row["kind"], row["run_id"], spec), language="bash")
    st.caption(f"The spec alone ({reproduce.spec_file_name(row['kind'], row['run_id'])}, "
               f"settings hash {row['settings_hash']}):")
    st.code(reproduce.spec_text(spec), language="json")


def clone_button(runs: pd.DataFrame, row: pd.Series) -> None:
    """'Clone into Launch': the Launch form filled with this run's settings (app/clone.py)."""
    if not st.button("Clone into Launch", key="runs_clone", icon=":material/content_copy:",
                     help="Open Launch with this run's settings (a student brings its teacher's depth and epochs)."):
        return
    try:
        values, missed = clone.launch_values(runs, row["run_id"])
    except clone.CloneError as exc:
        st.warning(f"Not cloned: {exc}", icon=":material/block:")
        return
    links.request_clone(row["run_id"], values, missed)
