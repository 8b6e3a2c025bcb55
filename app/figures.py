"""Plotly figure builders: each takes tidy DataFrames and returns a `go.Figure`; no Streamlit here.

Layer numbers follow the backbone's convention (core/models/backbone.py): 0 is the input
embeddings, l = 1..L the residual stream after decoder layer l.
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

LOSS_GROUPS = (("total", "ce", "cos", "norm", "ms"), ("lr", "grad_norm"))
MODEL_COLORS = {"teacher": "#d62728", "student": "#1f77b4", "student-adapter": "#9ecae1", "base": "#7f7f7f",
                "teacher2": "#ff9896", "student2": "#aec7e8"}  # the same model, the same colour everywhere
HEIGHT = 380


RANDOM = "random model: mechanics only"


def mark_random(fig: go.Figure, random: bool) -> go.Figure:
    """Say in the figure's own title (so its PNG says it too) when it shows the tiny random model."""
    if random:
        fig.update_layout(title=f"{fig.layout.title.text} ({RANDOM})")
    return fig


def _layout(fig: go.Figure, title: str, height: int = HEIGHT) -> go.Figure:
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=50, b=10), legend_title_text="")
    return fig


def loss_curves(losses: pd.DataFrame, labels: dict[str, str]) -> go.Figure:
    """One panel per loss term (its own y scale), one line per run."""
    frame = losses.assign(run=losses["run_id"].map(labels).fillna(losses["run_id"]))
    order = [n for group in LOSS_GROUPS for n in group if n in set(frame["name"])]
    order += sorted(set(frame["name"]) - set(order))
    fig = px.line(frame, x="step", y="value", color="run", facet_col="name", facet_col_wrap=3, markers=True,
                  category_orders={"name": order}, facet_col_spacing=0.06, facet_row_spacing=0.12)
    fig.update_traces(marker_size=4)  # markers: a term logged once is one point, which a line alone hides
    fig.update_yaxes(matches=None, showticklabels=True)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    rows = (len(order) + 2) // 3
    return _layout(fig, "Training losses per term", height=220 * rows + 80)


def _layer_ticks(fig: go.Figure, axis: str, values) -> None:
    """Integer ticks on a layer axis (every layer while there are few)."""
    count = len(set(values))
    update = fig.update_xaxes if axis == "x" else fig.update_yaxes
    update(dtick=1 if count <= 16 else None, tickformat="d")


MEASURE_NAMES = {"cka": "CKA", "cosine": "cosine", "angular": "angular distance",
                 "block_influence": "block influence"}


def similarity_heatmap(rows: pd.DataFrame, title: str, measure: str, zmax: float | None = 1.0,
                       pairs: list[tuple[int, int]] | None = None, pair_name: str = "aligned blocks") -> go.Figure:
    """A heatmap of `measure` over (a_layer rows, b_layer columns); `pairs` (a, b) marked with squares."""
    grid = rows.pivot_table(index="a_layer", columns="b_layer", values="value")
    name = MEASURE_NAMES.get(measure, measure)
    fig = go.Figure(go.Heatmap(z=grid.to_numpy(), x=grid.columns, y=grid.index, zmin=0, zmax=zmax,
                               colorscale="Viridis", colorbar=dict(title=name),
                               hovertemplate="a layer %{y}<br>b layer %{x}<br>" + name
                                             + " %{z:.3f}<extra></extra>"))
    if pairs:
        fig.add_trace(go.Scatter(x=[b for _, b in pairs], y=[a for a, _ in pairs], mode="markers", name=pair_name,
                                 marker=dict(symbol="square-open", size=22, color="red", line=dict(width=3))))
    a_name, b_name = rows["a_model"].iloc[0], rows["b_model"].iloc[0]
    fig.update_xaxes(title=f"{b_name} layer")
    fig.update_yaxes(title=f"{a_name} layer")
    _layer_ticks(fig, "x", grid.columns)
    _layer_ticks(fig, "y", grid.index)
    fig.update_layout(legend=dict(orientation="h", y=-0.2))
    return _layout(fig, title, height=420)


def angular_triangle(rows: pd.DataFrame, title: str) -> go.Figure:
    """Angular distance between layer l and layer l + n: start layer l (rows) by block size n (columns)."""
    frame = rows.assign(n=rows["b_layer"] - rows["a_layer"])
    grid = frame.pivot_table(index="a_layer", columns="n", values="value")
    fig = go.Figure(go.Heatmap(z=grid.to_numpy(), x=grid.columns, y=grid.index, colorscale="Blues",
                               zmin=0, colorbar=dict(title="distance"),
                               hovertemplate="from layer %{y}<br>n = %{x} layers<br>%{z:.3f}<extra></extra>"))
    fig.update_xaxes(title="n (layers skipped)")
    fig.update_yaxes(title="start layer l")
    _layer_ticks(fig, "x", grid.columns)
    _layer_ticks(fig, "y", grid.index)
    return _layout(fig, title, height=420)


