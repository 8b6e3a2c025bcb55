"""The options of `slmrec run` and `slmrec submit`, and the spec they make.

Run options map one-to-one onto spec fields (the OPTIONS table), applied on top of `--preset`;
`--spec FILE` reads a whole spec from JSON (its values type-checked, errors naming the file). The
two depth flags each have one meaning: the teacher's depth (`--teacher-depth`) and the student's
(`--student-layers`), each refused on a stage that has no such run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.config import PRESETS, ConfigError, RunSpec, apply_preset, from_dict
from core.jobs.launch import Nodes


def on_off(text: str) -> bool:
    """A yes/no option: on, off, true, false, yes, no, 1 or 0."""
    value = {"on": True, "true": True, "yes": True, "1": True, "off": False, "false": False, "no": False,
             "0": False}.get(text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected on or off, got '{text}'")
    return value


# flag -> (spec section, field, type)
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
    ("--base", "backbone", "base", str), ("--layer-selection", "backbone", "layer_selection", str),
    ("--training", "backbone", "training", str), ("--lora-r", "backbone", "lora_r", int),
    ("--prompt", "rec", "prompt", str), ("--mask-history", "rec", "mask_history", on_off),
    ("--teacher", "distill", "teacher_run", str), ("--blocks", "distill", "blocks", int),
    ("--lambda-cos", "distill", "lambda_cos", float), ("--lambda-norm", "distill", "lambda_norm", float),
    ("--lambda-sup", "distill", "lambda_sup", float), ("--teacher-states", "distill", "teacher_states", str),
    ("--cache-budget-gb", "distill", "cache_budget_gb", float),
    ("--run", "analysis", "run", str), ("--against", "analysis", "against", str),
    ("--users", "analysis", "users", int),
    ("--sasrec-run", None, "sasrec_run", str), ("--name", None, "name", str),
]


# depth flag -> the stages whose backbone.depth it sets (a pipeline gives each link its own)
DEPTH_OPTIONS = {"--teacher-depth": ("teacher", "pipeline"), "--student-layers": ("student", "pipeline")}

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
    parser.add_argument("--teacher-depth", type=int, default=None, help="the teacher's decoder layers")
    parser.add_argument("--student-layers", type=int, default=None, help="the student's decoder layers")
    for flag, help_text in DROP_OPTIONS:
        parser.add_argument(flag, default=None, help=help_text)
    parser.add_argument("--json", action="store_true")


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    """Build the stage's spec: preset, then spec file, then explicit options."""
    overrides = overrides_from_args(args)
    depth = depth_from_args(args)
    if depth is not None:
        overrides.setdefault("backbone", {})["depth"] = depth
    return apply_preset(args.preset, overrides, args.stage)


def overrides_from_args(args: argparse.Namespace) -> dict:
    """The spec sections the spec file and the explicit options set (depth flags aside)."""
    overrides = _spec_file(args) if args.spec else {}
    for flag, section, field, _ in OPTIONS:
        value = getattr(args, _dest(flag))
        if value is None:
            continue
        if section is None:
            overrides[field] = value
        else:
            overrides.setdefault(section, {})[field] = value
    if args.depths:
        overrides["depths"] = [int_option("--depths", x) for x in args.depths.split(",") if x.strip()]
    _drop_overrides(args, overrides)
    return overrides


def depth_from_args(args: argparse.Namespace) -> int | None:
    """The depth flag meant for this stage, after refusing one meant for another."""
    for flag, stages in DEPTH_OPTIONS.items():
        if getattr(args, _dest(flag)) is not None and args.stage not in stages:
            hint = {"student": "a student's depth is --student-layers, its teacher --teacher RUN_ID",
                    "teacher": "a teacher's depth is --teacher-depth",
                    "sweep": "a sweep's depths are --depths 1,2,4,8"}.get(args.stage, "this stage has no such run")
            raise ConfigError(f"{flag}: sets the depth of a {' or '.join(stages)} run, not of a {args.stage} run; "
                              f"{hint}")
    return {"teacher": args.teacher_depth, "student": args.student_layers}.get(args.stage)


def _spec_file(args: argparse.Namespace) -> dict:
    """The sections of --spec FILE (its kind must be the stage's), each key checked by name."""
    try:
        loaded = json.loads(args.spec.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{args.spec}: cannot read the spec file: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{args.spec}: expected a JSON object of settings sections, got {type(loaded).__name__}")
    if loaded.get("kind", args.stage) != args.stage:
        raise ConfigError(f"{args.spec}: kind '{loaded['kind']}' does not match the stage '{args.stage}'")
    try:
        from_dict({**loaded, "kind": args.stage})  # types and unknown keys, named
    except ConfigError as exc:
        raise ConfigError(f"{args.spec}: {exc}") from None
    return {k: v for k, v in loaded.items() if k != "kind"}


def _drop_overrides(args: argparse.Namespace, overrides: dict) -> None:
    """The drop section from the drop flags (one rule and n: core/cli/drop.py expands sweeps)."""
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


def add_launch_options(parser: argparse.ArgumentParser) -> None:
    """`slmrec run`'s options for a run over several nodes (train.nproc_per_node says how many per node)."""
    group = parser.add_argument_group("several nodes", "run the same command on every node (torchrun rendezvous)")
    group.add_argument("--nnodes", type=int, default=1, help="number of nodes (default 1)")
    group.add_argument("--node-rank", type=int, default=None, help="this node's rank (static rendezvous only)")
    group.add_argument("--rdzv-backend", default="c10d", help="c10d (default) or static")
    group.add_argument("--rdzv-endpoint", default="", help="HOST:PORT of the rendezvous, e.g. the first node")
    group.add_argument("--rdzv-id", default="", help="a job id, the same on every node")


def nodes_from_args(args: argparse.Namespace) -> Nodes:
    """The launch options of `slmrec run`, checked."""
    nodes = Nodes(args.nnodes, args.node_rank, args.rdzv_backend, args.rdzv_endpoint, args.rdzv_id)
    if nodes.nnodes < 1:
        raise ConfigError(f"--nnodes: expected >= 1, got {nodes.nnodes}")
    if nodes.nnodes > 1 and not nodes.rdzv_endpoint:
        raise ConfigError("--rdzv-endpoint: a run over several nodes needs HOST:PORT of its rendezvous, the same "
                          "on every node (e.g. the first node's address and a free port)")
    if nodes.node_rank is not None and not 0 <= nodes.node_rank < nodes.nnodes:
        raise ConfigError(f"--node-rank: expected 0..{nodes.nnodes - 1}, got {nodes.node_rank}")
    return nodes
