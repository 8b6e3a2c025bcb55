"""Issue 20 in the app: the roads chart's data (app/roads.py), its figure, the drop form's refusals and sweeps
(app/drop_form.py), and the Layers page's section, on a store whose drop runs have planted ranks.

The project is bench/fixture_store.py's first pipeline (SASRec, an 8-layer tiny teacher, a 4-layer student
without distillation, an analysis) plus a distilled 2-layer student and drop runs of the teacher whose every
user ranks the target at a planted place, so each point's NDCG@10 is 1 / log2(rank + 2) exactly.
"""

import math

import numpy as np
import pandas as pd
import pytest

from app import drop_form, figures, roads
from app.context import Store
from bench.fixture_store import build_store, write_planted
from core.config import ConfigError, DropConfig, apply_preset, settings_hash, to_dict
from core.jobs.drop_plan import prepare_drop
from core.store import runs as run_store
from core.store.events import EventWriter
from core.store.paths import Paths

USERS = 20


def ndcg(rank: int) -> float:
    return 1 / math.log2(rank + 2) if rank < 10 else 0.0


def _ranks(events: EventWriter, model: str, step: int, ranks: np.ndarray) -> None:
    for protocol in ("full", "sampled"):
        events.append_columns("ranks", {"step": np.full(USERS, step), "split": ["test"] * USERS,
                                        "protocol": [protocol] * USERS, "model": [model] * USERS,
                                        "layer": [None] * USERS, "user_id": np.arange(USERS), "rank": ranks})


def add_drop(paths: Paths, source: str, rule: str, n: int, ranks: dict, heal: int = 0, status: str = "done",
             layers: tuple = (), depth: int = 8) -> str:
    """A drop run of `source` whose models ('drop', 'drop-healed') rank every user's target at ranks[model]."""
    drop = DropConfig(run=source, rule=rule, n=n, layers=layers, heal_steps=heal)
    spec, _ = prepare_drop(paths, drop_form.drop_spec(drop))  # the source's data, as core plans it (no analysis)
    run_id = run_store.create_run(paths.runs, to_dict(spec), "drop", "", source, settings_hash(spec))
    if status != "done":
        return run_id
    dropped = list(layers) or list(range(depth - n + 1, depth + 1))
    run_store.update_state(paths.runs, run_id, status="done", phase="done", progress=1.0,
                           result={"dropped": dropped, "kept": depth - len(dropped), "depth": depth, "rule": rule,
                                   "n": n, "heal_steps": heal, "source_kind": "teacher", "metrics": {}})
    with EventWriter(paths.runs / run_id) as events:
        for model, rank in ranks.items():
            _ranks(events, model, heal if model == "drop-healed" else 0, np.asarray(rank, dtype=np.int64))
    return run_id


def build(root) -> dict:
    """The fixture store's first pipeline plus drop runs of its teacher and a distilled student; their ids."""
    ids = build_store(root, pipelines=1, valid_steps=2, users=USERS)
    paths = Paths(root)
    teacher = ids["teacher"]
    student = apply_preset("tiny", {"data": {"dataset": "toy"}, "backbone": {"depth": 2},
                                    "sasrec_run": ids["sasrec"], "distill": {"teacher_run": teacher, "blocks": 2}},
                           "student")
    ids["slmrec"] = write_planted(paths, student, np.zeros(USERS, dtype=np.int64))
    full = lambda r: np.full(USERS, r)  # noqa: E731
    ids["old_last1"] = add_drop(paths, teacher, "last", 1, {"drop": full(49)})  # older: hidden by the newer one
    ids["last1"] = add_drop(paths, teacher, "last", 1, {"drop": full(1), "drop-healed": full(0)}, heal=5)
    ids["last2"] = add_drop(paths, teacher, "last", 2, {"drop": full(2)})
    ids["angular2"] = add_drop(paths, teacher, "angular", 2, {"drop": np.where(np.arange(USERS) < 10, 0, 49)})
    ids["influence2"] = add_drop(paths, teacher, "influence", 2, {"drop": full(3)})
    ids["queued"] = add_drop(paths, teacher, "influence", 3, {}, status="queued")
    ids["other"] = add_drop(paths, ids["student"], "last", 1, {"drop": full(0)}, depth=4)
    return ids


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """(root, ids) of build(), shared read-only."""
    root = tmp_path_factory.mktemp("drop")
    return root, build(root)


