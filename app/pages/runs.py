"""Runs: every run (search, filters, tags, archive), one run's losses, log, notes, command and clone, overlays."""

import streamlit as st

from app import annotations, context, figures, links, live, queries, run_detail, widgets
from app.runview import TABLE_COLUMNS, RunFilter, filter_runs, live_table_frame, log_tail
from core.store import runs as run_store
from core.jobs.registry import alive_workers

st.title("Runs")
st.caption("Runs are executed by the background worker (`slmrec worker`, started by `slmrec app`); "
           "this page only reads them, asks the worker to cancel one, and keeps your tags and notes.")
paths = context.paths()


def all_runs():
    store = context.store()
    return annotations.with_notes(queries.runs(store), annotations.all_notes(store, paths))


def refresh() -> None:
    context.store().refresh(force=True)


frame = all_runs()
if frame.empty:
    live.section(lambda: widgets.empty("No runs yet. Open **Launch** to queue a pipeline (sasrec → teacher → "
                                       "student → analysis), or press a Run button on the **Tour**."),
                 lambda: not queries.runs(context.store()).empty)
    st.stop()

c1, c2, c3 = st.columns([2, 4, 1], vertical_alignment="bottom")
search = c1.text_input("Search", key="runs_search", placeholder="label, id, name, tag or note")
statuses = c2.pills("Status", [*run_store.STATUSES, "unknown"], selection_mode="multi", key="runs_statuses",
                    help="None picked: every status.")
show_archived = c3.toggle("Archived", key="runs_show_archived", help="Also list archived runs.")
with st.expander("More filters: kind, dataset, base, preset, tags"):
    f1, f2, f3, f4, f5 = st.columns(5)
    choices = {c: sorted(v for v in frame[c].dropna().unique() if v) for c in ("kind", "dataset", "base", "preset")}
    kinds = f1.multiselect("Kind", choices["kind"], key="runs_kinds")
    datasets = f2.multiselect("Dataset", choices["dataset"], key="runs_datasets")
    bases = f3.multiselect("Base", choices["base"], key="runs_bases")
    presets = f4.multiselect("Preset", choices["preset"], key="runs_presets",
                             help="The core preset whose budget a run has (none when the form changed one).")
    tags = f5.multiselect("Tags", annotations.every_tag(frame), key="runs_tags")
shown = RunFilter(search, tuple(kinds), tuple(statuses or ()), tuple(datasets), tuple(bases), tuple(presets),
                  tuple(tags), show_archived)


def live_table() -> None:
    frame = all_runs()
    counts = frame["status"].value_counts()
    st.caption(" · ".join(f"{widgets.status_text(s)} {counts.get(s, 0)}" for s in run_store.STATUSES)
               + (f" · {int(frame['archived'].sum())} archived" if frame["archived"].any() else ""))
    workers = alive_workers(paths)
    if workers:
        st.caption("Worker: " + ", ".join(f"{w['worker_id']} on {w.get('device', '?')}"
                                          + (f", running {w['current_run'][-6:]}" if w.get("current_run") else ", idle")
                                          for w in workers))
    elif counts.get("queued", 0):
        st.warning("Runs are queued but no worker is alive: start one with `slmrec worker` (`slmrec app` starts "
                   "one for you).", icon=":material/warning:")
    widgets.unreadable_warning(context.store().db.unreadable)
    unknown = frame[frame["status"] == "unknown"]
    if not unknown.empty:
        st.warning(f"{len(unknown)} run folder(s) cannot be read and show as unknown, e.g. "
                   f"{unknown['run_id'].iloc[0]}: {unknown['error'].iloc[0]}", icon=":material/warning:")
    view = live_table_frame(filter_runs(frame, shown), frame)
    st.caption(f"{len(view)} of {len(frame)} runs listed.")
    st.dataframe(view, hide_index=True, column_config=TABLE_COLUMNS, key="runs_live_table", height=320,
                 placeholder="")
    widgets.csv_download(view, "runs")


live.section(live_table, lambda: live.moving(queries.runs(context.store()), paths))

st.subheader("One run")
labels = dict(zip(frame["run_id"], frame["label"]))
missing = links.select("runs_inspect", labels)
if missing:
    st.warning(f"The link names run {missing[0]}, which is not in this project.", icon=":material/link_off:")
if st.session_state.get("runs_inspect") not in labels:
    running = frame[frame["status"] == "running"]["run_id"].tolist()
    st.session_state["runs_inspect"] = running[0] if running else frame["run_id"].iloc[0]
run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="runs_inspect")
links.remember("runs_inspect")


def run_live(run_id: str) -> None:
    # the status part needs no notes: skip their per-run stat scan on every live refresh
    row = queries.runs(context.store()).set_index("run_id", drop=False).loc[run_id]
    run_detail.status_metrics(row)
    run_detail.cancel_button(paths, row, refresh)
    loss_rows = queries.losses(context.store(), [run_id])
    if loss_rows.empty and row["kind"] == "analysis":
        st.caption("An analysis run trains nothing: its results are on the Layers page.")
    elif loss_rows.empty:
        widgets.empty("No loss rows yet: they appear every few training steps once the run is training.")
    else:
        widgets.chart(figures.loss_curves(loss_rows, {run_id: row["label"]}), loss_rows, "runs_losses")
    with st.expander("Log (last lines)", expanded=row["status"] in ("running", "failed")):
        st.code(log_tail(paths, run_id) or "(empty)", language="text")


row = frame.set_index("run_id", drop=False).loc[run_id]
run_detail.page_links(row, frame)
live.section(run_live, lambda: live.moving(queries.runs(context.store()), paths, [run_id]), run_id)
with st.expander("Tags and note", expanded=bool(row["tags"] or row["note"])):
    run_detail.notes_form(paths, row, st.rerun)
with st.expander("Reproduce: the command that recreates this run"):
    run_detail.reproduce_box(row)
run_detail.clone_button(frame, row)

st.subheader("Loss curves of several runs")
trained = frame[frame["kind"].isin(["sasrec", "teacher", "student"]) & ~frame["archived"]]
overlay = st.multiselect("Runs", list(trained["run_id"]), format_func=labels.get, key="runs_overlay",
                         placeholder="Pick runs to overlay their training losses, term by term")


def overlay_chart(ids: list[str]) -> None:
    rows = queries.losses(context.store(), ids)
    if rows.empty:
        widgets.empty("None of these runs has logged a loss yet.")
        return
    widgets.chart(figures.loss_curves(rows, labels), rows, "runs_overlay_losses")


if overlay:
    live.section(overlay_chart, lambda: live.moving(queries.runs(context.store()), paths, overlay), overlay)

st.subheader("Compare")
done = frame[(frame["status"] == "done") & frame["kind"].isin(["sasrec", "teacher", "student"])]
compare_labels = dict(zip(done["run_id"], done["label"]))
if any(r not in compare_labels for r in st.session_state.get("runs_compare", [])):
    st.session_state["runs_compare"] = [r for r in st.session_state["runs_compare"] if r in compare_labels]
chosen = st.multiselect("Runs to compare on Results", list(compare_labels), format_func=compare_labels.get,
                        key="runs_compare", persist_state="session", placeholder="Finished runs")
st.page_link("app/pages/results.py", label="Open Results", icon=":material/leaderboard:",
             query_params={links.RUNS: ",".join(chosen)} if chosen else None)
