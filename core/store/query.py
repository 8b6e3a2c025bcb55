"""Read-only SQL over every run's files: an in-memory DuckDB with one view per results table.

DuckDB allows one writing process or many readers, never both, and the worker writes while the app
reads. So results are files (state.json, spec.json, Parquet segments) and
each reader opens its own in-memory DuckDB over them. `ResultsDB` builds the file list in Python:
`core.store.segments` decides which segments are visible (compaction, resume cutoffs) and checks
each footer once per (path, size, mtime); an unreadable file is skipped and listed in
`unreadable`, never raised. A file whose footer reads but whose data does not (bad bytes inside)
would fail every query on its table, for every run, without naming itself: so when a query fails
in a way a file could cause, `check_segments` reads each visible segment once, leaves out the
ones DuckDB cannot read, and the query runs again. The views name their files, so a file removed
by a concurrent `compact` fails the query with an IO error: the views are rebuilt and the query
retried. The connection is sandboxed (core.store.sandbox) and `query` runs only statements that
read. pandas is imported by `query_df` alone: `slmrec query` starts without it.
"""

from __future__ import annotations

import json
import shutil
import weakref
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from core.store.runs import list_runs
from core.store.sandbox import QueryRefused, check_read_only, lock_down, quote
from core.store.segments import FooterCache, file_key, scan_events
from core.store.tables import SCHEMAS

__all__ = ["QueryRefused", "ResultsDB", "check_read_only", "query", "query_df", "unreadable_segments"]

_DUCK_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.float64(): "DOUBLE"}
# The runs view's columns and DuckDB types. Timestamps are naive UTC: every store timestamp is UTC.
RUNS_COLUMNS = {
    "run_id": "VARCHAR", "kind": "VARCHAR", "parent_id": "VARCHAR", "name": "VARCHAR", "status": "VARCHAR",
    "phase": "VARCHAR", "progress": "DOUBLE", "created_at": "TIMESTAMP", "started_at": "TIMESTAMP",
    "finished_at": "TIMESTAMP", "heartbeat_at": "TIMESTAMP", "device": "VARCHAR", "error": "VARCHAR",
    "spec": "VARCHAR", "settings_hash": "VARCHAR", "eta_s": "DOUBLE", "samples_per_s": "DOUBLE", "pid": "BIGINT",
    "worker_id": "VARCHAR", "attempt": "BIGINT", "resume_step": "BIGINT", "result": "VARCHAR",
}
# Errors a damaged or vanished file can cause (DuckDB raises the base class for bad Thrift in a page
# header); a parser, binder or conversion error is the query's own and never sends us to the files.
_FILE_ERRORS = (duckdb.Error, duckdb.IOException, duckdb.InvalidInputException, duckdb.InternalException)