@pytest.fixture
def page_project(tmp_path, monkeypatch):
    """(root, ids) of build() in a project of its own, the app pointed at it (for tests that submit)."""
    ids = build(tmp_path)
    monkeypatch.setenv("SLMREC_ROOT", str(tmp_path))
    return tmp_path, ids


@pytest.fixture
def store(project):
    return Store(Paths(project[0]).data_root)


def _runs(store):
    from app import queries

    return queries.runs(store)


def test_drops_lists_a_models_drop_runs_with_the_layers_kept(project, store):
    root, ids = project
    found = roads.drops(_runs(store), ids["teacher"]).set_index("run_id")
    assert set(found.index) == {ids[k] for k in ("old_last1", "last1", "last2", "angular2", "influence2", "queued")}
    assert found.at[ids["last1"], "kept"] == 7 and found.at[ids["last1"], "dropped"] == "8"
    assert found.at[ids["queued"], "kept"] == 5  # not finished: depth - n
    assert ids["queued"] in roads.watched(_runs(store), ids["teacher"])
    assert set(roads.drops(_runs(store), ids["student"])["run_id"]) == {ids["other"]}


def test_points_hold_every_road_with_planted_values_and_intervals(project, store):
    root, ids = project
    rows = roads.chart_rows(store, _runs(store), ids["teacher"], "NDCG@10", "full")
    by_road = {(r["road"], r["kept"]): r for r in rows.to_dict("records")}
    assert by_road[("truncation", 7)]["run_id"] == ids["last1"]  # the newest run per road and depth
    assert by_road[("truncation", 7)]["value"] == pytest.approx(ndcg(1))
    assert by_road[("truncation, healed (5 steps)", 7)]["value"] == pytest.approx(1.0)
    assert by_road[("truncation", 6)]["value"] == pytest.approx(0.5)
    assert by_road[("block-influence drop", 6)]["value"] == pytest.approx(ndcg(3))
    angular = by_road[("angular drop", 6)]
    assert angular["value"] == pytest.approx(0.5) and angular["ci_low"] < 0.5 < angular["ci_high"]
    assert angular["users"] == USERS
    assert by_road[("SLMRec student", 2)]["value"] == pytest.approx(1.0)
    assert ("no-distillation student", 4) in by_road  # the fixture's first student has every λ = 0
    refs = rows[rows["reference"]].set_index("road")
    assert refs.at["teacher", "kept"] == 8 and refs.at["teacher", "run_id"] == ids["teacher"]
    assert refs.at["SASRec", "run_id"] == ids["sasrec"] and pd.isna(refs.at["SASRec", "kept"])
    assert list(rows["road"].drop_duplicates()) == [
        "truncation", "truncation, healed (5 steps)", "block-influence drop", "angular drop", "SLMRec student",
        "no-distillation student", "teacher", "SASRec"]
    assert ids["queued"] not in set(rows["run_id"]) and ids["other"] not in set(rows["run_id"])


def test_figure_draws_a_line_per_road_healed_dotted_and_the_references(project, store):
    root, ids = project
    rows = roads.chart_rows(store, _runs(store), ids["teacher"], "NDCG@10", "full")
    fig = figures.roads(rows, "NDCG@10", "full")
    lines = {t.name: t for t in fig.data}
    assert [round(x) for x in lines["truncation"].x] == [6, 7] and lines["truncation"].line.dash == "solid"
    assert [k for k, _ in lines["truncation"].customdata] == [6, 7]  # hover: the layers kept, undodged
    assert lines["truncation"].x[0] != lines["angular drop"].x[0]  # roads at one depth side by side
    healed = lines["truncation, healed (5 steps)"]
    assert healed.line.dash == "dot" and healed.line.color == lines["truncation"].line.color
    assert list(lines["teacher (full depth)"].x) == [8]
    assert all(t.error_y.array is not None for t in fig.data)
    hlines = [s for s in fig.layout.shapes if s.line.dash == "dash"]
    assert len(hlines) == 2  # teacher and SASRec
    assert fig.layout.xaxis.title.text == "LLM layers kept"
    assert "Roads to a small recommender" in fig.layout.title.text
    text = roads.caption(rows["road"])
    assert all(f"**{r}**" in text for r in ("truncation", "block-influence drop", "angular drop", "healed",
                                            "SLMRec student", "no-distillation student", "reference lines"))
    assert "picked layers" not in text  # only the roads on the chart


