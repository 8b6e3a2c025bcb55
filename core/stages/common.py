"""What every trained stage shares: evaluation rows, checkpoints, resume and the loop's hooks.

A stage builds its model and `loss_fn`, then calls `fit`, which runs the shared loop with hooks
that write validation ranks and metrics, keep the best trainable weights (by validation NDCG@10,
full ranking), save resumable state, log every loss term and report progress.
Checkpoint folder (checkpoints/<run_id>/): model.safetensors + manifest.json hold the best
weights; the resume files (core.store.checkpoints) hold the latest resumable state. In a run of
several processes only rank 0 saves; every rank reads the resume state, and the best weights
reach the other ranks from rank 0 over the process group, not through the disk.
"""

from __future__ import annotations

from typing import Callable

import torch

from core.config import RunSpec, eval_batch, to_dict
from core.eval.evaluate import SplitRanks
from core.eval.records import metric_rows, metric_values, rank_rows
from core.models.weights import upgrade_trainable
from core.store import checkpoints
from core.stages.context import RunContext
from core.runtime import distributed
from core.train import loop, resume
from core.runtime.device import environment

SELECTION_METRIC = "NDCG@10"


def trainable_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that training changes: all that a checkpoint needs besides its parents."""
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy saved trainable weights into `model`; names must match exactly, once weights saved with
    Hugging Face layer names (runs before the lean decoder) are mapped to the decoder's."""
    weights = upgrade_trainable(weights)
    params = dict(model.named_parameters())
    expected = {n for n, p in params.items() if p.requires_grad}
    if set(weights) != expected:
        missing, extra = sorted(expected - set(weights)), sorted(set(weights) - expected)
        raise ValueError(f"checkpoint does not fit the model: missing {missing[:5]}, unexpected {extra[:5]}")
    wrong = [f"{name} {tuple(tensor.shape)} (the model's is {tuple(params[name].shape)})"
             for name, tensor in weights.items() if tensor.shape != params[name].shape]
    if wrong:
        raise ValueError(f"checkpoint does not fit the model: shapes differ for {', '.join(wrong[:3])}; "
                         "was it saved with other backbone settings (lora_r, depth, base)?")
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))


def write_evaluation(ctx: RunContext, step: int, model_name: str, layer: int | None, result: SplitRanks) -> dict:
    """Store one evaluation's ranks and metrics; return {protocol/metric: value}."""
    ctx.events.append("ranks", rank_rows(ctx.run_id, step, model_name, layer, result))
    rows = metric_rows(ctx.run_id, step, model_name, layer, result)
    ctx.events.append("metrics", rows)
    ctx.events.flush()
    return metric_values(rows)


def manifest(spec: RunSpec, ctx: RunContext, model: torch.nn.Module, **extra) -> dict:
    """Settings, versions, device, seed and parameter counts for a checkpoint."""
    params = list(model.parameters())
    return {"run_id": ctx.run_id, "spec": to_dict(spec), "seed": spec.train.seed, "environment": environment(ctx.device),
            "processes": ctx.dist.world_size,
            "eval_batch_size": eval_batch(spec.train, ctx.device.type),  # resolved (0: auto)
            "parameters": {"total": sum(p.numel() for p in params),
                           "trainable": sum(p.numel() for p in params if p.requires_grad)}, **extra}


def load_resume(ctx: RunContext) -> tuple[dict, dict] | None:
    """The latest readable resumable (loop state, weights) of this run, or None on a fresh start.

    Every rank must read the same state. An unreadable newest state is skipped for the previous one
    (both logged); rank 0 then forgets what was skipped, so no later save keeps it as a fallback.
    """
    saved = checkpoints.read_resume_state(ctx.checkpoint_dir, log=ctx.log)
    check_same_resume(ctx, int(saved.state["step"]) if saved else -1)
    if ctx.dist.is_main:
        checkpoints.settle_resume_state(ctx.checkpoint_dir, saved)
    if saved is None:
        return None
    state, weights = resume.unpack(saved.tensors, saved.state)
    state["events_seq"] = saved.state.get("events_seq")
    return state, weights