def block_influence_bars(rows: pd.DataFrame) -> go.Figure:
    """Block influence (1 - cos between a layer's input and output) per layer, one colour per model."""
    fig = px.bar(rows, x="a_layer", y="value", color="a_model", barmode="group", color_discrete_map=MODEL_COLORS,
                 labels={"a_layer": "layer", "value": "block influence", "a_model": "model"})
    _layer_ticks(fig, "x", rows["a_layer"])
    return _layout(fig, "Block influence per layer (higher: the layer changes the stream more)")


def readout_curves(rows: pd.DataFrame, metric: str, sasrec: float | None) -> go.Figure:
    """Per-layer readout: metric by layer, one line per (run, model), with the SASRec level dashed."""
    fig = px.line(rows, x="layer", y="value", color="series", markers=True, labels={"value": metric},
                  color_discrete_map=MODEL_COLORS)
    _layer_ticks(fig, "x", rows["layer"])
    if sasrec is not None:
        fig.add_hline(y=sasrec, line_dash="dash", line_color="grey", annotation_text=f"SASRec {sasrec:.4f}")
    return _layout(fig, f"{metric} read out from each layer")


def depth_sweep(rows: pd.DataFrame, metric: str, sasrec: float | None) -> go.Figure:
    """Final metric of teacher runs by depth, one line per group of comparable teachers (`group_label`:
    app/layers.py sweep_groups; the mean where a group has several runs at one depth), a point per run."""
    mean = rows.groupby(["group_label", "depth"], as_index=False)["value"].mean().sort_values("depth")
    fig = px.line(mean, x="depth", y="value", color="group_label", markers=True,
                  labels={"value": metric, "group_label": "teachers"})
    fig.add_trace(go.Scatter(x=rows["depth"], y=rows["value"], mode="markers", name="runs", text=rows["label"],
                             marker=dict(color="rgba(0,0,0,0.35)", size=7),
                             hovertemplate="%{text}<br>depth %{x}<br>%{y:.4f}<extra></extra>"))
    if sasrec is not None:
        fig.add_hline(y=sasrec, line_dash="dash", line_color="grey", annotation_text=f"SASRec {sasrec:.4f}")
    depths = sorted(set(rows["depth"].dropna().astype(int)))
    fig.update_xaxes(title="LLM layers kept (teacher depth)", type="log", tickvals=depths, ticktext=depths)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.2, x=0))
    return _layout(fig, f"{metric} by depth")


def wrap_label(label: str) -> str:
    """A run label on several lines (one per ' · ' part, two parts a line) for an axis tick."""
    parts = label.split(" · ")
    return "<br>".join(" · ".join(parts[i:i + 2]) for i in range(0, len(parts), 2))


def metric_bars(table: pd.DataFrame, metric: str) -> go.Figure:
    """Bars of a metric per run or seed group (mean), one panel per protocol (full, then sampled), with 95%
    bootstrap intervals; each bar's label under it."""
    frame = table.assign(plus=table["ci_high"] - table["value"], minus=table["value"] - table["ci_low"],
                         run=table["label"].map(wrap_label))
    hover = [c for c in ("seeds", "std", "users") if c in frame.columns]  # std: over seeds
    order = [p for p in ("full", "sampled") if p in set(frame["protocol"])]
    order += sorted(set(frame["protocol"]) - set(order))
    fig = px.bar(frame, x="run", y="value", color="label", facet_col="protocol", error_y="plus",
                 error_y_minus="minus", labels={"value": metric, "run": ""}, hover_data=hover,
                 category_orders={"protocol": order, "run": list(dict.fromkeys(frame["run"]))},
                 facet_col_spacing=0.1)
    fig.update_yaxes(matches=None, showticklabels=True)
    fig.update_xaxes(showticklabels=True, tickangle=0, automargin=True)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1] + " ranking"))
    fig.update_layout(showlegend=False)  # each bar is named under it
    return _layout(fig, f"{metric} with 95% bootstrap intervals (test users; seeds too where a row has several)", height=HEIGHT + 60 * len(order))


def parallel_coordinates(frame: pd.DataFrame, dims: list[str], target: str) -> go.Figure:
    """Settings (depths, lambdas, lr) to the target metric, one line per run."""
    dimensions = [dict(label=d, values=frame[d]) for d in dims + [target]]
    fig = go.Figure(go.Parcoords(line=dict(color=frame[target], colorscale="Viridis", showscale=True),
                                 dimensions=dimensions))
    _layout(fig, f"Settings against {target} ({len(frame)} picked runs)", height=440)
    fig.update_layout(margin=dict(l=60, r=40, t=110, b=30))
    return fig