class ResultsDB:
    """An in-memory DuckDB connection with the views runs, metrics, ranks, losses, similarity,
    timings over data_root/runs/*/. Call `refresh` to see runs and segments written since."""

    def __init__(self, data_root: Path):
        self.runs_root = (Path(data_root) / "runs").resolve()
        self.footers = FooterCache()
        self.unreadable: list[dict] = []  # {"run_id", "path", "error"} of each file the views leave out
        self.visible: list[Path] = []  # the segment files the views read
        self._read_whole: set[tuple] = set()  # file_key of each segment check_segments read in full
        self.con = duckdb.connect(":memory:")
        spill = lock_down(self.con, self.runs_root)
        self._remove_spill = weakref.finalize(self, shutil.rmtree, spill, True)
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
        # a typed table from one JSON parameter: no pyarrow array built in Python, which imports pandas
        self.con.execute("CREATE OR REPLACE TABLE runs AS SELECT unnest(from_json(?::JSON, ?), recursive := true)",
                         [json.dumps([_runs_row(run) for run in runs]), json.dumps([RUNS_COLUMNS])])
        segments: dict[str, list] = {table: [] for table in SCHEMAS}
        self.unreadable = []
        for run in runs:
            scan = scan_events(self.runs_root / run["run_id"], self.footers)
            for table, found in scan.segments.items():
                segments[table] += found
            self.unreadable += [{"run_id": run["run_id"], "path": str(p), "error": e} for p, e in scan.unreadable]
        for table, found in segments.items():
            self.con.execute(f"CREATE OR REPLACE VIEW {table} AS {_view_sql(table, found)}")
        self.visible = [segment.path for found in segments.values() for segment in found]

    def query(self, sql: str, params: Any = None, attempts: int = 3) -> list[dict]:
        """Run one read-only statement; rows as dicts."""
        def rows(result: duckdb.DuckDBPyConnection) -> list[dict]:
            names = [d[0] for d in result.description]
            return [dict(zip(names, row)) for row in result.fetchall()]
        return self._run(sql, params, attempts, rows)

    def query_df(self, sql: str, params: Any = None, attempts: int = 3):
        """Run one read-only statement; a pandas DataFrame."""
        return self._run(sql, params, attempts, lambda result: result.df())

    def _run(self, sql: str, params: Any, attempts: int, fetch: Callable[[duckdb.DuckDBPyConnection], Any]) -> Any:
        check_read_only(sql)
        for attempt in range(attempts):
            try:
                return fetch(self.con.execute(sql, params))
            except duckdb.Error as err:
                if type(err) not in _FILE_ERRORS or attempt == attempts - 1:
                    raise
                # a segment compacted away under us (the rebuilt views name other files), or one whose
                # data cannot be read; if neither, the error is the query's own
                before = self.visible
                self.refresh()
                if self.visible == before and not self.check_segments():
                    raise
        raise AssertionError("unreachable")

    def check_segments(self) -> list[dict]:
        """Read each visible segment in full (once per file version) and leave out those DuckDB cannot
        read; return the ones this call left out, as in `unreadable`."""
        bad = []
        for path in self.visible:
            try:
                key = file_key(path)
            except FileNotFoundError:
                continue  # compacted away: the next refresh drops it
            if key in self._read_whole:
                continue
            try:  # hashing every column makes DuckDB decode every page
                self.con.execute(f"SELECT min(hash(COLUMNS(*))) FROM read_parquet({quote(str(path))})").fetchall()
            except duckdb.Error as err:
                self.footers.mark_unreadable(key, f"cannot read its data: {str(err).splitlines()[0]}")
                bad.append(str(path))
            else:
                self._read_whole.add(key)
        if bad:
            self.refresh()
        return [u for u in self.unreadable if u["path"] in bad]

    def close(self) -> None:
        """Close the connection and remove its spill folder."""
        self.con.close()
        self._remove_spill()

    def __enter__(self) -> ResultsDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def query(data_root: Path, sql: str, params: Any = None) -> list[dict]:
    """Run one read-only statement over the results under data_root; rows as dicts."""
    with ResultsDB(data_root) as db:
        return db.query(sql, params)


def query_df(data_root: Path, sql: str, params: Any = None):
    """Run one read-only statement over the results under data_root; a pandas DataFrame."""
    with ResultsDB(data_root) as db:
        return db.query_df(sql, params)


def unreadable_segments(data_root: Path) -> list[dict]:
    """Every event file that queries leave out, each segment read in full: [{"run_id", "path", "error"}]."""
    with ResultsDB(data_root) as db:
        db.check_segments()
        return db.unreadable


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
        by_cutoff.setdefault(segment.keep_steps_upto, []).append(quote(str(segment.path)))
    for cutoff, files in by_cutoff.items():
        part = f"SELECT * FROM read_parquet([{', '.join(files)}], union_by_name = true)"
        if cutoff is not None:
            part += f" WHERE step IS NULL OR step <= {int(cutoff)}"
        parts.append(part)
    return f"SELECT {names} FROM ({' UNION ALL BY NAME '.join(parts)})"


def _runs_row(run: dict) -> dict:
    """One run folder's row of the runs view, each field coerced to its column's type."""
    return {name: _coerce(run.get(name), kind) for name, kind in RUNS_COLUMNS.items()}


def _coerce(value: Any, kind: str) -> Any:
    """A state/spec value as the column type; None when it does not fit (the row stays visible)."""
    if value is None:
        return None
    if kind == "TIMESTAMP":
        try:
            stamp = datetime.fromisoformat(str(value))
            return (stamp.astimezone(timezone.utc).replace(tzinfo=None) if stamp.tzinfo else stamp).isoformat()
        except (ValueError, OverflowError):  # not a date, or one that leaves the calendar in UTC
            return None
    if kind == "VARCHAR":
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "BIGINT":
        return int(value) if is_number and float(value).is_integer() and abs(value) < 2**63 else None
    return float(value) if is_number else None
