"""What pages write: Launch submits a pipeline (or nothing, with core's message), the Tour's Run
buttons queue their experiment, and Runs cancels."""

from dataclasses import replace

from core.config import ConfigError, valid_blocks
from core.store import runs as run_store


def _launch(app):
    next(b for b in app.button if b.label == "Launch pipeline").click().run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def test_invalid_learning_rate_shows_the_message_and_submits_nothing(fresh, open_page, run_folders):
    root, _ = fresh
    before = run_folders(root)
    app = open_page("launch")
    app.number_input(key="launch_lr").set_value(0.0)
    _launch(app)
    assert any("train.lr: expected > 0, got 0.0" in e.value for e in app.error)
    assert run_folders(root) == before


def test_block_choices_follow_the_depths(fresh, open_page):
    app = open_page("launch")
    app.slider(key="launch_teacher_depth").set_value(6).run()
    app.slider(key="launch_student_depth").set_value(4).run()
    blocks = app.selectbox(key="launch_blocks")
    assert [int(b) for b in blocks.options] == valid_blocks(6, 4) == [1, 2]
    assert blocks.value == 2
    app.slider(key="launch_student_depth").set_value(3).run()
    assert [int(b) for b in app.selectbox(key="launch_blocks").options] == [1, 3]
    assert "(2, 1), (4, 2), (6, 3)" in " ".join(c.value for c in app.caption)


def test_blocks_not_dividing_are_refused_with_the_valid_ones():
    from app import launch

    settings = launch.defaults("tiny (seconds, random model)", "toy")
    try:
        launch.build_plan(replace(settings, teacher_depth=8, student_depth=4, blocks=3), base_layers=8)
    except ConfigError as exc:
        assert "B=3 must divide both the teacher depth 8 and the student depth 4; valid B: 1, 2, 4" in str(exc)
    else:
        raise AssertionError("B=3 was accepted")
    try:
        launch.build_plan(replace(settings, teacher_depth=12), base_layers=8)
    except ConfigError as exc:
        assert "teacher depth 12 is not possible; tiny has 8 decoder layers" in str(exc)
    else:
        raise AssertionError("depth 12 of an 8-layer model was accepted")


def test_launch_queues_the_pipeline_and_then_reuses_it(fresh, open_page, run_folders):
    root, _ = fresh
    before = run_folders(root)
    app = open_page("launch")
    app.button_group(key="launch_preset").set_value("tiny (seconds, random model)").run()
    assert app.slider(key="launch_teacher_depth").value == 4 and app.slider(key="launch_student_depth").value == 2
    _launch(app)
    assert not app.error
    new = sorted(run_folders(root) - before)
    kinds = {run_store.read_spec(root / "data" / "runs", r)["kind"]: r for r in new}
    assert sorted(kinds) == ["analysis", "sasrec", "student", "teacher"]
    specs = {k: run_store.read_spec(root / "data" / "runs", r)["spec"] for k, r in kinds.items()}
    assert specs["teacher"]["backbone"]["depth"] == 4 and specs["student"]["backbone"]["depth"] == 2
    assert specs["student"]["distill"]["teacher_run"] == kinds["teacher"]
    assert specs["teacher"]["sasrec_run"] == specs["student"]["sasrec_run"] == kinds["sasrec"]
    assert specs["analysis"]["analysis"] == {**specs["analysis"]["analysis"], "run": kinds["student"],
                                             "against": kinds["teacher"]}
    assert all(run_store.read_state(root / "data" / "runs", r)["status"] == "queued" for r in new)
    assert any("Queued 4 runs (0 reused, 4 new)" in s.value for s in app.success)
    reuse = app.dataframe[-1].value
    assert [r[-6:] for r in reuse["reuses"]] == [kinds[k][-6:] for k in ("sasrec", "teacher", "student", "analysis")]
    assert list(reuse["status"]) == ["queued"] * 4

    _launch(app)  # the same settings again: every stage is reused
    assert run_folders(root) - before == set(new)
    assert any("Queued 4 runs (4 reused, 0 new)" in s.value for s in app.success)


