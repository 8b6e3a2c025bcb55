"""Where everything lives under one project root, and the rule for safe run ids.

`Paths(root)` names the project's folders (data/runs, checkpoints, ...). Nothing in the
store reads a global location: every function takes the folder it works in, and callers build it
from a `Paths`. A run id becomes a folder name, so `check_run_id` refuses anything that could climb
out of its parent (slashes, "..", hidden names) before it is joined onto a path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL_DIR = "smollm2-135m-instruct"  # backbone.base "smollm2": checkpoints/base/<this>, by `slmrec fetch`
# A run's resumable training state in checkpoints/<run_id>/ (core/store/checkpoints.py): the newest,
# then the one it replaced, which a resume falls back to when the newest cannot be read.
RESUME_STATE_FILE, PREVIOUS_STATE_FILE = "resume.json", "resume.previous.json"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_run_id(run_id: str) -> str:
    """Return `run_id` unchanged if it is a safe folder name, else raise ValueError."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise ValueError(
            f"invalid run id {run_id!r}: expected letters, digits, '-', '_' or '.', "
            "starting with a letter or digit, at most 128 characters, no '..'"
        )
    return run_id


@dataclass(frozen=True)
class Paths:
    """The project's folders, all derived from `root` (the folder holding data/ and checkpoints/)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def data_root(self) -> Path:
        return self.root / "data"

    @property
    def runs(self) -> Path:
        return self.root / "data" / "runs"

    @property
    def prepared(self) -> Path:
        return self.root / "data" / "prepared"

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def workers(self) -> Path:
        """Live workers' registrations, their log and locks."""
        return self.root / "data" / "workers"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def base_models(self) -> Path:
        return self.root / "checkpoints" / "base"

    def run_dir(self, run_id: str) -> Path:
        """data/runs/<run_id>, after checking the id is a safe folder name."""
        return self.runs / check_run_id(run_id)

    def checkpoint_dir(self, run_id: str) -> Path:
        """checkpoints/<run_id>, after checking the id is a safe folder name."""
        return self.checkpoints / check_run_id(run_id)
