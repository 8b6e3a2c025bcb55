"""Atomic writes: complete files only, temp files cleaned, corrupt JSON named."""

import json
import os

import pytest

from core.store.atomic import (
    CorruptFileError,
    atomic_path,
    read_json,
    stale_temp_files,
    write_bytes_atomic,
    write_json_atomic,
)
from core.store.paths import Paths, check_run_id


def test_write_and_read_json_round_trip(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"x": 1, "y": [1.5, None], "z": "é"})
    assert read_json(tmp_path / "a.json") == {"x": 1, "y": [1.5, None], "z": "é"}
    write_json_atomic(tmp_path / "a.json", {"x": 2})
    assert read_json(tmp_path / "a.json") == {"x": 2}
    assert os.listdir(tmp_path) == ["a.json"]  # no temp file left behind


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "b.bin"
    write_bytes_atomic(target, b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash while writing")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["b.bin"]


def test_unserialisable_json_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "c.json", {"x": object()})
    assert os.listdir(tmp_path) == []


def test_corrupt_json_error_names_the_file(tmp_path):
    (tmp_path / "state.json").write_text('{"status": "runn')
    with pytest.raises(CorruptFileError, match="state.json"):
        read_json(tmp_path / "state.json")
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "missing.json")


def test_stale_temp_files_only_lists_dead_writers(tmp_path):
    mine = tmp_path / f".x.parquet.{os.getpid()}-ab12.tmp"
    dead = tmp_path / ".y.parquet.999999999-cd34.tmp"  # no such pid
    for path in (mine, dead):
        path.write_bytes(b"partial")
    assert stale_temp_files(tmp_path) == [dead]


def test_paths_layout_and_run_id_check(tmp_path):
    p = Paths(tmp_path)
    assert p.runs == tmp_path / "data" / "runs"
    assert p.base_models == tmp_path / "checkpoints" / "base"
    assert p.prepared == tmp_path / "data" / "prepared" and p.raw == tmp_path / "data" / "raw"
    assert p.run_dir("20261127-064512-000001-teacher-3fa9c1").parent == p.runs
    for bad in ("../etc", "a/b", ".hidden", "", "x..y"):
        with pytest.raises(ValueError, match="invalid run id"):
            check_run_id(bad)
    assert json.dumps(str(p.checkpoint_dir("r1")))
