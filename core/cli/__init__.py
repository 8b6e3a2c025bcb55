"""The `slmrec` command: every subcommand maps to a plain function of its parsed arguments.

`parser` assembles the subcommands that `run` (run, submit), `serve` (worker, cancel, app), `data`
(fetch, data stats, data synth) and `results` (runs, query, reproduce, compare, bench) register;
`options` turns run options into specs, `drop` expands drop sweeps, `common` holds `UserError`,
the project folder and row printing. A mistake the user can fix ends with `error: ...`, never a
traceback. The project root (data/, checkpoints/) is the current folder unless `--root` or
SLMREC_ROOT says otherwise.
"""

from __future__ import annotations

import os
import sys

from core.cli.common import UserError
from core.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `slmrec` command."""
    from core.cli.parser import build_parser  # noqa: PLC0415

    parser = build_parser()
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
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
