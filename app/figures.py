"""Plotly figure builders: each takes tidy DataFrames and returns a `go.Figure`; no Streamlit here.

Layer numbers follow the backbone's convention (core/models/backbone.py): 0 is the input
embeddings, l = 1..L the residual stream after decoder layer l.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

LOSS_GROUPS = (("total", "ce", "cos", "norm", "ms"), ("lr", "grad_norm"))
MODEL_COLORS = {"teacher": "#d62728", "student": "#1f77b4", "student-adapter": "#9ecae1", "base": "#7f7f7f",
                "teacher2": "#ff9896", "student2": "#aec7e8"}  # the same model, the same colour everywhere
HEIGHT = 380


def _layout(fig: go.Figure, title: str, height: int = HEIGHT) -> go.Figure:
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=50, b=10), legend_title_text="")
    return fig


def loss_curves(losses: pd.DataFrame, labels: dict[str, str]) -> go.Figure:
    """One panel per loss term (its own y scale), one line per run."""
    frame = losses.assign(run=losses["run_id"].map(labels).fillna(losses["run_id"]))
    order = [n for group in LOSS_GROUPS for n in group if n in set(frame["name"])]
    order += sorted(set(frame["name"]) - set(order))
    fig = px.line(frame, x="step", y="value", color="run", facet_col="name", facet_col_wrap=3,
                  category_orders={"name": order}, facet_col_spacing=0.06, facet_row_spacing=0.12)
    fig.update_yaxes(matches=None, showticklabels=True)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    rows = (len(order) + 2) // 3
    return _layout(fig, "Training losses per term", height=220 * rows + 80)


def _layer_ticks(fig: go.Figure, axis: str, values) -> None:
    """Integer ticks on a layer axis (every layer while there are few)."""
    count = len(set(values))
    update = fig.update_xaxes if axis == "x" else fig.update_yaxes
    update(dtick=1 if count <= 16 else None, tickformat="d")


def similarity_heatmap(rows: pd.DataFrame, title: str, zmax: float | None = 1.0,
                       pairs: list[tuple[int, int]] | None = None, pair_name: str = "aligned blocks") -> go.Figure:
    """A heatmap of value over (a_layer rows, b_layer columns); `pairs` (a, b) marked with squares."""
    grid = rows.pivot_table(index="a_layer", columns="b_layer", values="value")
    fig = go.Figure(go.Heatmap(z=grid.to_numpy(), x=grid.columns, y=grid.index, zmin=0, zmax=zmax,
                               colorscale="Viridis", colorbar=dict(title="value"),
                               hovertemplate="a layer %{y}<br>b layer %{x}<br>%{z:.3f}<extra></extra>"))
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
    """Final metric of teacher runs by depth (mean over runs, points for each run), per dataset."""
    mean = rows.groupby(["dataset", "depth"], as_index=False)["value"].mean().sort_values("depth")
    fig = px.line(mean, x="depth", y="value", color="dataset", markers=True, labels={"value": metric})
    fig.add_trace(go.Scatter(x=rows["depth"], y=rows["value"], mode="markers", name="runs", text=rows["label"],
                             marker=dict(color="rgba(0,0,0,0.35)", size=7),
                             hovertemplate="%{text}<br>depth %{x}<br>%{y:.4f}<extra></extra>"))
    if sasrec is not None:
        fig.add_hline(y=sasrec, line_dash="dash", line_color="grey", annotation_text=f"SASRec {sasrec:.4f}")
    depths = sorted(set(rows["depth"].dropna().astype(int)))
    fig.update_xaxes(title="LLM layers kept (teacher depth)", type="log", tickvals=depths, ticktext=depths)
    return _layout(fig, f"{metric} by depth")


def metric_bars(table: pd.DataFrame, metric: str) -> go.Figure:
    """Bars of a metric per run or seed group (mean), one panel per protocol, with 95% bootstrap intervals."""
    frame = table.assign(plus=table["ci_high"] - table["value"], minus=table["value"] - table["ci_low"])
    hover = [c for c in ("seeds", "std", "users") if c in frame.columns]  # std: over seeds
    fig = px.bar(frame, x="label", y="value", color="label", facet_col="protocol", error_y="plus",
                 error_y_minus="minus", labels={"value": metric, "label": ""}, hover_data=hover)
    fig.update_yaxes(matches=None, showticklabels=True)
    fig.update_xaxes(showticklabels=False)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1] + " ranking"))
    return _layout(fig, f"{metric} with 95% bootstrap intervals (test users)")


def parallel_coordinates(frame: pd.DataFrame, dims: list[str], target: str) -> go.Figure:
    """Settings (depths, lambdas, lr) to the target metric, one line per run."""
    dimensions = [dict(label=d, values=frame[d]) for d in dims + [target]]
    fig = go.Figure(go.Parcoords(line=dict(color=frame[target], colorscale="Viridis", showscale=True),
                                 dimensions=dimensions))
    _layout(fig, f"Settings against {target}", height=440)
    fig.update_layout(margin=dict(l=60, r=40, t=110, b=30))
    return fig


def tradeoff(frame: pd.DataFrame, metric: str) -> go.Figure:
    """Two panels: inference parameters and measured inference time against the metric."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("inference parameters", "inference time (s)"))
    error = dict(type="data", symmetric=False, array=frame["ci_high"] - frame["value"],
                 arrayminus=frame["value"] - frame["ci_low"], color="#1f4e9c")
    for col, x in ((1, "inference_params"), (2, "inference_s")):
        fig.add_trace(go.Scatter(x=frame[x], y=frame["value"], mode="markers+text", text=frame["short"],
                                 textposition="middle right", error_y=error, showlegend=False,
                                 customdata=frame["label"], cliponaxis=False,
                                 marker=dict(size=10, color="#1f4e9c"),
                                 hovertemplate="%{customdata}<br>%{x}<br>" + metric + " %{y:.4f}<extra></extra>"),
                      row=1, col=col)
        low, high = frame[x].min(), frame[x].max()
        if low > 0 and high / low > 20:  # a log axis only where the values span orders of magnitude
            fig.update_xaxes(type="log", range=[math.log10(low / 1.5), math.log10(high * 3)], row=1, col=col)
        elif high > 0:
            fig.update_xaxes(range=[0, high * 1.35], row=1, col=col)
    fig.update_yaxes(title=metric, row=1, col=1)
    return _layout(fig, f"Cost against {metric} (test, full ranking)")


def histogram(counts: pd.DataFrame, x: str, title: str, x_title: str) -> go.Figure:
    """Bars of pre-computed counts (`x`, `count`)."""
    fig = go.Figure(go.Bar(x=counts[x], y=counts["count"]))
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title="users")
    return _layout(fig, title)
