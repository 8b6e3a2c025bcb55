"""Starting one run as several processes with torchrun (torch.distributed.run), for `slmrec run` and the worker.

`slmrec run STAGE ... --nproc-per-node N` (train.nproc_per_node) starts the same command again under
torchrun with N processes on this node (`relaunch`); with --nnodes M and a rendezvous endpoint,
the same command on each of M nodes makes one run of M x N processes. Each process then takes
its part in `run_ranks`: rank 0 plans the runs (and the parents they lack) and claims each one,
and all ranks execute it together (core.pipeline.execute with their `Dist`). The worker starts a
queued run whose spec asks for N > 1 processes as `torchrun --standalone -m core.worker run-one`
(`torchrun_command`). Nothing here imports torch at import time: the worker loop uses it too.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from core.config import ConfigError, RunSpec

SOURCE_ROOT = Path(__file__).resolve().parent.parent  # holds core/, for the children's import path


@dataclass(frozen=True)
class Nodes:
    """torchrun's options for a run over several nodes; one node needs none (a private rendezvous)."""

    nnodes: int = 1
    node_rank: int | None = None  # only the 'static' rendezvous needs it; c10d assigns ranks itself
    rdzv_backend: str = "c10d"
    rdzv_endpoint: str = ""  # host:port of the rendezvous, the same on every node
    rdzv_id: str = ""  # the job's id, the same on every node (torchrun's default when empty)


ONE_NODE = Nodes()


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


def processes(spec: dict) -> int:
    """train.nproc_per_node of a spec as stored (JSON); 1 when absent."""
    return int((spec.get("train") or {}).get("nproc_per_node", 1))


def under_torchrun(env=os.environ) -> bool:
    """Whether this process is one of a torchrun's processes."""
    return "WORLD_SIZE" in env


def env_rank(env=os.environ) -> int:
    """This process's global rank under torchrun (0 outside it)."""
    return int(env.get("RANK", 0))


def exit_process(code: int) -> None:
    """End this process with `code`. A torchrun process skips the interpreter's teardown, where gloo's
    threads can still abort it (SIGABRT) after a clean run, which torchrun would take for a failure."""
    if not under_torchrun():
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def child_env() -> dict:
    """This environment with the source folder importable (the package may not be installed)."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(SOURCE_ROOT) + (os.pathsep + path if path else "")}


def torchrun_command(nproc: int, module_args: list[str], nodes: Nodes = ONE_NODE) -> list[str]:
    """`python -m torch.distributed.run ... -m MODULE ARGS`: nproc processes per node running a module."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    if nodes.nnodes == 1:
        command.append("--standalone")  # a rendezvous of its own on a free local port
    else:
        command += [f"--nnodes={nodes.nnodes}", f"--rdzv-backend={nodes.rdzv_backend}",
                    f"--rdzv-endpoint={nodes.rdzv_endpoint}"]
        command += [f"--node-rank={nodes.node_rank}"] if nodes.node_rank is not None else []
        command += [f"--rdzv-id={nodes.rdzv_id}"] if nodes.rdzv_id else []
    return command + ["-m", *module_args]


def check_devices(spec: RunSpec, nodes: Nodes) -> None:
    """Refuse before any process starts what every rank would refuse: e.g. more processes than this node's GPUs."""
    from core.train.device import resolve_device  # noqa: PLC0415 - imports torch
    from core.train.distributed import Dist  # noqa: PLC0415

    nproc = spec.train.nproc_per_node
    resolve_device(spec.train.device, Dist(0, nproc * nodes.nnodes, 0, nproc))


def relaunch(argv: list[str], nproc: int, nodes: Nodes) -> int:
    """Run this `slmrec` command (its arguments `argv`) again under torchrun and wait; torchrun's exit code."""
    child = subprocess.Popen(torchrun_command(nproc, ["core.cli", *argv], nodes), env=child_env())
    while True:
        try:
            code = child.wait()
            break
        except KeyboardInterrupt:  # Ctrl-C reached torchrun and every process too: they end the run
            continue
    if code:
        print(f"error: the run's processes ended with exit code {code}; see the messages above and the run's "
              "log.txt", file=sys.stderr)
    return code


def run_ranks(paths, spec: RunSpec, echo: bool) -> list[str] | None:
    """This process's part of `slmrec run` under torchrun: rank 0 plans and claims, all ranks execute.

    Returns the run ids on rank 0 and None on the others. After a run that did not end done, rank 0
    takes part in no further collective: it returns, and torchrun stops the other ranks.
    """
    from core import pipeline  # noqa: PLC0415 - torch loads here
    from core.commands import UserError  # noqa: PLC0415
    from core.train import distributed  # noqa: PLC0415
    from core.train.loop import Cancelled  # noqa: PLC0415

    dist = distributed.from_env()
    with distributed.process_group(dist, even_alone=True):
        try:
            planned = " ".join(pipeline.plan(paths, spec)) if dist.is_main else ""
            run_ids = distributed.text_from_main(planned, dist).split()
            for run_id in run_ids:
                action = distributed.text_from_main(_claim(paths, run_id) if dist.is_main else "", dist)
                if action == "busy":
                    raise UserError(f"run {run_id} is held by a worker or another `slmrec run`; a run of several "
                                    "processes cannot wait for it: run this again when it has ended")
                if action == "stop":
                    break
                if action == "run" and pipeline.execute(paths, run_id, echo=echo, dist=dist)["status"] != "done":
                    break
        except BaseException as exc:
            if dist.is_main:
                raise
            expected = (ConfigError, UserError, Cancelled, KeyboardInterrupt)  # rank 0 reports these itself
            distributed.leave_after_failure(dist, exc, quiet=isinstance(exc, expected))
    return run_ids if dist.is_main else None


def _claim(paths, run_id: str) -> str:
    """Rank 0's verdict on a planned run: "skip" (done), "run" (claimed), "stop" (it ended), "busy" (held)."""
    from core.store import runs as run_store  # noqa: PLC0415

    if run_store.read_state(paths.runs, run_id)["status"] == "done":
        return "skip"
    if not run_store.claim(paths.runs, run_id, "foreground"):  # so no worker starts it as well
        return "busy"
    return "run" if run_store.read_state(paths.runs, run_id)["status"] == "queued" else "stop"
