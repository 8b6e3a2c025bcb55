"""The one training loop every stage uses (minGPT-style: it knows nothing about the model).

A stage hands it a `loss_fn(indices) -> (loss, terms)` over its own training examples and a set
of hooks (evaluate, save, log, progress, cancel). The loop owns the optimizer (AdamW), the cosine
schedule with linear warmup, gradient accumulation and clipping, bf16 autocast on CUDA, and the
resumable state: optimizer, scheduler, RNG and data position (epoch, batch). The example order of
an epoch comes from a generator seeded by (seed, epoch), so the position alone restores it.
Loss values are read back from the device only at logging intervals, never every step.
With several processes (`dist`), batches are global: each rank trains on its slice and the
gradients are summed over ranks before the step (core/runtime/distributed.py states the semantics).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from core.config import TrainConfig
from core.runtime import distributed
from core.runtime.device import autocast
from core.runtime.distributed import SINGLE, Dist

# loss_fn(indices of the examples, on the training device) -> (loss, loss terms to log)
LossFn = Callable[[torch.Tensor], "tuple[torch.Tensor, dict[str, torch.Tensor]]"]


class Cancelled(Exception):
    """The user asked the run to stop; the last checkpoint is kept."""


class NonFiniteLoss(RuntimeError):
    """A loss term became NaN or infinite; the message names the step and every term."""


@dataclass(frozen=True)
class Hooks:
    """What the loop calls back into; every hook is the stage's business."""

    evaluate: Callable[[int, int], float]  # (step, epoch) -> validation score, higher is better
    save_best: Callable[[int], None]  # step
    save_resume: Callable[[dict], None]  # the resume state (see `_resume_state`)
    on_log: Callable[[int, float, dict[str, float]], None]  # step, fractional epoch, loss terms
    on_progress: Callable[[int, int, float], None]  # step, total steps, samples/s
    should_stop: Callable[[], bool]


@dataclass(frozen=True)
class LoopResult:
    step: int
    best_score: float
    best_step: int
    train_seconds: float  # time in the loop, evaluations and checkpoints excluded
    samples: int
    stopped_early: bool


