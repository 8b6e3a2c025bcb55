"""`slmrec worker`, `slmrec cancel` and `slmrec app`: serving queued work and the browser UI."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from core.cli.common import UserError, paths_from


def cmd_worker(args) -> int:
    from core.jobs.worker import Worker, install_stop_handlers  # noqa: PLC0415

    options = {"stale_s": args.stale_after} if args.stale_after else {}
    worker = Worker(paths_from(args), device=args.device, once=args.once, **options)
    install_stop_handlers(worker)
    return worker.run()


def cmd_cancel(args) -> int:
    from core.jobs import scheduler  # noqa: PLC0415

    try:
        status = scheduler.cancel(paths_from(args), args.run_id)
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
    from core.jobs import worker as workers  # noqa: PLC0415
    from core.jobs.launch import SOURCE_ROOT  # noqa: PLC0415
    from core.jobs.registry import alive_workers  # noqa: PLC0415

    paths = paths_from(args)
    script = Path(args.script) if args.script else SOURCE_ROOT / "streamlit_app.py"
    _check_port_free(args.host, args.port)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        started = workers.start_detached(paths, args.device)
    except RuntimeError as exc:
        raise UserError(str(exc)) from exc
    if started:
        print(f"worker started (pid {started.pid}); its log: {paths.workers / 'worker.log'}", flush=True)
    else:
        alive = alive_workers(paths)
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


def add_parsers(sub) -> None:
    """Register `worker`, `cancel` and `app` on the top-level subparsers."""
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
