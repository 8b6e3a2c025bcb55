"""`make bench` / `slmrec bench`: every benchmark in one run, one JSON object per line.

On a GPU: the issue's shape (batch 256, 30 prompt tokens + 50 items, 30 vs 4 layers, bf16
autocast), inference at the evaluation batch (1024). On CPU: the same code at a small batch, so the
ratios are still meaningful. The LLM and host measurements run teacher and student in interleaved
rounds (--repeats, default 3) after one warm-up call each; every row reports the median of its
rounds and their [min, max] range, so a ratio holds on a machine whose speed drifts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from core.config import TrainConfig, eval_batch

if TYPE_CHECKING:
    import torch

GROUPS = ("llm", "host", "compile", "store", "data", "app", "pipeline", "drop")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got '{text}'")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `python -m bench.run`, which `slmrec bench` shares: they are defined here only.
    Building the parser imports no torch, so `slmrec --help` stays fast."""
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default)")
    parser.add_argument("--only", choices=GROUPS, help="run one group only")
    parser.add_argument("--batch", type=_positive, help="override the batch size (default: 256 on a GPU, 8 on CPU)")
    parser.add_argument("--eval-batch", type=_positive, help="override the inference batch size")
    parser.add_argument("--compile", choices=["auto", "on", "off", "both", "graphs", "all"], default="auto",
                        help="torch.compile the backbones (auto: eager then compiled on CUDA, eager on CPU; "
                             "both: eager and compiled; graphs: compiled and replayed as CUDA graphs; all: the three)")
    parser.add_argument("--repeats", type=_positive, default=3,
                        help="interleaved teacher/student rounds of the llm and host measurements; "
                             "each row reports their median and range (default 3)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.run [OPTIONS]`."""
    parser = add_arguments(argparse.ArgumentParser(prog="python -m bench.run", description=__doc__))
    return run_all(parser.parse_args(argv))


def run_all(args: argparse.Namespace) -> int:
    """Every benchmark `args` asks for, one JSON object per line on stdout."""
    # here, not at the top: building the parser must not import torch
    from bench import compile_time, host, llm, store  # noqa: PLC0415
    from core.runtime.device import resolve_device  # noqa: PLC0415

    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    batch = args.batch or (256 if gpu else 8)
    # Inference at the batch evaluation uses (train.eval_batch_size auto) on a GPU; the CPU keeps the
    # training batch, where a larger one gains little and would take minutes per teacher batch.
    shape = llm.Shape(batch=batch, steps=10 if gpu else 3,
                      eval_batch=args.eval_batch or eval_batch(TrainConfig(batch_size=batch), device.type))
    emit = lambda row: print(json.dumps(row), flush=True)  # noqa: E731
    emit({"bench": "environment", **machine(device), "repeats": args.repeats})
    if args.only in (None, "llm"):
        modes = {"auto": [False, True] if gpu else [False], "on": [True], "off": [False], "both": [False, True],
                 "graphs": ["graphs"], "all": [False, True, "graphs"]}
        for compiled in modes[args.compile]:
            for row in llm.run(device, shape, teacher_depth=30, student_depth=4, blocks=2, compiled=compiled,
                               repeats=args.repeats):
                emit(row)
    if args.only in (None, "host"):
        for row in host.run(repeats=args.repeats):
            emit(row)
    if args.only in (None, "compile"):  # a fresh process and empty caches per depth
        for row in compile_time.run(str(device), "reduce-overhead" if args.compile == "graphs" else "default",
                                    args.batch):
            emit(row)
    if args.only in (None, "store"):
        emit(store.query_latency())
    if args.only in (None, "data"):
        emit(store.data_pipeline())
    if args.only in (None, "app"):
        emit(app_pages())
    if args.only in (None, "pipeline"):
        emit(cpu_quick_pipeline(device))
    if args.only in (None, "drop"):
        emit(drop_layers(device))
    return 0


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what `platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> dict:
    """What the figures were measured on, and how busy it was when they started."""
    import torch  # noqa: PLC0415

    gpu = device.type == "cuda"
    return {"device": str(device), "cpu": cpu_model(), "cores": os.cpu_count(),
            "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "gpu": torch.cuda.get_device_name(device) if gpu else None, "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def _child_json(module: str, *args: str) -> dict:
    """The JSON document `python -m module args` prints, run in its own process."""
    out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout)


def cpu_quick_pipeline(device: torch.device) -> dict:
    """The cpu-quick pipeline end to end (bench/pipeline.py, in its own process and project)."""
    return _child_json("bench.pipeline", "--device", str(device))


def drop_layers(device: torch.device) -> dict:
    """One drop-layer evaluation of the 8-layer ml-100k teacher (bench/drop.py, in its own process and project)."""
    return _child_json("bench.drop", "--device", str(device))


def app_pages() -> dict:
    """Page render times on 200 runs and 1M metric rows (bench/app_pages.py, in its own process:
    it points SLMREC_ROOT at a temporary store)."""
    return {"bench": "app_pages", **_child_json("bench.app_pages")}


if __name__ == "__main__":
    sys.exit(main())
