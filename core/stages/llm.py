"""The teacher and student stages: the E4SRec-style recommender over the first L LLM layers.

The teacher trains with plain cross-entropy. The student is the same model class over fewer
layers, trained with the SLMRec loss against a finished, frozen teacher (core/train/distill.py);
with every lambda at 0 it is plain E4SRec over its depth, the "no distillation" row.
Both save only trainable weights (LoRA, maps, adapters) with a manifest of parameter counts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch

from core.config import RunSpec, TrainConfig, eval_batch, from_dict
from core.data.examples import training_examples
from core.data.prepare import prepare
from core.eval.evaluate import eval_users, evaluate_split
from core.models.backbone import load_backbone
from core.models.llmrec import LLMRec
from core.stages.common import fit, load_trainable_weights, write_evaluation
from core.stages.context import RunContext
from core.store import checkpoints, runs as run_store
from core.runtime.device import autocast, compile_mode, frozen_weights_dtype, seed_everything
from core.runtime.distributed import SINGLE, Dist


class StageError(RuntimeError):
    """A stage cannot start: a parent run is missing or does not fit."""


@dataclass(frozen=True)
class Examples:
    inputs: torch.Tensor  # (n, max_len) left-padded item ids
    targets: torch.Tensor  # (n,)

    def __len__(self) -> int:
        return len(self.targets)


def load_item_table(ctx: RunContext, sasrec_run: str, n_items: int) -> torch.Tensor:
    """The frozen item table of a finished SASRec run, checked against the dataset's size."""
    if not sasrec_run:
        raise StageError("sasrec_run: an LLM stage needs a finished SASRec run (use `slmrec run teacher`, "
                         "which creates one, or pass --sasrec-run RUN_ID)")
    folder = ctx.paths.checkpoint_dir(sasrec_run)
    if not (folder / "model.safetensors").exists():
        raise StageError(f"sasrec_run: run '{sasrec_run}' has no checkpoint at {folder}; is it finished?")
    tensors, _ = checkpoints.load_checkpoint(folder, advice=f"run '{sasrec_run}' cannot be used: run that sasrec "
                                                           "again (or pick another finished one)")
    table = tensors.get("item_table")
    if table is None:
        raise StageError(f"sasrec_run: checkpoint of '{sasrec_run}' holds no item_table; is it a SASRec run?")
    if table.shape[0] != n_items + 1:
        raise StageError(f"sasrec_run: the item table of '{sasrec_run}' has {table.shape[0] - 1} items but the "
                         f"dataset has {n_items}; use a SASRec run trained on the same data settings")
    return table


def build_model(spec: RunSpec, ctx: RunContext, item_table: torch.Tensor, adapter_layers=()) -> LLMRec:
    """Backbone (truncated, LoRA/full/frozen) plus the recommender's maps, on the run's device."""
    dtype = frozen_weights_dtype(ctx.device, spec.train.precision, spec.backbone.training)
    backbone = load_backbone(spec.backbone, ctx.paths.base_models, ctx.device, dtype)
    mode = compile_mode(spec.train.compile, ctx.device)
    if mode:
        backbone.compile_stack(mode=mode)  # the first steps pay the compilation
    return LLMRec(backbone, item_table, spec.rec.prompt, adapter_layers).to(ctx.device)


def examples(spec: RunSpec, prepared, device: torch.device) -> Examples:
    inputs, targets, _ = training_examples(prepared, spec.data.max_len, spec.data.train_targets)
    return Examples(torch.as_tensor(inputs, device=device), torch.as_tensor(targets, device=device))


def parameter_counts(model: LLMRec) -> dict:
    """Total, trainable and used-at-inference parameters (the vocabulary table is already gone)."""
    params = list(model.parameters())
    inference = sum(p.numel() for p in params) + model.item_table.numel()
    return {"total": sum(p.numel() for p in params), "trainable": sum(p.numel() for p in params if p.requires_grad),
            "inference": inference}


def user_vectors_in(model: LLMRec, precision: str):
    """model.user_vectors run in the training precision (bf16 autocast on CUDA under 'auto');
    the scores over items are then computed in float32 outside autocast, so bf16 never creates ties."""
    def user_vectors(items: torch.Tensor) -> torch.Tensor:
        with autocast(model.item_table.device, precision):
            return model.user_vectors(items)
    return user_vectors


