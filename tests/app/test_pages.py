"""Every page against a synthetic store: no exceptions, the key widgets and charts; empty states."""

import pytest

PAGES = ("tour", "data", "launch", "runs", "layers", "results")


def _no_errors(app) -> None:
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]


def _types(figs) -> list[str]:
    return [trace["type"] for fig in figs for trace in fig["data"]]


def test_tour(shared, open_page):
    app = open_page("tour")
    _no_errors(app)
    assert [h.value[:3] for h in app.header] == [f"[{i}]" for i in range(1, 6)]
    assert [b.key for b in app.button if b.key.startswith("tour_run")] == [f"tour_run_{i}" for i in range(1, 6)]
    # the depth (3) and distillation (5) cells offer the known-answer dataset
    assert [b.key for b in app.button if "known" in b.key] == ["tour_known_answer_3", "tour_known_answer_5"]
    assert len([i for i in app.info if "Press **Run**" in i.value]) == 5  # each cell says what to do
    assert any("random 8-layer model" in i.value for i in app.info)  # no SmolLM2 here: the tiny size is said
    assert all("random model: mechanics only" in m.value for m in app.markdown if m.value.startswith("Output"))
    method = next(e for e in app.expander if "docs/method.md" in e.label)
    assert any("Where this project differs" in m.value for m in method.markdown)
    assert not any("PAPER.md" in m.value for m in app.markdown)


def test_the_known_answer_button_makes_the_dataset_and_switches_the_tour_to_it(fresh, open_page):
    from app import known_answer
    from core.store.paths import Paths

    root, _ = fresh
    app = open_page("tour")
    app.button(key="tour_known_answer_3").click().run()
    _no_errors(app)
    assert app.selectbox(key="tour_dataset").value == known_answer.NAME
    assert known_answer.present(Paths(root)) and (root / "data" / "prepared").is_dir()
    best = known_answer.oracle(Paths(root))
    said = [i.value for i in app.info if i.value.strip().startswith("**Known answer.**")]
    assert len(said) == 2 and f"NDCG@10 **{100 * best['NDCG@10']:.1f}%**" in said[0]
    assert not [b for b in app.button if "known" in b.key]  # on that dataset the cells show its answer instead


def test_data(shared, open_page, figures):
    app = open_page("data")
    _no_errors(app)
    assert app.selectbox(key="data_dataset").value == "toy"
    values = {m.label: m.value for m in app.metric}
    assert values["Users"] == "60" and values["Items"] == "30"
    assert _types(figures(app)) == ["bar"]
    assert len(app.dataframe) == 1  # sample sequences


def test_launch(shared, open_page):
    app = open_page("launch")
    _no_errors(app)
    base = app.selectbox(key="launch_base")
    assert base.value == "tiny" and len(base.options) == 1  # no SmolLM2 in the test project
    teacher = app.slider(key="launch_teacher_depth")
    assert (teacher.min, teacher.max) == (1, 8)  # the tiny model's 8 layers
    assert app.selectbox(key="launch_blocks").options == ["1", "2", "4"]  # divide 8 and 4
    assert [b.label for b in app.button] == ["Launch pipeline"]
    assert len(app.dataframe) == 2  # estimate, reuse preview


def test_runs(shared, open_page, figures):
    root, ids = shared
    app = open_page("runs")
    _no_errors(app)
    assert len(app.dataframe) == 1
    assert app.selectbox(key="runs_inspect").value == ids["running"]  # a running run is shown first
    app.selectbox(key="runs_inspect").set_value(ids["student"]).run()
    _no_errors(app)
    [losses] = figures(app)
    assert {a["text"] for a in losses["layout"]["annotations"]} >= {"total", "ce", "cos", "norm", "ms"}
    app.selectbox(key="runs_inspect").set_value(ids["failed"]).run()
    assert any("a test failure" in e.value for e in app.error)
    assert any("Traceback" in c.value for c in app.code)


