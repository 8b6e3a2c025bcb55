"""`slmrec run` (in the foreground) and `slmrec submit` (queued for a worker)."""

from __future__ import annotations

import argparse
import json
import sys

from core.cli.common import UserError, paths_from
from core.cli.drop import specs_from_args
from core.cli.options import add_launch_options, add_run_options, nodes_from_args, overrides_from_args
from core.config import ConfigError, RunSpec, depth_warning
from core.jobs import launch
from core.jobs.planning import plan_all, plan_pipeline
from core.jobs.specs import PipelineSpecs, pipeline_specs
from core.store import runs as run_store
from core.store.paths import Paths


def cmd_run(args) -> int:
    """Plan the run and its missing parents, then execute each in this process (or in N, under torchrun)."""
    from core.jobs import foreground  # noqa: PLC0415 - torch loads when a run executes

    paths = paths_from(args)
    specs = specs_from_args(args)  # several for a drop sweep
    if launch.under_torchrun():
        if launch.env_rank() == 0:
            _warn_depths(paths, specs[0])
        try:
            run_ids = foreground.run_ranks(paths, specs, echo=not args.json)
        except foreground.RunHeld as exc:
            raise UserError(str(exc)) from exc
        return _report(paths, run_ids, args.json) if run_ids is not None else 0  # rank 0 alone reports
    nodes = nodes_from_args(args)
    if specs[0].train.nproc_per_node > 1 or nodes.nnodes > 1:
        launch.check_devices(specs[0], nodes)
        return launch.relaunch(args.argv, specs[0].train.nproc_per_node, nodes)
    _warn_depths(paths, specs[0])
    run_ids = plan_all(paths, specs)
    foreground.run_planned(paths, run_ids, echo=not args.json)
    return _report(paths, run_ids, args.json)


def cmd_submit(args) -> int:
    """Queue the run (and the parents it lacks) and return at once; a worker runs them."""
    from core.jobs.registry import alive_workers  # noqa: PLC0415

    paths = paths_from(args)
    if args.stage == "pipeline":
        chain = pipeline_from_args(args)
        _warn_depths(paths, chain.student, teacher_depth=chain.teacher.backbone.depth)
        run_ids = plan_pipeline(paths, chain)
    else:
        specs = specs_from_args(args)  # several for a drop sweep
        _warn_depths(paths, specs[0])
        run_ids = plan_all(paths, specs)
    summary = _summary(paths, run_ids)
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
        return 0
    for run in summary["runs"]:
        print(f"{run['run_id']}  {run['kind']}  {run['status']}")
    if not alive_workers(paths):
        print("no worker is running: start one with `slmrec worker` (or `slmrec app`)", file=sys.stderr)
    return 0


def pipeline_from_args(args: argparse.Namespace) -> PipelineSpecs:
    """The teacher, student and analysis specs of `slmrec submit pipeline` (links filled by the plan)."""
    if args.student_layers is None:
        raise ConfigError("pipeline: --student-layers is required (the student's depth)")
    for dest, flag in (("teacher", "--teacher"), ("run", "--run"), ("against", "--against")):
        if getattr(args, dest):
            raise ConfigError(f"pipeline: {flag} is set by the pipeline itself; to distil from an existing "
                              "teacher use `slmrec submit student --teacher RUN_ID`")
    shared = overrides_from_args(argparse.Namespace(**{**vars(args), "stage": "student"}))
    own = {"student": {"distill": shared.pop("distill", {})}, "analysis": {"analysis": shared.pop("analysis", {})}}
    return pipeline_specs(args.preset, shared, args.teacher_depth, args.student_layers, **own)


def _warn_depths(paths: Paths, spec: RunSpec, teacher_depth: int | None = None) -> None:
    """Print (to stderr, so --json output stays JSON) a warning for a student not shallower than its teacher."""
    if spec.kind != "student":
        return
    if teacher_depth is None and spec.distill.teacher_run:
        try:
            teacher = run_store.read_spec(paths.runs, spec.distill.teacher_run)["spec"]
        except (OSError, ValueError, KeyError):
            return  # an unknown teacher is refused by the plan
        teacher_depth = teacher.get("backbone", {}).get("depth")
    warning = depth_warning(teacher_depth, spec.backbone.depth) if teacher_depth else None
    if warning:
        print(warning, file=sys.stderr, flush=True)


def _summary(paths: Paths, run_ids: list[str]) -> dict:
    states = {r: run_store.read_state(paths.runs, r) for r in run_ids}
    last = run_ids[-1]
    return {"run_id": last, "run_ids": run_ids, "status": states[last]["status"],
            "runs": [{"run_id": r, "kind": run_store.read_spec(paths.runs, r).get("kind"),
                      "status": s["status"], "error": s.get("error"), "result": s.get("result")}
                     for r, s in states.items()]}


def _report(paths: Paths, run_ids: list[str], as_json: bool) -> int:
    """Print how each run of `slmrec run` ended; 0 when the last one is done."""
    summary = _summary(paths, run_ids)
    if as_json:
        print(json.dumps(summary, indent=1, default=str))
    else:
        for run in summary["runs"]:
            print(f"{run['run_id']}  {run['kind']}  {run['status']}" + (f"  {run['error']}" if run["error"] else ""))
    return 0 if summary["status"] == "done" else 1


def add_parsers(sub) -> None:
    """Register `run` and `submit` on the top-level subparsers."""
    p = sub.add_parser("run", help="run a stage (and the parents it needs) in the foreground")
    add_run_options(p)
    add_launch_options(p)
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("submit", help="queue a stage (and the parents it needs) for the worker; returns at once")
    add_run_options(p, extra_stages=("pipeline",))
    p.set_defaults(handler=cmd_submit)
