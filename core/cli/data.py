"""`slmrec fetch`, `slmrec data stats` and `slmrec data synth`: the datasets and the default model.

`data synth` generates a synthetic dataset (core/data/synthetic.py), then prepares it:

    slmrec data synth --name synth-markov --users 50000 --items 20000 --order 3 --seed 0
    slmrec data synth --name synth-amazon --users 1200000 --items 377000 --interactions 11300000

The files go to data/raw/<name>/ and are prepared like any other source (so `--dataset <name>`
works for every stage, and `slmrec data stats <name> --json` shows the oracle's scores). Running
the same command again reuses the files when they were generated with the same settings.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time

from core.cli.common import UserError, paths_from


def cmd_fetch(args) -> int:
    from core.data import assets  # noqa: PLC0415

    paths = paths_from(args)
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
        prepared = prepare(cfg, paths_from(args).data_root)
    except DataError as exc:
        raise UserError(str(exc)) from exc
    stats = {"dataset": args.name, **prepared.stats}
    print(json.dumps(stats, indent=1, default=str) if args.json else
          "\n".join(f"{k}: {v}" for k, v in stats.items()))
    return 0


def add_parsers(sub) -> None:
    """Register `fetch` and `data` (stats, synth) on the top-level subparsers."""
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
    _add_synth_parser(data)


def _add_synth_parser(data_subparsers) -> None:
    """Register `synth` under the `data` subcommands; every SynthConfig field is an option."""
    from core.data.synth_config import SynthConfig  # noqa: PLC0415 - standard library only, like core.config

    p = data_subparsers.add_parser("synth", help="generate a synthetic dataset with a planted sequential rule "
                                                 "and a known best score, then prepare it")
    p.add_argument("--name", required=True, help="dataset name: the folder data/raw/<name>/")
    for spec in dataclasses.fields(SynthConfig):
        p.add_argument("--" + spec.name.replace("_", "-"), type=type(spec.default), default=None,
                       help=f"{spec.metadata['help']} (default {spec.default})")
    p.add_argument("--kcore", type=int, default=None, help="k-core of the preparation (default: DataConfig's)")
    p.add_argument("--force", action="store_true", help="generate again even if the files match the settings")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_data_synth)


def _folder(args, name: str):
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise UserError(f"--name {name!r}: expected a plain folder name (letters, digits, '.', '_', '-')")
    paths = paths_from(args)
    return paths, paths.raw / name


def cmd_data_synth(args) -> int:
    from core.config import ConfigError, DataConfig  # noqa: PLC0415
    from core.data.errors import DataError  # noqa: PLC0415
    from core.data.prepare import prepare  # noqa: PLC0415
    from core.data.synthetic import SynthConfig, ensure, files, validate  # noqa: PLC0415

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(SynthConfig)}
    cfg = SynthConfig(**{name: value for name, value in given.items() if value is not None})
    validate(cfg)  # ConfigError: printed by the CLI
    paths, folder = _folder(args, args.name)
    started = time.perf_counter()
    try:
        generated = ensure(cfg, folder, args.name, force=args.force)
    except DataError as exc:
        raise UserError(f"{exc} (--name)") from exc
    generate_s = time.perf_counter() - started
    try:
        prepared = prepare(DataConfig(dataset=args.name, **({"kcore": args.kcore} if args.kcore is not None else {})),
                           paths.data_root)
    except (DataError, ConfigError) as exc:
        raise UserError(str(exc)) from exc
    summary = {"dataset": args.name, "generated": generated, "generate_s": round(generate_s, 2),
               "prepare_s": round(time.perf_counter() - started - generate_s, 2),
               "files": {k: os.path.relpath(p, paths.root) for k, p in files(folder, args.name).items()},
               "prepared": os.path.relpath(prepared.folder, paths.root), **prepared.stats}
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
        return 0
    oracle = summary.get("oracle", {})
    print(f"{args.name}: {summary['users']} users, {summary['items']} items, {summary['interactions']} interactions"
          f" ({'generated' if generated else 'files reused'} in {summary['generate_s']}s, prepared in "
          f"{summary['prepare_s']}s: {summary['prepared']})")
    if oracle and cfg.rule == "induction":  # its targets are history items: masking would hide them
        test = oracle["unmasked"]["test"]
        print(f"test HR@10: oracle {test['HR@10']:.4f} (NDCG@10 {test['NDCG@10']:.4f}), full ranking without "
              "history masking: train and evaluate with rec.mask_history false")
    elif oracle:
        test, popularity = oracle["test"], oracle["popularity"]["test"]
        print(f"test HR@10: oracle {test['HR@10']:.4f}, popularity {popularity['HR@10']:.4f} "
              f"(NDCG@10 {test['NDCG@10']:.4f} vs {popularity['NDCG@10']:.4f}); {oracle['protocol']}")
    return 0
