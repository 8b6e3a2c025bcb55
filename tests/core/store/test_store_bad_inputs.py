"""Bad input to the results store: SQL that would write or escape the sandbox, corrupt segments, start-up cost."""

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from core.store import runs
from core.store.events import EventWriter
from core.store.query import QueryRefused, ResultsDB, query, unreadable_segments

REPO_ROOT = Path(__file__).resolve().parents[3]


def _run_with_metrics(paths, rows: int = 200) -> tuple[str, Path]:
    run_id = runs.create_run(paths.runs, {}, "teacher")
    with EventWriter(paths.runs / run_id) as writer:
        writer.append("metrics", [{"step": s, "split": "test", "model": "m", "metric": "MRR", "value": s / rows}
                                  for s in range(rows)])
        writer.append("losses", [{"step": 1, "name": "ce", "value": 1.0}])
    return run_id, next((paths.runs / run_id / "events").glob("metrics-*.parquet"))


# --- the SQL sandbox -------------------------------------------------------------------------------

def _booby_trapped_run(paths) -> Path:
    """A run folder holding an EXPORT DATABASE-like schema.sql/load.sql that would write files and replace a view."""
    run_id, _ = _run_with_metrics(paths, rows=3)
    folder = paths.runs / run_id
    (folder / "schema.sql").write_text(
        "CREATE OR REPLACE VIEW metrics AS SELECT 42 AS x;\n"
        f"ATTACH '{folder}/pwn.db' AS pwn;\nCREATE TABLE pwn.t AS SELECT 1 AS a;\n")
    (folder / "load.sql").write_text(f"COPY (SELECT 1 AS a) TO '{folder}/written.csv';\n")
    return folder


@pytest.mark.parametrize("template, kind", [
    ("IMPORT DATABASE '{folder}'", "IMPORT DATABASE"),
    ("PRAGMA import_database('{folder}')", "PRAGMA import_database"),
])
def test_import_database_is_refused_and_runs_nothing(paths, template, kind):
    folder = _booby_trapped_run(paths)
    with ResultsDB(paths.data_root) as db:
        with pytest.raises(QueryRefused, match=f"only read queries are allowed.*this is an? {kind} statement"):
            db.query(template.format(folder=folder))
        assert [c["column_name"] for c in db.query("DESCRIBE metrics")][:2] == ["run_id", "step"]
        assert db.query("SELECT count(*) AS n FROM metrics") == [{"n": 3}]
        assert db.query("PRAGMA database_list")[0]["name"] == "memory" and len(db.query("PRAGMA database_list")) == 1
    assert not (folder / "pwn.db").exists() and not (folder / "written.csv").exists()


@pytest.mark.parametrize("sql, kind", [
    ("ATTACH '{runs}/x.db' AS x", "ATTACH"), ("CREATE TABLE x.t AS SELECT 1 AS a", "CREATE"),
    ("COPY (SELECT 1 AS a) TO '{runs}/x.db'", "COPY"), ("EXPORT DATABASE '{runs}/x.db'", "EXPORT DATABASE"),
    ("CREATE OR REPLACE VIEW metrics AS SELECT 42 AS x", "CREATE"), ("DROP VIEW metrics", "DROP"),
    ("INSTALL httpfs", "INSTALL"), ("LOAD httpfs", "LOAD"), ("LOAD '{runs}/x.db'", "LOAD"),
    ("SET threads = 1", "SET"), ("RESET threads", "RESET"), ("PRAGMA threads = 1", "PRAGMA threads"),
    ("PRAGMA enable_profiling", "PRAGMA enable_profiling"), ("CALL pragma_version()", "CALL"),
    ("CHECKPOINT", "CHECKPOINT"), ("USE memory", "USE"), ("BEGIN", "BEGIN"),
    ("PREPARE p AS SELECT 1", "PREPARE"), ("UPDATE EXTENSIONS", "UPDATE"),
    ("SELECT 1; DROP VIEW runs", "DROP"), ("SELECT 1; ATTACH '{runs}/x.db'", "ATTACH"),
    ("-- a comment first\nCOPY metrics TO '{runs}/x.db'", "COPY"),
    ("EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1", "EXPLAIN ANALYZE CREATE"),
    ("EXPLAIN ANALYZE COPY (SELECT 1) TO '{runs}/x.db'", "EXPLAIN ANALYZE COPY"),
])
def test_statements_that_are_not_reads_are_refused_by_kind(paths, sql, kind):
    _run_with_metrics(paths, rows=3)
    with ResultsDB(paths.data_root) as db:
        with pytest.raises(QueryRefused, match=f"only read queries are allowed.*this is an? {kind} statement"):
            db.query(sql.format(runs=paths.runs))
        assert db.query("SELECT count(*) AS n FROM metrics") == [{"n": 3}]
    assert not (paths.runs / "x.db").exists()


