"""Reliability and bad input: each case gets the exact message a user sees.

Cases already covered elsewhere are listed, not repeated: empty files, wrong delimiters, missing
columns, non-numeric and negative timestamps, duplicates (tests/core/data/test_data_bad_inputs.py);
paths leaving data/ (test_data_resolve.py); blocks not dividing the depths (test_config.py,
test_student_stage.py); a depth above the model's (test_teacher_stage.py); pickle checkpoints
(test_store_checkpoints.py); corrupt segments and a missing state.json (tests/core/store/).
The runs here are tiny SASRec runs (seconds); the LLM stages are reached only up to the point tested.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest

from core import cli
from core.jobs import execution, planning
from core.config import ConfigError, DataConfig, from_dict, to_dict
from core.data.errors import DataError
from core.data.prepare import prepare
from core.store import runs as run_store
from core.store.paths import Paths
from core.store.query import ResultsDB, query, unreadable_segments
from core.train import loop
from tests.conftest import toy_spec

REPO_ROOT = Path(__file__).resolve().parents[3]
LOAD_SECONDS = 10.0  # how long the writer appends while the readers query (the issue asks a minute)
LOAD_READERS = 20


def _put(root: Path, relative: str, content: str | bytes) -> Path:
    path = root / "data" / "raw" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


# --- data ---------------------------------------------------------------------------------------

def test_non_numeric_ids_are_tokens(tmp_path):
    rows = "".join(f"user-{u},film «{i + shift}»,{10 * i}\n"
                   for u, shift in (("a", 0), ("b", 1)) for i in range(1, 4))
    _put(tmp_path, "t/t.csv", "user,item,timestamp\n" + rows)
    prepared = prepare(DataConfig(dataset="t", kcore=0, n_negatives=1), tmp_path / "data")
    assert prepared.user_ids == ["user-a", "user-b"]
    assert sorted(prepared.item_ids[1:]) == ["film «1»", "film «2»", "film «3»", "film «4»"]


def test_every_user_under_three_items_after_filtering(tmp_path):
    path = _put(tmp_path, "t/t.csv", "user,item,timestamp\na,1,1\na,2,2\nb,1,3\nb,3,4\n")
    with pytest.raises(DataError) as caught:
        prepare(DataConfig(dataset="t", kcore=0), tmp_path / "data")
    assert str(caught.value) == (f"{path}: no interactions left after filtering (short sequences (< 3 "
                                 "interactions): 4, users with < 3 interactions: 2); lower data.kcore, "
                                 "data.min_rating or data.min_seq_len")


def test_non_utf8_titles_are_replaced_not_fatal(tmp_path):
    rows = "".join(f"{u},i{k + shift},{k}\n" for u, shift in (("u", 0), ("v", 1)) for k in range(3))
    _put(tmp_path, "t/t.csv", "user,item,timestamp\n" + rows)
    _put(tmp_path, "t/t.items.csv", "item,title\ni0,Caf\xe9\ni1,Plain\n".encode("latin-1"))
    prepared = prepare(DataConfig(dataset="t", kcore=0, n_negatives=1), tmp_path / "data")
    assert prepared.item_titles == ["", "Caf\ufffd", "Plain", "", ""]


# --- settings -----------------------------------------------------------------------------------

@pytest.mark.parametrize("section,name,value,message", [
    ("distill", "lambda_norm", -0.1, "distill.lambda_norm: expected >= 0, got -0.1"),
    ("distill", "lambda_sup", -1, "distill.lambda_sup: expected >= 0, got -1"),
    ("train", "lr", -1e-3, "train.lr: expected > 0, got -0.001"),
])
def test_more_invalid_settings(section, name, value, message):
    with pytest.raises(ConfigError) as caught:
        from_dict({"kind": "student", section: {name: value}})
    assert str(caught.value) == message


def test_spec_file_with_unknown_keys_is_rejected_naming_them(tmp_path, capsys):
    spec = tmp_path / "file.json"
    spec.write_text(json.dumps({"kind": "teacher", "train": {"learning_rate": 1, "lr": 1e-3}, "colour": 1}))
    assert cli.main(["--root", str(tmp_path), "run", "teacher", "--spec", str(spec)]) == 2
    assert capsys.readouterr().err == (f"error: {spec}: spec: unknown key(s) colour; expected some of analysis, backbone, "
                                       "data, depths, distill, drop, kind, name, rec, sasrec, sasrec_run, train\n")
    spec.write_text(json.dumps({"kind": "teacher", "train": {"learning_rate": 1}}))
    assert cli.main(["--root", str(tmp_path), "run", "teacher", "--spec", str(spec)]) == 2
    assert capsys.readouterr().err.startswith(
        f"error: {spec}: spec.train: unknown key(s) learning_rate; expected some of epochs")
    assert not (tmp_path / "data" / "runs").exists()  # refused before anything ran


def test_unknown_preset_on_the_command_line(tmp_path, capsys):
    assert cli.main(["--root", str(tmp_path), "submit", "teacher", "--preset", "huge"]) == 2
    assert capsys.readouterr().err == ("error: preset: unknown preset 'huge'; expected one of tiny, cpu-quick, "
                                       "paper, deep\n")


WARNING = ("warning: the student has 4 layers and its teacher 4; distillation is meant to make a shallower "
           "model (student layers < teacher depth)")


def _fake_finished_teacher(paths: Paths, folder: bool = False) -> str:
    """A teacher run marked done without training it (its checkpoint folder may be absent)."""
    spec = toy_spec("teacher")
    teacher_id = run_store.create_run(paths.runs, to_dict(spec), "teacher", status="done")
    if folder:
        (paths.checkpoints / teacher_id).mkdir(parents=True)
    return teacher_id


def test_student_as_deep_as_its_teacher_is_warned_not_refused(project, capsys, monkeypatch):
    paths = Paths(project)
    teacher_id = _fake_finished_teacher(paths)
    args = ["--root", str(project), "submit", "student", "--preset", "tiny", "--dataset", "toy", "--kcore", "0",
            "--teacher", teacher_id, "--student-layers", "4", "--blocks", "2", "--json"]
    assert cli.main(args) == 0
    out = capsys.readouterr()
    assert out.err.splitlines()[0] == WARNING
    student_id = json.loads(out.out)["run_id"]
    # the run log: stop the stage right after the teacher is loaded (no model is trained here)
    from core.stages import student

    class Teacher:
        num_layers = 4
    spec = from_dict(run_store.read_spec(paths.runs, teacher_id)["spec"])
    monkeypatch.setattr(student, "load_finished_model", lambda ctx, run_id, using: (spec, Teacher()))
    def stop(*args, **kwargs):
        raise RuntimeError("stop here")
    monkeypatch.setattr(student, "load_item_table", stop)
    state = execution.execute(paths, student_id)
    assert state["error"] == "RuntimeError: stop here"  # the warning itself never fails a run
    log = (paths.runs / student_id / "log.txt").read_text()
    assert any(line.endswith(WARNING) for line in log.splitlines())


def test_student_whose_teacher_checkpoint_was_deleted(project):
    paths = Paths(project)
    teacher_id = _fake_finished_teacher(paths)
    student_id, _ = planning.submit(paths, toy_spec("student", distill={"teacher_run": teacher_id}))
    state = execution.execute(paths, student_id)
    folder = paths.checkpoints / teacher_id
    assert state["status"] == "failed"
    assert state["error"] == (f"StageError: run '{teacher_id}': its checkpoint folder {folder} was removed, "
                              "so its weights cannot be loaded; run that teacher again (or pick another finished run)")


# --- training -----------------------------------------------------------------------------------

def _sasrec_run(paths: Paths) -> str:
    (run_id,) = planning.plan(paths, toy_spec("sasrec", train={"checkpoint_every": 1}))
    return run_id


def _wrap_loss(monkeypatch, wrap):
    """Make loop.train use `wrap(loss_fn)` instead of the stage's loss function."""
    original = loop.train
    monkeypatch.setattr(loop, "train", lambda model, loss_fn, *a, **k: original(model, wrap(loss_fn), *a, **k))