def evaluate(model: LLMRec, spec: RunSpec, prepared, split: str, dist: Dist = SINGLE):
    users = eval_users(prepared.n_users, spec.train.eval_users)
    return evaluate_split(user_vectors_in(model, spec.train.precision), model.item_table, prepared, split,
                          spec.data.max_len, mask_history=spec.rec.mask_history, users=users,
                          batch_size=eval_batch(spec.train, model.item_table.device.type), dist=dist)


def finish(ctx: RunContext, spec: RunSpec, model: LLMRec, prepared, result, role: str, extra: dict) -> dict:
    """Test evaluation of the best checkpoint, timings and the final manifest."""
    ctx.set_state(phase="test")
    start = time.perf_counter()
    with torch.no_grad():
        test = write_evaluation(ctx, result.best_step, role, None, evaluate(model, spec, prepared, "test", ctx.dist))
    infer_s = time.perf_counter() - start
    n_users = len(eval_users(prepared.n_users, spec.train.eval_users))
    ctx.events.append("timings", [ctx.timing_row("train", result.samples, result.train_seconds),
                                  ctx.timing_row("inference", n_users, infer_s)])
    counts = parameter_counts(model)
    if ctx.dist.is_main:  # the only writer of a run of several processes
        best_manifest = checkpoints.read_manifest(ctx.checkpoint_dir)  # the weights are already loaded
        best_manifest.update(parameters=counts, test_metrics=test, train_seconds=result.train_seconds,
                             inference_seconds=infer_s, **extra)
        checkpoints.write_manifest(ctx.checkpoint_dir, best_manifest)
    return {"metrics": {role: test}, "best_step": result.best_step, "parameters": counts}


def run_teacher(spec: RunSpec, ctx: RunContext) -> dict:
    """Train the E4SRec-style model over the first `backbone.depth` layers with cross-entropy."""
    prepared = prepare(spec.data, ctx.paths.data_root)
    seed_everything(spec.train.seed)
    model = build_model(spec, ctx, load_item_table(ctx, spec.sasrec_run, prepared.n_items))
    data = examples(spec, prepared, ctx.device)
    ctx.log(f"teacher: {model.num_layers} layers of {spec.backbone.base}, {len(data)} training examples, "
            f"{parameter_counts(model)}")

    def loss_fn(indices: torch.Tensor):
        ce = model.loss(data.inputs[indices], data.targets[indices])
        return ce, {"total": ce, "ce": ce}

    result = fit(ctx, spec, model, loss_fn, len(data), lambda: evaluate(model, spec, prepared, "valid", ctx.dist),
                 "teacher",
                 {"role": "teacher", "layer_indices": list(model.backbone.layer_indices)})
    return finish(ctx, spec, model, prepared, result, "teacher", {"role": "teacher"})


def load_finished_model(ctx: RunContext, run_id: str, using: TrainConfig) -> tuple[RunSpec, LLMRec]:
    """Rebuild a finished teacher or student run from its spec and best trainable weights, in the
    precision and compile setting of the run `using` it (its weights are all that must match)."""
    state = run_store.read_state(ctx.paths.runs, run_id)
    if state.get("status") != "done":
        raise StageError(f"run '{run_id}' is {state.get('status')}, not done; it cannot be used yet")
    spec = from_dict(run_store.read_spec(ctx.paths.runs, run_id)["spec"])
    folder = ctx.paths.checkpoint_dir(run_id)
    if not (folder / "model.safetensors").exists():
        gone = "was removed" if not folder.exists() else "has no model.safetensors"
        raise StageError(f"run '{run_id}': its checkpoint folder {folder} {gone}, so its weights cannot be "
                         f"loaded; run that {spec.kind} again (or pick another finished run)")
    prepared = prepare(spec.data, ctx.paths.data_root)
    weights, info = checkpoints.load_checkpoint(folder, advice=f"run '{run_id}' cannot be used: run that "
                                                              f"{spec.kind} again (or pick another finished run)")
    as_used = replace(spec, train=replace(spec.train, precision=using.precision, compile=using.compile))
    model = build_model(as_used, ctx, load_item_table(ctx, spec.sasrec_run, prepared.n_items),
                        info.get("adapter_layers", ()))
    load_trainable_weights(model, weights)
    model.eval()
    model.requires_grad_(False)
    return spec, model
