"""The Tour's cells: what each one launches, how it finds its runs again, and its live output.

A cell's runs are found by settings hash (the same lookup submission uses to reuse runs), so a
reloaded page, or a run launched from the Launch page with the same settings, shows up in its cell.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import (context, figures, known_answer, labels, layers, launch, live, queries, results, stats, tour_text,
                 widgets)
from core.data.errors import DataError
from core.jobs import planning
from core.jobs.specs import PipelineSpecs
from core.config import RunSpec, apply_preset, to_dict
from core.store.paths import Paths

SIZES = ("tiny (seconds, random model)", "cpu-quick", "paper 4←8")
METHOD = Path(__file__).resolve().parents[1] / "docs" / "method.md"


@dataclass(frozen=True)
class Tour:
    paths: Paths
    settings: launch.LaunchSettings
    layers: int  # decoder layers of the base LLM


def pretrained_spec(t: Tour) -> RunSpec:
    """Layer analysis of the pretrained LLM alone (no run to analyse), over all its layers."""
    s = t.settings
    return apply_preset(launch.CHOICES[s.preset][0], {
        "data": {"dataset": s.dataset, "max_len": s.max_len}, "train": {"device": s.device, "seed": s.seed},
        "backbone": {"base": s.base, "depth": t.layers}, "analysis": {"run": ""}}, "analysis")


def sweep_depths(t: Tour) -> list[int]:
    return sorted({d for d in (1, 2, 4, 8) if d <= t.layers} | {t.settings.teacher_depth})


def teacher_plan(t: Tour, depth: int) -> PipelineSpecs:
    return launch.build_plan(replace(t.settings, teacher_depth=depth, student_depth=depth, blocks=1))


def no_distillation(t: Tour) -> launch.LaunchSettings:
    return replace(t.settings, lambda_cos=0.0, lambda_norm=0.0, lambda_sup=0.0)


def _found(runs: pd.DataFrame, plan: PipelineSpecs) -> dict[str, str]:
    return {row["stage"]: row["reuses"] for row in launch.reuse_preview(runs, plan)}


def cell_runs(t: Tour, runs: pd.DataFrame, cell: int) -> dict[str, str]:
    """role -> run id ('' when that run does not exist yet) of a cell's experiment."""
    if cell == 1:
        return {"pretrained analysis": launch.finder(runs)(pretrained_spec(t)) or ""}
    main = _found(runs, launch.build_plan(t.settings))
    if cell == 2:
        return {"sasrec": main["sasrec"], "teacher": main["teacher"]}
    if cell == 3:
        return {f"teacher L{d}": _found(runs, teacher_plan(t, d))["teacher"] for d in sweep_depths(t)}
    if cell == 4:
        return main
    plain = _found(runs, launch.build_plan(no_distillation(t)))
    return {"sasrec": main["sasrec"], "teacher": main["teacher"], "SLMRec student": main["student"],
            "no-distillation student": plain["student"]}


def cell_specs(t: Tour, cell: int) -> tuple[dict, list[RunSpec]]:
    """The settings a cell shows, and the specs it submits."""
    s = t.settings
    if cell == 1:
        spec = pretrained_spec(t)
        return {"base LLM": s.base, "layers": t.layers, "users": spec.analysis.users, "dataset": s.dataset}, [spec]
    plan = launch.build_plan(s)
    shown = {"dataset": s.dataset, "base LLM": s.base, "teacher depth": s.teacher_depth, "training": s.training,
             "teacher epochs": s.teacher_epochs, "lr": s.lr, "batch size": s.batch_size, "max length": s.max_len}
    if cell == 2:
        return shown, [plan.teacher]
    if cell == 3:
        return {**shown, "depths": sweep_depths(t)}, [teacher_plan(t, d).teacher for d in sweep_depths(t)]
    shown.update({"student layers": s.student_depth, "blocks B": s.blocks, "λ1": s.lambda_cos, "λ2": s.lambda_norm,
                  "λ3": s.lambda_sup, "student epochs": s.student_epochs})
    if cell == 4:
        return shown, [plan.student]
    ablation = launch.build_plan(no_distillation(t)).student
    return {**shown, "ablation": "the same student with λ1 = λ2 = λ3 = 0"}, [ablation]


def launch_cell(t: Tour, cell: int) -> list[str]:
    """Queue a cell's experiment (reusing runs that already exist); the run ids."""
    if cell == 1:
        return planning.plan(t.paths, pretrained_spec(t))
    if cell == 2:
        return planning.plan(t.paths, launch.build_plan(t.settings).teacher)
    if cell == 3:
        return [i for d in sweep_depths(t) for i in planning.plan(t.paths, teacher_plan(t, d).teacher)]
    ids = launch.submit_pipeline(t.paths, launch.build_plan(t.settings))
    if cell == 5:
        ids += launch.submit_pipeline(t.paths, launch.build_plan(no_distillation(t)))
    return ids


