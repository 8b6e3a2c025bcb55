"""The host's share of a step: time per step at negligible compute, and operators per step.

On a GPU a small model's step is bound by the host (Python, the PyTorch dispatcher and one kernel
launch per operator) long before its matrix products are: profiled on the H200, an eager teacher
step took 293 ms of host time for 100 ms of GPU work. This benchmark prices that host work on any
machine: the same code paths as `bench.llm` (training through the shared loop, full-ranking
inference as evaluation runs it) on a model with SmolLM2's structure (30 layers, 9 heads, 3 KV
heads, LoRA on the MLP) but hidden size 18 and batch 2 on one thread, so almost all of the time is
host time. It runs as a CUDA run does: bf16 autocast, frozen weights in bf16, and (for the operator
count) fused AdamW. `ops` counts the operators dispatched, at most one kernel launch each on a GPU
(views launch none). `max_per_s_at_256` is batch 256 over the measured time: what a run at the
issue's batch could reach if its host were this fast per operator and the device free.

    python -m bench.host        # or: slmrec bench --only host
"""

from __future__ import annotations

import json

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench import llm
from core.stages.llm import user_vectors_in
from core.train.device import autocast

DIMS = dict(llm.SMOLLM2_SHAPE, hidden_size=18, intermediate_size=16)
SHAPE = llm.Shape(batch=2, steps=20)
PRECISION = "bf16"  # as "auto" is on CUDA: the casts autocast adds are operators too


class _OperatorCount(TorchDispatchMode):
    """Counts the operators dispatched while active (forward, backward and optimizer alike)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def _train_step(model, data, params, opt) -> None:
    with autocast(torch.device("cpu"), PRECISION):
        loss = model.loss(data.inputs[:SHAPE.batch], data.targets[:SHAPE.batch])
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


def training(depth: int, data, device) -> dict:
    model = llm.recommender(depth, SHAPE, device, dims=DIMS, precision=PRECISION)
    n = 2 * SHAPE.steps * SHAPE.batch
    rate = llm.timed_training(model, llm.plain_loss(model, data), n, SHAPE, device, PRECISION)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, fused=True)  # as on CUDA: one launch for every parameter
    with _OperatorCount() as ops:
        _train_step(model, data, params, opt)
    ms = 1e3 * SHAPE.batch / rate
    return {"ms_per_step": ms, "ops_per_step": ops.count, "max_per_s_at_256": 256 / ms * 1e3}


@torch.no_grad()
def inference(depth: int, data, device) -> dict:
    model = llm.recommender(depth, SHAPE, device, dims=DIMS, precision=PRECISION)
    ms = 1e3 * SHAPE.batch / llm.inference_users_per_s(model, data, SHAPE, device, PRECISION)
    vectors, items, targets = user_vectors_in(model, PRECISION), data.inputs[:SHAPE.batch], data.targets[:SHAPE.batch]
    with _OperatorCount() as ops:
        llm.rank_batch(model, vectors, items, targets)
    return {"ms_per_batch": ms, "ops_per_batch": ops.count, "max_per_s_at_256": 256 / ms * 1e3}


def run(teacher_depth: int = 30, student_depth: int = 4) -> list[dict]:
    """The host floor of teacher and student training and inference, on the CPU."""
    device = torch.device("cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: a GPU run's host drives the device from one thread
    try:
        data = llm.examples(SHAPE, (2 * SHAPE.steps + 2) * SHAPE.batch, device)  # inference: 2 warm-up batches more
        rows = [{"bench": f"host_{role}_{what}", "depth": depth, **measure(depth, data, device)}
                for what, measure in (("train", training), ("inference", inference))
                for role, depth in (("teacher", teacher_depth), ("student", student_depth))]
    finally:
        torch.set_num_threads(threads)
    for row in rows:
        row.update(hidden=DIMS["hidden_size"], batch=SHAPE.batch, tokens_per_sample=SHAPE.prompt_tokens + SHAPE.items)
    return rows


if __name__ == "__main__":
    for row in run():
        print(json.dumps(row), flush=True)
