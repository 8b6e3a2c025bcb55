"""Starting one run as several processes with torchrun (torch.distributed.run), for `slmrec run` and the worker.

`slmrec run STAGE ... --nproc-per-node N` (train.nproc_per_node) starts the same command again under
torchrun with N processes on this node (`relaunch`); with --nnodes M and a rendezvous endpoint,
the same command on each of M nodes makes one run of M x N processes. Each process then takes
its part in `core.jobs.foreground.run_ranks`. The worker starts a queued run whose spec asks for
N > 1 processes as `torchrun --standalone -m core.jobs.worker run-one` (`torchrun_command`).
Nothing here imports torch at import time: the worker loop uses it too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from core.config import RunSpec

SOURCE_ROOT = Path(__file__).resolve().parents[2]  # holds core/, for the children's import path


@dataclass(frozen=True)
class Nodes:
    """torchrun's options for a run over several nodes; one node needs none (a private rendezvous)."""

    nnodes: int = 1
    node_rank: int | None = None  # only the 'static' rendezvous needs it; c10d assigns ranks itself
    rdzv_backend: str = "c10d"
    rdzv_endpoint: str = ""  # host:port of the rendezvous, the same on every node
    rdzv_id: str = ""  # the job's id, the same on every node (torchrun's default when empty)


ONE_NODE = Nodes()


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
    from core.runtime.device import resolve_device  # noqa: PLC0415 - imports torch
    from core.runtime.distributed import Dist  # noqa: PLC0415

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