def test_form_refuses_bad_input_naming_the_field():
    source = "20260101-000000-000000-teacher-abc123"
    refusals = [(drop_form.DropSettings(source, "last", n="8"), "drop.n"),
                (drop_form.DropSettings(source, "all", n="3-9"), "drop.n"),
                (drop_form.DropSettings(source, "angular", n="two"), "drop.n"),
                (drop_form.DropSettings(source, "last", n="5-3"), "drop.n"),
                (drop_form.DropSettings(source, "list", layers=()), "drop.layers"),
                (drop_form.DropSettings(source, "list", layers=(1, 2, 3, 4, 5, 6, 7, 8)), "drop.layers"),
                (drop_form.DropSettings(source, "list", layers=(9,)), "drop.layers"),
                (drop_form.DropSettings(source, "last", heal_steps=-1), "drop.heal_steps")]
    for settings, field in refusals:
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            drop_form.settings(settings, depth=8)


def test_form_sweeps_every_rule_and_a_range_of_n():
    source = "20260101-000000-000000-teacher-abc123"
    sweep = drop_form.settings(drop_form.DropSettings(source, "all", n="1-3", heal_steps=10), depth=8)
    assert [(d.rule, d.n) for d in sweep] == [(r, n) for r in ("last", "influence", "angular") for n in (1, 2, 3)]
    assert all(d.heal_steps == 10 and d.run == source for d in sweep)
    assert [d.n for d in drop_form.settings(drop_form.DropSettings(source, "last", n="0, 2,7"), 8)] == [0, 2, 7]
    [picked] = drop_form.settings(drop_form.DropSettings(source, "list", layers=(4, 3)), 8)
    assert picked.layers == (3, 4) and picked.rule == "list"


def test_the_forms_runs_are_the_clis(page_project, capsys):
    """A sweep queued by `slmrec submit drop` is found again, run for run, by the form's specs."""
    from core.cli import main

    root, ids = page_project
    paths = Paths(root)
    assert main(["--root", str(root), "submit", "drop", "--run", ids["teacher"], "--rule", "last,angular",
                 "--n", "3-4", "--heal-steps", "7"]) == 0
    cli = {r["run_id"] for r in run_store.list_runs(paths.runs)}
    settings = drop_form.DropSettings(ids["teacher"], "all", n="3-4", heal_steps=7)
    specs = drop_form.build_specs(paths, settings, depth=8)
    assert len(specs) == 6
    found = drop_form.submit(paths, [s for s in specs if s.drop.rule != "influence"])
    assert set(found) <= cli  # every run (and the analysis angular reads) reused
    [picked] = drop_form.build_specs(paths, drop_form.DropSettings(ids["teacher"], "list", layers=(2, 5)), 8)
    assert main(["--root", str(root), "submit", "drop", "--run", ids["teacher"], "--rule", "list",
                 "--layers", "2,5"]) == 0
    [by_cli] = {r["run_id"] for r in run_store.list_runs(paths.runs)} - cli
    assert drop_form.submit(paths, [picked]) == [by_cli]


def test_core_refuses_what_the_form_cannot_know(page_project):
    root, ids = page_project
    settings = drop_form.DropSettings(ids["student"], "last", n="4")  # the student has 4 layers, not 8
    with pytest.raises(ConfigError, match=r"drop\.n"):
        drop_form.build_specs(Paths(root), settings, depth=8)
    with pytest.raises(ConfigError, match=r"drop\.run"):
        drop_form.build_specs(Paths(root), drop_form.DropSettings(ids["sasrec"], "last"), depth=8)
    full = apply_preset("tiny", {"data": {"dataset": "toy"}, "backbone": {"training": "full"}}, "teacher")
    full_id = write_planted(Paths(root), full, np.zeros(USERS, dtype=np.int64))
    with pytest.raises(ConfigError, match=r"drop\.heal_steps: healing fine-tunes LoRA"):
        drop_form.build_specs(Paths(root), drop_form.DropSettings(full_id, "last", heal_steps=5), depth=4)
    assert drop_form.build_specs(Paths(root), drop_form.DropSettings(full_id, "last"), depth=4)  # unhealed: fine


