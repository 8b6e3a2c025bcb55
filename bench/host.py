"""The host's share of a step: time per step at negligible compute, and operators per step.

On a GPU a small model's step is bound by the host (Python, the PyTorch dispatcher and one kernel
launch per operator) long before its matrix products are: profiled on the H200, an eager teacher
step took 293 ms of host time for 100 ms of GPU work. This benchmark prices that host work on any
machine: the same code paths as `bench.llm` (training through the shared loop, full-ranking
inference as evaluation runs it) on a model with SmolLM2's structure (30 layers, 9 heads, 3 KV
heads, LoRA on the MLP) but hidden size 18 and batch 2 on one thread, so almost all of the time is
host time. It runs as a CUDA run does: bf16 autocast, frozen weights in bf16, and (for the operator
count) fused AdamW. `ops` counts the operators dispatched, at most one kernel launch each on a GPU;
`computing_ops` leaves out the views, which launch none. On CUDA `F.rms_norm` is one fused
operator, where this CPU count sees its decomposition (6 operators, 8 in bf16). `max_per_s_at_256` is batch 256 over the measured time: what a run at the
issue's batch could reach if its host were this fast per operator and the device free. Teacher and
student are timed in interleaved rounds (bench/repeat.py): each row is the median and range of
`repeats` rounds; the operators are counted once, after them.

    python -m bench.host        # or: slmrec bench --only host
"""

from __future__ import annotations

import json
from functools import partial

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench import llm
from bench.repeat import interleaved, summary
from core.stages.llm import user_vectors_in
from core.runtime.device import autocast

DIMS = dict(llm.SMOLLM2_SHAPE, hidden_size=18, intermediate_size=16)
SHAPE = llm.Shape(batch=2, steps=20)
PRECISION = "bf16"  # as "auto" is on CUDA: the casts autocast adds are operators too


class _OperatorCount(TorchDispatchMode):
    """Counts the operators dispatched while active (forward, backward and optimizer alike), and
    apart those that compute: a view (t, transpose, slice, detach, ...) launches no kernel anywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.computing = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        self.computing += not func.is_view
        return func(*args, **(kwargs or {}))


def _train_step(model, data, params, opt) -> None:
    with autocast(torch.device("cpu"), PRECISION):
        loss = model.loss(data.inputs[:SHAPE.batch], data.targets[:SHAPE.batch])
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


def training_rate(model, data, device) -> float:
    """Samples/s of the shared loop, every step timed (bench/repeat.py warms the model up first)."""
    return llm.timed_training(model, llm.plain_loss(model, data), SHAPE.steps * SHAPE.batch, SHAPE, device,
                              PRECISION, warm_up=False)


def training_ops(model, data) -> _OperatorCount:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, fused=True)  # as on CUDA: one launch for every parameter
    with _OperatorCount() as ops:
        _train_step(model, data, params, opt)
    return ops


def inference_rate(model, data, device) -> float:
    return llm.inference_users_per_s(model, data, SHAPE, device, PRECISION)


@torch.no_grad()
def inference_ops(model, data) -> _OperatorCount:
    vectors, items, targets = user_vectors_in(model, PRECISION), data.inputs[:SHAPE.batch], data.targets[:SHAPE.batch]
    with _OperatorCount() as ops:
        llm.rank_batch(model, vectors, items, targets)
    return ops


# what -> (rate, operator count, unit of one dispatch)
MEASURES = {"train": (training_rate, training_ops, "step"), "inference": (inference_rate, inference_ops, "batch")}


def _row(name: str, depth: int, what: str, rates: list[float], ops: _OperatorCount) -> dict:
    unit = MEASURES[what][2]
    ms = summary([1e3 * SHAPE.batch / rate for rate in rates], f"ms_per_{unit}")
    return {"bench": name, "depth": depth, **ms, f"ops_per_{unit}": ops.count, f"computing_ops_per_{unit}": ops.computing,
            "max_per_s_at_256": 256 / ms[f"ms_per_{unit}"] * 1e3}


def run(teacher_depth: int = 30, student_depth: int = 4, repeats: int = 3) -> list[dict]:
    """The host floor of teacher and student training and inference, on the CPU: teacher and student
    interleaved over `repeats` rounds, each row their median and range."""
    device = torch.device("cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: a GPU run's host drives the device from one thread
    try:
        data = llm.examples(SHAPE, 2 * SHAPE.steps * SHAPE.batch, device)  # inference: 2 x the training steps
        cases = [(f"host_{role}_{what}", depth, what) for what in MEASURES
                 for role, depth in (("teacher", teacher_depth), ("student", student_depth))]
        models = {name: llm.recommender(depth, SHAPE, device, dims=DIMS, precision=PRECISION)
                  for name, depth, _ in cases}
        rates = interleaved({name: partial(MEASURES[what][0], models[name], data, device)
                             for name, _, what in cases}, repeats)
        rows = [_row(name, depth, what, rates[name], MEASURES[what][1](models[name], data))
                for name, depth, what in cases]
    finally:
        torch.set_num_threads(threads)
    for row in rows:
        row.update(hidden=DIMS["hidden_size"], batch=SHAPE.batch, tokens_per_sample=SHAPE.prompt_tokens + SHAPE.items)
    return rows


if __name__ == "__main__":
    for row in run():
        print(json.dumps(row), flush=True)
