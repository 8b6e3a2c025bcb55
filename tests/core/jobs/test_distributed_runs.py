"""A tiny teacher run on 2 processes (gloo, CPU), through every way one starts: `slmrec run
--nproc-per-node 2` (which starts itself again under torchrun), torchrun around `python -m core.cli
run` directly, and a worker given a spec that asks for 2 processes.

Each is compared with one process trained on the same global batch (the `reference` run): the same
loss curve, the same rank for every user, each metric row stored once. Rank 1 runs with the audit
hook of tests/dist_helpers/sitecustomize.py, which records any write it makes under the project.
LoRA dropout is 0 here: with dropout, the ranks' masks come from their own streams and the curves
agree only in distribution.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.jobs import execution, planning
from core.store import runs as run_store
from core.store.paths import Paths
from core.store.query import query
from core.jobs.worker import Worker
from tests.conftest import toy_spec, write_toy_dataset

REPO = Path(__file__).resolve().parents[3]
HELPERS = REPO / "tests" / "dist_helpers"
TRAIN = {"epochs": 2, "max_steps": 0, "device": "cpu"}  # 60 examples, global batch 16: 4 steps an epoch
SETTINGS = {"data": {"dataset": "toy", "kcore": 0}, "backbone": {"lora_dropout": 0.0}, "rec": {"prompt": "{items}"}}


def spec_settings(**train) -> dict:
    """The shared settings; `train.checkpoint_every` differs per test so each plans its own teacher run
    (it changes the settings hash, not the training)."""
    return {**SETTINGS, "train": {**TRAIN, **train}}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(project root, the single-process teacher run id) on a fresh toy project."""
    root = tmp_path_factory.mktemp("project")
    write_toy_dataset(root)
    paths = Paths(root)
    for run_id in planning.plan(paths, toy_spec("teacher", **spec_settings(checkpoint_every=0))):
        assert execution.execute(paths, run_id)["status"] == "done"
    return root, run_id


def launch(root: Path, tmp: Path, command: list[str]) -> subprocess.CompletedProcess:
    """Run `command` with rank > 0 audited for writes under `root`; reports go to tmp/audit."""
    (tmp / "audit").mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HELPERS), str(REPO)]),
           "SLMREC_AUDIT_ROOT": str(root), "SLMREC_AUDIT_REPORT": str(tmp / "audit")}
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=env, cwd=tmp)


def write_spec(tmp: Path, **train) -> Path:
    path = tmp / "spec.json"
    path.write_text(json.dumps(spec_settings(**train)))
    return path


def teacher_of(root: Path, checkpoint_every: int) -> str:
    found = [r["run_id"] for r in run_store.list_runs(root / "data" / "runs")
             if r["kind"] == "teacher" and r["spec"]["train"]["checkpoint_every"] == checkpoint_every]
    assert len(found) == 1, found
    return found[0]


def rows(root: Path, sql: str, run_id: str) -> list[dict]:
    return query(root / "data", sql, [run_id])


def assert_trains_like(root: Path, run_id: str, reference_id: str) -> None:
    """Same loss curve (atol 1e-4), same rank for every user and evaluation, each metric row once."""
    losses = "SELECT step, name, value FROM losses WHERE run_id = ? ORDER BY step, name"
    got, expected = rows(root, losses, run_id), rows(root, losses, reference_id)
    assert [(r["step"], r["name"]) for r in got] == [(r["step"], r["name"]) for r in expected]
    assert max(r["step"] for r in got) == 8
    for a, b in zip(got, expected):
        assert a["value"] == pytest.approx(b["value"], abs=1e-4), a
    ranks = "SELECT step, split, protocol, user_id, rank FROM ranks WHERE run_id = ? ORDER BY ALL"
    assert rows(root, ranks, run_id) == rows(root, ranks, reference_id)
    metrics = ("SELECT step, split, protocol, model, layer, metric, count(*) AS n FROM metrics WHERE run_id = ? "
               "GROUP BY ALL")
    once = rows(root, metrics, run_id)
    assert {r["n"] for r in once} == {1} and len(once) == len(rows(root, metrics, reference_id)) == 48


def assert_rank_1_wrote_nothing(root: Path, tmp: Path, run_id: str) -> None:
    audit = tmp / "audit"
    assert list(audit.glob("rank1-*.started")), "the audit did not run in rank 1"
    assert not list(audit.glob("*.writes")), [p.read_text() for p in audit.glob("*.writes")]
    pid = run_store.read_state(root / "data" / "runs", run_id)["pid"]
    segments = list((root / "data" / "runs" / run_id / "events").glob("*.parquet"))
    assert segments and all(p.stem.split("-")[-1] in (str(pid), "compact") for p in segments)


