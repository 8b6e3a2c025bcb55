"""Runs told apart (labels), exports that name their runs, charts that read, the depth sweep's groups.

Issue 17's defects 5-9: the label function over the runs view, every CSV of Results, Layers and the
Tour carrying run ids and labels, the parallel-coordinates chart limited to the picked runs, the
chart fixes (facets, tick labels, legends, colour bar names) and teachers grouped by every setting
but depth. CSVs are captured by wrapping st.download_button while a page runs.
"""

import json

import numpy as np
import pandas as pd
import pytest

from app import labels, launch, tour
from bench.fixture_store import planted_ranks, write_planted
from core.config import apply_preset, settings_hash, to_dict
from core.store import runs as run_store
from core.store.events import EventWriter
from core.store.paths import Paths


def _row(spec, run_id="20260101-120000-000000-x-abc123", teacher_depth=None, name=""):
    return {"run_id": run_id, "kind": spec.kind, "name": name, "spec": json.dumps(to_dict(spec)),
            "created_at": pd.Timestamp("2026-07-03 12:00:01"), "teacher_depth": teacher_depth}


def test_labels_tell_the_tours_students_apart_and_name_a_pretrained_base(tmp_path):
    t = tour.Tour(Paths(tmp_path), launch.defaults("tiny (seconds, random model)", "toy"), 8)
    slmrec = launch.build_plan(t.settings).student
    plain = launch.build_plan(tour.no_distillation(t)).student
    a, b = labels.run_label(_row(slmrec, teacher_depth=4)), labels.run_label(_row(plain, teacher_depth=4))
    assert a == "student 2←4 distilled · tiny · toy · seed 0 · 07-03 12:00 · abc123"
    assert b == "student 2←4 no distillation · tiny · toy · seed 0 · 07-03 12:00 · abc123"
    quick = launch.build_plan(launch.defaults("cpu-quick", "ml-100k")).teacher
    seeded = apply_preset("cpu-quick", {"train": {"seed": 3, "epochs": 5}}, "teacher")
    assert labels.run_label(_row(quick)).startswith("teacher L8 · smollm2 cpu-quick · ml-100k · seed 0")
    assert labels.run_label(_row(seeded)).startswith("teacher L8 · smollm2 5 ep · ml-100k · seed 3")  # the budget
    pretrained = labels.run_label(_row(tour.pretrained_spec(tour.Tour(Paths(tmp_path), launch.defaults(
        "cpu-quick", "ml-100k"), 30))))
    assert pretrained.startswith("analysis of smollm2 (pretrained) · cpu-quick · ml-100k")
    named = labels.run_label(_row(quick, name="ablation"))
    assert "“ablation”" in named
    group = labels.group_label(_row(quick), [2, 0, 1], "f00dfeed")
    assert group == "teacher L8 · smollm2 cpu-quick · ml-100k · seeds 0, 1, 2 · f00dfe"


def _pretrained_analysis(root) -> str:
    """A finished analysis of the pretrained tiny model with CKA rows over its 3 layers."""
    paths = Paths(root)
    spec = apply_preset("tiny", {"data": {"dataset": "toy"}, "backbone": {"depth": 8}, "analysis": {"run": ""}},
                        "analysis")
    run_id = run_store.create_run(paths.runs, to_dict(spec), "analysis", "", None, settings_hash(spec))
    run_store.update_state(paths.runs, run_id, status="done", phase="done", progress=1.0)
    layers = [(a, b) for a in range(4) for b in range(4)]
    with EventWriter(paths.runs / run_id) as events:
        events.append_columns("similarity", {
            "measure": ["cka"] * len(layers), "a_model": ["base"] * len(layers), "a_layer": [a for a, _ in layers],
            "b_model": ["base"] * len(layers), "b_layer": [b for _, b in layers],
            "value": [1.0 - abs(a - b) / 4 for a, b in layers], "n": [32] * len(layers)})
    return run_id


