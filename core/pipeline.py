"""The stages, their dependencies, and how one run is executed.

`STAGES` is the one table the CLI and the worker both use: stage name -> `run_<stage>(spec, ctx)`.
`submit` writes a queued run (reusing a finished run with the same settings hash when asked);
`plan` adds the parent runs a stage needs (a teacher needs a SASRec item table, a student a
teacher, a drop run by influence or angular distance an analysis of its source); `plan_pipeline`
queues the chain sasrec -> teacher -> student -> analysis; `execute` runs one queued run to an end
state: done, failed or cancelled, never left "running". In a run of several processes every rank
calls `execute`; rank 0 records the run, the others write nothing.
"""

from __future__ import annotations

import errno
import importlib
import os
import threading
import traceback
from dataclasses import replace

from core.config import RunSpec, eval_batch, from_dict, settings_hash, to_dict
from core.drop_plan import prepare_drop
from core.store import runs as run_store
from core.store.events import EventWriter, compact
from core.store.paths import Paths

STAGES = {
    "sasrec": "core.stages.sasrec:run_sasrec",
    "teacher": "core.stages.llm:run_teacher",
    "student": "core.stages.student:run_student",
    "analysis": "core.stages.analysis:run_analysis",
    "drop": "core.stages.drop:run_drop",
}
HEARTBEAT_S = 2.0


def stage_function(kind: str):
    """The `run_<stage>` function for a stage (imported lazily: torch loads only when running)."""
    module, name = STAGES[kind].split(":")
    return getattr(importlib.import_module(module), name)


def sasrec_parent(spec: RunSpec) -> RunSpec:
    """The SASRec run whose item table an LLM stage uses: same data, SASRec settings and seed."""
    return RunSpec(kind="sasrec", data=spec.data, sasrec=spec.sasrec, rec=spec.rec,
                   train=replace(type(spec.train)(), seed=spec.train.seed, device=spec.train.device,
                                 max_steps=spec.train.max_steps, eval_users=spec.train.eval_users))


def submit(paths: Paths, spec: RunSpec, parent_id: str | None = None, reuse: bool = True) -> tuple[str, bool]:
    """Queue a run, or reuse a finished/queued/running one with the same settings; (run_id, reused)."""
    digest = settings_hash(spec)
    if reuse:
        existing = run_store.find_run_by_hash(paths.runs, spec.kind, digest, statuses=("done", "queued", "running"))
        if existing:
            return existing, True
    run_id = run_store.create_run(paths.runs, to_dict(spec), spec.kind, spec.name, parent_id, digest)
    return run_id, False


def plan(paths: Paths, spec: RunSpec, reuse: bool = True) -> list[str]:
    """Submit `spec` and any parents it lacks; return the run ids in execution order."""
    ids: list[str] = []
    if spec.kind == "drop":
        return plan_drop(paths, spec, reuse)
    if spec.kind == "student" and spec.distill.teacher_run and not spec.sasrec_run:
        # a student reads the same frozen item table as its teacher
        teacher = run_store.read_spec(paths.runs, spec.distill.teacher_run)["spec"]
        spec = replace(spec, sasrec_run=teacher.get("sasrec_run", ""))
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
    influence and angular rules read when drop.analysis_run is empty (core/drop_plan.py)."""
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


def plan_pipeline(paths: Paths, teacher: RunSpec, student: RunSpec, analysis: RunSpec,
                  reuse: bool = True) -> list[str]:
    """Submit the chain sasrec -> teacher -> student -> analysis; return the four run ids.

    The teacher need not be finished: the student's spec names the teacher's run id (so its
    settings hash includes it), and the analysis names the student (run) and the teacher
    (against). Each link reuses a finished or pending run with the same settings hash.
    """
    ids = plan(paths, teacher, reuse)
    teacher_id = ids[-1]
    sasrec_id = run_store.read_spec(paths.runs, teacher_id)["spec"]["sasrec_run"]
    student = replace(student, sasrec_run=sasrec_id, distill=replace(student.distill, teacher_run=teacher_id))
    ids += plan(paths, student, reuse)
    analysis = replace(analysis, analysis=replace(analysis.analysis, run=ids[-1], against=teacher_id))
    return ids + plan(paths, analysis, reuse)


def _heartbeat(paths: Paths, run_id: str, stop: threading.Event, lock: threading.Lock) -> None:
    while not stop.wait(HEARTBEAT_S):
        with lock:
            run_store.update_state(paths.runs, run_id, heartbeat_at=run_store.now_iso())


def failure_message(exc: BaseException, spec: RunSpec, paths: Paths) -> str:
    """The error a failed run reports: the exception, plus advice for out-of-memory and a full disk."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError
        if spec.kind == "sasrec":  # SASRec keeps its own batch size (core.config.SASRecConfig)
            batch, others = f"sasrec.batch_size={spec.sasrec.batch_size} (in a --spec file)", "a shorter data.max_len"
        else:
            batch = (f"train.batch_size={spec.train.batch_size} (--batch-size), or for evaluation "
                     f"train.eval_batch_size (--eval-batch-size; auto {eval_batch(spec.train, 'cuda')} on CUDA)")
            others = "a shorter data.max_len or a shallower backbone.depth"
        return f"out of memory ({text}); try a smaller batch: {batch}, or {others}"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return (f"the disk is full ({text}); free space on the disk holding {paths.root} and run it again "
                "(it resumes from its last checkpoint; no half-written file was kept)")
    return text


