"""Event segments: row checks, segment files, compaction, resume truncation, broken files."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from core.store import runs
from core.store.events import EventWriter
from core.store.tables import rows_to_table
from core.store.query import ResultsDB, query, unreadable_segments
from core.store.segments import compact, scan_events

REPO_ROOT = Path(__file__).resolve().parents[3]


def _metric(step, metric="HR@10", value=0.5, layer=None):
    return {"step": step, "split": "valid", "protocol": "full", "model": "teacher", "layer": layer,
            "metric": metric, "value": value}


def _new_run(paths, kind="teacher"):
    run_id = runs.create_run(paths.runs, {}, kind)
    return run_id, paths.runs / run_id


@pytest.mark.parametrize("row, message", [
    ({"step": 1, "colour": "red"}, r"'metrics': unknown column\(s\) colour"),
    ({"step": 1.5}, r"'metrics', column 'step': expected integer values, got float"),
    ({"step": True}, r"column 'step': expected integer values, got bool"),
    ({"value": "high"}, r"column 'value': expected float values, got str"),
    ({"metric": 10}, r"column 'metric': expected string values, got int"),
    ({"layer": 2**40}, r"column 'layer'"),
    ({"run_id": "someone-else"}, r"column 'run_id': rows name another run"),
])
def test_bad_rows_name_table_and_column(row, message):
    with pytest.raises(ValueError, match=message):
        rows_to_table("metrics", [row], run_id="r1")


def test_rows_fill_missing_columns_and_run_id():
    rows = [{"step": 3, "value": 1}, {"metric": "MRR", "value": np.float32(0.25), "run_id": None}]
    table = rows_to_table("metrics", rows, "r1")
    assert table.column("run_id").to_pylist() == ["r1", "r1"]
    assert table.column("step").to_pylist() == [3, None]
    assert table.column("value").to_pylist() == [1.0, 0.25]
    with pytest.raises(ValueError, match="unknown events table"):
        rows_to_table("metricz", [], "r1")


def test_append_columns_checks_numpy_dtypes(paths):
    run_id, run_dir = _new_run(paths)
    writer = EventWriter(run_dir)
    n = 1000
    writer.append_columns("ranks", {"step": np.zeros(n, dtype=np.int64), "user_id": np.arange(n),
                                    "rank": np.arange(n) % 7, "layer": np.full(n, 3, dtype=np.int32)})
    with pytest.raises(ValueError, match="column 'rank': expected integer values, got a numpy array of float64"):
        writer.append_columns("ranks", {"rank": np.zeros(3)})
    (segment,) = writer.flush()
    assert pq.read_metadata(segment).num_rows == n
    rows = query(paths.data_root, "SELECT count(*) AS n, avg(CAST(rank < 5 AS DOUBLE)) AS hr5 FROM ranks")
    assert rows[0]["n"] == n and rows[0]["hr5"] == pytest.approx(np.mean(np.arange(n) % 7 < 5))


def test_segments_are_numbered_and_queried(paths):
    run_id, run_dir = _new_run(paths)
    with EventWriter(run_dir) as writer:
        writer.append("metrics", [_metric(1), _metric(1, "MRR", 0.2)])
        writer.append("losses", [{"step": 1, "epoch": 0.1, "name": "total", "value": 2.0}])
    with EventWriter(run_dir) as writer:  # a second writer continues the numbering
        writer.append("metrics", [_metric(2, layer=4)])
    names = sorted(p.name for p in (run_dir / "events").iterdir())
    assert [n.split("-")[:2] for n in names] == [["losses", "000002"], ["metrics", "000001"], ["metrics", "000003"]]
    rows = query(paths.data_root, "SELECT step, layer, metric, value FROM metrics ORDER BY step, metric")
    assert rows == [{"step": 1, "layer": None, "metric": "HR@10", "value": 0.5},
                    {"step": 1, "layer": None, "metric": "MRR", "value": 0.2},
                    {"step": 2, "layer": 4, "metric": "HR@10", "value": 0.5}]
    assert query(paths.data_root, "SELECT run_id FROM losses") == [{"run_id": run_id}]


def test_compaction_keeps_rows_and_readers_never_double_count(paths):
    run_id, run_dir = _new_run(paths)
    for step in range(5):
        with EventWriter(run_dir) as writer:
            writer.append("metrics", [_metric(step, value=step / 10)])
            writer.append("timings", [{"phase": "train", "samples": 10, "seconds": 1.0}])
    sql = "SELECT step, value FROM metrics ORDER BY step"
    before = query(paths.data_root, sql)
    db = ResultsDB(paths.data_root)  # a reader that listed the segments before compaction
    assert compact(run_dir) == {"metrics": 5, "timings": 5}
    assert sorted(p.name for p in (run_dir / "events").iterdir()) == [
        "metrics-000009-compact.parquet", "timings-000010-compact.parquet"]
    assert query(paths.data_root, sql) == before
    assert db.query(sql) == before  # its files vanished: it rebuilt its views and retried
    assert compact(run_dir) == {}  # nothing left to merge


def test_merged_file_hides_the_segments_it_covers(paths):
    """A crash between writing the merged file and deleting the old segments: no duplicates."""
    run_id, run_dir = _new_run(paths)
    for step in range(3):
        with EventWriter(run_dir) as writer:
            writer.append("metrics", [_metric(step)])
    old = {p.name: p.read_bytes() for p in (run_dir / "events").glob("*.parquet")}
    compact(run_dir)
    for name, data in old.items():  # put the old segments back, as if never deleted
        (run_dir / "events" / name).write_bytes(data)
    assert query(paths.data_root, "SELECT count(*) AS n FROM metrics") == [{"n": 3}]
    with EventWriter(run_dir) as writer:
        writer.append("metrics", [_metric(3)])
    compact(run_dir)  # merges the merged file with the new segment, removes the leftovers
    assert len(list((run_dir / "events").glob("*.parquet"))) == 1
    assert query(paths.data_root, "SELECT list(step ORDER BY step) AS s FROM metrics") == [{"s": [0, 1, 2, 3]}]


def test_resume_truncation_avoids_duplicate_steps(paths):
    run_id, run_dir = _new_run(paths)
    writer = EventWriter(run_dir)  # the first attempt reaches step 7, checkpoint at 5
    for step in range(1, 8):
        writer.append("losses", [{"step": step, "name": "total", "value": 1.0}])
        writer.append("metrics", [_metric(step)])
        if step == 5:
            writer.mark_resume_point(5)  # after the checkpoint: its rows are on disk
            assert query(paths.data_root, "SELECT count(*) AS n FROM losses") == [{"n": 5}]
    writer.append("timings", [{"phase": "train", "samples": 7}])
    writer.flush()
    del writer  # the crash
    with EventWriter(run_dir) as writer:  # the resumed attempt redoes steps 6..9
        writer.truncate_after(5)
        for step in range(6, 10):
            writer.append("losses", [{"step": step, "name": "total", "value": 2.0}])
    sql = "SELECT step, value FROM losses ORDER BY step"
    expected = [{"step": s, "value": 1.0 if s <= 5 else 2.0} for s in range(1, 10)]
    assert query(paths.data_root, sql) == expected
    assert query(paths.data_root, "SELECT max(step) AS m FROM metrics") == [{"m": 5}]
    assert query(paths.data_root, "SELECT count(*) AS n FROM timings") == [{"n": 1}]  # no step: kept
    with EventWriter(run_dir) as writer:  # a second crash and resume from step 8
        writer.truncate_after(8)
        writer.append("losses", [{"step": 9, "name": "total", "value": 3.0}])
    expected[-1]["value"] = 3.0
    assert query(paths.data_root, sql) == expected
    compact(run_dir)
    assert query(paths.data_root, sql) == expected
    assert query(paths.data_root, "SELECT count(*) AS n FROM metrics") == [{"n": 5}]
    with pytest.raises(RuntimeError, match="truncate_after"):
        writer = EventWriter(run_dir)
        writer.append("losses", [{"step": 1}])
        writer.truncate_after(0)


def test_truncated_segment_is_skipped_and_reported(paths):
    run_id, run_dir = _new_run(paths)
    with EventWriter(run_dir) as writer:
        writer.append("metrics", [_metric(1)])
        writer.append("losses", [{"step": 1, "value": 1.0}])
    (bad,) = (run_dir / "events").glob("losses-*.parquet")
    bad.write_bytes(bad.read_bytes()[:-20])
    (run_dir / "events" / "notes.parquet").write_bytes(b"hello")
    assert query(paths.data_root, "SELECT count(*) AS n FROM losses") == [{"n": 0}]
    assert query(paths.data_root, "SELECT count(*) AS n FROM metrics") == [{"n": 1}]
    found = {os.path.basename(u["path"]): u["error"] for u in unreadable_segments(paths.data_root)}
    assert set(found) == {bad.name, "notes.parquet"}
    assert "Parquet" in found[bad.name]
    assert {os.path.basename(u["path"]) for u in ResultsDB(paths.data_root).unreadable} == set(found)


_KILLED_WRITER = """
import sys
from pathlib import Path
import numpy as np
from core.store.events import EventWriter
writer = EventWriter(Path(sys.argv[1]))
print("ready", flush=True)
while True:
    n = 200_000
    writer.append_columns("ranks", {"step": np.zeros(n, dtype=np.int64), "user_id": np.arange(n),
                                    "rank": np.arange(n)})
    writer.flush()