def cosine_with_warmup(optimizer, total_steps: int, warmup_steps: int):
    """Linear warmup to the base lr, then cosine decay to zero at total_steps."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def plan_steps(n_examples: int, cfg: TrainConfig) -> tuple[int, int]:
    """(optimizer steps per epoch, total optimizer steps) for a dataset size."""
    micro = math.ceil(n_examples / cfg.batch_size)
    per_epoch = math.ceil(micro / cfg.grad_accum)
    total = per_epoch * cfg.epochs
    return per_epoch, min(total, cfg.max_steps) if cfg.max_steps else total


def _epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=generator)


def _check_finite(step: int, terms: dict[str, float]) -> None:
    if not all(math.isfinite(v) for v in terms.values()):
        shown = ", ".join(f"{k}={v:.6g}" for k, v in terms.items())
        raise NonFiniteLoss(f"loss is not finite at step {step}: {shown}. Try a lower train.lr.")


def _resume_state(opt, sched, pos: dict) -> dict:
    return {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(), "python_rng": random.getstate(), **pos}


def _restore(opt, sched, state: dict) -> dict:
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state(state["numpy_rng"])
    random.setstate(state["python_rng"])
    return {k: state[k] for k in ("step", "epoch", "batch", "best_score", "best_step", "stale")}


def train(model: torch.nn.Module, loss_fn: LossFn, n_examples: int, cfg: TrainConfig,
          device: torch.device, hooks: Hooks, resume: dict | None = None, dist: Dist = SINGLE) -> LoopResult:
    """Train `model` on `n_examples` examples through `loss_fn`; evaluate and checkpoint via hooks."""
    params = [p for p in model.parameters() if p.requires_grad]
    distributed.check_batch(cfg.batch_size, dist)
    distributed.broadcast_params(params, dist)  # the all-reduced steps keep the ranks equal from here on
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=device.type == "cuda")
    per_epoch, total = plan_steps(n_examples, cfg)
    sched = cosine_with_warmup(opt, total, int(cfg.warmup_ratio * total))
    pos = {"step": 0, "epoch": 0, "batch": 0, "best_score": -math.inf, "best_step": -1, "stale": 0}
    if resume is not None:
        pos = _restore(opt, sched, resume)
    distributed.seed_rank_stream(cfg.seed, pos["step"], dist)
    start, samples, log_t, log_samples = time.perf_counter(), 0, time.perf_counter(), 0
    stopped_early, window = False, 0
    sums: dict[str, torch.Tensor] = {}
    while pos["epoch"] < cfg.epochs and pos["step"] < total and not stopped_early:
        # On the device once per epoch: indexing device data with host indices would copy them with a
        # blocking copy, a host-device sync every step that keeps the host from running ahead.
        order = _epoch_order(n_examples, cfg.seed, pos["epoch"]).to(device)
        batches = order.split(cfg.batch_size)
        model.train()
        while pos["batch"] < len(batches) and pos["step"] < total:
            group = batches[pos["batch"]: pos["batch"] + cfg.grad_accum]
            for indices in group:
                mine = distributed.shard(indices, dist)
                with autocast(device, cfg.precision):
                    # an empty slice (a last batch shorter than the world) still runs one example at
                    # weight 0, so every rank logs the same terms and reaches the same collectives
                    loss, terms = loss_fn(mine if len(mine) else indices[:1])
                (loss * len(mine) / sum(len(g) for g in group)).backward()
                for name, value in terms.items():  # this rank's part of the step's mean (exact for one process)
                    sums[name] = sums.get(name, 0.0) + value.detach().float() / len(group) * (len(mine) / len(indices))
                samples += len(indices)
            distributed.all_reduce_grads(params, dist)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            pos["step"] += 1
            pos["batch"] += len(group)
            window += 1
            if pos["step"] % cfg.log_every == 0 or pos["step"] == total:
                logged = {k: v / window for k, v in distributed.sum_over_ranks(sums, dist).items()}
                logged.update(lr=sched.get_last_lr()[0], grad_norm=float(grad_norm))
                _check_finite(pos["step"], logged)
                hooks.on_log(pos["step"], pos["epoch"] + pos["batch"] / len(batches), logged)
                now = time.perf_counter()
                hooks.on_progress(pos["step"], total, (samples - log_samples) / max(now - log_t, 1e-9))
                log_t, log_samples, sums, window = now, samples, {}, 0
            epoch_ends = pos["batch"] >= len(batches) or pos["step"] >= total  # saved after its evaluation
            if cfg.checkpoint_every and pos["step"] % cfg.checkpoint_every == 0 and not epoch_ends:
                hooks.save_resume(_resume_state(opt, sched, pos))
            if distributed.flag_from_main(dist.is_main and hooks.should_stop(), dist):
                hooks.save_resume(_resume_state(opt, sched, pos))
                raise Cancelled(f"cancelled at step {pos['step']}")
        finished_epoch = pos["batch"] >= len(batches)
        if finished_epoch:
            pos["epoch"], pos["batch"] = pos["epoch"] + 1, 0
        if (pos["epoch"] % cfg.eval_every == 0 and finished_epoch) or pos["step"] >= total:
            paused = time.perf_counter()
            stopped_early = _evaluate(pos, hooks, cfg)
            hooks.save_resume(_resume_state(opt, sched, pos))
            start += time.perf_counter() - paused
    seconds = time.perf_counter() - start
    return LoopResult(pos["step"], pos["best_score"], pos["best_step"], seconds, samples, stopped_early)


def _evaluate(pos: dict, hooks: Hooks, cfg: TrainConfig) -> bool:
    """Evaluate, keep the best checkpoint, and say whether patience has run out."""
    score = hooks.evaluate(pos["step"], pos["epoch"])
    if score > pos["best_score"]:
        pos.update(best_score=score, best_step=pos["step"], stale=0)
        hooks.save_best(pos["step"])
    else:
        pos["stale"] += 1
    return bool(cfg.patience) and pos["stale"] >= cfg.patience
