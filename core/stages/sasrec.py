"""The sasrec stage: the popularity baseline and SASRec, evaluated under both protocols.

SASRec gives the frozen item table the LLM recommender reuses (saved in its checkpoint as
`item_table`) and a baseline row; popularity is evaluated in the same run as a second baseline.
Test metrics are computed once, with the best checkpoint by validation NDCG@10 (full ranking).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from core.config import RunSpec, TrainConfig
from core.data.examples import sasrec_examples
from core.data.prepare import prepare
from core.eval.evaluate import SplitRanks, eval_users, evaluate_split
from core.models.popularity import Popularity
from core.models.sasrec import SASRec
from core.stages.common import fit, manifest, trainable_weights, write_evaluation
from core.stages.context import RunContext
from core.store import checkpoints
from core.runtime.device import seed_everything


def sasrec_schedule(spec: RunSpec) -> TrainConfig:
    """The loop settings for SASRec: its own epochs, lr, batch and patience; the rest from `train`."""
    s = spec.sasrec
    return replace(spec.train, epochs=s.epochs, lr=s.lr, batch_size=s.batch_size, patience=s.patience,
                   grad_accum=1, warmup_ratio=0.0)


def training_sequences(prepared):
    """Each user's training items: everything before the validation target (a view, no copies)."""
    return prepared.sequences.truncated(2)


def split_ranks(ctx: RunContext, spec: RunSpec, prepared, model, split: str) -> SplitRanks:
    """A factorised model's (user_vectors, item_table) ranks on a split, under both protocols."""
    users = eval_users(prepared.n_users, spec.train.eval_users)
    with torch.no_grad():
        return evaluate_split(model.user_vectors, model.item_table(), prepared, split, spec.data.max_len,
                              mask_history=spec.rec.mask_history, users=users, dist=ctx.dist)


def evaluate_model(ctx: RunContext, spec: RunSpec, prepared, model, split: str, step: int, name: str) -> dict:
    """Evaluate a factorised model on a split and store the rows."""
    return write_evaluation(ctx, step, name, None, split_ranks(ctx, spec, prepared, model, split))


def run_sasrec(spec: RunSpec, ctx: RunContext) -> dict:
    """Train SASRec and evaluate it and the popularity baseline; return the test metrics."""
    prepared = prepare(spec.data, ctx.paths.data_root)
    ctx.log(f"data {spec.data.dataset}: {prepared.n_users} users, {prepared.n_items} items")
    seed_everything(spec.train.seed)
    popularity = Popularity(prepared.n_items, training_sequences(prepared)).to(ctx.device)
    baseline = {split: evaluate_model(ctx, spec, prepared, popularity, split, 0, "popularity")
                for split in ("valid", "test")}

    inputs, targets = (torch.as_tensor(a, device=ctx.device) for a in sasrec_examples(prepared, spec.data.max_len))
    model = SASRec(prepared.n_items, spec.data.max_len, spec.sasrec).to(ctx.device)

    def loss_fn(indices: torch.Tensor):
        ce = model.loss(inputs[indices], targets[indices])
        return ce, {"ce": ce}

    ctx.set_state(phase="train")
    schedule = sasrec_schedule(spec)
    result = fit(ctx, replace(spec, train=schedule), model, loss_fn, len(inputs),
                 lambda: split_ranks(ctx, spec, prepared, model, "valid"), "sasrec")
    ctx.set_state(phase="test")
    test = evaluate_model(ctx, spec, prepared, model, "test", result.best_step, "sasrec")
    if ctx.dist.is_main:  # the only writer of a run of several processes
        weights = trainable_weights(model) | {"item_table": model.item_table().detach().cpu().contiguous()}
        info = manifest(spec, ctx, model, best_step=result.best_step, n_items=prepared.n_items,
                        item_dim=spec.sasrec.hidden, dataset_key=prepared.key, test_metrics=test,
                        train_seconds=result.train_seconds)
        checkpoints.save_checkpoint(ctx.checkpoint_dir, weights, info)
    ctx.events.append("timings", [ctx.timing_row("train", result.samples, result.train_seconds)])
    return {"metrics": {"sasrec": test, "popularity": baseline["test"]}, "best_step": result.best_step}
