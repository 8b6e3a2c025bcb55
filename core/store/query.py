"""Read-only SQL over every run's files: an in-memory DuckDB with one view per results table.

DuckDB allows one writing process or many readers, never both, and the worker writes while the app
reads. So results are files (state.json, spec.json, Parquet segments) and
each reader opens its own in-memory DuckDB over them. `ResultsDB` builds the file list in Python:
`core.store.segments` decides which segments are visible (compaction, resume cutoffs) and checks
each footer once per (path, size, mtime); an unreadable file is skipped and listed in
`unreadable`, never raised. The views name their files, so a file removed by a concurrent
`compact` fails the query with an IO error: `query` then rebuilds the views and retries. The
connection is sandboxed (only data/runs is readable, configuration locked) and `query` runs only
statements that read.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from core.store.tables import SCHEMAS
from core.store.runs import list_runs
from core.store.segments import FooterCache, scan_events

READ_ONLY = ("SELECT", "WITH", "DESCRIBE", "SHOW", "SUMMARIZE", "FROM", "EXPLAIN", "PRAGMA")
_DUCK_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.float64(): "DOUBLE"}
_TS = pa.timestamp("us")  # naive UTC: every store timestamp is UTC
RUNS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("kind", pa.string()), ("parent_id", pa.string()), ("name", pa.string()),
    ("status", pa.string()), ("phase", pa.string()), ("progress", pa.float64()),
    ("created_at", _TS), ("started_at", _TS), ("finished_at", _TS), ("heartbeat_at", _TS),
    ("device", pa.string()), ("error", pa.string()), ("spec", pa.string()),
    ("settings_hash", pa.string()), ("eta_s", pa.float64()), ("samples_per_s", pa.float64()),
    ("pid", pa.int64()), ("worker_id", pa.string()), ("attempt", pa.int64()),
    ("resume_step", pa.int64()), ("result", pa.string()),
])


class QueryRefused(ValueError):
    """The SQL is not a single read-only statement."""


class ResultsDB:
    """An in-memory DuckDB connection with the views runs, metrics, ranks, losses, similarity,
    timings over data_root/runs/*/. Call `refresh` to see runs and segments written since."""

    def __init__(self, data_root: Path):
        self.runs_root = (Path(data_root) / "runs").resolve()
        self.footers = FooterCache()
        self.unreadable: list[dict] = []
        self.con = duckdb.connect(":memory:")
        # Sandbox: SQL typed into the app may read the runs and nothing else, and cannot undo that.
        self.con.execute(f"SET allowed_directories = [{_quote(str(self.runs_root) + '/')}]")
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")
        self.refresh()

    def refresh(self, attempts: int = 5) -> None:
        """Rebuild every view from the files present now."""
        for attempt in range(attempts):
            try:
                self._build_views()
                return
            except duckdb.IOException:  # a file vanished between the scan and the view
                if attempt == attempts - 1:
                    raise

    def _build_views(self) -> None:
        runs = list_runs(self.runs_root)
        self.con.register("runs", _runs_table(runs))
        segments: dict[str, list] = {table: [] for table in SCHEMAS}
        self.unreadable = []
        for run in runs:
            scan = scan_events(self.runs_root / run["run_id"], self.footers)
            for table, found in scan.segments.items():
                segments[table] += found
            self.unreadable += [{"run_id": run["run_id"], "path": str(p), "error": e} for p, e in scan.unreadable]
        for table, found in segments.items():
            self.con.execute(f"CREATE OR REPLACE VIEW {table} AS {_view_sql(table, found)}")

    def query(self, sql: str, params: Any = None, attempts: int = 3) -> list[dict]:
        """Run one read-only statement; rows as dicts."""
        result = self._execute(sql, params, attempts)
        names = [d[0] for d in result.description]
        return [dict(zip(names, row)) for row in result.fetchall()]

    def query_df(self, sql: str, params: Any = None, attempts: int = 3):
        """Run one read-only statement; a pandas DataFrame."""
        return self._execute(sql, params, attempts).df()

    def _execute(self, sql: str, params: Any, attempts: int) -> duckdb.DuckDBPyConnection:
        check_read_only(sql)
        for attempt in range(attempts):
            try:
                return self.con.execute(sql, params)
            except duckdb.IOException:  # a segment was compacted away under us: look again
                if attempt == attempts - 1:
                    raise
                self.refresh()
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> ResultsDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(data_root: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the results views (a snapshot of the files now)."""
    return ResultsDB(data_root).con


def query(data_root: Path, sql: str, params: Any = None) -> list[dict]:
    """Run one read-only statement over the results under data_root; rows as dicts."""
    with ResultsDB(data_root) as db:
        return db.query(sql, params)


def query_df(data_root: Path, sql: str, params: Any = None):
    """Run one read-only statement over the results under data_root; a pandas DataFrame."""
    with ResultsDB(data_root) as db:
        return db.query_df(sql, params)


def unreadable_segments(data_root: Path) -> list[dict]:
    """Every event file that queries skip: [{"run_id", "path", "error"}]."""
    runs_root = Path(data_root) / "runs"
    found = []
    for run in list_runs(runs_root):
        scan = scan_events(runs_root / run["run_id"])
        found += [{"run_id": run["run_id"], "path": str(p), "error": e} for p, e in scan.unreadable]
    return found


def check_read_only(sql: str) -> None:
    """Raise QueryRefused unless `sql` is exactly one statement that only reads."""
    statements = duckdb.extract_statements(sql)
    if len(statements) != 1:
        raise QueryRefused(f"expected exactly one SQL statement, got {len(statements)}")
    statement = statements[0]
    kind = statement.type
    if kind == duckdb.StatementType.EXPLAIN:  # EXPLAIN ANALYZE runs its statement: check that one
        inner = re.sub(r"^\s*explain(\s+analy[sz]e)?\s+", "", _strip_comments(statement.query), flags=re.I)
        inner_statements = duckdb.extract_statements(inner)
        ok = len(inner_statements) == 1 and inner_statements[0].type == duckdb.StatementType.SELECT
    else:
        ok = kind in (duckdb.StatementType.SELECT, duckdb.StatementType.PRAGMA)
    if not ok:
        raise QueryRefused(f"only read-only SQL may run here ({', '.join(READ_ONLY)}); "
                           f"this is a {kind.name} statement")


def _strip_comments(sql: str) -> str:
    return re.sub(r"^(\s*(--[^\n]*\n|/\*.*?\*/))*", "", sql, flags=re.S)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _view_sql(table: str, segments: list) -> str:
    """SELECT over the table's files, empty-but-typed when there are none.

    Files with the same resume cutoff share one read_parquet; the typed empty row set first
    makes every column exist with its type even if no file has it yet.
    """
    schema = SCHEMAS[table]
    names = ", ".join(schema.names)
    typed = ", ".join(f"NULL::{_DUCK_TYPES[f.type]} AS {f.name}" for f in schema)
    parts = [f"SELECT {typed} WHERE false"]
    by_cutoff: dict[int | None, list[str]] = {}
    for segment in segments:
        by_cutoff.setdefault(segment.keep_steps_upto, []).append(_quote(str(segment.path)))
    for cutoff, files in by_cutoff.items():
        part = f"SELECT * FROM read_parquet([{', '.join(files)}], union_by_name = true)"
        if cutoff is not None:
            part += f" WHERE step IS NULL OR step <= {int(cutoff)}"
        parts.append(part)
    return f"SELECT {names} FROM ({' UNION ALL BY NAME '.join(parts)})"


def _runs_table(runs: list[dict]) -> pa.Table:
    """The runs view's rows: one per run folder, fields coerced to the view's types."""
    columns: dict[str, list] = {f.name: [] for f in RUNS_SCHEMA}
    for run in runs:
        for f in RUNS_SCHEMA:
            columns[f.name].append(_coerce(run.get(f.name), f.type))
    return pa.Table.from_pydict(columns, schema=RUNS_SCHEMA)


def _coerce(value: Any, kind: pa.DataType) -> Any:
    """A state/spec value as the column type; None when it does not fit (the row stays visible)."""
    if value is None:
        return None
    if kind == _TS:
        try:
            stamp = datetime.fromisoformat(str(value))
        except ValueError:
            return None
        return stamp.astimezone(timezone.utc).replace(tzinfo=None) if stamp.tzinfo else stamp
    if kind == pa.string():
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == pa.int64():
        return int(value) if is_number and float(value).is_integer() else None
    return float(value) if is_number else None
