"""The student stage: SLMRec block-wise distillation from a finished, frozen teacher.

The student is the same recommender over the first N layers (or N evenly spaced ones) of the same
pretrained LLM, with fresh LoRA and maps (optionally maps copied from the teacher), plus one
adapter per intermediate block boundary. The teacher's aligned last-position states are either
cached once for the whole training set ("cached": valid because the frozen teacher in eval mode is
deterministic; stored in bf16 on the device, in pinned host memory or, where neither has room, run
live, see core/train/teacher_cache.py) or computed every step ("live"); both give the same loss to
bf16 rounding. With lambda_cos and lambda_norm at 0 no teacher is needed, and with all three lambdas
at 0 this is plain E4SRec_N.
"""

from __future__ import annotations

import torch

from core.config import RunSpec, depth_warning, eval_batch, from_dict, teacher_mismatch
from core.data.prepare import prepare
from core.stages.context import RunContext
from core.stages.llm import (StageError, build_model, evaluate, examples, finish, load_finished_model,
                             load_item_table, parameter_counts)
from core.stages.common import fit
from core.store import runs as run_store
from core.runtime.device import autocast, seed_everything
from core.config import block_pairs
from core.train.distill import slmrec_loss
from core.train.teacher_cache import build_cache


def _teacher(ctx: RunContext, spec: RunSpec):
    """(teacher spec, teacher model) or (None, None) when the loss needs no teacher."""
    k = spec.distill
    if not k.teacher_run:
        if k.lambda_cos or k.lambda_norm:
            raise StageError("distill.teacher_run: lambda_cos and lambda_norm need a finished teacher run "
                             "(--teacher RUN_ID); set both to 0 for a student without distillation")
        return None, None
    difference = teacher_mismatch(from_dict(run_store.read_spec(ctx.paths.runs, k.teacher_run)["spec"]), spec)
    if difference:  # refused before the teacher's weights are loaded
        raise StageError(f"distill.teacher_run: teacher '{k.teacher_run}' differs from this student in {difference}; "
                         "a student must use the same data, base model and prompt as its teacher")
    return load_finished_model(ctx, k.teacher_run, spec.train)


def run_student(spec: RunSpec, ctx: RunContext) -> dict:
    """Distil a finished teacher into a student of `backbone.depth` layers with the SLMRec loss."""
    prepared = prepare(spec.data, ctx.paths.data_root)
    teacher_spec, teacher = _teacher(ctx, spec)
    teacher_depth = teacher.num_layers if teacher is not None else spec.backbone.depth
    warning = depth_warning(teacher_depth, spec.backbone.depth) if teacher is not None else None
    if warning:
        ctx.log(warning)
    pairs = block_pairs(teacher_depth, spec.backbone.depth, spec.distill.blocks)
    teacher_layers, student_layers = [t for t, _ in pairs], [s for _, s in pairs]
    sasrec_run = teacher_spec.sasrec_run if teacher_spec else spec.sasrec_run
    seed_everything(spec.train.seed)
    model = build_model(spec, ctx, load_item_table(ctx, sasrec_run, prepared.n_items), student_layers[:-1])
    if spec.distill.init_maps_from_teacher and teacher is not None:
        model.input_map.load_state_dict(teacher.input_map.state_dict())
        model.score_head.load_state_dict(teacher.score_head.state_dict())
    data = examples(spec, prepared, ctx.device)
    cached, cache_info = None, {}
    if teacher is not None and spec.distill.teacher_states == "cached":
        ctx.set_state(phase="cache teacher")
        with torch.no_grad(), autocast(ctx.device, spec.train.precision):  # as the live teacher would run
            cached = build_cache(teacher, data.inputs, teacher_layers, eval_batch(spec.train, ctx.device.type),
                                 spec.distill.cache_budget_gb, ctx.dist.local_world_size)
        ctx.log(cached.plan.describe())
        cache_info = {"teacher_cache": cached.plan.manifest()}
    ctx.log(f"student: {model.num_layers} layers, blocks {pairs} (teacher layer, student layer), "
            f"{len(data)} examples, teacher states {spec.distill.teacher_states if teacher else 'none'}, "
            f"{parameter_counts(model)}")
    loss_fn = make_loss(model, teacher, data, cached, teacher_layers, student_layers, spec)
    result = fit(ctx, spec, model, loss_fn, len(data), lambda: evaluate(model, spec, prepared, "valid", ctx.dist),
                 "student",
                 {"role": "student", "adapter_layers": student_layers[:-1], "block_pairs": pairs,
                  "layer_indices": list(model.backbone.layer_indices), **cache_info})  # kept by finish
    return finish(ctx, spec, model, prepared, result, "student",
                  {"role": "student", "adapter_layers": student_layers[:-1], "block_pairs": pairs,
                   "teacher_run": spec.distill.teacher_run})


def make_loss(model, teacher, data, cached, teacher_layers, student_layers, spec: RunSpec):
    """The per-batch SLMRec loss; every term is returned for logging."""
    final = model.num_layers + 1

    def loss_fn(indices: torch.Tensor):
        items, targets = data.inputs[indices], data.targets[indices]
        states = model.last_states(items, student_layers + [final])  # aligned layers, then the final norm
        ce = torch.nn.functional.cross_entropy(model.scores(model.head(states[-1])), targets)
        block_scores = [model.scores(v) for v in model.adapter_vectors(states[:-2])]
        if teacher is None:
            return slmrec_loss(ce, [], [], block_scores, targets, spec.distill)
        if cached is not None:  # bf16, from the device, host memory or the teacher (by the cache's plan)
            teacher_states = cached.states(items, indices)
        else:
            with torch.no_grad():
                teacher_states = teacher.last_states(items, teacher_layers)
        return slmrec_loss(ce, teacher_states, states[:-1], block_scores, targets, spec.distill)
    return loss_fn
