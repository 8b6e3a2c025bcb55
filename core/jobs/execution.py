"""How one planned run is executed: `execute` runs it to an end state (done, failed or cancelled,
never left "running").

`STAGES` is the one table of stage name -> `run_<stage>(spec, ctx)`. In a run of several processes
every rank calls `execute`; rank 0 records the run, the others write nothing. The stages load
torch; this module imports them only when a run executes.
"""

from __future__ import annotations

import importlib
import os
import threading
import traceback

from core.config import RunSpec, eval_batch, from_dict
from core.store import runs as run_store
from core.store.atomic import disk_full
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


def _heartbeat(ctx, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            ctx.heartbeat()
        except OSError:  # a full disk: the stage fails at its next write, with advice; keep beating meanwhile
            continue


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
    if disk_full(exc):
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
    from core.runtime.distributed import barrier  # noqa: PLC0415

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

    `dist` (core.runtime.distributed.Dist) places this process in a run of several processes: rank 0
    records the run's end; another rank returns {"status": "done"} or raises what stopped it.
    """
    from core.stages.context import RunContext  # noqa: PLC0415 - imports torch
    from core.store.events import NullEventWriter  # noqa: PLC0415
    from core.runtime.device import resolve_device  # noqa: PLC0415
    from core.runtime.distributed import SINGLE  # noqa: PLC0415
    from core.train.loop import Cancelled  # noqa: PLC0415

    dist = dist or SINGLE
    spec = from_dict(run_store.read_spec(paths.runs, run_id)["spec"])
    events = EventWriter(paths.run_dir(run_id)) if dist.is_main else NullEventWriter()
    ctx = RunContext(run_id, paths, resolve_device(device_name or spec.train.device, dist), events, echo=echo,
                     dist=dist)
    if not dist.is_main:
        return _follow(spec, ctx)
    ctx.set_state(status="running", phase="start", started_at=run_store.now_iso(), pid=os.getpid(),
                  device=ctx.device_label, heartbeat_at=run_store.now_iso(), error=None)
    _void_unresumable_rows(ctx)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(ctx, stop), daemon=True)
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
        ctx.log("".join(traceback.format_exception(exc)), echo=False)  # the stack is for log.txt, not the user
        final = {"status": "failed", "phase": "failed", "error": failure_message(exc, spec, paths)}
    finally:
        stop.set()
        beat.join()
        try:
            ctx.events.flush()
            compact(paths.run_dir(run_id))
        except OSError as exc:  # a full disk must not leave the run "running": rows not written are lost
            ctx.log(f"could not write the last result rows: {exc}")
            if final.get("status") == "done":
                final = {"status": "failed", "phase": "failed", "error": failure_message(exc, spec, paths)}
    ctx.log(f"{final['status']}" + (f": {final['error']}" if final.get("error") else "")
            + (f" (its traceback is in {paths.run_dir(run_id) / 'log.txt'})" if final["status"] == "failed" else ""))
    ctx.set_state(finished_at=run_store.now_iso(), eta_s=0, **final)
    return run_store.read_state(paths.runs, run_id)