def _void_unresumable_rows(ctx) -> None:
    """An attempt that starts over (no resumable state) hides every row an earlier attempt wrote.

    A resumed attempt instead hides only what was written after its checkpoint (stages/common.fit).
    """
    from core.store.checkpoints import load_resume_state  # noqa: PLC0415
    from core.store.segments import segment_seqs  # noqa: PLC0415

    if segment_seqs(ctx.events.events_dir) and load_resume_state(ctx.checkpoint_dir) is None:
        ctx.events.truncate_after(-1, void_from_seq=0)
        ctx.log("starting over: rows of an earlier attempt without a checkpoint are hidden")


def _prepare_on_main_first(ctx, spec: RunSpec) -> None:
    """With several processes, rank 0 prepares (and caches) the data before the others read it, so that
    only rank 0 writes the cache."""
    from core.data.prepare import prepare  # noqa: PLC0415
    from core.train.distributed import barrier  # noqa: PLC0415

    if ctx.dist.world_size > 1:
        if ctx.dist.is_main:
            prepare(spec.data, ctx.paths.data_root)
        barrier(ctx.dist)


def _follow(spec: RunSpec, ctx) -> dict:
    """A rank > 0: run the stage beside rank 0, writing nothing; what ends the run early propagates."""
    _prepare_on_main_first(ctx, spec)
    stage_function(spec.kind)(spec, ctx)
    return {"status": "done"}


def execute(paths: Paths, run_id: str, device_name: str | None = None, echo: bool = False, dist=None) -> dict:
    """Run one run to its end state and return its final state.

    `dist` (core.train.distributed.Dist) places this process in a run of several processes: rank 0
    records the run's end; another rank returns {"status": "done"} or raises what stopped it.
    """
    from core.stages.context import RunContext  # noqa: PLC0415 - imports torch
    from core.store.events import NullEventWriter  # noqa: PLC0415
    from core.train.device import resolve_device  # noqa: PLC0415
    from core.train.distributed import SINGLE  # noqa: PLC0415
    from core.train.loop import Cancelled  # noqa: PLC0415

    dist = dist or SINGLE
    spec = from_dict(run_store.read_spec(paths.runs, run_id)["spec"])
    events = EventWriter(paths.runs / run_id) if dist.is_main else NullEventWriter()
    ctx = RunContext(run_id, paths, resolve_device(device_name or spec.train.device, dist), events, echo=echo,
                     dist=dist)
    if not dist.is_main:
        return _follow(spec, ctx)
    ctx.set_state(status="running", phase="start", started_at=run_store.now_iso(), pid=os.getpid(),
                  device=ctx.device_label, heartbeat_at=run_store.now_iso(), error=None)
    _void_unresumable_rows(ctx)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(paths, run_id, stop, ctx._lock), daemon=True)
    beat.start()
    final: dict = {}
    try:
        ctx.log(f"{spec.kind} run {run_id} on {ctx.device_label}")
        _prepare_on_main_first(ctx, spec)
        result = stage_function(spec.kind)(spec, ctx)
        final = {"status": "done", "progress": 1.0, "phase": "done", "result": result}
    except Cancelled as exc:
        final = {"status": "cancelled", "phase": "cancelled", "error": str(exc)}
    except KeyboardInterrupt:  # Ctrl-C on a foreground run: stop it for good, never leave it "running"
        final = {"status": "cancelled", "phase": "cancelled", "error": "interrupted (Ctrl-C)"}
    except Exception as exc:  # any failure ends the run as failed, with the traceback in its log
        ctx.log("".join(traceback.format_exception(exc)))
        final = {"status": "failed", "phase": "failed", "error": failure_message(exc, spec, paths)}
    finally:
        stop.set()
        beat.join()
        try:
            ctx.events.flush()
            compact(paths.runs / run_id)
        except OSError as exc:  # a full disk must not leave the run "running": rows not written are lost
            ctx.log(f"could not write the last result rows: {exc}")
            if final.get("status") == "done":
                final = {"status": "failed", "phase": "failed", "error": failure_message(exc, spec, paths)}
    ctx.log(f"{final['status']}" + (f": {final['error']}" if final.get("error") else ""))
    ctx.set_state(finished_at=run_store.now_iso(), eta_s=0, **final)
    return run_store.read_state(paths.runs, run_id)
