"""Results: both protocols, 95% intervals, paired comparisons, the reproduction table, config diff, trade-offs.

With "Group seeds" on, each row is a seed group (runs that differ only in train.seed): mean ± std over seeds.
"""

import pandas as pd
import streamlit as st

from app import context, figures, links, queries, results, stats, widgets
from core.results.compare import CompareError

st.title("Results")
store = context.store()
widgets.unreadable_warning(store.db.unreadable)
runs = queries.runs(store)
done = runs[(runs["status"] == "done") & runs["kind"].isin(["sasrec", "teacher", "student"])]
if done.empty:
    widgets.empty("No finished run yet. Launch a pipeline on **Launch** (the tiny preset takes seconds) and "
                  "come back when it is done.")
    st.stop()

labels = dict(zip(done["run_id"], done["label"]))
if links.select("results_runs", labels, many=True):  # ?run= or ?runs= in the address (app/links.py)
    st.warning("The link names runs that are not finished results here; they are left out.",
               icon=":material/link_off:")
if "results_runs" not in st.session_state:
    chosen = [r for r in st.session_state.get("runs_compare", []) if r in labels]
    st.session_state["results_runs"] = chosen or list(done["run_id"][:5])
c1, c2, c3 = st.columns([3, 1, 1], vertical_alignment="bottom")
selected = c1.multiselect("Runs", list(labels), format_func=labels.get, key="results_runs",
                          help="Pick runs here or under Compare on the Runs page.")
links.remember("results_runs", many=True)
metric = c2.selectbox("Metric", list(stats.METRICS), index=stats.METRICS.index("NDCG@10"), key="results_metric")
grouped = c3.toggle("Group seeds", value=True, key="results_group_seeds",
                    help="A picked run brings every finished run with the same settings except train.seed; "
                         "each row then shows mean ± std (sample) over the seeds, n in 'seeds'.")
if not selected:
    widgets.empty("Pick one or more runs above.")
    st.stop()
groups = queries.seed_groups(store)
members = stats.members(done, groups, selected, grouped)
units = stats.units(done, members)
final = queries.final_metrics(store, list(members["run_id"]))
summary = stats.summarise(final, members)
random = bool((units.loc[units["kind"].isin(["teacher", "student"]), "base"] == "tiny").any())
if random:
    st.info(f"Some picked runs use the tiny random model ({figures.RANDOM}): their numbers show how the pipeline "
            "works, not what the method does.", icon=":material/science:")

st.header("Both protocols")
st.caption("Full ranking over every item (history masked) is primary; sampled ranks the target among 999 fixed "
           "negatives, as in the paper. They can disagree (Krichene and Rendle, KDD 2020).")
left, right = st.columns(2)
for column, protocol in ((left, "full"), (right, "sampled")):
    with column:
        st.subheader(f"{protocol} ranking")
        wide = stats.wide(summary, members, protocol)
        if wide.empty:
            widgets.empty(f"No {protocol}-ranking test metrics for these runs.")
            continue
        csv = results.export(summary[summary["protocol"] == protocol], members)
        widgets.table(wide, f"results_{protocol}", csv=csv)

ranks = queries.final_ranks(store, list(members["run_id"]))
if ranks.empty:
    widgets.empty("No per-user ranks stored for these runs, so no confidence intervals.")
else:
    table = stats.metric_table(ranks, metric, members).merge(units[["unit", "kind", "label"]], on="unit")
    table = table[table["model"] == table["kind"]]
    st.caption("Error bars: 95% bootstrap intervals (1,000 resamples). A seed group's resamples its training seeds "
               "as well as the test users, so it includes training noise; a single run's resamples the test users "
               "only (`ci_over` in the CSV).")
    widgets.chart(figures.mark_random(figures.metric_bars(table, metric), random), results.export(table, members),
                  "results_ci")

st.header("Paired comparison")
options = list(units["unit"])
if len(options) < 2:
    widgets.empty("Pick two or more runs (or seed groups) to compare them user by user.")
else:
    for key in ("results_pair_a", "results_pair_b"):
        if st.session_state.get(key) not in options:
            st.session_state.pop(key, None)
    unit_labels = dict(zip(units["unit"], units["label"]))
    a_col, b_col = st.columns(2)
    unit_a = a_col.selectbox("A", options, index=0, format_func=unit_labels.get, key="results_pair_a")
    unit_b = b_col.selectbox("B", options, index=1, format_func=unit_labels.get, key="results_pair_b")
    if unit_a == unit_b:
        widgets.empty("Pick two different runs for A and B.")
    else:
        try:
            paired = stats.paired_table(ranks, members, done, unit_a, unit_b, metric)
        except CompareError as exc:
            st.warning(f"Not compared: {exc}", icon=":material/block:")
        else:
            st.caption(f"{metric} of A − B over the same test users: the mean difference, its paired 95% bootstrap "
                       "interval (1,000 resamples of users) and a sign-flip permutation p-value. **significant** "
                       "only when the interval excludes 0; otherwise the difference is inside the noise. Seed "
                       "groups are paired seed by seed; their 'all seeds' row resamples each side's training "
                       "seeds as well as the users (hierarchical bootstrap, bootstrap p-value), so its interval "
                       "includes training noise ('resamples' says which).")
            st.caption(f"**A**: {unit_labels[unit_a]} · **B**: {unit_labels[unit_b]}")
            widgets.table(paired.round(4), "results_paired",
                          csv=results.paired_export(paired, members, unit_a, unit_b))

st.header("Reproduction table")
st.caption("Rows in the paper's terms; percent (mean ± std over seeds). The paper's column is Amazon Movies and TV "
           "(sampled 1+999): a reference for the shape of the result, not the same data.")
reproduction = results.reproduction_table(units, summary)
widgets.table(reproduction, "results_reproduction", csv=results.export(reproduction.assign(unit=list(units["unit"])),
                                                                        members))

st.header("What differs between these runs")
diff = results.config_diff(units)
if len(units) < 2:
    widgets.empty("Pick two or more runs to compare their settings.")
elif diff.empty:
    st.write("Their settings are identical.")
else:
    ids = results.run_ids(members)
    id_row = {"setting": "run_ids", **{label: ids[unit] for unit, label in zip(units["unit"], units["label"])}}
    widgets.table(diff.fillna("–").astype(str), "results_config_diff",
                  csv=pd.concat([pd.DataFrame([id_row]), diff], ignore_index=True))

st.header("Settings against quality")
st.caption("Only the teacher and student runs picked above" + (" (each seed group as one line: the mean over its "
           "seeds)" if grouped else "") + "; pick more runs to see more lines.")
parallel = results.parallel_frame(done, final, metric, members)
if len(parallel) < 2:
    widgets.empty("Needs two or more finished teacher or student runs among the picked runs.")
else:
    dims = ["teacher layers", "student layers", "blocks", "λ1 cos", "λ2 norm", "λ3 sup", "lr"]
    widgets.chart(figures.mark_random(figures.parallel_coordinates(parallel, dims, metric), random), parallel,
                  "results_parallel")

st.header("Cost against quality")
if ranks.empty:
    widgets.empty("Needs stored ranks of the selected runs.")
else:
    trade = results.tradeoff_frame(units, table, queries.timings(store, "inference"), members)
    if trade.empty:
        widgets.empty("None of the selected runs reports its inference parameters yet (teacher and student runs "
                      "do when they finish).")
    else:
        widgets.chart(figures.mark_random(figures.tradeoff(trade, metric), random), results.export(trade, members),
                      "results_tradeoff")