def test_layers_names_the_pretrained_base_and_the_measure(fresh, open_page, figures, exports):
    root, _ = fresh
    run_id = _pretrained_analysis(root)
    app = open_page("layers")
    app.selectbox(key="layers_run").set_value(run_id).run()
    assert not app.exception
    captions = " ".join(c.value for c in app.caption)
    assert "teacher: –" not in captions and "The pretrained tiny alone" in captions
    assert "**base**: the pretrained LLM alone" in captions and "*state*" in captions
    box = app.selectbox(key="layers_run")
    assert box.options[box.index].startswith("analysis of tiny (pretrained)")
    heatmap = next(f for f in figures(app) if f["data"][0]["type"] == "heatmap")
    assert heatmap["data"][0]["colorbar"]["title"]["text"] == "CKA"
    csv = exports["layers_cka_base_base_csv"]
    assert set(csv["run_id"]) == {run_id} and csv["label"].str.startswith("analysis of tiny (pretrained)").all()


def _teacher(paths, depth, max_len, hits):
    spec = apply_preset("tiny", {"data": {"dataset": "toy", "max_len": max_len}, "backbone": {"depth": depth}},
                        "teacher")
    return write_planted(paths, spec, planted_ranks(hits))


def test_depth_sweep_groups_teachers_by_every_setting_but_depth(tmp_path, monkeypatch, open_page, figures, exports):
    monkeypatch.setenv("SLMREC_ROOT", str(tmp_path))
    paths = Paths(tmp_path)
    long = {d: _teacher(paths, d, 10, h) for d, h in ((1, 10), (2, 20), (4, 30))}
    short = {d: _teacher(paths, d, 1, h) for d, h in ((1, 40), (2, 40))}
    app = open_page("layers")
    app.selectbox(key="layers_sweep_metric").set_value("HR@10")
    app.run()
    assert not app.exception
    names = app.selectbox(key="layers_sweep_group").options
    assert len(names) == 2  # max_len 10 and max_len 1 are not averaged into one point
    assert any("data.max_len=10 · depths 1, 2, 4" in n for n in names)
    assert any("data.max_len=1 · depths 1, 2" in n for n in names)
    sweep = next(f for f in figures(app) if f["layout"]["title"]["text"].startswith("HR@10 by depth"))
    line = next(t for t in sweep["data"] if t.get("mode") == "lines+markers")
    assert _numbers(line["y"]) == pytest.approx([0.25, 0.5, 0.75])  # the longest group, one run per depth
    assert set(exports["layers_depth_sweep_csv"]["run_id"]) == set(long.values())
    from app.layers import sweep_key

    spec = json.dumps(run_store.read_spec(paths.runs, short[1])["spec"])
    app.selectbox(key="layers_sweep_group").set_value(sweep_key(spec)).run()
    assert set(exports["layers_depth_sweep_csv"]["run_id"]) == set(short.values())


def _numbers(values) -> list[float]:
    import base64

    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def _results(open_page, picked: list[str]):
    app = open_page("results")
    app.multiselect(key="results_runs").set_value(picked)
    app.toggle(key="results_group_seeds").set_value(False)  # each run its own row, keyed by its id
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def test_every_results_export_names_its_runs(shared, open_page, exports):
    root, ids = shared
    picked = [ids["teacher"], ids["student"], ids["sasrec"]]
    app = _results(open_page, picked)
    app.selectbox(key="results_pair_a").set_value(ids["teacher"])
    app.selectbox(key="results_pair_b").set_value(ids["student"])
    app.run()
    for key in ("results_full_csv", "results_sampled_csv", "results_ci_csv", "results_reproduction_csv",
                "results_tradeoff_csv"):
        frame = exports[key]
        ids_column = "run_ids" if "run_ids" in frame.columns else "run_id"
        assert set(frame[ids_column]) <= set(picked) and frame["label"].notna().all(), key
    assert set(exports["results_full_csv"]["run_ids"]) == set(picked)
    assert "unit" in exports["results_full_csv"].columns
    labels_of = dict(zip(exports["results_full_csv"]["run_ids"], exports["results_full_csv"]["label"]))
    paired = exports["results_paired_csv"]
    assert set(paired["A run_ids"]) == {ids["teacher"]} and set(paired["B run_ids"]) == {ids["student"]}
    assert set(paired["A label"]) == {labels_of[ids["teacher"]]}
    assert set(paired["B label"]) == {labels_of[ids["student"]]}
    assert any(c.value.startswith("**A**: teacher L8") for c in app.caption)
    diff = exports["results_config_diff_csv"].set_index("setting")
    assert sorted(diff.loc["run_ids"]) == sorted(picked)