def render_cell(t: Tour, cell: int, title: str, text: str, formula: str = "", after: str = "") -> None:
    """One notebook cell: explanation (with an optional formula), settings, Run button, live output."""
    st.header(f"[{cell}] {title}", divider="gray")
    st.markdown(text)
    if formula:
        st.latex(formula)
    if after:
        st.markdown(after)
    if cell in KNOWN_ANSWER_CELLS:
        _known_answer(t, cell)
    shown, specs = cell_specs(t, cell)
    with st.expander("Settings this cell uses"):
        st.json(shown)
        st.caption("Full specs (as submitted). " + tour_text.SPECS_NOTE)
        st.json([to_dict(s) for s in specs], expanded=False)
    if st.button("Run", key=f"tour_run_{cell}", type="primary", icon=":material/play_arrow:"):
        ids = launch_cell(t, cell)
        context.store().refresh(force=True)
        st.toast(f"Queued or reused {len(ids)} run(s); the worker picks them up.")
    live.section(_output, lambda: _moving(t, cell), t, cell, every=3)  # a timer only while its runs move


KNOWN_ANSWER_CELLS = (3, 5)  # depth and distillation: where a dataset with a known answer teaches most


def _known_answer(t: Tour, cell: int) -> None:
    """On the known-answer dataset, its best possible score; elsewhere, a button that switches to it."""
    best = known_answer.oracle(t.paths) if t.settings.dataset == known_answer.NAME else None
    if best:
        st.info(tour_text.KNOWN_ANSWER_ON.format(ndcg=100 * best["NDCG@10"], hr=100 * best["HR@10"]),
                icon=":material/target:")
        return
    st.info(tour_text.KNOWN_ANSWER_OFFER, icon=":material/target:")
    st.button("Use the known-answer dataset", key=f"tour_known_answer_{cell}", icon=":material/science:",
              on_click=_use_known_answer, args=(t.paths,))
    error = st.session_state.pop("tour_known_answer_error", None)
    if error:
        st.error(error, icon=":material/error:")


def _use_known_answer(paths: Paths) -> None:
    """Make the known-answer dataset (about a second) and switch the Tour to it."""
    try:
        known_answer.make(paths)
    except (DataError, OSError) as exc:  # a foreign folder of that name, or a full disk
        st.session_state["tour_known_answer_error"] = f"Cannot make {known_answer.NAME}: {exc}"
        return
    st.session_state["tour_dataset"] = known_answer.NAME


def _moving(t: Tour, cell: int) -> bool:
    runs = queries.runs(context.store())
    return live.moving(runs, t.paths, cell_runs(t, runs, cell).values())


def _output(t: Tour, cell: int) -> None:
    store = context.store()
    runs = queries.runs(store)
    found = cell_runs(t, runs, cell)
    by_id = runs.set_index("run_id")
    head = f"Output ({figures.RANDOM})" if tiny(t) else "Output"
    st.markdown(head + " · " + " · ".join(f"**{role}**: {_state(by_id, r)}" for role, r in found.items()))
    done = {role: r for role, r in found.items() if r in by_id.index and by_id.at[r, "status"] == "done"}
    OUTPUTS[cell](t, store, runs, found, done)


def tiny(t: Tour) -> bool:
    """The tiny size: a random model, whose outputs show the mechanics only."""
    return t.settings.base == "tiny"


def _chart(t: Tour, fig: go.Figure, data: pd.DataFrame, runs: pd.DataFrame, key: str) -> None:
    """A cell's chart: marked in its own title when the model is random; its CSV names the runs."""
    widgets.chart(figures.mark_random(fig, tiny(t)), labels.with_labels(data, runs), key)


def _state(by_id: pd.DataFrame, run_id: str) -> str:
    if run_id not in by_id.index:
        return "not run yet"
    status = by_id.at[run_id, "status"]
    progress = f" {100 * by_id.at[run_id, 'progress']:.0f}%" if status == "running" else ""
    return widgets.status_text(status) + progress


def _out_question(t, store, runs, found, done) -> None:
    run_id = done.get("pretrained analysis")
    if not run_id:
        widgets.empty(f"Press **Run** to measure the {t.layers} layers of the pretrained "
                      f"{launch.base_name(t.settings.base)}.")
        return
    st.caption(layers.STATES + "  \n" + layers.glossary(["base"]))
    influence = queries.similarity(store, run_id, "block_influence").assign(run_id=run_id)
    if len(influence):
        _chart(t, figures.block_influence_bars(influence), influence, runs, "tour_influence")
    angular = queries.similarity(store, run_id, "angular").assign(run_id=run_id)
    angular = angular[(angular["a_model"] == angular["b_model"]) & (angular["b_layer"] > angular["a_layer"])]
    for model, rows in angular.groupby("a_model", sort=False):
        _chart(t, figures.angular_triangle(rows, f"{model}: angular distance from layer l to l + n"), rows, runs,
               f"tour_angular_{model}")