"""


def test_writer_killed_mid_write_leaves_store_readable(paths):
    run_id, run_dir = _new_run(paths)
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(run_dir)], cwd=REPO_ROOT,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # whether or not the kill landed mid-write, a partial temp file of a dead writer is ignored
    (run_dir / "events" / f".ranks-999999-{proc.pid}.parquet.{proc.pid}-0bad.tmp").write_bytes(b"PAR1 half")
    rows = query(paths.data_root, "SELECT count(*) AS n FROM ranks")
    assert rows[0]["n"] % 200_000 == 0
    assert unreadable_segments(paths.data_root) == []
    assert not scan_events(run_dir).unreadable
    compact(run_dir)  # removes the dead writer's temp files
    assert not list((run_dir / "events").glob(".*.tmp"))
    assert query(paths.data_root, "SELECT count(*) AS n FROM ranks") == rows


def test_writer_flushes_by_itself_when_the_buffer_is_full(paths):
    run_id, run_dir = _new_run(paths)
    writer = EventWriter(run_dir, flush_rows=10)
    for step in range(5):
        writer.append("losses", [{"step": step, "name": "total", "value": 0.0}] * 5)
    assert len(list((run_dir / "events").glob("losses-*.parquet"))) == 2
    writer.flush()
    assert query(paths.data_root, "SELECT count(*) AS n FROM losses") == [{"n": 25}]