def test_nan_loss_fails_the_run_with_step_and_terms(project, monkeypatch):
    paths = Paths(project)

    def wrap(loss_fn):
        def nan_loss(indices):  # a tiny SASRec run has one step per epoch
            loss, terms = loss_fn(indices)
            return loss * float("nan"), {k: v * float("nan") for k, v in terms.items()}
        return nan_loss
    _wrap_loss(monkeypatch, wrap)
    run_id = _sasrec_run(paths)
    state = execution.execute(paths, run_id)
    assert state["status"] == "failed"
    assert state["error"].startswith("NonFiniteLoss: loss is not finite at step 1: ce=nan")
    assert state["error"].endswith("Try a lower train.lr.")
    assert "NonFiniteLoss: loss is not finite at step 1" in (paths.runs / run_id / "log.txt").read_text()


def test_out_of_memory_fails_with_advice(project, monkeypatch):
    paths = Paths(project)

    def wrap(loss_fn):
        def out_of_memory(indices):
            raise MemoryError("cannot allocate 3.1 GiB")
        return out_of_memory
    _wrap_loss(monkeypatch, wrap)
    state = execution.execute(paths, _sasrec_run(paths))
    assert state["status"] == "failed"
    assert state["error"] == ("out of memory (MemoryError: cannot allocate 3.1 GiB); try a smaller batch: "
                              "sasrec.batch_size=128 (in a --spec file), or a shorter data.max_len")


