"""What every `slmrec` command shares: the user's error, the project folder, printing rows.

A leaf of the CLI package: it imports nothing of the other command modules.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from core.store.paths import Paths


class UserError(RuntimeError):
    """A problem the user can fix; printed without a traceback."""


def paths_from(args: argparse.Namespace) -> Paths:
    """The project folder (data/, checkpoints/): --root, else $SLMREC_ROOT, else the current folder."""
    return Paths(Path(args.root or os.environ.get("SLMREC_ROOT", ".")).resolve())


def print_rows(rows: list[dict], as_json: bool = False, as_csv: bool = False) -> None:
    """Rows as JSON, CSV or an aligned text table."""
    if as_json:
        print(json.dumps(rows, default=str, indent=1))
    elif as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)
    elif not rows:
        print("(no rows)")
    else:
        cols = list(rows[0])
        widths = {c: max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in cols}
        print("  ".join(c.ljust(widths[c]) for c in cols))
        for r in rows:
            print("  ".join(_fmt(r[c]).ljust(widths[c]) for c in cols))


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
