"""Tags, notes and "archived" of every run, for the Runs page (stored by core/store/notes.py).

Notes live beside each run (data/runs/<run_id>/notes.json), outside the DuckDB views, so a note
saved does not rebuild the views. Reading them costs one stat per run folder; the files are read
again only when one of those modification times moved (memoised on the shared Store).
"""

from __future__ import annotations

import pandas as pd

from app.context import Store
from core.store import notes as run_notes
from core.store.atomic import CorruptFileError
from core.store.paths import Paths

COLUMNS = ["run_id", "tags", "note", "archived"]


def all_notes(store: Store, paths: Paths) -> pd.DataFrame:
    """One row per run that has notes: run_id, tags (a tuple), note, archived; broken files are skipped."""
    marks = run_notes.notes_mtimes(paths.runs)

    def compute() -> pd.DataFrame:
        rows = []
        for run_id in marks:
            try:
                notes = run_notes.read_notes(paths.runs, run_id)
            except (CorruptFileError, FileNotFoundError):
                continue  # a hand-broken notes.json hides that run's notes, not the page
            rows.append({"run_id": run_id, "tags": notes.tags, "note": notes.note, "archived": notes.archived})
        return pd.DataFrame(rows, columns=COLUMNS)
    return store.cached(("notes", tuple(sorted(marks.items()))), [], compute)


def with_notes(runs: pd.DataFrame, notes: pd.DataFrame) -> pd.DataFrame:
    """The runs frame with tags (tuple, () if none), note ('' if none) and archived (False if none)."""
    out = runs.drop(columns=[c for c in COLUMNS[1:] if c in runs.columns]).merge(notes, on="run_id", how="left")
    out["tags"] = [t if isinstance(t, tuple) else () for t in out["tags"]]
    out["note"] = out["note"].fillna("").astype(str)
    out["archived"] = out["archived"].astype("boolean").fillna(False).astype(bool)
    return out


def every_tag(runs: pd.DataFrame) -> list[str]:
    """The tags in use, sorted."""
    return sorted({t for tags in runs["tags"] for t in tags})