def test_out_of_memory_advice_of_an_llm_stage(tmp_path):
    import torch
    error = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert execution.failure_message(error, toy_spec("teacher"), Paths(tmp_path)) == (
        "out of memory (OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB); try a smaller batch: "
        "train.batch_size=16 (--batch-size), or for evaluation train.eval_batch_size (--eval-batch-size; auto 1024 on "
        "CUDA), "
        "or a shorter data.max_len or a shallower backbone.depth")


def _disk_full(path: Path, what: str):
    """Write half a file at `path`, then fail as a full disk does."""
    Path(path).write_bytes(b"PAR1 half of " + what.encode())
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


def _no_partial_files(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")], "a temporary file was left behind"


def test_disk_full_while_writing_a_segment(project, monkeypatch):
    import pyarrow.parquet as pq
    paths = Paths(project)
    run_id = _sasrec_run(paths)
    original = pq.write_table

    def write_table(table, where, *a, **k):
        if "metrics" in str(where):
            _disk_full(where, "a metrics segment")
        return original(table, where, *a, **k)
    monkeypatch.setattr(pq, "write_table", write_table)
    state = execution.execute(paths, run_id)
    monkeypatch.undo()
    assert state["status"] == "failed"
    assert state["error"].startswith("the disk is full (OSError: [Errno 28] No space left on device: ")
    assert state["error"].endswith(f"free space on the disk holding {paths.root} and run it again (it resumes "
                                   "from its last checkpoint; no half-written file was kept)")
    _no_partial_files(paths.runs / run_id)
    assert unreadable_segments(paths.data_root) == []
    assert query(paths.data_root, "SELECT count(*) AS n FROM metrics WHERE run_id = ?", [run_id]) == [{"n": 0}]
    ranks = query(paths.data_root, "SELECT count(*) AS n, count(DISTINCT (step, split, protocol, user_id)) AS d "
                                   "FROM ranks WHERE run_id = ?", [run_id])
    assert ranks[0]["n"] == ranks[0]["d"] > 0  # the retried flush did not write the ranks a second time


def test_disk_full_while_writing_a_checkpoint(project, monkeypatch):
    import safetensors.torch
    paths = Paths(project)
    run_id = _sasrec_run(paths)
    monkeypatch.setattr(safetensors.torch, "save_file",
                        lambda tensors, where, metadata=None: _disk_full(where, "weights"))
    state = execution.execute(paths, run_id)
    monkeypatch.undo()
    assert state["status"] == "failed"
    assert state["error"].startswith("the disk is full (OSError: [Errno 28] No space left on device: ")
    folder = paths.checkpoints / run_id
    _no_partial_files(folder)
    assert not (folder / "model.safetensors").exists() and not list(folder.glob("resume*.safetensors"))


# --- security -----------------------------------------------------------------------------------

def test_app_binds_to_localhost_by_default():
    from core.cli.parser import build_parser
    assert build_parser().parse_args(["app"]).host == "127.0.0.1"
    config = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["server"]["maxUploadSize"] == 200


# --- load ---------------------------------------------------------------------------------------

_WRITER = str(Path(__file__).resolve().parents[2] / "store_writer.py")


def test_twenty_readers_and_a_full_speed_writer(tmp_path):
    paths = Paths(tmp_path)
    paths.runs.mkdir(parents=True)
    run_id = run_store.create_run(paths.runs, {}, "teacher")
    writer = subprocess.Popen([sys.executable, _WRITER, str(paths.runs / run_id), str(LOAD_SECONDS)],
                              cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    reported = [0]
    errors: list[BaseException] = []
    queries = [0] * LOAD_READERS

    def follow_writer():
        for line in writer.stdout:
            reported[0] = int(line)

    def reader(k: int):
        try:
            db, last = ResultsDB(paths.data_root), 0
            while writer.poll() is None:
                written = reported[0]  # reported before this refresh, so it must be visible after it
                db.refresh()
                (row,) = db.query("SELECT count(*) AS n, count(DISTINCT step) AS steps FROM losses")
                assert row["n"] == 100 * row["steps"], "a partial segment was visible"
                assert row["steps"] >= written, f"segments reported written are missing: {row['steps']} < {written}"
                assert row["n"] >= last, "the row count went down"
                last = row["n"]
                queries[k] += 1
            db.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=follow_writer)] + [threading.Thread(target=reader, args=(k,))
                                                          for k in range(LOAD_READERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LOAD_SECONDS + 60)
    assert writer.wait() == 0 and not errors, errors[:1]
    assert min(queries) >= 1
    segments = reported[0]
    assert segments > 10
    assert query(paths.data_root, "SELECT count(*) AS n, count(DISTINCT step) AS s FROM losses") == \
        [{"n": 100 * segments, "s": segments}]
