"""Which segment files a query should read, and compaction of a run's segments.

Two things make "every *.parquet file in events/" the wrong answer, and both are decided here, in
one place that the query layer and `compact` share:

* Compaction. `compact` merges each table's segments into <table>-<seq:06d>-compact.parquet and
  records, in that file's own Parquet metadata (key "slmrec.covers"), the names of every segment
  it replaces. The merged file appears atomically together with that list, so a reader that lists
  the folder between "merged file written" and "old segments deleted" skips the covered segments
  and never counts a row twice. A crash before the deletion leaves only ignored files, which the
  next `compact` removes. (We chose the file's own metadata over a manifest JSON because then
  there is no second file that could be out of step with the first.)
* Resume. `EventWriter.truncate_after(S)` appends {"before_seq": K, "truncate_after": S} to
  events/resume.json: rows with step > S in segments numbered below K belong to the crashed
  attempt and are hidden (tables without a step column are kept whole). Each segment thus gets a
  cutoff, the smallest S of the markers after it, and `compact` applies the cutoffs physically.
  A marker may also carry "void_from_seq": V, the segment counter when that checkpoint was saved;
  segments numbered in [V, K) were written after the checkpoint and are hidden whole, whatever
  their step (an evaluation at the checkpoint's own step, say, that the resumed run repeats).

A segment whose footer cannot be read (truncated, not Parquet) or whose columns do not match its
table is reported as unreadable and skipped, never raised; so is one whose data a reader found it
cannot read (`FooterCache.mark_unreadable`, see core.store.query).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.store.atomic import CorruptFileError, atomic_path, read_json, stale_temp_files
from core.store.tables import SCHEMAS, STEP_TABLES

SEGMENT_NAME = re.compile(r"(?P<table>[a-z_]+)-(?P<seq>\d{6,})-(?P<tag>\d+|compact)\.parquet")
RESUME_FILE = "resume.json"
COVERS_KEY = b"slmrec.covers"


class SegmentError(ValueError):
    """A segment file cannot be used; the message says why."""


@dataclass(frozen=True)
class Segment:
    path: Path
    table: str
    seq: int
    covers: tuple[str, ...] = ()  # for a compacted file: the segment names it replaces
    keep_steps_upto: int | None = None  # resume cutoff: rows with a larger step are void


@dataclass
class EventScan:
    """What a reader should see of one run: visible segments per table, and files it cannot read."""

    segments: dict[str, list[Segment]] = field(default_factory=dict)
    covered: list[Path] = field(default_factory=list)  # replaced by a compacted file; safe to delete
    unreadable: list[tuple[Path, str]] = field(default_factory=list)


def file_key(path: Path) -> tuple[str, int, int]:
    """(path, size, mtime): what identifies one version of a file; FileNotFoundError if gone."""
    stat = os.stat(path)
    return str(path), stat.st_size, stat.st_mtime_ns


class FooterCache:
    """Validated segment schemas keyed by (path, size, mtime), so a long-lived reader checks each
    file's footer once. Owned by whoever reads; there is no module-level cache."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int, int], pa.Schema | str] = {}

    def schema(self, path: Path, table: str) -> pa.Schema:
        """The file's Arrow schema (with metadata); SegmentError if unusable, FileNotFoundError if gone."""
        key = file_key(path)
        if key not in self._seen:
            self._seen[key] = _read_schema(path, table)
        found = self._seen[key]
        if isinstance(found, str):
            raise SegmentError(found)
        return found

    def mark_unreadable(self, key: tuple[str, int, int], reason: str) -> None:
        """Remember that this version (`file_key`) of a file cannot be read although its footer can (bad pages)."""
        self._seen[key] = reason


def _read_schema(path: Path, table: str) -> pa.Schema | str:
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as err:
        return f"not a readable Parquet file: {err}"
    expected = SCHEMAS[table]
    for column in schema:
        if column.name not in expected.names:
            return f"unexpected column {column.name!r} for table {table!r}"
        if column.type != expected.field(column.name).type:
            return f"column {column.name!r} is {column.type}, expected {expected.field(column.name).type}"
    return schema


def read_resume_markers(events_dir: Path) -> list[dict]:
    """[{"before_seq": K, "truncate_after": S, ...}]: rows in segments with seq < K and step > S are void."""
    path = Path(events_dir) / RESUME_FILE
    return read_json(path)["markers"] if path.exists() else []


def segment_seqs(events_dir: Path) -> list[int]:
    """The sequence numbers used in `events_dir`: by segment names and by resume markers."""
    seqs = [int(m["seq"]) for p in Path(events_dir).glob("*.parquet") if (m := SEGMENT_NAME.fullmatch(p.name))]
    return seqs + [marker["before_seq"] - 1 for marker in read_resume_markers(events_dir)]