def test_success_banner_follows_the_form_and_counts_reused_runs(fresh, open_page, run_folders):
    root, _ = fresh
    app = open_page("launch")
    app.button_group(key="launch_preset").set_value("tiny (seconds, random model)").run()
    _launch(app)
    assert [s.value for s in app.success if "Queued 4 runs" in s.value]
    app.slider(key="launch_student_depth").set_value(1).run()  # the form changed: the banner is stale
    assert not [s.value for s in app.success if "Queued" in s.value]
    assert any("settings changed since your last launch" in i.value for i in app.info)
    before = run_folders(root)
    _launch(app)  # sasrec and teacher are the same; student and analysis are new
    [banner] = [s.value for s in app.success if "Queued" in s.value]
    assert "Queued 4 runs (2 reused, 2 new)" in banner
    assert banner.count("(reused)") == 2 and banner.count("(new)") == 2
    assert "student 1←4 distilled" in banner  # the labels say what the runs are
    assert len(run_folders(root) - before) == 2


def _estimate(app):
    return next(d.value for d in app.dataframe if "speed vs teacher" in d.value.columns).set_index("model")


def test_a_student_deeper_than_its_teacher_is_warned_before_launch(fresh, open_page, run_folders):
    from core.config import depth_warning

    root, _ = fresh
    app = open_page("launch")
    app.button_group(key="launch_preset").set_value("tiny (seconds, random model)").run()
    expected = depth_warning(4, 8).removeprefix("warning: ").capitalize()
    assert not any("the student has" in w.value.lower() for w in app.warning)
    app.slider(key="launch_student_depth").set_value(8).run()
    assert any(w.value == expected for w in app.warning)
    assert _estimate(app).loc["student", "speed vs teacher"] == "2.00× slower (deeper than its teacher)"
    assert any("slower" in c.value for c in app.caption)
    app.slider(key="launch_student_depth").set_value(2).run()
    assert not any(w.value == expected for w in app.warning)
    assert _estimate(app).loc["student", "speed vs teacher"] == "2.00× faster"


def test_a_changed_block_count_is_said_with_the_valid_values(fresh, open_page):
    app = open_page("launch")
    app.slider(key="launch_teacher_depth").set_value(8).run()
    app.slider(key="launch_student_depth").set_value(4).run()
    app.selectbox(key="launch_blocks").set_value(4).run()
    assert not [w for w in app.warning if "Blocks B changed" in w.value]
    app.slider(key="launch_student_depth").set_value(3).run()
    assert app.selectbox(key="launch_blocks").value == 1
    notes = [w.value for w in app.warning if "Blocks B changed" in w.value]
    assert notes == ["Blocks B changed from 4 to 1: B must divide both the teacher depth 8 and the student depth 3, "
                     "so the valid B are 1. Pick another valid B in the box above if you prefer."]
    assert "Valid B for teacher 8 and student 3 (divisors of both): 1" in [c.value for c in app.caption]
    app.slider(key="launch_student_depth").set_value(4).run()  # B = 1 is still valid: the note is over
    assert not [w for w in app.warning if "Blocks B changed" in w.value]


def test_sampled_negatives_are_set_on_the_form(fresh, open_page, run_folders):
    root, _ = fresh
    before = run_folders(root)
    app = open_page("launch")
    app.button_group(key="launch_preset").set_value("tiny (seconds, random model)").run()
    app.number_input(key="launch_n_negatives").set_value(20)
    _launch(app)
    specs = [run_store.read_spec(root / "data" / "runs", r)["spec"] for r in run_folders(root) - before]
    assert len(specs) == 4 and {s["data"]["n_negatives"] for s in specs} == {20}


def test_tour_run_button_queues_its_cell(fresh, open_page, run_folders):
    root, _ = fresh
    before = run_folders(root)
    app = open_page("tour")
    app.button(key="tour_run_2").click().run()
    assert not app.exception
    new = run_folders(root) - before
    assert sorted(run_store.read_spec(root / "data" / "runs", r)["kind"] for r in new) == ["sasrec", "teacher"]
    outputs = [m.value for m in app.markdown if m.value.startswith("Output")]
    assert "**sasrec**: :material/schedule: queued" in outputs[1]
    assert "**teacher**: :material/schedule: queued" in outputs[1]


def test_cancel_a_queued_run(fresh, open_page):
    root, ids = fresh
    app = open_page("runs")
    app.selectbox(key="runs_inspect").set_value(ids["queued"]).run()
    app.button(key="runs_cancel").click().run()
    assert not app.exception
    assert run_store.read_state(root / "data" / "runs", ids["queued"])["status"] == "cancelled"
