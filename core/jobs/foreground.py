"""Executing planned runs in this process (`slmrec run`, `slmrec reproduce`), beside any worker.

`run_planned` is the one foreground executor: it skips runs that are done, claims each other run
so that no worker starts it as well, waits for one a worker already holds, and stops at the first
run that does not end done. Under torchrun every process calls it through `run_ranks`: rank 0
plans and claims, every rank executes, and a run a worker holds is refused (several processes
cannot wait for it together).
"""

from __future__ import annotations

import sys
from typing import Callable

from core.config import ConfigError, RunSpec
from core.jobs import execution
from core.jobs.planning import plan_all
from core.store import runs as run_store
from core.store.paths import Paths


class RunHeld(RuntimeError):
    """A planned run is held by a worker or another `slmrec run`, and this run of several processes
    cannot wait for it."""


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def verdict(paths: Paths, run_id: str) -> str:
    """What to do with a planned run: "skip" (done), "run" (claimed here), "stop" (it ended unfinished),
    "busy" (a worker or another foreground command holds it)."""
    if run_store.read_state(paths.runs, run_id)["status"] == "done":
        return "skip"
    if not run_store.claim(paths.runs, run_id, "foreground"):
        return "busy"
    return "run" if run_store.read_state(paths.runs, run_id)["status"] == "queued" else "stop"


def run_planned(paths: Paths, run_ids: list[str], echo: bool = False, dist=None,
                say: Callable[[str], None] = _stderr) -> bool:
    """Execute the planned runs in order in this process; True when every one ends done.

    `dist` places this process in a run of several processes (every rank calls this); `say`
    reports the runs started and waited for.
    """
    from core.runtime import distributed  # noqa: PLC0415 - torch loads here

    dist = dist or distributed.SINGLE
    for run_id in run_ids:
        action = distributed.text_from_main(verdict(paths, run_id) if dist.is_main else "", dist)
        if action == "skip":
            continue
        if action == "busy" and dist.world_size > 1:
            raise RunHeld(f"run {run_id} is held by a worker or another `slmrec run`; a run of several processes "
                          "cannot wait for it: run this again when it has ended")
        if action == "busy":
            say(f"waiting for {run_id}, which a worker runs")
            status = run_store.wait_for_status(paths.runs, run_id, run_store.FINISHED, float("inf"))["status"]
        elif action == "run":
            if dist.is_main and not echo:
                say(f"running {run_id}")
            status = execution.execute(paths, run_id, echo=echo, dist=dist)["status"]
        else:
            status = "stopped"
        if status != "done":
            return False
    return True


def run_ranks(paths: Paths, specs: list[RunSpec], echo: bool) -> list[str] | None:
    """This process's part of `slmrec run` under torchrun: rank 0 plans, all ranks execute.

    Returns the run ids on rank 0 and None on the others. After a run that did not end done, rank 0
    takes part in no further collective: it returns, and torchrun stops the other ranks.
    """
    from core.runtime import distributed  # noqa: PLC0415 - torch loads here
    from core.train.loop import Cancelled  # noqa: PLC0415

    dist = distributed.from_env()
    with distributed.process_group(dist, even_alone=True):
        try:
            planned = " ".join(plan_all(paths, specs)) if dist.is_main else ""
            run_ids = distributed.text_from_main(planned, dist).split()
            run_planned(paths, run_ids, echo=echo, dist=dist)
        except BaseException as exc:
            if dist.is_main:
                raise
            expected = (ConfigError, RunHeld, Cancelled, KeyboardInterrupt)  # rank 0 reports these itself
            distributed.leave_after_failure(dist, exc, quiet=isinstance(exc, expected))
    return run_ids if dist.is_main else None
