"""Results: both ranking protocols side by side, the reproduction table, config diff and trade-offs."""

import streamlit as st

from app import context, figures, queries, results, stats, widgets

st.title("Results")
store = context.store()
runs = queries.runs(store)
done = runs[(runs["status"] == "done") & runs["kind"].isin(["sasrec", "teacher", "student"])]
if done.empty:
    widgets.empty("No finished run yet. Launch a pipeline on **Launch** (the tiny preset takes seconds) and "
                  "come back when it is done.")
    st.stop()

labels = dict(zip(done["run_id"], done["label"]))
if "results_runs" not in st.session_state:
    chosen = [r for r in st.session_state.get("runs_compare", []) if r in labels]
    st.session_state["results_runs"] = chosen or list(done["run_id"][:5])
c1, c2 = st.columns([3, 1])
selected = c1.multiselect("Runs", list(labels), format_func=labels.get, key="results_runs",
                          help="Pick runs here or under Compare on the Runs page.")
metric = c2.selectbox("Metric", list(stats.METRICS), index=stats.METRICS.index("NDCG@10"), key="results_metric")
if not selected:
    widgets.empty("Pick one or more runs above.")
    st.stop()
chosen = done[done["run_id"].isin(selected)]
final = queries.final_metrics(store, selected)
final = final.merge(chosen[["run_id", "kind", "label"]], on="run_id")
mine = final[final["model"] == final["kind"]]

st.header("Both protocols")
st.caption("Full ranking over every item (history masked) is primary; sampled ranks the target among 999 fixed "
           "negatives, as in the paper. They can disagree (Krichene and Rendle, KDD 2020).")
left, right = st.columns(2)
for column, protocol in ((left, "full"), (right, "sampled")):
    with column:
        st.subheader(f"{protocol} ranking")
        wide = queries.wide_final(mine, protocol)
        if wide.empty:
            widgets.empty(f"No {protocol}-ranking test metrics for these runs.")
            continue
        wide.insert(0, "run", wide["run_id"].map(labels))
        widgets.table(wide.drop(columns=["run_id", "model"]).round(4), f"results_{protocol}")

ranks = queries.final_ranks(store, selected)
if ranks.empty:
    widgets.empty("No per-user ranks stored for these runs, so no confidence intervals.")
else:
    table = stats.metric_table(ranks, metric).merge(chosen[["run_id", "kind", "label"]], on="run_id")
    table = table[table["model"] == table["kind"]]
    widgets.chart(figures.metric_bars(table, metric), table, "results_ci")

st.header("Reproduction table")
st.caption("Rows in the paper's terms; percent. The paper's column is Amazon Movies and TV (sampled 1+999): "
           "a reference for the shape of the result, not the same data.")
widgets.table(results.reproduction_table(chosen, mine), "results_reproduction")

st.header("What differs between these runs")
diff = results.config_diff(chosen)
if len(chosen) < 2:
    widgets.empty("Pick two or more runs to compare their settings.")
elif diff.empty:
    st.write("Their settings are identical.")
else:
    widgets.table(diff.fillna("–").astype(str), "results_config_diff")

st.header("Settings against quality")
all_final = queries.final_metrics(store, list(runs[runs["status"] == "done"]["run_id"]))
parallel = results.parallel_frame(runs, all_final, metric)
if len(parallel) < 2:
    widgets.empty("Needs two or more finished teacher or student runs.")
else:
    dims = ["teacher layers", "student layers", "blocks", "λ1 cos", "λ2 norm", "λ3 sup", "lr"]
    widgets.chart(figures.parallel_coordinates(parallel, dims, metric), parallel, "results_parallel")

st.header("Cost against quality")
if ranks.empty:
    widgets.empty("Needs stored ranks of the selected runs.")
else:
    trade = results.tradeoff_frame(runs, table, queries.timings(store, "inference"))
    if trade.empty:
        widgets.empty("None of the selected runs reports its inference parameters yet (teacher and student runs "
                      "do when they finish).")
    else:
        widgets.chart(figures.tradeoff(trade, metric), trade, "results_tradeoff")
