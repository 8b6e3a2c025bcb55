"""Cold compile time of the layer stack: what `train.compile on` (or `graphs`) costs a run before its
first step, for the teacher (30 layers) and the student (4) on a SmolLM2-shaped model.

Each depth is measured in a process of its own with an empty inductor (and Triton) cache, as a run
on a fresh machine meets it. `*_compile_s` is the first call less a later one: the training step's
graph (forward and backward) and the no-grad full-ranking batch's are compiled apart. The layers
below the top are one nested region (Decoder.compile_stack), so the time grows little with depth.

    python -m bench.compile_time [--device cpu] [--mode default|reduce-overhead]   # or: slmrec bench --only compile
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench import llm
from core.runtime.device import autocast, resolve_device, uses_bf16
from core.stages.llm import user_vectors_in

ROOT = Path(__file__).resolve().parents[1]
DEPTHS = {"teacher": 30, "student": 4}


def measure(depth: int, device: str, mode: str = "default", batch: int = 2, backend: str = "inductor",
            dims: dict | None = None) -> dict:
    """Seconds of the first and a later training step and inference batch of a compiled stack of
    `depth` layers, in this process (its caches as they are: run() gives each depth a fresh one)."""
    target = resolve_device(device)
    shape = llm.Shape(batch=batch)
    model = llm.recommender(depth, shape, target, dims=dims)
    model.backbone.compile_stack(backend=backend, mode=mode)
    data = llm.examples(shape, 4 * batch, target)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params)

    def train_step() -> None:
        with autocast(target, "auto"):
            loss = model.loss(data.inputs[:batch], data.targets[:batch])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def inference_batch() -> None:  # as evaluation ranks a batch, in the run's precision
        with torch.no_grad():
            llm.rank_batch(model, user_vectors_in(model, "auto"), data.inputs[:batch], data.targets[:batch])

    train = _first_and_later(train_step, target)
    model.eval()
    inference = _first_and_later(inference_batch, target)
    return {"bench": "compile_time", "depth": depth, "device": str(target), "mode": mode, "backend": backend,
            "batch": batch, "bf16": uses_bf16(target), "torch": torch.__version__,
            "train_first_step_s": train[0], "train_step_s": train[1], "train_compile_s": train[0] - train[1],
            "inference_first_batch_s": inference[0], "inference_batch_s": inference[1],
            "inference_compile_s": inference[0] - inference[1]}


def _first_and_later(call, device) -> tuple[float, float]:
    """Seconds of the first call of `call` and of its third (the second may still settle caches)."""
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        call()
        llm.sync(device)
        seconds.append(time.perf_counter() - start)
    return seconds[0], seconds[2]


def run(device: str = "cpu", mode: str = "default", batch: int | None = None, backend: str = "inductor",
        depths: dict[str, int] = DEPTHS) -> list[dict]:
    """One row per role, each measured in a fresh process with empty compile caches."""
    rows = []
    for role, depth in depths.items():
        with tempfile.TemporaryDirectory(prefix="slmrec-compile-") as cache:
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "TRITON_CACHE_DIR": str(Path(cache) / "triton")}
            argv = [sys.executable, "-m", "bench.compile_time", "--one", str(depth), "--device", device,
                    "--mode", mode, "--backend", backend, *(["--batch", str(batch)] if batch else [])]
            out = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT, env=env)
        rows.append({**json.loads(out.stdout.strip().splitlines()[-1]), "role": role})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compile_time", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default cpu)")
    parser.add_argument("--mode", default="default", choices=["default", "reduce-overhead"],
                        help="torch.compile mode; reduce-overhead replays the stack as CUDA graphs (CUDA only)")
    parser.add_argument("--batch", type=int, help="samples per step and users per batch (default: 256 on CUDA, 2)")
    parser.add_argument("--backend", default="inductor", help="inductor, or aot_eager: trace only, no kernels")
    parser.add_argument("--one", type=int, metavar="DEPTH", help=argparse.SUPPRESS)  # run()'s child process
    args = parser.parse_args(argv)
    batch = args.batch or (256 if args.device.startswith("cuda") else 2)
    if args.one:
        print(json.dumps(measure(args.one, args.device, args.mode, batch, args.backend)), flush=True)
        return 0
    for row in run(args.device, args.mode, batch, args.backend):
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
