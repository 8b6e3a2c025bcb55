"""`make bench` / `slmrec bench`: every benchmark in one run, one JSON object per line.

On a GPU: the issue's shape (batch 256, 30 prompt tokens + 50 items, 30 vs 4 layers, bf16
autocast), inference at the evaluation batch (1024). On CPU: the same code at a small batch, so the
ratios are still meaningful.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from bench import host, llm, store
from core.config import TrainConfig, eval_batch
from core.train.device import resolve_device


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slmrec bench")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--only", choices=["llm", "host", "store", "data", "app", "pipeline"], help="run one group only")
    parser.add_argument("--batch", type=int, help="override the batch size")
    parser.add_argument("--eval-batch", type=int, help="override the inference batch size")
    parser.add_argument("--compile", choices=["auto", "on", "off", "both"], default="auto",
                        help="torch.compile the backbones (auto: eager then compiled on CUDA, eager on CPU)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    batch = args.batch or (256 if gpu else 8)
    # Inference at the batch evaluation uses (train.eval_batch_size auto) on a GPU; the CPU keeps the
    # training batch, where a larger one gains little and would take minutes per teacher batch.
    shape = llm.Shape(batch=batch, steps=10 if gpu else 3,
                      eval_batch=args.eval_batch or eval_batch(TrainConfig(batch_size=batch), device.type))
    emit = lambda row: print(json.dumps(row), flush=True)  # noqa: E731
    emit({"bench": "environment", "device": str(device), "torch": torch.__version__,
          "threads": torch.get_num_threads(), "gpu": torch.cuda.get_device_name(device) if gpu else None})
    if args.only in (None, "llm"):
        modes = {"auto": [False, True] if gpu else [False], "on": [True], "off": [False], "both": [False, True]}
        for compiled in modes[args.compile]:
            for row in llm.run(device, shape, teacher_depth=30, student_depth=4, blocks=2, compiled=compiled):
                emit(row)
    if args.only in (None, "host"):
        for row in host.run():
            emit(row)
    if args.only in (None, "store"):
        emit(store.query_latency())
    if args.only in (None, "data"):
        emit(store.data_pipeline())
    if args.only in (None, "app"):
        emit(app_pages())
    if args.only in (None, "pipeline"):
        emit(cpu_quick_pipeline(device))
    return 0


def _child_json(module: str, *args: str) -> dict:
    """The JSON document `python -m module args` prints, run in its own process."""
    out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout)


def cpu_quick_pipeline(device: torch.device) -> dict:
    """The cpu-quick pipeline end to end (bench/pipeline.py, in its own process and project)."""
    return _child_json("bench.pipeline", "--device", str(device))


def app_pages() -> dict:
    """Page render times on 200 runs and 1M metric rows (bench/app_pages.py, in its own process:
    it points SLMREC_ROOT at a temporary store)."""
    return {"bench": "app_pages", **_child_json("bench.app_pages")}


if __name__ == "__main__":
    sys.exit(main())