def tradeoff(frame: pd.DataFrame, metric: str) -> go.Figure:
    """Two panels: inference parameters and measured inference time against the metric.

    Each run (or seed group) is one colour, named in the legend below the panels, so no text sits
    on the points to overlap another's or run past the plot's edge.
    """
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("inference parameters", "inference time (s)"),
                        horizontal_spacing=0.1)
    colors = px.colors.qualitative.Plotly
    for i, row in enumerate(frame.to_dict("records")):
        error = dict(type="data", symmetric=False, array=[row["ci_high"] - row["value"]],
                     arrayminus=[row["value"] - row["ci_low"]])
        for col, x in ((1, "inference_params"), (2, "inference_s")):
            fig.add_trace(go.Scatter(x=[row[x]], y=[row["value"]], mode="markers", error_y=error,
                                     name=f"{row['short']} · {row['label']}", legendgroup=row["label"],
                                     showlegend=col == 1, marker=dict(size=11, color=colors[i % len(colors)]),
                                     hovertemplate=f"{row['label']}<br>%{{x}}<br>{metric} %{{y:.4f}}<extra></extra>"),
                          row=1, col=col)
    for col, x in ((1, "inference_params"), (2, "inference_s")):
        low, high = frame[x].min(), frame[x].max()
        if low > 0 and high / low > 20:  # a log axis only where the values span orders of magnitude
            fig.update_xaxes(type="log", row=1, col=col)
    fig.update_yaxes(title=metric, row=1, col=1)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.15, x=0))
    return _layout(fig, f"Cost against {metric} (test, full ranking)", height=HEIGHT + 24 * len(frame))


def histogram(counts: pd.DataFrame, x: str, title: str, x_title: str) -> go.Figure:
    """Bars of pre-computed counts (`x`, `count`)."""
    fig = go.Figure(go.Bar(x=counts[x], y=counts["count"]))
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title="users")
    return _layout(fig, title)


ROAD_COLORS = {"truncation": "#7f7f7f", "block-influence drop": "#ff7f0e", "angular drop": "#2ca02c",
               "picked layers": "#9467bd", "SLMRec student": "#1f77b4", "no-distillation student": "#17becf",
               "teacher": MODEL_COLORS["teacher"], "student": MODEL_COLORS["student"], "SASRec": "grey"}


def _interval(rows: pd.DataFrame) -> dict:
    return dict(type="data", symmetric=False, array=rows["ci_high"] - rows["value"],
                arrayminus=rows["value"] - rows["ci_low"])


def roads(rows: pd.DataFrame, metric: str, protocol: str) -> go.Figure:
    """Roads to a small recommender (app/roads.py points): the metric against layers kept, one line per road
    with 95% intervals (a healed road dotted, in its road's colour), the reference runs as dashed lines."""
    fig = go.Figure()
    lines = rows[~rows["reference"]].groupby("road", sort=False)
    for i, (road, group) in enumerate(lines):
        base = road.split(", healed")[0]
        healed = base != road
        dodge = 0.06 * (i - (lines.ngroups - 1) / 2)  # roads side by side, so intervals at one depth stay apart
        fig.add_trace(go.Scatter(
            x=group["kept"] + dodge, y=group["value"], error_y=_interval(group), mode="lines+markers", name=road,
            text=group["label"], customdata=group[["kept", "dropped"]],
            line=dict(color=ROAD_COLORS.get(base), dash="dot" if healed else "solid"),
            marker=dict(size=9, symbol="circle-open" if healed else "circle"),
            hovertemplate=f"{road}<br>%{{text}}<br>%{{customdata[0]}} layers kept (dropped: %{{customdata[1]}})<br>"
                          f"{metric} %{{y:.4f}}<extra></extra>"))
    for row in rows[rows["reference"]].to_dict("records"):
        name = f"{row['road']} {row['value']:.4f}"
        fig.add_hline(y=row["value"], line_dash="dash", line_color=ROAD_COLORS.get(row["road"], "grey"),
                      annotation_text=name, annotation_position="bottom left")
        if pd.notna(row["kept"]):  # the source at its own depth, with its interval
            fig.add_trace(go.Scatter(x=[row["kept"]], y=[row["value"]], error_y=_interval(pd.DataFrame([row])),
                                     mode="markers", name=f"{row['road']} (full depth)", text=[row["label"]],
                                     marker=dict(size=13, symbol="star", color=ROAD_COLORS.get(row["road"])),
                                     hovertemplate="%{text}<br>%{x} layers<br>" + metric
                                                   + " %{y:.4f}<extra></extra>"))
    kept = rows["kept"].dropna()
    fig.update_xaxes(title="LLM layers kept", dtick=1, tickformat="d",
                     range=[-0.5, float(kept.max()) + 0.5] if not kept.empty else None)
    fig.update_yaxes(title=f"{metric} (test, {protocol}), 95% CI")
    fig.update_layout(showlegend=True, legend=dict(orientation="h", yanchor="top", y=-0.2, x=0))  # even one road
    return _layout(fig, f"Roads to a small recommender: {metric} by layers kept", height=HEIGHT + 80)
