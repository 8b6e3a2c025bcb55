"""Subcommand handlers of `slmrec`; each is a plain function of parsed arguments.

The project root (where data/ and checkpoints/ live) is the current folder unless `--root` or
SLMREC_ROOT says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from core.cli import _print_rows, add_run_options, spec_from_args
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


def cmd_run(args) -> int:
    """Plan the run and its missing parents, then execute each in this process."""
    from core import pipeline  # noqa: PLC0415
    from core.store import runs as run_store  # noqa: PLC0415

    paths = _paths(args)
    spec = spec_from_args(args)
    run_ids = pipeline.plan(paths, spec)
    for run_id in run_ids:
        state = run_store.read_state(paths.runs, run_id)
        if state["status"] == "done":
            continue
        state = pipeline.execute(paths, run_id, echo=not args.json)
        if state["status"] != "done":
            break
    summary = _run_summary(paths, run_ids)
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
    else:
        for run in summary["runs"]:
            print(f"{run['run_id']}  {run['kind']}  {run['status']}" + (f"  {run['error']}" if run["error"] else ""))
    return 0 if summary["status"] == "done" else 1


def cmd_runs(args) -> int:
    from core.store.query import query  # noqa: PLC0415

    rows = query(_paths(args).data_root, "SELECT run_id, kind, name, status, phase, progress, device, error "
                                         "FROM runs ORDER BY created_at")
    _print_rows(rows, args.json, False)
    return 0


def cmd_query(args) -> int:
    from core.store.query import query  # noqa: PLC0415

    try:
        rows = query(_paths(args).data_root, args.sql)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
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

    p = sub.add_parser("run", help="run a stage (and the parents it needs) in the foreground")
    add_run_options(p)
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("runs", help="every run with its status")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_runs)

    p = sub.add_parser("query", help="read-only SQL over the results store")
    p.add_argument("sql")
    p.add_argument("--json", action="store_true")
    p.add_argument("--csv", action="store_true")
    p.set_defaults(handler=cmd_query)
    return parser
