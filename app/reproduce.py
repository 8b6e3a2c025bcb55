"""The `slmrec` command that recreates a run: its spec as a JSON file, then `slmrec submit`.

The spec is the one stored at submit (data/runs/<run_id>/spec.json, key "spec"), so
`slmrec submit <kind> --spec FILE` rebuilds the same spec and the same settings hash; in the same
project it therefore finds the run itself (finished, queued or running) instead of training it
again, and after a failure or a cancel it queues it anew. The runs a spec names (sasrec_run,
distill.teacher_run, analysis.run) must exist in the project it is run in.
"""

from __future__ import annotations

import json


def spec_file_name(kind: str, run_id: str) -> str:
    """e.g. 'student-824faf.json'."""
    return f"{kind}-{run_id[-6:]}.json"


def spec_text(spec: dict) -> str:
    """The spec as the JSON file the command writes."""
    return json.dumps(spec, indent=1, sort_keys=True)


def command(kind: str, run_id: str, spec: dict) -> str:
    """A shell snippet (run in the project folder) that writes the spec file and submits it."""
    file = spec_file_name(kind, run_id)
    return f"cat > {file} <<'EOF'\n{spec_text(spec)}\nEOF\nslmrec submit {kind} --spec {file}"
