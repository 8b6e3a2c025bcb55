"""The runs a spec names (its SASRec run, its teacher, the runs it analyses), checked before it is
queued: each must exist and be of the kind the field expects, and a student must share its
teacher's data, base model and prompt, with blocks that divide both depths. A mistake is a ConfigError naming the field, never a failure inside the run.
"""

from __future__ import annotations

from core.config import ConfigError, RunSpec, check_blocks, from_dict, teacher_mismatch, valid_blocks
from core.store import runs as run_store
from core.store.paths import Paths

LISTED = "`slmrec runs` lists them"


def referenced_spec(paths: Paths, field: str, run_id: str, hint: str = LISTED) -> dict:
    """The spec.json of run `run_id`, or a ConfigError naming `field` (a bad id or no such run) and `hint`."""
    try:
        return run_store.read_spec(paths.runs, run_id)  # checks the id before it becomes a path
    except (ValueError, run_store.RunNotFoundError) as exc:
        raise ConfigError(f"{field}: {exc}; {hint}") from exc


def check_references(paths: Paths, spec: RunSpec) -> dict[str, dict]:
    """Refuse a spec whose named runs do not exist or are of the wrong kind (drop.run: core/jobs/drop_plan.py);
    the spec.json of each named run, by field."""
    named = [("sasrec_run", spec.sasrec_run, ("sasrec",))]
    if spec.kind == "student":
        named.append(("distill.teacher_run", spec.distill.teacher_run, ("teacher",)))
    if spec.kind == "analysis":
        named += [("analysis.run", spec.analysis.run, ("teacher", "student")),
                  ("analysis.against", spec.analysis.against, ("teacher", "student"))]
    headers = {}
    for field, run_id, kinds in named:
        if not run_id:
            continue
        headers[field] = referenced_spec(paths, field, run_id)
        if headers[field].get("kind") not in kinds:
            raise ConfigError(f"{field}: run '{run_id}' is a {headers[field].get('kind')} run; expected a "
                              f"{' or '.join(kinds)} run ({LISTED})")
    if spec.kind == "student":
        _check_student(spec, headers.get("distill.teacher_run"))
    return headers


def _check_student(spec: RunSpec, teacher_header: dict | None) -> None:
    """Blocks that divide both depths (the student's alone without a teacher), and the teacher's data,
    base model and prompt."""
    depth, blocks, teacher_run = spec.backbone.depth, spec.distill.blocks, spec.distill.teacher_run
    if teacher_header is None:
        if depth % blocks:
            raise ConfigError(f"distill.blocks: B={blocks} must divide the student depth {depth} (a student without "
                              "a teacher uses B only to place its multiple-supervision heads); valid B: "
                              + ", ".join(map(str, valid_blocks(depth, depth))))
        return
    teacher = from_dict(teacher_header["spec"])
    check_blocks(teacher.backbone.depth, depth, blocks)
    difference = teacher_mismatch(teacher, spec)
    if difference:
        raise ConfigError(f"distill.teacher_run: teacher '{teacher_run}' differs from this student in {difference}")
