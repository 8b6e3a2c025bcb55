"""The DuckDB views: columns when empty, the runs view, concurrent readers, no torch (the sandbox: test_store_bad_inputs)."""

import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.store import runs
from core.store.events import EventWriter
from core.store.query import ResultsDB, query, query_df
from core.store.segments import compact
from core.store.tables import SCHEMAS

REPO_ROOT = Path(__file__).resolve().parents[3]
RUNS_COLUMNS = ["run_id", "kind", "parent_id", "name", "status", "phase", "progress", "created_at",
                "started_at", "finished_at", "heartbeat_at", "device", "error", "spec",
                "settings_hash", "eta_s", "samples_per_s"]


def test_empty_store_has_every_view_with_typed_columns(tmp_path):
    con = ResultsDB(tmp_path / "data").con  # not even data/runs yet
    for table, schema in SCHEMAS.items():
        assert [c[0] for c in con.execute(f"DESCRIBE {table}").fetchall()] == schema.names
        assert con.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    described = {c[0]: c[1] for c in con.execute("DESCRIBE metrics").fetchall()}
    assert described["layer"] == "INTEGER" and described["step"] == "BIGINT" and described["value"] == "DOUBLE"
    assert [c[0] for c in con.execute("DESCRIBE runs").fetchall()][:len(RUNS_COLUMNS)] == RUNS_COLUMNS


def test_runs_view(paths):
    spec = {"kind": "student", "distill": {"blocks": 2}}
    teacher = runs.create_run(paths.runs, {}, "teacher", status="done")
    student = runs.create_run(paths.runs, spec, "student", name="s", parent_id=teacher, settings_hash="h")
    runs.update_state(paths.runs, student, status="running", progress=0.25, device="cpu", heartbeat_at=runs.now_iso())
    broken = runs.create_run(paths.runs, {}, "analysis")
    (paths.runs / broken / "state.json").write_text("")
    rows = {r["run_id"]: r for r in query(paths.data_root, "SELECT * FROM runs")}
    assert rows[student]["parent_id"] == teacher and rows[student]["status"] == "running"
    assert rows[student]["progress"] == 0.25 and rows[student]["settings_hash"] == "h"
    assert json.loads(rows[student]["spec"]) == spec
    assert rows[student]["started_at"] >= rows[student]["created_at"]
    assert rows[broken]["status"] == "unknown" and "state.json" in rows[broken]["error"]
    by_status = query(paths.data_root, "SELECT status, count(*) AS n FROM runs GROUP BY status ORDER BY status")
    assert by_status == [{"status": "done", "n": 1}, {"status": "running", "n": 1}, {"status": "unknown", "n": 1}]
    df = query_df(paths.data_root, "SELECT run_id, finished_at - created_at AS took FROM runs WHERE status = ?",
                  ["done"])
    assert list(df["run_id"]) == [teacher]


def test_sql_cannot_read_outside_the_runs(paths, tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    with pytest.raises(Exception, match="disabled by configuration"):
        query(paths.data_root, f"SELECT * FROM read_csv('{secret}')")


_WRITER = str(Path(__file__).resolve().parents[2] / "store_writer.py")


def test_reader_never_sees_partial_segments_while_writer_appends(paths):
    run_id = runs.create_run(paths.runs, {}, "teacher")
    writer = subprocess.Popen([sys.executable, _WRITER, str(paths.runs / run_id), "2.0"], cwd=REPO_ROOT,
                              env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, stdout=subprocess.PIPE)
    db, counts = ResultsDB(paths.data_root), []
    while writer.poll() is None:
        db.refresh()
        (row,) = db.query("SELECT count(*) AS n, count(DISTINCT step) AS steps FROM losses")
        assert row["n"] == 100 * row["steps"]  # every visible segment is whole
        counts.append(row["n"])
    segments = int(writer.stdout.read().split()[-1])
    assert writer.returncode == 0 and segments > 5
    assert counts == sorted(counts) and len(counts) > 3  # counts only grow
    assert query(paths.data_root, "SELECT count(*) AS n FROM losses") == [{"n": 100 * segments}]


def _compact_later(run_dir):
    time.sleep(0.3)
    compact(run_dir)


def test_reader_during_compaction(paths):
    run_id = runs.create_run(paths.runs, {}, "teacher")
    for step in range(40):
        with EventWriter(paths.runs / run_id) as writer:
            writer.append("metrics", [{"step": step, "metric": "MRR", "value": 0.1}] * 10)
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_compact_later, args=(paths.runs / run_id,))
    db = ResultsDB(paths.data_root)
    proc.start()
    deadline = time.time() + 1.5
    while time.time() < deadline:
        assert db.query("SELECT count(*) AS n FROM metrics") == [{"n": 400}]
        db.refresh()
    proc.join(10)
    assert proc.exitcode == 0 and len(list((paths.runs / run_id / "events").glob("*.parquet"))) == 1


def test_store_modules_do_not_import_torch():
    modules = ["query", "runs", "events", "segments", "tables", "checkpoints", "tensorstate", "paths", "atomic",
               "sandbox"]
    code = f"import sys; import {', '.join('core.store.' + m for m in modules)}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, check=True)
    assert out.stdout.strip() == "False"
