"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every write goes to a temporary file in the same folder (same filesystem, so the rename is atomic),
is flushed and fsynced, and is then moved over the final name with `os.replace`. Temporary names
start with "." and end with ".tmp", so a reader that globs "*.json" or "*.parquet" never picks one
up, and they carry the writer's pid so a cleaner can tell a dead writer's leftovers from a live
writer's work in progress (`stale_temp_files`). `read_json` names the file in its error, so a
corrupt state.json is reported, not a bare JSONDecodeError.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_TEMP = re.compile(r"\..+\.(?P<pid>\d+)-[0-9a-f]+\.tmp")


class CorruptFileError(ValueError):
    """A store file exists but cannot be parsed; the message names the file."""


def temp_path_for(path: Path) -> Path:
    """A fresh temporary name beside `path`: hidden, ending in .tmp, tagged with this pid."""
    return path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (best effort: some filesystems refuse)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s content to; on success it replaces `path`.

    For writers that want a file name (safetensors, parquet). On an exception the temporary file is
    removed and `path` is untouched.
    """
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data must be on disk before the name points at it
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old or the new content."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def read_json(path: Path) -> Any:
    """Parse the JSON file at `path`; FileNotFoundError if absent, CorruptFileError if unreadable."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptFileError(f"{path}: not valid JSON ({err}); {len(data)} bytes") from err


def stale_temp_files(folder: Path) -> list[Path]:
    """Temporary files in `folder` whose writer process is gone (left by a crash or a kill)."""
    stale = []
    for entry in Path(folder).glob(".*.tmp"):
        match = _TEMP.fullmatch(entry.name)
        if match and not pid_alive(int(match["pid"])):
            stale.append(entry)
    return stale


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it is just not ours
    return True


@contextlib.contextmanager
def file_lock(lock_path: Path) -> Iterator[None]:
    """An exclusive lock between threads and processes (flock); a no-op where there is no fcntl."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl  # noqa: PLC0415
    except ImportError:  # Windows: updates are still atomic, only not serialised
        yield
        return
    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


NO_SPACE = "No space left on device"  # the OS's words for ENOSPC, in messages and logs


def disk_full(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is a full disk: an OSError ENOSPC, or a library's wrapped
    report of one (safetensors raises its own error with the OS message in its text)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        if NO_SPACE in str(seen) or "StorageFull" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
