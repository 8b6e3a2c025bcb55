"""The Runs page: blanks for missing values, markers on loss curves, refresh only while runs move,
?run= links, search and filters, tags/notes/archive, overlays, the reproducing command and clone."""

import base64
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import streamlit

from core.store import notes as run_notes
from core.store import runs as run_store
from core.store.events import EventWriter

REPO = Path(__file__).resolve().parents[2]


def _no_errors(app) -> None:
    """No exception, and no error box but the fixture's failed run's own error."""
    assert not app.exception, [e.value for e in app.exception]
    assert all("a test failure" in e.value for e in app.error), [e.value for e in app.error]


def _table(app):
    return app.dataframe[0].value.set_index("run_id")


def runs_frame():
    from app import context, queries

    return queries.runs(context.store()).copy()


def _finish_everything(root: Path, ids: dict) -> None:
    for key in ("running", "queued"):
        run_store.update_state(root / "data" / "runs", ids[key], status="cancelled", phase="cancelled", eta_s=0.0)


def test_blanks_and_eta(fresh, open_page):
    root, ids = fresh
    run_store.update_state(root / "data" / "runs", ids["running"], status="cancelled", eta_s=0.0)
    app = open_page("runs")
    _no_errors(app)
    table = _table(app)
    assert app.dataframe[0].proto.placeholder == ""  # NaN numbers (samples/s) show blank, not "None"
    queued = table.loc[ids["queued"]]
    assert (queued["phase"], queued["device"], queued["ETA"], queued["error"]) == ("", "", "", "")
    assert table.loc[ids["running"], "ETA"] == ""  # cancelled: its stored ETA (0s) means nothing
    app.selectbox(key="runs_inspect").set_value(ids["running"]).run()
    assert {m.label: m.value for m in app.metric}["ETA"] == "–"


def test_one_logged_step_shows_markers(fresh, open_page, figures):
    root, ids = fresh
    with EventWriter(root / "data" / "runs" / ids["running"]) as events:
        events.append("losses", [{"step": 1, "epoch": 0.1, "name": "total", "value": 2.5}])
    app = open_page("runs")
    app.selectbox(key="runs_inspect").set_value(ids["running"]).run()
    [fig] = figures(app)
    assert [_points(t["x"]) for t in fig["data"]] == [1]
    assert all("markers" in t["mode"] for t in fig["data"])  # one point: a line alone draws nothing


