"""`slmrec runs`, `query`, `reproduce`, `compare` and `bench`: reading and comparing results."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from core.cli.common import UserError, paths_from, print_rows


def cmd_reproduce(args) -> int:
    """Run (or reuse) every row of the paper's table and write docs/results/<dataset>-<preset>.md/.csv."""
    from core.results import budget, reproduce  # noqa: PLC0415 - imports numpy and the run store

    if args.preset not in reproduce.PLANS:
        raise UserError(f"--preset: unknown reproduction preset '{args.preset}'; "
                        f"expected one of {', '.join(reproduce.PLANS)}")
    plan = reproduce.PLANS[args.preset]
    if args.seeds:
        plan = replace(plan, seeds=tuple(int(s) for s in args.seeds.split(",")))
    overrides = {"backbone": {"base": args.base}} if args.base else {}
    paths = paths_from(args)
    start = time.perf_counter()
    try:
        rows = reproduce.run_rows(paths, args.dataset, plan, overrides, execute=not args.no_run)
    except RuntimeError as exc:
        raise UserError(str(exc)) from exc
    table = reproduce.summarise(paths, rows)
    text = reproduce.markdown(table, args.dataset, args.preset, plan, time.perf_counter() - start,
                              reproduce.significance(paths, rows, plan), reproduce.run_time(paths, rows),
                              budget.budget_lines(paths, rows))
    md, csv_path = reproduce.write_report(Path(args.out), f"{args.dataset}-{args.preset}", table, text)
    print(text)
    print(f"written: {md} {csv_path}")
    return 0


def cmd_compare(args) -> int:
    """Paired comparison of two runs' per-user metric on the same users."""
    from core.results.compare import CompareError, compare  # noqa: PLC0415

    try:
        result = compare(paths_from(args), args.run_a, args.run_b, args.metric, args.split, args.protocol,
                         args.resamples)
    except CompareError as exc:
        raise UserError(str(exc)) from exc
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        verdict = "significant" if result["significant"] else "not significant (the CI includes 0)"
        print(f"{result['metric']} ({result['split']}, {result['protocol']}): A {result['a_value']:.4f} "
              f"B {result['b_value']:.4f}, A - B = {result['difference']:+.4f} "
              f"[{result['low']:+.4f}, {result['high']:+.4f}] 95% paired bootstrap, p = {result['p_value']:.3g}, "
              f"n = {result['n']} users: {verdict}")
    return 0


def cmd_runs(args) -> int:
    rows = _read(args, "SELECT run_id, kind, name, status, phase, progress, device, error FROM runs ORDER BY created_at")
    print_rows(rows, args.json, False)
    return 0


def cmd_query(args) -> int:
    print_rows(_read(args, args.sql), args.json, args.csv)
    return 0


def _read(args, sql: str) -> list[dict]:
    """The rows of a read-only query; the result files left out (unreadable) are named on stderr."""
    import duckdb  # noqa: PLC0415

    from core.store.query import ResultsDB  # noqa: PLC0415

    with ResultsDB(paths_from(args).data_root) as db:
        try:
            rows = db.query(sql)
        except (ValueError, duckdb.Error) as exc:  # a bad query is the user's to fix: no traceback
            raise UserError(f"query: {exc} (`slmrec query \"SHOW TABLES\"` lists the tables, "
                            "`slmrec query \"DESCRIBE metrics\"` a table's columns)") from exc
        for bad in db.unreadable:
            print(f"skipped: {bad['path']}: {bad['error']}", file=sys.stderr)
    return rows


def cmd_bench(args) -> int:
    """Every benchmark in one run (bench/run.py), JSON lines on stdout."""
    from bench.run import run_all  # noqa: PLC0415 - imports torch

    return run_all(args)


def add_parsers(sub) -> None:
    """Register `runs`, `query`, `reproduce`, `compare` and `bench` on the top-level subparsers."""
    p = sub.add_parser("runs", help="every run with its status")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_runs)

    p = sub.add_parser("query", help="read-only SQL over the results store")
    p.add_argument("sql")
    p.add_argument("--json", action="store_true")
    p.add_argument("--csv", action="store_true")
    p.set_defaults(handler=cmd_query)

    p = sub.add_parser("reproduce", help="the paper's comparison table on our data, as Markdown + CSV")
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--preset", default="cpu", help="cpu | paper | tiny")
    p.add_argument("--seeds", help="comma-separated seeds (default: the preset's)")
    p.add_argument("--base", help="another base LLM (a local folder, or 'tiny')")
    p.add_argument("--out", default="docs/results")
    p.add_argument("--no-run", action="store_true",
                   help="run nothing: report the finished runs, queue the missing ones for a worker")
    p.set_defaults(handler=cmd_reproduce)

    p = sub.add_parser("compare", help="paired comparison of two runs: difference, 95%% CI, p-value")
    p.add_argument("run_a", help="RUN_ID or RUN_ID:MODEL (e.g. a SASRec run's :popularity)")
    p.add_argument("run_b")
    p.add_argument("--metric", default="NDCG@10")
    p.add_argument("--split", default="test", choices=["valid", "test"])
    p.add_argument("--protocol", default="full", choices=["full", "sampled"])
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_compare)

    from bench import run as bench_run  # noqa: PLC0415 - its options, defined once for both commands

    p = sub.add_parser("bench", help="throughput benchmarks, one JSON object per line",
                       description=bench_run.__doc__)
    bench_run.add_arguments(p)
    p.set_defaults(handler=cmd_bench)