def test_several_read_statements_are_refused_as_one_at_a_time(tmp_path):
    with pytest.raises(QueryRefused, match="one statement at a time; got 2"):
        query(tmp_path / "data", "SELECT 1; SELECT 2")


@pytest.mark.parametrize("sql", [
    "SELECT count(*) AS n FROM metrics", "WITH a AS (SELECT run_id FROM metrics) SELECT * FROM a",
    "DESCRIBE metrics", "SHOW TABLES", "SUMMARIZE metrics", "VALUES (1)", "FROM runs", "EXPLAIN SELECT 1",
    "-- why\nEXPLAIN ANALYZE SELECT * FROM losses",
    "PRAGMA table_info('metrics')", "PRAGMA version", "PRAGMA show_tables", "PRAGMA database_list",
    "SELECT json_extract_string('{\"a\": \"b\"}', '$.a') AS a",
])
def test_read_statements_still_run(paths, sql):
    _run_with_metrics(paths, rows=3)
    assert query(paths.data_root, sql)


def test_temp_folder_is_private_and_outside_the_project(paths, monkeypatch):
    monkeypatch.chdir(paths.root)
    (paths.root / ".tmp").mkdir()
    (paths.root / ".tmp" / "secret.txt").write_text("secret")
    db = ResultsDB(paths.data_root)
    ((temp,),) = db.con.execute("SELECT current_setting('temp_directory')").fetchall()
    temp = Path(temp)
    assert temp.is_absolute() and temp.is_dir() and (temp.stat().st_mode & 0o077) == 0
    for outside in (paths.root.resolve(), Path.cwd().resolve(), REPO_ROOT):
        assert not temp.resolve().is_relative_to(outside)
    with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
        db.query("SELECT content FROM read_text('.tmp/secret.txt')")
    db.close()
    assert not temp.exists()


# --- corrupt segments ------------------------------------------------------------------------------

def _corrupt_data_pages(path: Path) -> None:
    """Overwrite the first third of the file (its data pages) and keep the footer readable."""
    data = bytearray(path.read_bytes())
    for i in range(4, len(data) // 3):
        data[i] = (data[i] * 7 + 13) % 256
    path.write_bytes(bytes(data))
    assert pq.read_schema(path).names[:2] == ["run_id", "step"]  # the footer check alone cannot see it


def test_corrupt_and_truncated_segments_leave_other_runs_readable(paths):
    corrupt_run, corrupt = _run_with_metrics(paths)
    truncated_run, truncated = _run_with_metrics(paths)
    good_run, _ = _run_with_metrics(paths)
    _corrupt_data_pages(corrupt)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    sql = "SELECT run_id, count(*) AS n, sum(value) AS total FROM metrics GROUP BY run_id"
    with ResultsDB(paths.data_root) as db:
        assert db.query(sql) == [{"run_id": good_run, "n": 200, "total": pytest.approx(99.5)}]
        reasons = {Path(u["path"]): (u["run_id"], u["error"]) for u in db.unreadable}
        assert set(reasons) == {corrupt, truncated}
        assert reasons[corrupt][0] == corrupt_run and "cannot read its data" in reasons[corrupt][1]
        assert reasons[truncated][0] == truncated_run and "not a readable Parquet file" in reasons[truncated][1]
        db.refresh()  # a rebuilt view still leaves the corrupt file out, without reading it again
        assert db.query(sql)[0]["run_id"] == good_run and {Path(u["path"]) for u in db.unreadable} == set(reasons)
        assert db.query("SELECT count(*) AS n FROM losses") == [{"n": 3}]  # the runs' other tables are whole
    assert query(paths.data_root, sql)[0]["run_id"] == good_run
    assert {Path(u["path"]) for u in unreadable_segments(paths.data_root)} == {corrupt, truncated}


def test_a_query_error_of_the_user_is_raised_not_blamed_on_a_segment(paths):
    _run_with_metrics(paths, rows=3)
    with ResultsDB(paths.data_root) as db:
        with pytest.raises(duckdb.ConversionException):
            db.query("SELECT CAST(metric AS INTEGER) FROM metrics")
        with pytest.raises(duckdb.InvalidInputException):
            db.query("SELECT error('user raised')")
        assert db.unreadable == []


# --- start-up cost ---------------------------------------------------------------------------------

_NO_PANDAS = """
import sys
from core.store.query import ResultsDB
with ResultsDB(sys.argv[1]) as db:
    rows = db.query("SELECT r.run_id, count(*) AS n FROM runs r JOIN metrics m USING (run_id) GROUP BY ALL")
    loaded = 'pandas' in sys.modules
    frame = db.query_df("SELECT count(*) AS n FROM metrics")
print(len(rows), loaded, int(frame['n'][0]))
"""


def test_a_query_does_not_import_pandas(paths):
    _run_with_metrics(paths, rows=3)
    out = subprocess.run([sys.executable, "-c", _NO_PANDAS, str(paths.data_root)], cwd=REPO_ROOT, check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert out.stdout.split() == ["1", "False", "3"]
