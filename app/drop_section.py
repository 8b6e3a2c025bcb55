"""The Layers page's last section: drop layers from a trained run, and the chart of the roads to a small
recommender (app/roads.py) that says whether the layers the redundancy maps call droppable are.

The rule picker is live (outside the form) because it decides whether the form asks for n or for the
layers themselves; the rest is one st.form, checked by app/drop_form.py before anything is queued. The
chart and the table of this model's unfinished drop runs are a live section (app/live.py): they refresh
while one of those runs moves, and the chart gains its points when they finish.
"""

from __future__ import annotations

import streamlit as st

from app import context, drop_form, figures, labels, launch, live, queries, roads, widgets
from core.config import ConfigError
from core.eval.metrics import METRICS

SUBMITTED = "layers_drop_submitted"


def render(info: dict | None, analysis_id: str | None) -> None:
    """The section, for the analysed teacher (or student) by default."""
    paths, runs = context.paths(), queries.runs(context.store())
    st.header("Drop layers: roads to a small recommender")
    st.caption("Remove decoder layers from a finished teacher or student and evaluate what is left on the test "
               "users, without retraining (optionally healed by a short LoRA fine-tune). The rules read the "
               "block influence and angular distance of an analysis of the same run on validation users, never "
               "the test users they are scored on.")
    found = roads.sources(runs)
    if found.empty:
        widgets.empty("Dropping layers needs a finished teacher or student: launch one from **Launch** (the tiny "
                      "preset takes seconds), then come back.")
        return
    names = labels.label_map(found)
    if st.session_state.get("layers_drop_for") != analysis_id or st.session_state.get("layers_drop_run") not in names:
        st.session_state["layers_drop_run"] = roads.default_source(runs, info)  # follow the analysis picked above
        st.session_state["layers_drop_for"] = analysis_id
    source = st.selectbox("Trained model", list(names), format_func=names.get, key="layers_drop_run",
                          help="The teacher or student whose layers are dropped; its students are drawn beside.")
    _form(paths, runs, source)
    live.section(_roads, lambda: _moving(paths, source), source)


def _moving(paths, source: str) -> bool:
    """Whether a drop run of `source`, or an analysis one reads, moves (one read of the runs view)."""
    runs = queries.runs(context.store())
    return live.moving(runs, paths, roads.watched(runs, source))


def _form(paths, runs, source: str) -> None:
    depth = roads.depth_of(runs, source) or 1
    rule = st.radio("Rule", list(drop_form.RULES), format_func=drop_form.RULES.get, key="layers_drop_rule",
                    horizontal=True)
    st.session_state.setdefault("layers_drop_n", "1")
    st.session_state.setdefault("layers_drop_heal", 0)
    with st.form("layers_drop_form"):
        left, right = st.columns(2)
        if rule == "list":
            picked = st.session_state.get("layers_drop_layers") or []  # another model may have fewer layers
            st.session_state["layers_drop_layers"] = [x for x in picked if 1 <= x <= depth]
            left.multiselect("Layers to drop", list(range(1, depth + 1)), key="layers_drop_layers",
                             help=f"1 is the first decoder layer, {depth} the last; the others are kept in order.")
        else:
            left.text_input("n: layers to drop", key="layers_drop_n",
                            help=f"One number (0 to {depth - 1}), a range such as 1-{depth - 1}, or a list such "
                                 "as 1,3,5: one run per n (a sweep).")
        right.number_input("Heal steps (0: not healed)", min_value=0, step=10, key="layers_drop_heal",
                           help="LoRA fine-tune steps with the usual loss after dropping; the healed model is "
                                "reported beside the unhealed one.")
        submitted = st.form_submit_button("Launch drop runs", type="primary", icon=":material/content_cut:")
    if submitted:
        _submit(paths, runs, source, depth, rule)
    last = st.session_state.get(SUBMITTED)
    if isinstance(last, dict) and last["source"] == source:
        now = queries.runs(context.store())
        shown = labels.label_map(now[now["run_id"].isin(last["ids"])])
        st.success(launch.submission_text(last["ids"], last["before"], shown), icon=":material/check_circle:")


def _submit(paths, runs, source: str, depth: int, rule: str) -> None:
    settings = drop_form.DropSettings(run=source, rule=rule, n=st.session_state.get("layers_drop_n", ""),
                                      layers=tuple(st.session_state.get("layers_drop_layers") or ()),
                                      heal_steps=int(st.session_state.get("layers_drop_heal", 0)))
    try:
        specs = drop_form.build_specs(paths, settings, depth)
    except ConfigError as exc:
        st.session_state.pop(SUBMITTED, None)
        st.error(f"Not launched: {exc}", icon=":material/error:")
        return
    before = launch.existing_runs(paths)
    ids = drop_form.submit(paths, specs)
    st.session_state[SUBMITTED] = {"ids": ids, "before": before, "source": source}
    context.store().refresh(force=True)


def _roads(source: str) -> None:
    """This model's unfinished drop runs, then the chart (re-drawn while they move)."""
    store = context.store()
    runs = queries.runs(store)
    pending = roads.drops(runs, source).query("status != 'done'")
    if not pending.empty:
        progress = pending.merge(runs[["run_id", "phase", "progress"]], on="run_id")
        st.dataframe(progress[["label", "status", "phase", "progress", "rule", "n", "heal_steps"]], hide_index=True,
                     key="layers_drop_pending", column_config={
                         "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0)})
    left, right = st.columns(2)
    metric = left.selectbox("Metric", list(METRICS), index=list(METRICS).index("NDCG@10"), key="layers_roads_metric")
    protocol = right.radio("Protocol", ["full", "sampled"], horizontal=True, key="layers_roads_protocol")
    rows = roads.chart_rows(store, runs, source, metric, protocol)
    if rows.empty or rows["reference"].all():
        widgets.empty("No finished drop run or student of this model yet: launch drop runs above; their points "
                      "appear here when they finish.")
    random = bool((runs.loc[runs["run_id"] == source, "base"] == "tiny").any())
    widgets.chart(figures.mark_random(figures.roads(rows, metric, protocol), random), rows, "layers_roads")
    st.caption(roads.caption(rows["road"]))