def scan_events(run_dir: Path, footers: FooterCache | None = None, attempts: int = 8) -> EventScan:
    """The segments of one run that a reader should see, with their resume cutoffs.

    A file that disappears while we look (a concurrent `compact`) means the folder changed under
    us, so the whole scan is redone: a partial view could miss the merged file that replaced it.
    """
    footers = footers or FooterCache()
    for attempt in range(attempts):
        try:
            return _scan_once(Path(run_dir) / "events", footers)
        except FileNotFoundError:
            # a compaction removes its inputs one by one: wait a little longer each time, so that on a
            # busy machine the scan does not keep landing in the middle of the removals
            time.sleep(min(0.02 * 2 ** attempt, 0.5))
    return _scan_once(Path(run_dir) / "events", footers)


def _scan_once(events_dir: Path, footers: FooterCache) -> EventScan:
    scan = EventScan()
    if not events_dir.is_dir():
        return scan
    found = []
    for path in sorted(events_dir.glob("*.parquet")):
        match = SEGMENT_NAME.fullmatch(path.name)
        if not match or match["table"] not in SCHEMAS:
            scan.unreadable.append((path, "not a segment name: <table>-<seq>-<pid|compact>.parquet"))
            continue
        try:
            schema = footers.schema(path, match["table"])
        except SegmentError as err:
            scan.unreadable.append((path, str(err)))
            continue
        covers = tuple(json.loads((schema.metadata or {}).get(COVERS_KEY, b"[]")))
        found.append(Segment(path, match["table"], int(match["seq"]), covers))
    try:
        markers = read_resume_markers(events_dir)
    except (CorruptFileError, KeyError, TypeError) as err:
        scan.unreadable.append((events_dir / "resume.json", f"resume markers ignored: {err}"))
        markers = []
    covered = {name for segment in found for name in segment.covers}
    for segment in found:
        if segment.path.name in covered:
            scan.covered.append(segment.path)
            continue
        if any(m.get("void_from_seq") is not None and m["void_from_seq"] <= segment.seq < m["before_seq"]
               for m in markers):
            continue  # written by a crashed attempt after the checkpoint it resumed from
        cutoffs = [m["truncate_after"] for m in markers if segment.seq < m["before_seq"]]
        if cutoffs and segment.table in STEP_TABLES:
            segment = Segment(segment.path, segment.table, segment.seq, segment.covers, min(cutoffs))
        scan.segments.setdefault(segment.table, []).append(segment)
    return scan


def read_segment(segment: Segment) -> pa.Table:
    """A segment's rows in its table's full schema, resume cutoff applied."""
    schema = SCHEMAS[segment.table]
    data = pq.read_table(segment.path)
    columns = [data[f.name].cast(f.type) if f.name in data.column_names else pa.nulls(data.num_rows, f.type)
               for f in schema]
    rows = pa.Table.from_arrays(columns, schema=schema)
    if segment.keep_steps_upto is not None:
        import pyarrow.compute as pc  # here, not at the top: 25 ms a reader (`slmrec query`) never needs

        step = rows["step"]
        keep = pc.or_kleene(pc.is_null(step), pc.less_equal(step, segment.keep_steps_upto))
        rows = rows.filter(keep)
    return rows


def compact(run_dir: Path) -> dict[str, int]:
    """Merge each table's visible segments into one file; return rows per compacted table.

    Safe while readers query (see the module docstring). Run it when the run has ended: a writer
    still appending is not lost (its new segments stay beside the merged file), only not merged.
    """
    scan = scan_events(run_dir)
    written = {}
    for table, segments in scan.segments.items():
        if len(segments) == 1 and segments[0].keep_steps_upto is None:
            continue  # already one file with nothing to drop
        merged = pa.concat_tables([read_segment(s) for s in segments])
        covers = sorted({s.path.name for s in segments} | {n for s in segments for n in s.covers})
        seq = max(s.seq for s in segments)
        target = segments[0].path.parent / f"{table}-{seq:06d}-compact.parquet"
        while target.name in covers:  # the name of a file it replaces: take the next free number
            seq += 1
            target = target.parent / f"{table}-{seq:06d}-compact.parquet"
        metadata = {COVERS_KEY: json.dumps(covers).encode()}
        with atomic_path(target) as tmp:
            pq.write_table(merged.replace_schema_metadata(metadata), tmp)
        written[table] = merged.num_rows
        scan.covered += [s.path for s in segments]
    for path in scan.covered + stale_temp_files(Path(run_dir) / "events"):
        path.unlink(missing_ok=True)
    return written
