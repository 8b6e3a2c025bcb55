"""A run's user notes: tags, a free-text note and "archived", in data/runs/<run_id>/notes.json.

The file belongs to the people looking at results (the app, or a script): the worker never writes
it and no stage reads it, so it adds a writer without sharing a file with the worker (spec.json is
written once at submit; state.json and events/ are the worker's). Two browser tabs may save at the
same time, so an update reads, changes and writes the file under a lock file beside it, and the
write is atomic. Archiving hides a run from lists; nothing is deleted.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from core.store.atomic import CorruptFileError, file_lock, read_json, write_json_atomic
from core.store.runs import run_dir

NOTES_FILE = "notes.json"
LOCK_FILE = ".notes.lock"
MAX_NOTE = 10_000  # characters
_TAG = re.compile(r"[^\s,][^,]{0,39}")


@dataclass(frozen=True)
class Notes:
    """What a user wrote about one run."""

    tags: tuple[str, ...] = ()
    note: str = ""
    archived: bool = False


def parse_tags(text: str) -> tuple[str, ...]:
    """'baseline, paper  ,baseline' -> ('baseline', 'paper'): comma-separated, trimmed, unique, in order."""
    tags = [t.strip() for t in text.split(",") if t.strip()]
    for tag in tags:
        if not _TAG.fullmatch(tag):
            raise ValueError(f"tag {tag!r}: expected at most 40 characters, not starting with a space or comma")
    return tuple(dict.fromkeys(tags))


def _from_json(path: Path, data) -> Notes:
    if not isinstance(data, dict):
        raise CorruptFileError(f"{path}: expected a JSON object with tags, note, archived")
    tags = data.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise CorruptFileError(f"{path}: 'tags' must be a list of strings, got {tags!r}")
    return Notes(tuple(tags), str(data.get("note", "")), bool(data.get("archived", False)))


def read_notes(runs_root: Path, run_id: str) -> Notes:
    """The run's notes (empty ones when it has none); CorruptFileError names a broken file."""
    path = run_dir(runs_root, run_id) / NOTES_FILE
    try:
        return _from_json(path, read_json(path))
    except FileNotFoundError:
        return Notes()


def update_notes(runs_root: Path, run_id: str, **changes) -> Notes:
    """Change some of tags, note, archived (under the run's lock) and return the new notes."""
    unknown = sorted(set(changes) - {"tags", "note", "archived"})
    if unknown:
        raise ValueError(f"notes: unknown field(s) {', '.join(unknown)}; expected tags, note, archived")
    if len(changes.get("note", "")) > MAX_NOTE:
        raise ValueError(f"note: {len(changes['note'])} characters; at most {MAX_NOTE}")
    folder = run_dir(runs_root, run_id)
    with file_lock(folder / LOCK_FILE):
        current = asdict(read_notes(runs_root, run_id))
        notes = Notes(**{**current, **changes, "tags": tuple(changes.get("tags", current["tags"]))})
        write_json_atomic(folder / NOTES_FILE, {**asdict(notes), "tags": list(notes.tags)})
    return notes


def notes_mtimes(runs_root: Path) -> dict[str, int]:
    """run_id -> notes.json's modification time, for every run that has notes (one stat per run)."""
    marks = {}
    if not Path(runs_root).is_dir():
        return marks
    with os.scandir(runs_root) as entries:
        for entry in entries:
            if entry.is_dir() and not entry.name.startswith("."):
                try:
                    marks[entry.name] = os.stat(os.path.join(entry.path, NOTES_FILE)).st_mtime_ns
                except OSError:
                    continue
    return marks