def run_ids(root):
    return [p.name for p in (root / "data" / "runs").iterdir() if not p.name.startswith(".")]


def test_layers(shared, open_page, figures):
    root, ids = shared
    app = open_page("layers")
    _no_errors(app)
    newest = max(r for r in run_ids(root) if "-analysis-" in r)
    assert app.selectbox(key="layers_run").value == newest
    app.selectbox(key="layers_run").set_value(ids["analysis"]).run()
    figs = figures(app)
    titles = [f["layout"]["title"]["text"] for f in figs]
    assert any("teacher × teacher" in t for t in titles) and any("student × student" in t for t in titles)
    cross = next(f for f in figs if "teacher × student" in f["layout"]["title"]["text"])
    marks = next(t for t in cross["data"] if t["type"] == "scatter")
    assert list(zip(marks["y"], marks["x"])) == [(2, 1), (4, 2), (6, 3), (8, 4)]  # 4 <- 8, B = 4
    assert any("Angular" in t or "angular" in t or "dropped" in t for t in titles)
    assert any(t.startswith("Block influence") for t in titles)
    assert any("read out from each layer" in t for t in titles)
    assert any(t.startswith("NDCG@10 by depth") for t in titles)
    assert all(t.endswith("(random model: mechanics only)") for t in titles)  # the store's runs are tiny


def test_results(shared, open_page, figures):
    app = open_page("results")
    _no_errors(app)
    selected = app.multiselect(key="results_runs").value
    assert len(selected) == 5
    figs = figures(app)
    titles = [f["layout"]["title"]["text"] for f in figs]
    assert any("95% bootstrap" in t for t in titles)
    assert any(t.startswith("Settings against") for t in titles)
    assert any(t.startswith("Cost against") for t in titles)
    bars = next(f for f in figs if "95% bootstrap" in f["layout"]["title"]["text"])
    assert all("error_y" in trace for trace in bars["data"])
    assert len(app.dataframe) >= 4  # full, sampled, reproduction, config diff


@pytest.mark.parametrize("page", PAGES)
def test_empty_project_explains_what_to_do(tmp_path, monkeypatch, open_page, page):
    monkeypatch.setenv("SLMREC_ROOT", str(tmp_path))
    app = open_page(page)
    _no_errors(app)
    assert app.info, "an empty page must say what to do next"


def test_runs_page_reports_unreadable_result_files(fresh, open_page):
    root, ids = fresh
    (root / "data" / "runs" / ids["teacher"] / "events" / "metrics-000099-1.parquet").write_bytes(b"not parquet")
    app = open_page("runs")
    _no_errors(app)
    assert any("cannot be read" in w.value for w in app.warning)


def test_data_page_says_when_sampled_lists_are_short(fresh, open_page):
    from core.config import DataConfig
    from core.data.prepare import prepare

    root, _ = fresh
    prepare(DataConfig(dataset="toy", kcore=0, n_negatives=99), root / "data")  # 30 items: every list is short
    app = open_page("data")
    _no_errors(app)
    assert app.selectbox(key="data_version").index == 1  # the newest prepared version, shown by default
    notes = [i.value for i in app.info if "data.n_negatives is 99 but 60 users" in i.value]
    assert notes, "the prepared version with 99 negatives over 30 items shows the short-lists note"
    assert "each of their unseen items once" in notes[0]
    assert "--spec" not in notes[0] and "Sampled negatives per user** on the Launch form" in notes[0]
    assert "prepared version" in app.selectbox(key="data_version").help


def test_data_page_says_when_add_has_no_file(fresh, open_page):
    root, _ = fresh
    app = open_page("data")
    app.text_input(key="data_upload_name").set_value("mine")
    next(b for b in app.button if b.label == "Add").click().run()
    _no_errors(app)
    assert any("No file chosen" in w.value for w in app.warning)
    next(b for b in app.button if b.label == "Use this file").click().run()
    assert any("No path given" in w.value for w in app.warning)
    assert not (root / "data" / "raw" / "mine").exists()