def test_drop_runs_are_labelled_by_what_they_drop(project, store):
    root, ids = project
    names = dict(zip(_runs(store)["run_id"], _runs(store)["label"]))
    assert names[ids["last1"]].startswith(f"drop 1 (last) of ·{ids['teacher'][-6:]} healed 5 · 64 users · toy")
    assert names[ids["angular2"]].startswith(f"drop 2 (angular) of ·{ids['teacher'][-6:]} · 64 users · toy")


def _launch(app):
    next(b for b in app.button if b.label == "Launch drop runs").click().run()
    return app


def test_layers_page_draws_the_roads_of_the_analysed_teacher(page_project, open_page, figures, exports):
    root, ids = page_project
    app = open_page("layers")
    assert not app.exception, [e.value for e in app.exception]
    assert app.selectbox(key="layers_drop_run").value == ids["teacher"]  # the analysed teacher
    [fig] = [f for f in figures(app) if "Roads to a small recommender" in f["layout"]["title"]["text"]]
    assert fig["layout"]["title"]["text"].endswith("(random model: mechanics only)")
    names = {t.get("name") for t in fig["data"]}
    assert {"truncation", "truncation, healed (5 steps)", "angular drop", "SLMRec student"} <= names
    csv = exports["layers_roads_csv"]
    assert {"run_id", "label", "road", "kept", "value", "ci_low", "ci_high"} <= set(csv.columns)
    assert csv.loc[csv["run_id"] == ids["last2"], "label"].iloc[0].startswith("drop 2 (last)")
    assert any("**angular drop**" in c.value for c in app.caption)
    app.selectbox(key="layers_roads_metric").set_value("HR@1").run()
    [fig] = [f for f in figures(app) if "Roads" in f["layout"]["title"]["text"]]
    assert "HR@1 by layers kept" in fig["layout"]["title"]["text"]


def test_form_refuses_before_queueing_and_says_what_it_reused(page_project, open_page, run_folders):
    root, ids = page_project
    before = run_folders(root)
    app = open_page("layers")
    app.text_input(key="layers_drop_n").set_value("8")
    _launch(app)
    assert any("drop.n" in e.value and "8-layer" in e.value for e in app.error)
    app.radio(key="layers_drop_rule").set_value("list").run()
    _launch(app)
    assert any("drop.layers" in e.value and "no layers picked" in e.value for e in app.error)
    assert run_folders(root) == before  # nothing queued

    app.radio(key="layers_drop_rule").set_value("last").run()
    app.text_input(key="layers_drop_n").set_value("2-3")
    _launch(app)
    assert not app.error, [e.value for e in app.error]
    [banner] = [s.value for s in app.success]
    assert banner.startswith("Queued 2 runs (1 reused, 1 new)")  # last 2 exists
    new = run_folders(root) - before
    [run_id] = new
    spec = run_store.read_spec(Paths(root).runs, run_id)["spec"]
    assert spec["kind"] == "drop" and spec["drop"]["run"] == ids["teacher"] and spec["drop"]["n"] == 3
    assert f"{ids['last2'][-6:]} (reused)" in banner and f"{run_id[-6:]} (new)" in banner
    [pending] = [d.value for d in app.dataframe if "heal_steps" in d.value.columns]
    assert run_id[-6:] in " ".join(pending["label"])  # the queued run is listed while it waits


def test_layers_says_when_an_analysis_measured_validation_users(page_project):
    """The analysis a drop rule reads is on the valid split; the Layers page says so, not 'test users'."""
    from app import layers

    root, ids = page_project
    paths = Paths(root)
    [analysis] = [r for r in drop_form.submit(paths, drop_form.build_specs(
        paths, drop_form.DropSettings(ids["teacher"], "angular", n="2"), depth=8)) if "-analysis-" in r]
    runs = _runs(Store(paths.data_root))
    info = layers.analysed(runs, analysis)
    assert info["teacher"] == ids["teacher"]
    assert layers.subject(runs, analysis, info).endswith("measured on the **valid** users, not the test users")
    assert "valid" not in layers.subject(runs, ids["analysis"], layers.analysed(runs, ids["analysis"]))
