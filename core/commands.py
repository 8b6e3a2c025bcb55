"""Subcommand handlers of `slmrec`; each is a plain function of parsed arguments.

The project root (where data/ and checkpoints/ live) is the current folder unless `--root` or
SLMREC_ROOT says otherwise.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from core.cli import _print_rows, add_run_options, spec_from_args
from core.commands_drop import plan_all, specs_from_args
from core.config import ConfigError, RunSpec, check_blocks, depth_warning
from core.store.paths import Paths


class UserError(RuntimeError):
    """A problem the user can fix; printed without a traceback."""


def _paths(args) -> Paths:
    return Paths(Path(args.root or os.environ.get("SLMREC_ROOT", ".")).resolve())


def cmd_fetch(args) -> int:
    from core import assets  # noqa: PLC0415

    paths = _paths(args)
    try:
        if not args.model_only:
            print(f"dataset: {assets.fetch_dataset(paths.raw)}")
        if not args.data_only:
            print(f"model: {assets.fetch_model(paths.base_models)}")
    except assets.AssetError as exc:
        raise UserError(str(exc)) from exc
    return 0


def cmd_data_stats(args) -> int:
    from core.config import DataConfig  # noqa: PLC0415
    from core.data.errors import DataError  # noqa: PLC0415
    from core.data.prepare import prepare  # noqa: PLC0415

    cfg = DataConfig(dataset=args.name, **({"kcore": args.kcore} if args.kcore is not None else {}),
                     **({"min_rating": args.min_rating} if args.min_rating is not None else {}))
    try:
        prepared = prepare(cfg, _paths(args).data_root)
    except DataError as exc:
        raise UserError(str(exc)) from exc
    stats = {"dataset": args.name, **prepared.stats}
    print(json.dumps(stats, indent=1, default=str) if args.json else
          "\n".join(f"{k}: {v}" for k, v in stats.items()))
    return 0


def _run_summary(paths: Paths, run_ids: list[str]) -> dict:
    from core.store import runs as run_store  # noqa: PLC0415

    states = {r: run_store.read_state(paths.runs, r) for r in run_ids}
    last = run_ids[-1]
    return {"run_id": last, "run_ids": run_ids, "status": states[last]["status"],
            "runs": [{"run_id": r, "kind": run_store.read_spec(paths.runs, r).get("kind"),
                      "status": s["status"], "error": s.get("error"), "result": s.get("result")}
                     for r, s in states.items()]}


def _warn_depths(paths: Paths, spec: RunSpec, teacher_depth: int | None = None) -> None:
    """Print (to stderr, so --json output stays JSON) a warning for a student not shallower than its teacher."""
    from core.store import runs as run_store  # noqa: PLC0415

    if spec.kind != "student":
        return
    if teacher_depth is None and spec.distill.teacher_run:
        try:
            teacher = run_store.read_spec(paths.runs, spec.distill.teacher_run)["spec"]
        except (OSError, ValueError, KeyError):
            return  # an unknown teacher is reported by the run itself
        teacher_depth = teacher.get("backbone", {}).get("depth")
    warning = depth_warning(teacher_depth, spec.backbone.depth) if teacher_depth else None
    if warning:
        print(warning, file=sys.stderr, flush=True)


def cmd_run(args) -> int:
    """Plan the run and its missing parents, then execute each in this process (or in N, under torchrun)."""
    from core import launch, pipeline  # noqa: PLC0415
    from core.store import runs as run_store  # noqa: PLC0415

    paths = _paths(args)
    specs = specs_from_args(args)  # several for a drop sweep
    spec = specs[0]
    if launch.under_torchrun():
        if launch.env_rank() == 0:
            _warn_depths(paths, spec)
        run_ids = launch.run_ranks(paths, spec, echo=not args.json)
        return _report_run(paths, run_ids, args.json) if run_ids is not None else 0  # rank 0 alone reports
    nodes = launch.nodes_from_args(args)
    if spec.train.nproc_per_node > 1 or nodes.nnodes > 1:
        launch.check_devices(spec, nodes)
        return launch.relaunch(args.argv, spec.train.nproc_per_node, nodes)
    _warn_depths(paths, spec)
    run_ids = plan_all(paths, specs)
    for run_id in run_ids:
        state = run_store.read_state(paths.runs, run_id)
        if state["status"] == "done":
            continue
        if run_store.claim(paths.runs, run_id, "foreground"):  # so no worker starts it as well
            if run_store.read_state(paths.runs, run_id)["status"] == "queued":
                state = pipeline.execute(paths, run_id, echo=not args.json)
        else:  # plan reused a run a worker holds: wait for it
            print(f"waiting for {run_id}, which a worker runs", file=sys.stderr, flush=True)
            state = run_store.wait_for_status(paths.runs, run_id, run_store.FINISHED, float("inf"))
        if state["status"] != "done":
            break
    return _report_run(paths, run_ids, args.json)


def _report_run(paths: Paths, run_ids: list[str], as_json: bool) -> int:
    """Print how each run of `slmrec run` ended; 0 when the last one is done."""
    summary = _run_summary(paths, run_ids)
    if as_json:
        print(json.dumps(summary, indent=1, default=str))
    else:
        for run in summary["runs"]:
            print(f"{run['run_id']}  {run['kind']}  {run['status']}" + (f"  {run['error']}" if run["error"] else ""))
    return 0 if summary["status"] == "done" else 1


# What a pipeline's runs must not inherit from the options meant for another link of the chain:
# the teacher keeps no student or analysis options (so changing only the student reuses the
# teacher), the student no teacher depth or analysis options, the analysis no depths and no
# process count (it runs in one process).
_DISTILL_OPTIONS = ("blocks", "lambda_cos", "lambda_norm", "lambda_sup", "teacher_states", "cache_budget_gb")
_ANALYSIS_OPTIONS = ("users",)


def pipeline_specs(args) -> tuple[RunSpec, RunSpec, RunSpec]:
    """The teacher, student and analysis specs of `slmrec submit pipeline` (links filled by the plan)."""
    if args.student_layers is None:
        raise ConfigError("pipeline: --student-layers is required (the student's depth)")
    for dest, flag in (("teacher", "--teacher"), ("run", "--run"), ("against", "--against")):
        if getattr(args, dest):
            raise ConfigError(f"pipeline: {flag} is set by the pipeline itself; to distil from an existing "
                              "teacher use `slmrec submit student --teacher RUN_ID`")

    def spec(stage: str, cleared: tuple[str, ...]) -> RunSpec:
        return spec_from_args(argparse.Namespace(**{**vars(args), "stage": stage, **dict.fromkeys(cleared)}))

    teacher = spec("teacher", ("student_layers", *_DISTILL_OPTIONS, *_ANALYSIS_OPTIONS))
    student = spec("student", ("teacher_depth", *_ANALYSIS_OPTIONS))
    analysis = spec("analysis", ("teacher_depth", "student_layers", "nproc_per_node", *_DISTILL_OPTIONS))
    check_blocks(teacher.backbone.depth, student.backbone.depth, student.distill.blocks)
    return teacher, student, analysis


def cmd_submit(args) -> int:
    """Queue the run (and the parents it lacks) and return at once; a worker runs them."""
    from core import pipeline  # noqa: PLC0415
    from core.worker import alive_workers  # noqa: PLC0415

    paths = _paths(args)
    if args.stage == "pipeline":
        specs = pipeline_specs(args)
        _warn_depths(paths, specs[1], teacher_depth=specs[0].backbone.depth)
        run_ids = pipeline.plan_pipeline(paths, *specs)
    else:
        specs = specs_from_args(args)  # several for a drop sweep
        _warn_depths(paths, specs[0])
        run_ids = plan_all(paths, specs)
    summary = _run_summary(paths, run_ids)
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
        return 0
    for run in summary["runs"]:
        print(f"{run['run_id']}  {run['kind']}  {run['status']}")
    if not alive_workers(paths):
        print("no worker is running: start one with `slmrec worker` (or `slmrec app`)", file=sys.stderr)
    return 0


def cmd_worker(args) -> int:
    from core.worker import Worker, install_stop_handlers  # noqa: PLC0415

    options = {"stale_s": args.stale_after} if args.stale_after else {}
    worker = Worker(_paths(args), device=args.device, once=args.once, **options)
    install_stop_handlers(worker)
    return worker.run()


def cmd_cancel(args) -> int:
    from core import scheduler  # noqa: PLC0415

    try:
        status = scheduler.cancel(_paths(args), args.run_id)
    except (ValueError, FileNotFoundError) as exc:  # a malformed or unknown id, or a run that has ended
        raise UserError(str(exc)) from exc
    if args.json:
        print(json.dumps({"run_id": args.run_id, "status": status}))
    elif status == "cancelled":
        print(f"{args.run_id} cancelled")
    else:
        print(f"cancel requested: {args.run_id} ({status}) stops at its next training step")
    return 0


def _check_port_free(host: str, port: int) -> None:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Streamlit's server does
            probe.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is already in use (another app?); "
                            "pick a free one with --port") from exc
        raise UserError(f"cannot listen on {host}:{port}: {exc}") from exc


def _interrupt(*_) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: let the clean-up finish
    raise KeyboardInterrupt


def cmd_app(args) -> int:
    """Start a worker unless one is alive, then the Streamlit UI; stop the worker we started on exit."""
    from core import worker as workers  # noqa: PLC0415

    paths = _paths(args)
    script = Path(args.script) if args.script else workers.SOURCE_ROOT / "streamlit_app.py"
    _check_port_free(args.host, args.port)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        started = workers.start_detached(paths, args.device)
    except RuntimeError as exc:
        raise UserError(str(exc)) from exc
    if started:
        print(f"worker started (pid {started.pid}); its log: {workers.workers_dir(paths) / 'worker.log'}", flush=True)
    else:
        alive = workers.alive_workers(paths)
        print(f"using the running worker {alive[0]['worker_id'] if alive else ''}", flush=True)
    try:
        if not script.exists():
            print(f"the UI is not built yet ({script} does not exist); the worker runs queued work"
                  + ("; press Ctrl-C to stop it" if started else ""), flush=True)
            return started.wait() if started else 0
        print(f"SLMRec Lab: http://{args.host}:{args.port}", flush=True)
        ui = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(script), "--server.address", args.host,
                               "--server.port", str(args.port), "--server.headless", "true",
                               "--browser.gatherUsageStats", "false"],
                              cwd=script.parent, env={**os.environ, "SLMREC_ROOT": str(paths.root)})
        try:
            return ui.wait()
        finally:
            workers.stop_process(ui)
    except KeyboardInterrupt:
        return 0
    finally:
        if started:
            print("stopping the worker", flush=True)
            workers.stop_process(started)


def cmd_runs(args) -> int:
    from core.store.query import query  # noqa: PLC0415

    rows = query(_paths(args).data_root, "SELECT run_id, kind, name, status, phase, progress, device, error "
                                         "FROM runs ORDER BY created_at")
    _print_rows(rows, args.json, False)
    return 0


def cmd_query(args) -> int:
    import duckdb  # noqa: PLC0415

    from core.store.query import query  # noqa: PLC0415

    try:
        rows = query(_paths(args).data_root, args.sql)
    except (ValueError, duckdb.Error) as exc:  # a bad query is the user's to fix: no traceback
        raise UserError(f"query: {exc} (`slmrec query \"SHOW TABLES\"` lists the tables, "
                        "`slmrec query \"DESCRIBE metrics\"` a table's columns)") from exc
    _print_rows(rows, args.json, args.csv)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="slmrec", description="SLMRec Lab: distil LLM recommenders.")
    parser.add_argument("--root", default=None, help="project folder holding data/ and checkpoints/")
    sub = parser.add_subparsers()

    p = sub.add_parser("fetch", help="fetch the default dataset (MovieLens-100K) and LLM (SmolLM2-135M)")
    p.add_argument("--data-only", action="store_true")
    p.add_argument("--model-only", action="store_true")
    p.set_defaults(handler=cmd_fetch)

    data = sub.add_parser("data", help="dataset commands").add_subparsers()
    p = data.add_parser("stats", help="users, items, interactions, sequence lengths")
    p.add_argument("name")
    p.add_argument("--kcore", type=int)
    p.add_argument("--min-rating", type=float)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_data_stats)
    from core.commands_data import add_synth_parser  # noqa: PLC0415

    add_synth_parser(data)

    p = sub.add_parser("run", help="run a stage (and the parents it needs) in the foreground")
    add_run_options(p)
    from core.launch import add_launch_options  # noqa: PLC0415

    add_launch_options(p)
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("submit", help="queue a stage (and the parents it needs) for the worker; returns at once")
    add_run_options(p, extra_stages=("pipeline",))
    p.set_defaults(handler=cmd_submit)

    p = sub.add_parser("worker", help="claim and run queued work, one run at a time on one device")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps (default: each run's own setting)")
    p.add_argument("--once", action="store_true", help="exit when no queued run is runnable")
    p.add_argument("--stale-after", type=float, default=None,
                   help="seconds without a heartbeat before a run whose process died is re-queued (default 15)")
    p.set_defaults(handler=cmd_worker)

    p = sub.add_parser("cancel", help="cancel a queued or running run")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_cancel)

    p = sub.add_parser("app", help="start a worker (if none is alive), then the browser UI")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--device", default=None, help="device of the worker the app starts")
    p.add_argument("--script", default=None, help="the Streamlit entry point (default: streamlit_app.py)")
    p.set_defaults(handler=cmd_app)

    p = sub.add_parser("runs", help="every run with its status")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_runs)

    p = sub.add_parser("query", help="read-only SQL over the results store")
    p.add_argument("sql")
    p.add_argument("--json", action="store_true")
    p.add_argument("--csv", action="store_true")
    p.set_defaults(handler=cmd_query)
    from core.commands_results import add_parsers  # noqa: PLC0415

    add_parsers(sub)
    return parser