def fit(ctx: RunContext, spec: RunSpec, model: torch.nn.Module, loss_fn: loop.LossFn, n_examples: int,
        evaluate_valid: Callable[[], SplitRanks], model_name: str, extra_manifest: dict | None = None) -> loop.LoopResult:
    """Train with the shared loop; evaluation, checkpoints and logs go to the run's store."""
    def evaluate(step: int, epoch: int) -> float:
        ctx.set_state(phase="evaluate")
        model.eval()
        values = write_evaluation(ctx, step, model_name, None, evaluate_valid())
        ctx.log(f"step {step} epoch {epoch} valid full NDCG@10={values['full/NDCG@10']:.4f} "
                f"HR@10={values['full/HR@10']:.4f}")
        ctx.set_state(phase="train")
        return values[f"full/{SELECTION_METRIC}"]

    def save_best(step: int) -> None:
        if not ctx.dist.is_main:
            return
        info = manifest(spec, ctx, model, best_step=step, **(extra_manifest or {}))
        checkpoints.save_checkpoint(ctx.checkpoint_dir, trainable_weights(model), info)

    def save_resume(state: dict) -> None:
        if not ctx.dist.is_main:
            return
        ctx.events.flush()  # rows up to this state are on disk before the state that covers them
        tensors, meta = resume.pack(state, trainable_weights(model))
        meta["events_seq"] = ctx.events.next_seq
        checkpoints.save_resume_state(ctx.checkpoint_dir, tensors, meta)

    def on_log(step: int, epoch: float, terms: dict[str, float]) -> None:
        ctx.events.append("losses", [{"run_id": ctx.run_id, "step": step, "epoch": epoch, "name": name,
                                      "value": value} for name, value in terms.items()])

    def on_progress(step: int, total: int, samples_per_s: float) -> None:
        ctx.progress("train", step / total, samples_per_s)

    hooks = loop.Hooks(evaluate, save_best, save_resume, on_log, on_progress, ctx.cancel_requested)
    resumed = load_resume(ctx)
    if resumed is not None:
        state, weights = resumed
        refuse_pre_decoder_resume(ctx, weights)
        load_trainable_weights(model, weights)
        ctx.events.truncate_after(state["step"], void_from_seq=state.pop("events_seq"))
        ctx.log(f"resuming from step {state['step']}")
    result = loop.train(model, loss_fn, n_examples, spec.train, ctx.device, hooks, resumed[0] if resumed else None,
                        ctx.dist)
    load_best(ctx, model)
    model.eval()
    return result


def refuse_pre_decoder_resume(ctx: RunContext, weights: dict[str, torch.Tensor]) -> None:
    """A resume state saved with transformers' or peft's layer names (before the lean decoder) holds its
    optimizer moments in the old parameter order, which the fused projections do not share: resuming
    would pair moments with the wrong weights, so it is refused (finished runs load; see upgrade_trainable)."""
    if set(upgrade_trainable(weights)) != set(weights):
        raise RuntimeError(
            f"run {ctx.run_id}: its resume state ({ctx.checkpoint_dir}) was saved before the decoder of "
            "core/models/decoder.py, with the old layer names; its optimizer state cannot be mapped onto the "
            "fused projections, so it cannot resume. Start it again: the same `slmrec run` (or Launch) "
            "creates a new run with the same settings")


def load_best(ctx: RunContext, model: torch.nn.Module) -> None:
    """Load the best checkpoint's weights; other ranks get them from rank 0, which alone saved them."""
    if ctx.dist.is_main:
        best, _ = checkpoints.load_checkpoint(ctx.checkpoint_dir)
        load_trainable_weights(model, best)
    distributed.broadcast_params([p for p in model.parameters() if p.requires_grad], ctx.dist)


def check_same_resume(ctx: RunContext, step: int) -> None:
    """Refuse to go on when the ranks read different resume states (-1: none), e.g. a stale copy on one node."""
    if not distributed.same_on_all_ranks(step, ctx.dist):
        raise RuntimeError(f"rank {ctx.dist.rank} read the resume state of step {step} but another rank read "
                           f"another one; checkpoints/ must be one folder that every node sees, up to date")
