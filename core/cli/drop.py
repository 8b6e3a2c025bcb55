"""`slmrec run drop` and `slmrec submit drop`: the drop-layer runs one command asks for.

`--rule` may be a comma list or "all" (last, influence, angular) and `--n` a comma list or a range
"1-7": one drop run per (rule, n), each planned with its parents (core/jobs/planning.py `plan_drop`).
Rule "list" takes `--layers` and ignores `--n`, so it adds one run.
"""

from __future__ import annotations

import argparse

from core.cli.options import int_option, spec_from_args
from core.config import DROP_RULES, ConfigError, RunSpec

ALL_RULES = ("last", "influence", "angular")


def parse_rules(text: str | None) -> list[str]:
    """The rules of --rule: one, a comma list, or 'all'."""
    if text is None:
        return ["last"]
    rules = list(ALL_RULES) if text.strip() == "all" else [x.strip() for x in text.split(",") if x.strip()]
    wrong = [rule for rule in rules if rule not in DROP_RULES]
    if wrong or not rules:
        raise ConfigError(f"--rule: expected {', '.join(DROP_RULES)}, a comma list of them or 'all', got '{text}'")
    return list(dict.fromkeys(rules))


def parse_counts(text: str | None) -> list[int | None]:
    """The values of --n: one, a comma list (1,2,4) or ranges (1-7); [None] when not given."""
    if text is None:
        return [None]
    counts: list[int] = []
    for part in (x.strip() for x in text.split(",") if x.strip()):
        low, dash, high = part.partition("-")
        if dash and low:
            first, last = int_option("--n", low), int_option("--n", high)
            if last < first:
                raise ConfigError(f"--n: the range '{part}' is empty; write it low-high, e.g. 1-7")
            counts += range(first, last + 1)
        else:
            counts.append(int_option("--n", part))
    if not counts:
        raise ConfigError(f"--n: expected a number of layers, a comma list or a range like 1-7, got '{text}'")
    return list(dict.fromkeys(counts))


def drop_specs(args: argparse.Namespace) -> list[RunSpec]:
    """One drop spec per (rule, n) of the command line, in that order."""
    if args.run is None:
        raise ConfigError("--run: the drop stage needs the teacher or student run whose layers it drops")
    specs = []
    for rule in parse_rules(args.rule):
        for n in [None] if rule == "list" else parse_counts(args.n):
            one = argparse.Namespace(**{**vars(args), "rule": rule, "n": None if rule == "list" else n})
            specs.append(spec_from_args(one))
    return specs


def specs_from_args(args: argparse.Namespace) -> list[RunSpec]:
    """The specs `slmrec run/submit STAGE` plans: the drop sweep's, or the one spec of another stage."""
    return drop_specs(args) if args.stage == "drop" else [spec_from_args(args)]
