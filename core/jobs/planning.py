"""Planning: which runs a request needs, queued (or reused) in the run store. No torch: the app,
the CLI and the worker all plan through this module.

`submit` writes a queued run, reusing a finished, queued or running run with the same settings
hash when asked; `plan` adds the parent runs a stage needs (a teacher needs a SASRec item table, a
student a teacher, a drop run by influence or angular distance an analysis of its source);
`plan_pipeline` queues the chain sasrec -> teacher -> student -> analysis.
"""

from __future__ import annotations

from dataclasses import replace

from core.config import RunSpec, settings_hash, to_dict
from core.jobs.drop_plan import prepare_drop, source_spec
from core.jobs.references import check_references
from core.jobs.specs import PipelineSpecs
from core.store import runs as run_store
from core.store.paths import Paths


def sasrec_parent(spec: RunSpec) -> RunSpec:
    """The SASRec run whose item table an LLM stage uses: same data, SASRec settings and seed."""
    return RunSpec(kind="sasrec", data=spec.data, sasrec=spec.sasrec, rec=spec.rec,
                   train=replace(type(spec.train)(), seed=spec.train.seed, device=spec.train.device,
                                 max_steps=spec.train.max_steps, eval_users=spec.train.eval_users))


def submit(paths: Paths, spec: RunSpec, parent_id: str | None = None, reuse: bool = True) -> tuple[str, bool]:
    """Queue a run, or reuse a finished/queued/running one with the same settings; (run_id, reused)."""
    digest = settings_hash(spec)
    if reuse:
        existing = run_store.find_run_by_hash(paths.runs, spec.kind, digest, statuses=run_store.REUSABLE)
        if existing:
            return existing, True
    run_id = run_store.create_run(paths.runs, to_dict(spec), spec.kind, spec.name, parent_id, digest)
    return run_id, False


def plan(paths: Paths, spec: RunSpec, reuse: bool = True) -> list[str]:
    """Submit `spec` and any parents it lacks; return the run ids in execution order."""
    ids: list[str] = []
    if spec.kind == "drop":
        return plan_drop(paths, spec, reuse)
    named = check_references(paths, spec)
    if "distill.teacher_run" in named and not spec.sasrec_run:
        # a student reads the same frozen item table as its teacher
        spec = replace(spec, sasrec_run=named["distill.teacher_run"]["spec"].get("sasrec_run", ""))
    if spec.kind in ("teacher", "student", "sweep") and not spec.sasrec_run:
        parent, _ = submit(paths, sasrec_parent(spec), reuse=reuse)
        ids.append(parent)
        spec = replace(spec, sasrec_run=parent)
    if spec.kind == "sweep":
        return ids + [submit(paths, run, parent_id=spec.sasrec_run, reuse=reuse)[0] for run in sweep_runs(spec)]
    parent_id = spec.distill.teacher_run if spec.kind == "student" else (spec.analysis.run or None)
    run_id, _ = submit(paths, spec, parent_id=parent_id or (ids[-1] if ids else None), reuse=reuse)
    return ids + [run_id]


def plan_drop(paths: Paths, spec: RunSpec, reuse: bool = True) -> list[str]:
    """Submit a drop run after checking its source run, with the analysis parent (valid split) that the
    influence and angular rules read when drop.analysis_run is empty (core/jobs/drop_plan.py)."""
    spec, analysis = prepare_drop(paths, spec)
    ids = []
    if analysis is not None:
        ids.append(submit(paths, analysis, parent_id=spec.drop.run, reuse=reuse)[0])
        spec = replace(spec, drop=replace(spec.drop, analysis_run=ids[-1]))
    return ids + [submit(paths, spec, parent_id=spec.drop.analysis_run or spec.drop.run, reuse=reuse)[0]]


def sweep_runs(spec: RunSpec) -> list[RunSpec]:
    """The depth sweep (the paper's motivating depth curve): one teacher-style run per depth, same seed and data.

    A sweep is not a run of its own: it expands into teacher runs that differ only in depth, so
    each is reused by any later sweep or pipeline with the same settings, and the app draws
    metric-vs-depth by grouping teacher runs by depth.
    """
    return [replace(spec, kind="teacher", depths=(), name=f"{spec.name or 'sweep'} depth {depth}",
                    backbone=replace(spec.backbone, depth=depth)) for depth in spec.depths]


def plan_pipeline(paths: Paths, chain: PipelineSpecs, reuse: bool = True) -> list[str]:
    """Submit the chain sasrec -> teacher -> student -> analysis; return the four run ids.

    The teacher need not be finished: the student's spec names the teacher's run id (so its
    settings hash includes it), and the analysis names the student (run) and the teacher
    (against). Each link reuses a finished or pending run with the same settings hash.
    """
    ids = plan(paths, chain.teacher, reuse)
    teacher_id = ids[-1]
    sasrec_id = run_store.read_spec(paths.runs, teacher_id)["spec"]["sasrec_run"]
    ids += plan(paths, chain.linked(sasrec_id, teacher_id, "").student, reuse)
    return ids + plan(paths, chain.linked(sasrec_id, teacher_id, ids[-1]).analysis, reuse)


def plan_all(paths: Paths, specs: list[RunSpec]) -> list[str]:
    """Plan every spec (checked first, so that nothing is queued when one is refused); the run ids in
    execution order, each once."""
    for spec in specs:
        if spec.kind == "drop":
            source_spec(paths, spec)
    ids: list[str] = []
    for spec in specs:
        ids += [run_id for run_id in plan(paths, spec) if run_id not in ids]
    return ids
