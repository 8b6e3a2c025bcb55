"""Test helper: `cancel_at.py N SLMREC-ARGS...` runs `slmrec SLMREC-ARGS` in this process with the
cancel file appearing at the N-th look, so a run (under torchrun: this rank's part) stops at step N."""

import sys

from core import cli
from core.jobs.launch import exit_process
from core.stages import context


def main(stop_at: int, argv: list[str]) -> int:
    looks = {"n": 0}

    def cancel_requested(self) -> bool:  # rank 0 looks once per optimizer step
        looks["n"] += 1
        return self.dist.is_main and looks["n"] >= stop_at

    context.RunContext.cancel_requested = cancel_requested
    return cli.main(argv)


if __name__ == "__main__":
    exit_process(main(int(sys.argv[1]), sys.argv[2:]))