def _points(values) -> int:
    """How many values a plotly JSON array holds (plotly writes numpy arrays as base64 'bdata')."""
    if isinstance(values, dict):
        return len(np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"])))
    return len(values)


@pytest.fixture
def fragments(monkeypatch):
    """The run_every of every st.fragment the page makes (None: no timer)."""
    made: list = []
    original = streamlit.fragment

    def record(func=None, *, run_every=None, **kwargs):
        made.append(run_every)
        return original(func, run_every=run_every, **kwargs)
    monkeypatch.setattr(streamlit, "fragment", record)
    return made


@pytest.mark.parametrize("page", ["runs", "tour"])
def test_idle_page_sets_no_fast_timer(fresh, open_page, fragments, page):
    from app import live

    root, ids = fresh
    _finish_everything(root, ids)
    app = open_page(page)
    fragments.clear()  # the entry point first ran the default page (the Tour)
    app.run()
    _no_errors(app)
    assert fragments and all(every is None or every >= live.WATCH_S for every in fragments), fragments


def test_running_run_refreshes(fresh, open_page, fragments):
    from app import live

    app = open_page("runs")
    fragments.clear()
    app.run()
    _no_errors(app)
    assert live.LIVE_S in fragments  # the table and the running run's detail


def test_run_link_opens_and_follows_the_pick(shared, open_page):
    root, ids = shared
    app = open_page("runs")
    app.query_params["run"] = ids["student"]
    app.run()
    assert app.selectbox(key="runs_inspect").value == ids["student"]
    links = {p.proto.label: p.proto for p in app.get("page_link")}
    assert links["This run on Layers"].query_string == f"run={ids['student']}"
    assert links["This run on Results"].query_string == f"run={ids['student']}"
    table = _table(app)
    assert table.loc[ids["student"], "layers"] == f"layers?run={ids['student']}"
    assert table.loc[ids["analysis"], "results"] is None or table.loc[ids["analysis"], "results"] != \
        table.loc[ids["analysis"], "results"]  # an analysis has no Results view
    app.selectbox(key="runs_inspect").set_value(ids["teacher"]).run()
    assert app.query_params["run"] == ids["teacher"]  # a reload keeps the pick
    assert app.selectbox(key="runs_inspect").value == ids["teacher"]


def test_search_and_filters(shared, open_page):
    root, ids = shared
    app = open_page("runs")
    everything = set(_table(app).index)
    app.text_input(key="runs_search").input(ids["student"]).run()
    assert set(_table(app).index) == {ids["student"]}
    app.text_input(key="runs_search").input("").run()
    app.multiselect(key="runs_kinds").set_value(["analysis"]).run()
    assert set(_table(app)["kind"]) == {"analysis"} and len(_table(app)) == 3
    app.multiselect(key="runs_kinds").set_value([]).run()
    assert app.multiselect(key="runs_presets").options == ["tiny"]
    app.multiselect(key="runs_datasets").set_value(["toy"]).run()
    assert set(_table(app).index) == everything


def test_tags_note_and_archive(fresh, open_page):
    root, ids = fresh
    app = open_page("runs")
    app.selectbox(key="runs_inspect").set_value(ids["teacher"]).run()
    app.text_input(key=f"runs_tags_{ids['teacher']}").input("baseline, paper,baseline")
    app.text_area(key=f"runs_note_{ids['teacher']}").input("the one in figure 2")
    app.checkbox(key=f"runs_archived_{ids['teacher']}").check()
    app.button(key="FormSubmitter:runs_notes_" + ids["teacher"] + "-Save notes").click().run()
    _no_errors(app)
    saved = run_notes.read_notes(root / "data" / "runs", ids["teacher"])
    assert saved == run_notes.Notes(("baseline", "paper"), "the one in figure 2", True)
    assert ids["teacher"] not in _table(app).index  # archived: hidden, not deleted
    assert (root / "data" / "runs" / ids["teacher"] / "spec.json").is_file()
    app.toggle(key="runs_show_archived").set_value(True).run()
    assert _table(app).loc[ids["teacher"], "tags"] == "baseline, paper"
    app.multiselect(key="runs_tags").set_value(["paper"]).run()
    assert list(_table(app).index) == [ids["teacher"]]
    app.text_input(key="runs_search").input("figure").run()
    assert list(_table(app).index) == [ids["teacher"]]


def test_bad_tag_is_refused_by_name(fresh, open_page):
    root, ids = fresh
    app = open_page("runs")
    run_id = app.selectbox(key="runs_inspect").value
    app.text_input(key=f"runs_tags_{run_id}").input("x" * 41)
    app.button(key="FormSubmitter:runs_notes_" + run_id + "-Save notes").click().run()
    assert any("tag" in e.value and "40 characters" in e.value for e in app.error)
    assert not (root / "data" / "runs" / run_id / "notes.json").exists()


def test_overlay_and_compare(shared, open_page, figures):
    root, ids = shared
    app = open_page("runs")
    app.selectbox(key="runs_inspect").set_value(ids["analysis"]).run()
    assert ids["analysis"] not in app.multiselect(key="runs_compare").options  # analysis runs stay out
    app.multiselect(key="runs_overlay").set_value([ids["teacher"], ids["student"]]).run()
    _no_errors(app)
    [fig] = figures(app)
    names = {t["name"] for t in fig["data"]}
    assert len(names) == 2 and all(ids[k][-6:] in " ".join(names) for k in ("teacher", "student"))


def _shown_command(app) -> str:
    [command] = [c.value for c in app.code if c.value.startswith("cat > ")]
    return command


def _spec_from_command(command: str, folder: Path):
    """Parse the shown snippet as the shell would: the heredoc file, then the slmrec arguments."""
    from core.cli.options import spec_from_args
    from core.cli.parser import build_parser

    match = re.fullmatch(r"cat > (\S+) <<'EOF'\n(.*)\nEOF\nslmrec (.*)", command, re.S)
    (folder / match[1]).write_text(match[2])
    args = shlex.split(match[3])
    args[args.index("--spec") + 1] = str(folder / args[args.index("--spec") + 1])
    return spec_from_args(build_parser().parse_args(args))


@pytest.mark.parametrize("kind", ["sasrec", "teacher", "student", "analysis"])
def test_reproduce_command_gives_the_same_settings(shared, open_page, tmp_path, kind):
    from core.config import settings_hash

    root, ids = shared
    app = open_page("runs")
    app.selectbox(key="runs_inspect").set_value(ids[kind]).run()
    spec = _spec_from_command(_shown_command(app), tmp_path)
    stored = run_store.read_spec(root / "data" / "runs", ids[kind])
    assert spec.kind == kind and settings_hash(spec) == stored["settings_hash"]
    assert json.loads([c.value for c in app.code if c.value.startswith("{")][0]) == stored["spec"]


def test_reproduce_command_runs_in_a_shell(fresh, open_page):
    root, ids = fresh
    app = open_page("runs")
    app.selectbox(key="runs_inspect").set_value(ids["student"]).run()
    before = {p.name for p in (root / "data" / "runs").iterdir()}
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", _shown_command(app)], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert ids["student"] in done.stdout  # the same settings: the finished run itself, not a new one
    assert {p.name for p in (root / "data" / "runs").iterdir()} == before


def test_clone_fills_the_launch_form(shared, open_page):
    from app import clone, launch

    root, ids = shared
    frame = runs_frame()
    student = frame[(frame["kind"] == "student") & (frame["teacher_depth"] == 4)]["run_id"].iloc[0]  # seed 1
    values, missed = clone.launch_values(frame, student)
    assert missed == []  # the form can recreate this tiny-preset student exactly
    plan = launch.build_plan(launch.LaunchSettings(**values))
    stored = run_store.read_spec(root / "data" / "runs", student)["spec"]
    assert plan.student.distill == clone_distill(stored, plan.student.distill)
    assert (values["teacher_depth"], values["student_depth"], values["blocks"], values["seed"]) == (4, 2, 2, 1)
    app = open_page("runs")
    app.selectbox(key="runs_inspect").set_value(student).run()
    app.button(key="runs_clone").click().run()
    _no_errors(app)
    assert app.segmented_control(key="launch_preset").value == "tiny (seconds, random model)"
    assert app.slider(key="launch_teacher_depth").value == 4
    assert app.slider(key="launch_student_depth").value == 2
    assert app.selectbox(key="launch_blocks").value == 2
    assert app.number_input(key="launch_seed").value == 1
    assert any(student[-6:] in i.value for i in app.info)  # the page says where the values came from


def clone_distill(stored: dict, built):
    """The stored student's distill settings with the links the plan fills at submit."""
    from dataclasses import replace

    return replace(built, **{k: v for k, v in stored["distill"].items() if k != "teacher_run"})


def test_clone_of_a_pretrained_analysis_is_refused(fresh, open_page):
    from app import clone

    root, ids = fresh
    spec = {"kind": "analysis", "analysis": {"run": ""}}
    frame = runs_frame()
    frame.loc[frame["run_id"] == ids["analysis"], "spec"] = json.dumps(spec)
    with pytest.raises(clone.CloneError, match="pretrained"):
        clone.launch_values(frame, ids["analysis"])


def test_notes_update_is_atomic_and_locked(tmp_path):
    runs_root = tmp_path / "runs"
    run_id = run_store.create_run(runs_root, {"kind": "teacher"}, "teacher")
    run_notes.update_notes(runs_root, run_id, tags=("a",))
    run_notes.update_notes(runs_root, run_id, note="n")  # keeps the tags
    assert run_notes.read_notes(runs_root, run_id) == run_notes.Notes(("a",), "n", False)
    assert not [p for p in (runs_root / run_id).iterdir() if p.name.endswith(".tmp")]
    (runs_root / run_id / "notes.json").write_text('{"tags": "a"}')
    with pytest.raises(ValueError, match="notes.json.*list of strings"):
        run_notes.read_notes(runs_root, run_id)
    with pytest.raises(ValueError, match="unknown field"):
        run_notes.update_notes(runs_root, run_id, colour="red")
    assert np.array_equal(sorted(run_notes.notes_mtimes(runs_root)), [run_id])