def test_settings_against_quality_plots_only_the_picked_runs(shared, open_page, figures):
    root, ids = shared
    app = _results(open_page, [ids["teacher"], ids["student"]])
    parallel = next(f for f in figures(app) if f["layout"]["title"]["text"].startswith("Settings against"))
    title = "Settings against NDCG@10 (2 picked runs) (random model: mechanics only)"  # tiny runs: said in the title
    assert parallel["layout"]["title"]["text"] == title
    assert len(_numbers(parallel["data"][0]["dimensions"][0]["values"])) == 2
    assert any("Only the teacher and student runs picked above" in c.value for c in app.caption)


def test_analysis_runs_stay_out_of_the_results_picker(shared, open_page):
    root, ids = shared
    app = open_page("results")
    options = app.multiselect(key="results_runs").options  # as shown
    assert options and not any(o.startswith("analysis") for o in options)
    assert any(o.startswith("student") for o in options)


def test_charts_keep_facet_order_tick_labels_and_legends(shared, open_page, figures):
    root, ids = shared
    app = _results(open_page, [ids["teacher"], ids["student"], ids["sasrec"]])
    figs = figures(app)
    bars = next(f for f in figs if "95% bootstrap" in f["layout"]["title"]["text"])
    layout = bars["layout"]
    panels = sorted((a for a in layout["annotations"] if a["text"].endswith("ranking")), key=lambda a: a["x"])
    assert [a["text"] for a in panels] == ["full ranking", "sampled ranking"]  # full on the left, always
    left, right = layout["xaxis"]["domain"], layout["xaxis2"]["domain"]
    assert right[0] - left[1] >= 0.08  # the panels (and their y tick labels) do not overlap
    assert layout["xaxis"]["showticklabels"] and layout["xaxis2"]["showticklabels"]
    assert layout["showlegend"] is False  # each bar is named under it
    trade = next(f for f in figs if f["layout"]["title"]["text"].startswith("Cost against"))
    assert not any("text" in t.get("mode", "") for t in trade["data"])  # no text on the points to overlap
    named = [t["name"] for t in trade["data"] if t.get("showlegend")]
    assert len(named) == len(set(named)) == 2  # teacher and student in the legend (SASRec has no parameters)


def test_tour_marks_random_model_outputs_and_widens_the_model_column(fresh, open_page, figures, exports):
    root, _ = fresh
    paths = Paths(root)
    t = tour.Tour(paths, launch.defaults(tour.SIZES[0], "toy"), 8)
    ids = launch.submit_pipeline(paths, launch.build_plan(t.settings))
    ids += launch.submit_pipeline(paths, launch.build_plan(tour.no_distillation(t)))
    for run_id in set(ids):
        run_store.update_state(paths.runs, run_id, status="done", phase="done", progress=1.0)
    specs = {r: run_store.read_spec(paths.runs, r) for r in set(ids)}
    for run_id, info in specs.items():
        if info["kind"] in ("teacher", "student", "sasrec"):
            with EventWriter(paths.runs / run_id) as events:
                events.append("metrics", [{"step": 1, "split": "test", "protocol": p, "model": info["kind"],
                                           "layer": None, "metric": "NDCG@10", "value": 0.1}
                                          for p in ("full", "sampled")])
    app = open_page("tour")  # after the runs exist (the store looks for new runs at most once a second)
    assert not app.exception, [e.value for e in app.exception]
    table = next(d for d in app.dataframe if "model" in d.value.columns and "seeds" in d.value.columns)
    columns = json.loads(table.proto.columns)
    assert columns["model"]["width"] == "large"
    assert any("no distillation" in name for name in table.value["model"])
    assert {"run_ids", "label"} <= set(exports["tour_reproduction_csv"].columns)
    students = [x for x in exports["tour_reproduction_csv"]["label"] if x.startswith("student")]
    assert sorted(x.split(" · ")[0] for x in students) == ["student 2←4 distilled", "student 2←4 no distillation"]
    titles = [f["layout"]["title"]["text"] for f in figures(app)]
    assert titles and all(t.endswith("(random model: mechanics only)") for t in titles)