def test_slmrec_run_on_two_processes_trains_as_one_on_the_same_global_batch(reference, tmp_path):
    root, reference_id = reference
    done = launch(root, tmp_path, [sys.executable, "-m", "core.cli", "--root", str(root), "run", "teacher",
                                   "--preset", "tiny", "--spec", str(write_spec(tmp_path, checkpoint_every=2)),
                                   "--nproc-per-node", "2", "--json"])
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout)  # printed by rank 0 alone, so stdout is one JSON document
    run_id = teacher_of(root, 2)
    assert summary["status"] == "done" and summary["run_id"] == run_id
    assert_trains_like(root, run_id, reference_id)
    assert_rank_1_wrote_nothing(root, tmp_path, run_id)
    state = run_store.read_state(root / "data" / "runs", run_id)
    manifest = json.loads((root / "checkpoints" / run_id / "manifest.json").read_text())
    assert state["device"] == "2 x cpu" and manifest["processes"] == 2
    assert manifest["spec"]["train"]["nproc_per_node"] == 2


def test_a_checkpoint_of_two_processes_resumes_on_one(reference, tmp_path):
    root, reference_id = reference
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                str(HELPERS / "cancel_at.py"), "3"]
    done = launch(root, tmp_path, torchrun + ["--root", str(root), "run", "teacher", "--preset", "tiny",
                                              "--spec", str(write_spec(tmp_path, checkpoint_every=5))])
    run_id = teacher_of(root, 5)
    state = run_store.read_state(root / "data" / "runs", run_id)
    assert done.returncode != 0 and state["status"] == "cancelled", done.stderr[-4000:]
    assert state["error"] == "cancelled at step 3"
    assert_rank_1_wrote_nothing(root, tmp_path, run_id)
    resume_state = json.loads((root / "checkpoints" / run_id / "resume.json").read_text())["state"]
    assert resume_state["step"] == 3 and resume_state["batch"] == 3
    assert execution.execute(Paths(root), run_id)["status"] == "done"  # one process takes it from step 3
    assert "resuming from step 3" in (root / "data" / "runs" / run_id / "log.txt").read_text()
    assert_trains_like(root, run_id, reference_id)


def test_the_worker_runs_a_spec_that_asks_for_two_processes(reference, tmp_path):
    root, reference_id = reference
    paths = Paths(root)
    spec = toy_spec("teacher", **spec_settings(checkpoint_every=6, nproc_per_node=2))
    run_id = planning.plan(paths, spec)[-1]  # its SASRec parent is the reference's, already done
    (tmp_path / "audit").mkdir()
    env = {"PYTHONPATH": os.pathsep.join([str(HELPERS), str(REPO), os.environ.get("PYTHONPATH", "")]),
           "SLMREC_AUDIT_ROOT": str(root), "SLMREC_AUDIT_REPORT": str(tmp_path / "audit")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the worker's children inherit them
    try:
        Worker(paths, device="cpu", once=True, echo=False).run()
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    state = run_store.read_state(paths.runs, run_id)
    assert state["status"] == "done", (state.get("error"), (paths.runs / run_id / "log.txt").read_text()[-3000:])
    assert state["device"] == "2 x cpu"
    assert_trains_like(root, run_id, reference_id)
    assert_rank_1_wrote_nothing(root, tmp_path, run_id)


def test_bad_process_settings_are_refused_before_any_run_or_process(tmp_path, capsys):
    from core.cli import main

    write_toy_dataset(tmp_path)
    run = ["--root", str(tmp_path), "run", "teacher", "--preset", "tiny", "--dataset", "toy", "--kcore", "0"]
    for extra, message in ((["--nproc-per-node", "0"], "train.nproc_per_node: expected >= 1"),
                           (["--nproc-per-node", "2", "--device", "cuda:1"], "train.device: 'cuda:1' cannot be shared"),
                           (["--nnodes", "2"], "--rdzv-endpoint: a run over several nodes needs HOST:PORT")):
        assert main(run + extra) == 2
        assert message in capsys.readouterr().err
    assert run_store.list_runs(tmp_path / "data" / "runs") == []


def test_a_pipeline_gives_its_process_count_to_teacher_and_student_only(tmp_path, capsys):
    from core.cli import main

    write_toy_dataset(tmp_path)
    assert main(["--root", str(tmp_path), "submit", "pipeline", "--preset", "tiny", "--dataset", "toy", "--kcore", "0",
                 "--teacher-depth", "4", "--student-layers", "2", "--nproc-per-node", "2", "--json"]) == 0
    runs = {r["kind"]: r["spec"]["train"]["nproc_per_node"] for r in run_store.list_runs(tmp_path / "data" / "runs")}
    assert runs == {"sasrec": 1, "teacher": 2, "student": 2, "analysis": 1}
