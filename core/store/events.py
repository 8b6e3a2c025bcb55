"""Writing a run's result rows as append-only Parquet segments.

A run writes metrics, ranks, losses, similarity and timings rows through an `EventWriter`, which
checks them against their table's schema (`core.store.tables`), buffers them, and on `flush` writes
each table's rows as a new segment events/<table>-<seq:06d>-<pid>.parquet. A segment is written to
a hidden ".tmp" name and renamed into place, so a reader globbing "*.parquet" sees whole segments
only and a killed writer leaves at most an ignored temp file. `seq` counts up across all tables and
all writers of one run, so segment order is write order. `truncate_after` is the resume rule, and
`compact` (from `core.store.segments`, where both are explained) merges a finished run's segments.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from core.store.atomic import atomic_path, write_json_atomic
from core.store.runs import now_iso
from core.store.segments import RESUME_FILE, compact, read_resume_markers, segment_seqs  # noqa: F401 (compact: re-exported)
from core.store.tables import columns_to_table, rows_to_table


class EventWriter:
    """Buffers rows per table and writes them as new Parquet segments of one run.

    Use as a context manager (flushes on a clean exit) or call `flush` yourself; rows not flushed
    when the process dies are lost, so flush before saving a checkpoint.
    """

    def __init__(self, run_dir: Path, run_id: str | None = None, flush_rows: int = 500_000):
        self.events_dir = Path(run_dir) / "events"
        self.events_dir.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id or Path(run_dir).name
        self.flush_rows = flush_rows
        self._next_seq = max(segment_seqs(self.events_dir), default=0) + 1
        self._buffer: dict[str, list[pa.Table]] = {}
        self._buffered_rows = 0

    def append(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Add rows (dicts of column -> value) to `table`; checked now, written at the next flush."""
        self._add(table, rows_to_table(table, rows, self.run_id))

    def append_columns(self, table: str, columns: Mapping[str, Any]) -> None:
        """Add rows given as columns (lists or numpy arrays): the fast path for large tables."""
        self._add(table, columns_to_table(table, columns, self.run_id))

    def _add(self, table: str, rows: pa.Table) -> None:
        if rows.num_rows:
            self._buffer.setdefault(table, []).append(rows)
            self._buffered_rows += rows.num_rows
        if self._buffered_rows >= self.flush_rows:
            self.flush()

    def flush(self) -> list[Path]:
        """Write every buffered table as one new segment each; return the new files.

        A table leaves the buffer once its segment is written, so after a failed write (a full
        disk) a second flush retries only the tables not yet on disk.
        """
        written = []
        for table in list(self._buffer):
            rows = pa.concat_tables(self._buffer[table])
            written.append(self._write_segment(table, rows))
            del self._buffer[table]
            self._buffered_rows -= rows.num_rows
        return written

    def _write_segment(self, table: str, rows: pa.Table) -> Path:
        while True:  # never overwrite: another writer in this process may hold the same seq
            path = self.events_dir / f"{table}-{self._next_seq:06d}-{os.getpid()}.parquet"
            self._next_seq += 1
            if not path.exists():
                break
        with atomic_path(path) as tmp:
            pq.write_table(rows, tmp)
        return path

    def mark_resume_point(self, step: int) -> None:
        """Call after saving a resumable checkpoint at `step`: the rows it covers reach the disk now.

        Nothing else is recorded: which rows a resumed run voids is decided when it resumes
        (`truncate_after`), from the checkpoint it actually loaded.
        """
        self.flush()  # `step` only names the checkpoint at the call site

    @property
    def next_seq(self) -> int:
        """The number the next segment will get; saved with a checkpoint for `truncate_after`."""
        return self._next_seq

    def truncate_after(self, step: int, void_from_seq: int | None = None) -> None:
        """Declare that the run resumes from a checkpoint at `step`.

        Rows with a larger step in every segment written so far came from the attempt that
        crashed; queries and compaction ignore them, so the resumed run can write those steps
        again without duplicates. With `void_from_seq` (the writer's `next_seq` when the checkpoint
        was saved) every segment written after the checkpoint is hidden whole. Call before
        appending the resumed attempt's first rows.
        """
        if self._buffer:
            raise RuntimeError("truncate_after must come before any rows of the resumed attempt; flush first")
        before_seq = max(max(segment_seqs(self.events_dir), default=0) + 1, self._next_seq)
        markers = read_resume_markers(self.events_dir)
        markers.append({"before_seq": before_seq, "truncate_after": int(step), "written_at": now_iso(),
                        "void_from_seq": void_from_seq})
        write_json_atomic(self.events_dir / RESUME_FILE, {"markers": markers})
        self._next_seq = before_seq

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.flush()


class NullEventWriter:
    """The writer of a process that must write nothing (ranks > 0 of a run of several processes):
    the same calls as `EventWriter`, and every row is dropped, since rank 0 writes the same rows."""

    next_seq = 0

    def append(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        pass

    def append_columns(self, table: str, columns: Mapping[str, Any]) -> None:
        pass

    def flush(self) -> list[Path]:
        return []

    def mark_resume_point(self, step: int) -> None:
        pass

    def truncate_after(self, step: int, void_from_seq: int | None = None) -> None:
        pass

    def __enter__(self) -> NullEventWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        pass
