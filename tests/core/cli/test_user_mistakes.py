"""Mistakes a user makes on the command line end with one `error:` line naming the option or field
and what was expected: no traceback, and nothing queued."""

import pytest

from core.cli import main
from core.config import apply_preset, to_dict
from core.store import runs as run_store
from core.store.paths import Paths

TINY = ["--preset", "tiny", "--dataset", "toy", "--kcore", "0", "--device", "cpu"]


def slmrec(root, capsys, *args) -> tuple[int, str, str]:
    code = main(["--root", str(root), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def queued(root) -> list[dict]:
    return run_store.list_runs(Paths(root).runs)


def teacher(root, depth: int) -> str:
    """A teacher run's folder with the settings TINY gives (its spec is all that planning reads)."""
    spec = apply_preset("tiny", {"data": {"dataset": "toy", "kcore": 0}, "backbone": {"depth": depth}}, "teacher")
    return run_store.create_run(Paths(root).runs, to_dict(spec), "teacher", status="done")


@pytest.mark.parametrize("args, says", [
    (["submit", "student", "--teacher", "nonexistent", "--student-layers", "2"],
     "distill.teacher_run: no run 'nonexistent'"),
    (["submit", "student", "--teacher", "../../etc", "--student-layers", "2"],
     "distill.teacher_run: invalid run id '../../etc'"),
    (["run", "analysis", "--run", "../../etc"], "analysis.run: invalid run id '../../etc'"),
    (["submit", "teacher", "--sasrec-run", "../../x"], "sasrec_run: invalid run id '../../x'"),
    (["submit", "analysis", "--run", "nosuchrun"], "analysis.run: no run 'nosuchrun'"),
])
def test_a_bad_run_reference_is_refused_before_anything_is_queued(project, capsys, args, says):
    code, out, err = slmrec(project, capsys, *args, *TINY)
    assert code == 2 and says in err and "Traceback" not in out + err
    assert queued(project) == []


@pytest.mark.parametrize("args, says", [
    (["submit", "student", "--teacher-depth", "8"], "--teacher-depth: sets the depth of a teacher or pipeline run, "
                                                    "not of a student run; a student's depth is --student-layers"),
    (["submit", "teacher", "--student-layers", "4"], "--student-layers: sets the depth of a student or pipeline run"),
    (["submit", "analysis", "--teacher-depth", "4"], "not of a analysis run"),
    (["submit", "sweep", "--student-layers", "2", "--depths", "1,2"], "a sweep's depths are --depths"),
])
def test_each_depth_flag_has_one_meaning(project, capsys, args, says):
    code, _, err = slmrec(project, capsys, *args, *TINY)
    assert code == 2 and says in err
    assert queued(project) == []


def test_the_depth_flags_set_their_own_runs_depth(project, capsys):
    t = teacher(project, 4)
    assert slmrec(project, capsys, "submit", "student", "--teacher", t, "--student-layers", "2", "--blocks", "2",
                  *TINY)[0] == 0
    student = next(r for r in queued(project) if r["kind"] == "student")
    assert run_store.read_spec(Paths(project).runs, student["run_id"])["spec"]["backbone"]["depth"] == 2


def test_blocks_that_do_not_divide_both_depths_are_refused_on_submit(project, capsys):
    t = teacher(project, 4)
    code, _, err = slmrec(project, capsys, "submit", "student", "--teacher", t, "--student-layers", "3",
                          "--blocks", "2", *TINY)
    assert code == 2 and "B=2 must divide both the teacher depth 4 and the student depth 3; valid B: 1" in err
    assert [r["kind"] for r in queued(project)] == ["teacher"]


def test_a_teacher_run_must_be_a_teacher(project, capsys):
    run_id = run_store.create_run(Paths(project).runs, {"kind": "sasrec"}, "sasrec", status="done")
    code, _, err = slmrec(project, capsys, "submit", "student", "--teacher", run_id, "--student-layers", "2", *TINY)
    assert code == 2 and f"distill.teacher_run: run '{run_id}' is a sasrec run; expected a teacher run" in err


def test_a_failed_stage_prints_its_error_not_its_stack(project, capsys):
    code, out, err = slmrec(project, capsys, "run", "sasrec", *TINY[:2], "--dataset", "nosuch", "--device", "cpu")
    assert code == 1 and "Traceback" not in out + err
    failed = next(line for line in out.splitlines() if " failed" in line)
    assert "nosuch" in failed and "its traceback is in" in out
    run_id = queued(project)[0]["run_id"]
    assert "Traceback" in run_store.read_log(Paths(project).runs, run_id)  # the stack is kept for the log


def test_a_teacher_with_another_prompt_or_base_is_refused_on_submit(project, capsys):
    t = teacher(project, 4)
    code, _, err = slmrec(project, capsys, "submit", "student", "--teacher", t, "--student-layers", "2",
                          "--blocks", "2", "--prompt", "Next after {items}?", *TINY)
    assert code == 2 and f"distill.teacher_run: teacher '{t}' differs from this student in rec.prompt" in err
    assert [r["kind"] for r in queued(project)] == ["teacher"]


def test_mask_history_is_an_on_off_option(project, capsys):
    assert slmrec(project, capsys, "submit", "teacher", "--mask-history", "off", *TINY)[0] == 0
    teacher_run = next(r for r in queued(project) if r["kind"] == "teacher")
    assert run_store.read_spec(Paths(project).runs, teacher_run["run_id"])["spec"]["rec"]["mask_history"] is False
    with pytest.raises(SystemExit):
        main(["--root", str(project), "submit", "teacher", "--mask-history", "maybe"])
    assert "expected on or off, got 'maybe'" in capsys.readouterr().err


def test_a_student_without_teacher_needs_blocks_that_divide_its_depth(project, capsys):
    code, _, err = slmrec(project, capsys, "submit", "student", "--student-layers", "1", "--blocks", "2",
                          "--lambda-cos", "0", "--lambda-norm", "0", "--lambda-sup", "0", *TINY)
    assert code == 2 and "distill.blocks: B=2 must divide the student depth 1 (a student without a teacher" in err
    assert err.rstrip().endswith("valid B: 1")
    assert queued(project) == []