def _metrics_table(store, found: dict[str, str], runs) -> None:
    ids = [r for r in found.values() if r]
    final = queries.final_metrics(store, ids)
    if final.empty:
        return
    names = {r: role for role, r in found.items()}
    final = final.assign(who=final["run_id"].map(names) + " [" + final["model"] + "]")
    keep = final[final["metric"].isin(["HR@10", "NDCG@10", "MRR"])]
    table = keep.pivot_table(index=["who", "run_id"], columns=["protocol", "metric"], values="value").round(4)
    table.columns = [f"{m} ({p})" for p, m in table.columns]
    table = table.reset_index()
    widgets.table(table.drop(columns=["run_id"]), f"tour_metrics_{'_'.join(sorted(names.values()))[:40]}",
                  csv=labels.with_labels(table, runs))


def _out_model(t, store, runs, found, done) -> None:
    if not done:
        widgets.empty("Press **Run** to train SASRec and the teacher; test metrics and the loss curve appear here.")
        return
    _metrics_table(store, done, runs)
    if "teacher" in found and found["teacher"]:
        rows = queries.losses(store, [found["teacher"]])
        if not rows.empty:
            _chart(t, figures.loss_curves(rows, {found["teacher"]: "teacher"}), rows, runs, "tour_teacher_losses")


def _out_sweep(t, store, runs, found, done) -> None:
    sweep = queries.depth_sweep(store, runs, "NDCG@10", "full")
    sweep = sweep[sweep["run_id"].isin(list(done.values()))]
    if sweep.empty:
        widgets.empty("Press **Run** to train teachers at depths " + ", ".join(map(str, sweep_depths(t))) + ".")
        return
    sweep = layers.sweep_groups(sweep, runs)
    sasrec = queries.sasrec_reference(store, runs, list(sweep["run_id"]), "NDCG@10", "full")
    _chart(t, figures.depth_sweep(sweep, "NDCG@10", sasrec), sweep, runs, "tour_depth_sweep")


def _out_loss(t, store, runs, found, done) -> None:
    student = found.get("student")
    rows = queries.losses(store, [student]) if student else None
    if rows is None or rows.empty:
        widgets.empty("Press **Run** to distil the student; its loss terms (ce, cos, norm, ms) appear here.")
        return
    _chart(t, figures.loss_curves(rows, {student: "student"}), rows, runs, "tour_student_losses")
    analysis = done.get("analysis")
    if analysis:
        info = layers.analysed(runs, analysis)
        cka = queries.similarity(store, analysis, "cka").assign(run_id=analysis)
        cross = cka[cka["a_model"] != cka["b_model"]]
        if len(cross):
            st.caption(layers.STATES)
        for (a, b), group in cross.groupby(["a_model", "b_model"]):
            _chart(t, figures.similarity_heatmap(group, f"CKA {a} × {b} (squares: aligned blocks)", "cka",
                                                 pairs=layers.pairs_for(a, b, info)), group, runs, "tour_cka")


# The reproduction table's long text columns, wide enough to read whole.
WIDE = {"model": st.column_config.TextColumn("model", width="large"),
        "run": st.column_config.TextColumn("run", width="large")}


def _out_results(t, store, runs, found, done) -> None:
    if not done:
        widgets.empty("Press **Run** to train the student with and without distillation, then compare.")
        return
    chosen = runs[runs["run_id"].isin(list(done.values()))]
    members = stats.members(chosen, stats.seed_groups(chosen), list(chosen["run_id"]), grouped=False)
    units = stats.units(chosen, members)
    final = queries.final_metrics(store, list(chosen["run_id"]))
    reproduction = results.reproduction_table(units, stats.summarise(final, members))
    widgets.table(reproduction, "tour_reproduction", column_config=WIDE,
                  csv=results.export(reproduction.assign(unit=list(units["unit"])), members))
    ranks = queries.final_ranks(store, list(chosen["run_id"]))
    if not ranks.empty:
        table = stats.metric_table(ranks, "NDCG@10", members).merge(units[["unit", "kind", "label"]], on="unit")
        table = table[table["model"] == table["kind"]]
        _chart(t, figures.metric_bars(table, "NDCG@10"), table, runs, "tour_ci")


OUTPUTS = {1: _out_question, 2: _out_model, 3: _out_sweep, 4: _out_loss, 5: _out_results}
