"""The `slmrec` command: every subcommand maps to a plain function.

Run options map one-to-one onto spec fields (the OPTIONS table), applied on top of `--preset`;
`--spec FILE` reads a whole spec from JSON. `--json` prints machine-readable output.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from core.config import ConfigError, RunSpec, apply_preset, PRESETS, from_dict

# flag -> (spec section, field, type). Student layers and teacher depth both set backbone.depth:
# each stage has one backbone; a pipeline gives each of its runs the depth meant for it.
OPTIONS = [
    ("--dataset", "data", "dataset", str), ("--kcore", "data", "kcore", int),
    ("--min-rating", "data", "min_rating", float), ("--max-len", "data", "max_len", int),
    ("--train-targets", "data", "train_targets", str), ("--max-users", "data", "max_users", int),
    ("--epochs", "train", "epochs", int), ("--lr", "train", "lr", float),
    ("--batch-size", "train", "batch_size", int), ("--grad-accum", "train", "grad_accum", int),
    ("--seed", "train", "seed", int), ("--device", "train", "device", str),
    ("--max-steps", "train", "max_steps", int), ("--eval-users", "train", "eval_users", int),
    ("--precision", "train", "precision", str), ("--patience", "train", "patience", int),
    ("--nproc-per-node", "train", "nproc_per_node", int), ("--compile", "train", "compile", str),
    ("--eval-batch-size", "train", "eval_batch_size", int),
    ("--sasrec-epochs", "sasrec", "epochs", int), ("--sasrec-hidden", "sasrec", "hidden", int),
    ("--base", "backbone", "base", str), ("--teacher-depth", "backbone", "depth", int),
    ("--student-layers", "backbone", "depth", int), ("--layer-selection", "backbone", "layer_selection", str),
    ("--training", "backbone", "training", str), ("--lora-r", "backbone", "lora_r", int),
    ("--prompt", "rec", "prompt", str),
    ("--teacher", "distill", "teacher_run", str), ("--blocks", "distill", "blocks", int),
    ("--lambda-cos", "distill", "lambda_cos", float), ("--lambda-norm", "distill", "lambda_norm", float),
    ("--lambda-sup", "distill", "lambda_sup", float), ("--teacher-states", "distill", "teacher_states", str),
    ("--cache-budget-gb", "distill", "cache_budget_gb", float),
    ("--run", "analysis", "run", str), ("--against", "analysis", "against", str),
    ("--users", "analysis", "users", int),
    ("--sasrec-run", None, "sasrec_run", str), ("--name", None, "name", str),
]


# `slmrec run drop` (--run is then drop.run); strings, so that the drop commands can expand sweeps
DROP_OPTIONS = [
    ("--rule", "drop: last | influence | angular | list; a comma list or 'all' (last,influence,angular) sweeps"),
    ("--n", "drop: layers to drop; a comma list (1,2,3) or a range (1-7) sweeps"),
    ("--layers", "drop, rule list: the 1-based layer numbers to drop, e.g. 3,4"),
    ("--heal-steps", "drop: LoRA fine-tune steps after dropping (0: not healed)"),
    ("--analysis-run", "drop: the analysis run the influence and angular rules read (default: planned)"),
]


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def add_run_options(parser: argparse.ArgumentParser, extra_stages: tuple[str, ...] = ()) -> None:
    """The options of `slmrec run` and `slmrec submit` (which adds the `pipeline` pseudo-stage)."""
    parser.add_argument("stage", choices=["sasrec", "teacher", "student", "analysis", "sweep", "drop", *extra_stages])
    parser.add_argument("--preset", default="", help=f"one of {', '.join(PRESETS)}")
    parser.add_argument("--spec", type=Path, help="a JSON spec file (options override it)")
    parser.add_argument("--depths", help="comma-separated depths for the sweep stage, e.g. 1,2,4,8")
    for flag, _, _, kind in OPTIONS:
        parser.add_argument(flag, type=kind, default=None)
    for flag, help_text in DROP_OPTIONS:
        parser.add_argument(flag, default=None, help=help_text)
    parser.add_argument("--json", action="store_true")


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    """Build a spec: preset, then spec file, then explicit options."""
    overrides: dict = {}
    if args.spec:
        try:
            loaded = json.loads(args.spec.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{args.spec}: cannot read the spec file: {exc}") from exc
        if loaded.get("kind", args.stage) != args.stage:
            raise ConfigError(f"{args.spec}: kind '{loaded['kind']}' does not match the stage '{args.stage}'")
        from_dict({**loaded, "kind": args.stage})  # rejects unknown keys by name
        overrides = {k: v for k, v in loaded.items() if k != "kind"}
    for flag, section, field, _ in OPTIONS:
        value = getattr(args, _dest(flag))
        if value is None:
            continue
        if section is None:
            overrides[field] = value
        else:
            overrides.setdefault(section, {})[field] = value
    if args.depths:
        overrides["depths"] = [int(x) for x in args.depths.split(",") if x.strip()]
    _drop_overrides(args, overrides)
    return apply_preset(args.preset, overrides, args.stage)


def _drop_overrides(args: argparse.Namespace, overrides: dict) -> None:
    """The drop section from the drop flags (one rule and n: core/commands_drop.py expands sweeps)."""
    given = [flag for flag, _ in DROP_OPTIONS if getattr(args, _dest(flag), None) is not None]
    if args.stage != "drop":
        if given:
            raise ConfigError(f"{given[0]}: applies to the drop stage only (`slmrec run drop`)")
        return
    drop = overrides.setdefault("drop", {})
    if args.run is not None:  # the run whose layers are dropped
        drop["run"] = overrides.get("analysis", {}).pop("run")
    for flag in ("--rule", "--analysis-run"):
        if getattr(args, _dest(flag)) is not None:
            drop[_dest(flag)] = getattr(args, _dest(flag))
    for flag in ("--n", "--heal-steps"):
        if getattr(args, _dest(flag)) is not None:
            drop[_dest(flag)] = int_option(flag, getattr(args, _dest(flag)))
    if args.layers is not None:
        drop["layers"] = [int_option("--layers", x) for x in args.layers.split(",") if x.strip()]


def int_option(flag: str, text) -> int:
    """A whole number given to `flag`, or a ConfigError naming the flag."""
    try:
        return int(str(text).strip())
    except ValueError:
        raise ConfigError(f"{flag}: expected a whole number, got '{text}'") from None


def _print_rows(rows: list[dict], as_json: bool, as_csv: bool) -> None:
    if as_json:
        print(json.dumps(rows, default=str, indent=1))
    elif as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)
    else:
        if not rows:
            print("(no rows)")
            return
        cols = list(rows[0])
        widths = {c: max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in cols}
        print("  ".join(c.ljust(widths[c]) for c in cols))
        for r in rows:
            print("  ".join(_fmt(r[c]).ljust(widths[c]) for c in cols))


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `slmrec` command."""
    from core import commands  # noqa: PLC0415 - keeps `slmrec --help` fast

    parser = commands.build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `slmrec run` starts itself again under torchrun
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except BrokenPipeError:  # `slmrec query ... | head`: the reader left; nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush cannot fail again
        return 0
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except commands.UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    from core.launch import exit_process  # noqa: PLC0415

    exit_process(main())
