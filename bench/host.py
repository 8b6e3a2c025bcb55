"""The host's share of a step: time per step at negligible compute, and operators per step.

On a GPU a small model's step is bound by the host (Python, the PyTorch dispatcher and one kernel
launch per operator) long before its matrix products are: profiled on the H200, an eager teacher
step took 293 ms of host time for 100 ms of GPU work. This benchmark prices that host work on any
machine: the same code paths as `bench.llm` (training through the shared loop, full-ranking
inference as evaluation runs it) on a model with SmolLM2's structure (30 layers, 9 heads, 3 KV
heads, LoRA on the MLP) but hidden size 18 and batch 2 on one thread, so that the time is mostly
host time. It runs as a CUDA run does: bf16 autocast, frozen weights in bf16, and (for the operator
count) fused AdamW. `ops` counts the operators dispatched, at most one kernel launch each on a GPU;
`computing_ops` leaves out the views, which launch none. `max_per_s_at_256` is batch 256 over the
measured time: what a run at that batch could reach if its host were this fast per operator and the
device free. Teacher and student are timed in interleaved rounds (bench/repeat.py): each row is the
median and range of `repeats` rounds; the operators are counted once, after them, in a steady-state
step (the optimizer's state already made, as in every step of a run but its first).

Two CPU costs that a GPU's host does not pay are measured apart, so the figures can be read for a GPU:
- `ops_in_cpu_rms_norm_per_step`: the operators of F.rms_norm's CPU decomposition (9 forward, 16
  backward in bf16), exactly attributed: those dispatched inside each call and by the autograd
  nodes it made. `ops_with_fused_rms_norm_per_step` counts each call as CUDA runs it: one fused
  operator each way.
- `attention_ms_per_step`: the self time of the attention kernels, from a profiled step. At head size
  2, the CPU's flash attention costs about 0.1 ms forward and 0.8 ms backward per call (its fixed
  per-block work in bf16): over half of a teacher step here, and one kernel launch on a GPU.
  `max_per_s_at_256_less_attention` leaves that kernel time out; the matrix products' CPU time stays in.

    python -m bench.host        # or: slmrec bench --only host
"""

from __future__ import annotations

import json
from functools import partial

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

from bench import llm
from bench.repeat import interleaved, summary
from core.stages.llm import user_vectors_in
from core.runtime.device import autocast

DIMS = dict(llm.SMOLLM2_SHAPE, hidden_size=18, intermediate_size=16)
SHAPE = llm.Shape(batch=2, steps=20)
PRECISION = "bf16"  # as "auto" is on CUDA: the casts autocast adds are operators too


class _NormCalls(TorchFunctionMode):
    """Notes each F.rms_norm call and the autograd nodes it made, so that the operators of its CPU
    decomposition can be told apart: forward while `inside`, backward when run by one of `nodes`."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.inside = False
        self.nodes: set = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.rms_norm:
            return func(*args, **kwargs)
        self.calls += 1
        self.inside = True
        try:
            out = func(*args, **kwargs)
        finally:
            self.inside = False
        self.nodes |= _nodes_between(out, [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)])
        return out


def _nodes_between(out: torch.Tensor, inputs: list[torch.Tensor]) -> set:
    """The autograd nodes from `out` back to, not including, those of `inputs` and the leaves."""
    stop = {t.grad_fn for t in inputs if t.grad_fn is not None}
    found, todo = set(), [out.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in stop or node in found or type(node).__name__ == "AccumulateGrad":
            continue
        found.add(node)
        todo.extend(next_node for next_node, _ in node.next_functions)
    return found


class _OperatorCount(TorchDispatchMode):
    """Counts the operators dispatched while active (forward, backward and optimizer alike); apart,
    those that compute (a view: t, transpose, slice, detach, ... launches no kernel anywhere) and,
    given `norms`, those of F.rms_norm's decomposition."""

    def __init__(self, norms: _NormCalls | None = None) -> None:
        super().__init__()
        self.count = 0
        self.computing = 0
        self.in_rms_norm = 0
        self.norms = norms

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        self.computing += not func.is_view
        if self.norms is not None:
            self.in_rms_norm += self.norms.inside or torch._C._current_autograd_node() in self.norms.nodes
        return func(*args, **(kwargs or {}))


class _Counts:
    """The operators of one step or batch (`ops`) and the F.rms_norm calls among them (`norms`)."""

    def __init__(self) -> None:
        self.norms = _NormCalls()
        self.ops = _OperatorCount(self.norms)

    def __enter__(self) -> _Counts:
        self.norms.__enter__()
        self.ops.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.ops.__exit__(*exc)
        self.norms.__exit__(*exc)


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


def training_step(model, data):
    """One training step per call, after one uncounted step that makes the optimizer's state."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, fused=True)  # as on CUDA: one launch for every parameter
    _train_step(model, data, params, opt)
    return partial(_train_step, model, data, params, opt)


def inference_rate(model, data, device) -> float:
    return llm.inference_users_per_s(model, data, SHAPE, device, PRECISION)


def inference_batch(model, data):
    """One batch's full ranking per call, as evaluation runs it."""
    vectors, items, targets = user_vectors_in(model, PRECISION), data.inputs[:SHAPE.batch], data.targets[:SHAPE.batch]
    return torch.no_grad()(partial(llm.rank_batch, model, vectors, items, targets))


def operators(one) -> _Counts:
    """The operators of one call of `one` (a step or a batch)."""
    with _Counts() as counts:
        one()
    return counts


def attention_ms(one, calls: int = 3) -> float:
    """Milliseconds per call of `one` spent in the attention kernels themselves (profiler self time of
    the backends' operators, not of the scaled_dot_product_attention call that picks one)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            one()
    return sum(e.self_cpu_time_total for e in prof.key_averages() if e.key.startswith("aten::_scaled_dot_product")) / 1e3 / calls


# what -> (rate, one step or batch, unit of one dispatch, fused F.rms_norm operators per call)
MEASURES = {"train": (training_rate, training_step, "step", 2), "inference": (inference_rate, inference_batch, "batch", 1)}


def _row(name: str, depth: int, what: str, rates: list[float], one) -> dict:
    _, _, unit, fused_norm = MEASURES[what]
    ms = summary([1e3 * SHAPE.batch / rate for rate in rates], f"ms_per_{unit}")
    counts, attention = operators(one), attention_ms(one)
    ops, norm_calls = counts.ops, counts.norms.calls
    return {"bench": name, "depth": depth, **ms, f"ops_per_{unit}": ops.count, f"computing_ops_per_{unit}": ops.computing,
            f"rms_norm_calls_per_{unit}": norm_calls, f"ops_in_cpu_rms_norm_per_{unit}": ops.in_rms_norm,
            f"ops_with_fused_rms_norm_per_{unit}": ops.count - ops.in_rms_norm + fused_norm * norm_calls,
            "max_per_s_at_256": 256 / ms[f"ms_per_{unit}"] * 1e3, f"attention_ms_per_{unit}": attention,
            "max_per_s_at_256_less_attention": 256 / (ms[f"ms_per_{unit}"] - attention) * 1e3
            if ms[f"ms_per_{unit}"] > attention else None}  # None: the two measurements disagree


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
                             for name, _, what in cases}, repeats).values
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
