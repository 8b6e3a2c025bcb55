"""Layers: what each layer has learned: CKA, angular distance, block influence, per-layer readout, depth, and
what dropping layers does (drop runs against truncation and the students)."""

import streamlit as st

from app import context, drop_section, figures, labels, layers, links, queries, widgets

st.title("Layers")
st.caption("Layer l is the residual stream after decoder layer l (0 = the input embeddings).")
store = context.store()
widgets.unreadable_warning(store.db.unreadable)
runs = queries.runs(store)
found = queries.layer_runs(store).merge(runs[["run_id", "label", "created_at"]], on="run_id")
run_id, info = None, None  # the analysis picked below, and the runs it looked at
if found.empty:
    widgets.empty("No layer analysis yet. Every pipeline from **Launch** ends with an analysis run; the **Tour**'s "
                  "first cell analyses the pretrained LLM alone. Results appear here when one finishes.")
else:
    found = found.sort_values("created_at", ascending=False)
    names = dict(zip(found["run_id"], found["label"]))
    if links.select("layers_run", names, resolve=lambda r: links.analysis_of(runs, r)):
        st.warning("The link names a run without a layer analysis here.", icon=":material/link_off:")
    run_id = st.selectbox("Analysis run", list(names), format_func=names.get, key="layers_run")
    links.remember("layers_run")  # ?run= in the address: a reload or a shared link shows this run

    random = bool((runs.loc[runs["run_id"] == run_id, "base"] == "tiny").any())

    def chart(fig, rows, key):
        """The run's chart, marked when its model is random; its CSV names the analysis run."""
        data = labels.with_labels(rows.assign(run_id=run_id)[["run_id", *rows.columns]], runs)
        widgets.chart(figures.mark_random(fig, random), data, key)

    info = layers.analysed(runs, run_id)
    st.caption(layers.subject(runs, run_id, info))

    st.header("Representation similarity")
    measure = st.radio("Measure", ["cka", "cosine"], horizontal=True, key="layers_measure",
                       help="Linear CKA between the layers' last-position states over test users; cosine: "
                            "mean cosine similarity of the same states.")
    sim = queries.similarity(store, run_id, measure)
    if sim.empty:
        widgets.empty(f"This run has no {measure} rows.")
    else:
        st.caption(layers.STATES + "  \n" + layers.glossary(set(sim["a_model"]) | set(sim["b_model"])))
    for (a_model, b_model), rows in sorted(sim.groupby(["a_model", "b_model"]), key=lambda g: layers.order(*g[0])):
        pairs = layers.pairs_for(a_model, b_model, info)
        title = f"{measure.upper()}: {a_model} × {b_model}" + (" (squares: aligned blocks)" if pairs else "")
        chart(figures.similarity_heatmap(rows, title, measure, pairs=pairs), rows,
              f"layers_{measure}_{a_model}_{b_model}")

    st.header("Angular distance between layer l and layer l + n")
    angular = queries.similarity(store, run_id, "angular")
    angular = angular[(angular["a_model"] == angular["b_model"]) & (angular["b_layer"] > angular["a_layer"])]
    if angular.empty:
        widgets.empty("No angular-distance rows in this run.")
    for model, rows in angular.groupby("a_model", sort=False):
        chart(figures.angular_triangle(rows, f"{model}: small values = layers that could be dropped"), rows,
              f"layers_angular_{model}")

    st.header("Block influence")
    influence = queries.similarity(store, run_id, "block_influence")
    if influence.empty:
        widgets.empty("No block-influence rows in this run.")
    else:
        chart(figures.block_influence_bars(influence), influence, "layers_block_influence")

    st.header("Per-layer readout")
    readout = queries.layer_metrics(store, [run_id])
    if readout.empty:
        widgets.empty("No per-layer metrics in this run.")
    else:
        c1, c2, c3 = st.columns(3)
        metric = c1.selectbox("Metric", sorted(readout["metric"].unique()), key="layers_metric",
                              index=sorted(readout["metric"].unique()).index("NDCG@10")
                              if "NDCG@10" in set(readout["metric"]) else 0)
        protocol = c2.radio("Protocol", sorted(readout["protocol"].unique()), horizontal=True, key="layers_protocol")
        split = c3.radio("Split", [x for x in ("test", "valid") if x in set(readout["split"])], horizontal=True,
                         key="layers_split")
        rows = readout[(readout["metric"] == metric) & (readout["protocol"] == protocol) & (readout["split"] == split)]
        rows = rows.assign(series=rows["model"])
        st.caption(layers.glossary(rows["model"]))
        ids = [r for r in (info["teacher"], info["student"], run_id) if r]
        sasrec = queries.sasrec_reference(store, runs, ids, metric, protocol)
        widgets.chart(figures.mark_random(figures.readout_curves(rows, metric, sasrec), random),
                      labels.with_labels(rows, runs), "layers_readout")

st.header("Depth sweep")
c1, c2 = st.columns(2)
sweep_metric = c1.selectbox("Metric", ["NDCG@10", "HR@10", "HR@1", "MRR", "NDCG@5", "HR@5", "HR@20", "NDCG@20"],
                            key="layers_sweep_metric")
sweep_protocol = c2.radio("Protocol", ["full", "sampled"], horizontal=True, key="layers_sweep_protocol")
sweep = queries.depth_sweep(store, runs, sweep_metric, sweep_protocol)
if sweep["depth"].nunique() < 2:
    widgets.empty("The depth sweep needs finished teacher runs at two or more depths. Launch teachers at "
                  "depths 1, 2, 4, 8 (Tour cell 3 does it), then come back.")
if not sweep.empty:
    sweep = layers.sweep_groups(sweep, runs)
    groups = dict(zip(sweep["group"], sweep["group_label"]))
    if st.session_state.get("layers_sweep_group") not in groups:
        st.session_state["layers_sweep_group"] = layers.default_group(sweep)
    group = st.selectbox("Teachers compared", list(groups), format_func=groups.get, key="layers_sweep_group",
                         help="Teachers that differ only in depth: the same base model, data settings, training "
                              "budget and seed. Runs that differ in anything else are a group of their own.")
    sweep = sweep[sweep["group"] == group]
    sasrec = queries.sasrec_reference(store, runs, list(sweep["run_id"]), sweep_metric, sweep_protocol)
    figure = figures.depth_sweep(sweep, sweep_metric, sasrec)
    figure = figures.mark_random(figure, bool((sweep["base"] == "tiny").any()))
    widgets.chart(figure, labels.with_labels(sweep, runs), "layers_depth_sweep")

drop_section.render(info, run_id)
