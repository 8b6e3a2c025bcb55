"""Throughput of the LLM stages on a SmolLM2-shaped LLaMA with random weights.

Measured through the real code paths: `core.train.loop.train` for training (AdamW, schedule,
clipping, autocast) and `core.eval.evaluate`'s ranking for inference, so any speed-up in those
paths shows here. Each measurement runs a warm-up interval, then a timed interval.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from core.config import BackboneConfig, DistillConfig, RunSpec, TrainConfig
from core.eval.ranking import full_ranks
from core.models.backbone import Backbone, backbone_of
from core.models.llmrec import LLMRec
from core.models.tiny import build_tiny_llama, tiny_tokenizer
from core.stages.llm import Examples, user_vectors_in
from core.stages.student import cache_teacher_states, make_loss
from core.train import loop
from core.train.device import frozen_weights_dtype, peak_memory_mb
from core.train.distill import block_pairs

SMOLLM2_SHAPE = dict(hidden_size=576, intermediate_size=1536, num_attention_heads=9, num_key_value_heads=3,
                     vocab_size=49152, max_position_embeddings=2048, initializer_range=0.02)


@dataclass(frozen=True)
class Shape:
    batch: int
    items: int = 50  # items per sample
    prompt_tokens: int = 30
    n_items: int = 1682
    steps: int = 5  # timed optimizer steps (after as many warm-up steps)
    eval_batch: int = 0  # users per inference batch and teacher-cache batch (0: the training batch)

    @property
    def users_per_batch(self) -> int:
        return self.eval_batch or self.batch


def random_backbone(depth: int, device, training: str = "lora", layers: int = 30, dims: dict | None = None,
                    precision: str = "auto") -> Backbone:
    """A SmolLM2-shaped decoder (or `dims`, a variant of SMOLLM2_SHAPE) with seeded random weights,
    first `depth` layers kept, its weights in the dtype a stage would load them in on this device."""
    model = build_tiny_llama(num_layers=layers, **(dims or SMOLLM2_SHAPE))
    return backbone_of(model, tiny_tokenizer(), "bench", range(depth), layers,
                       BackboneConfig(base="bench", depth=depth, training=training), device,
                       frozen_weights_dtype(torch.device(device), precision, training))


def recommender(depth: int, shape: Shape, device, adapters=(), compiled: bool = False,
                training: str = "lora", dims: dict | None = None, precision: str = "auto") -> LLMRec:
    torch.manual_seed(0)
    table = torch.randn(shape.n_items + 1, 128)
    # the byte tokenizer gives one token per character: a prompt of exactly `prompt_tokens` tokens
    prompt = "x" * (shape.prompt_tokens - 2) + "{items}" + "?"
    backbone = random_backbone(depth, device, training=training, dims=dims, precision=precision)
    if compiled:
        backbone.compile_layers()  # as core.stages.llm.build_model does under train.compile
    return LLMRec(backbone, table, prompt, adapters).to(device)


def examples(shape: Shape, n: int, device) -> Examples:
    g = torch.Generator().manual_seed(0)
    items = torch.randint(1, shape.n_items + 1, (n, shape.items), generator=g)
    return Examples(items.to(device), torch.randint(1, shape.n_items + 1, (n,), generator=g).to(device))


def layer_params(model: LLMRec) -> int:
    return sum(p.numel() for n, p in model.backbone.layers.named_parameters() if "lora" not in n)


def plain_loss(model: LLMRec, data: Examples):
    """The teacher's (and an undistilled student's) loss_fn for the shared loop."""
    return lambda idx: (model.loss(data.inputs[idx], data.targets[idx]), {})


def timed_training(model, loss_fn, n: int, shape: Shape, device, precision: str = "auto") -> float:
    """Samples/s over the timed interval of the shared loop."""
    rates: list[float] = []
    cfg = TrainConfig(epochs=1, batch_size=shape.batch, max_steps=2 * shape.steps, log_every=shape.steps,
                      checkpoint_every=0, warmup_ratio=0.0, device=str(device), precision=precision)
    hooks = loop.Hooks(lambda s, e: 0.0, lambda s: None, lambda s: None, lambda *a: None,
                       lambda step, total, rate: rates.append(rate), lambda: False)
    loop.train(model, loss_fn, n, cfg, device, hooks)
    return rates[-1]


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rank_batch(model: LLMRec, user_vectors, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """One batch's full ranking as evaluation runs it: targets checked once before, not per batch."""
    return full_ranks(user_vectors(items).float(), model.item_table, targets, validate=False)


@torch.no_grad()
def inference_users_per_s(model: LLMRec, data: Examples, shape: Shape, device, precision: str = "auto") -> float:
    """Full ranking as evaluation runs it: user vectors in the training precision, scores in fp32."""
    model.eval()
    user_vectors = user_vectors_in(model, precision)
    batches = data.inputs.split(shape.users_per_batch)
    targets = data.targets.split(shape.users_per_batch)
    for items, target in zip(batches[:2], targets[:2]):  # warm-up
        rank_batch(model, user_vectors, items, target)
    _sync(device)
    start = time.perf_counter()
    for items, target in zip(batches[2:], targets[2:]):
        rank_batch(model, user_vectors, items, target)
    _sync(device)
    return sum(len(b) for b in batches[2:]) / (time.perf_counter() - start)


def run(device: torch.device, shape: Shape, teacher_depth: int, student_depth: int, blocks: int,
        compiled: bool = False) -> list[dict]:
    """Every LLM measurement on one machine, as JSON-able rows (`compiled`: torch.compile the backbones)."""
    n = 2 * shape.steps * shape.batch
    data = examples(shape, n, device)
    tokens = shape.prompt_tokens + shape.items
    rows = []
    teacher = recommender(teacher_depth, shape, device, compiled=compiled)
    t_rate = timed_training(teacher, plain_loss(teacher, data), n, shape, device)
    rows.append({"bench": "teacher_train", "depth": teacher_depth, "samples_per_s": t_rate,
                 "tflops": 6 * layer_params(teacher) * tokens * t_rate / 1e12})
    pairs = block_pairs(teacher_depth, student_depth, blocks)
    t_layers, s_layers = [t for t, _ in pairs], [s for _, s in pairs]
    student = recommender(student_depth, shape, device, s_layers[:-1], compiled=compiled)
    s_rate = timed_training(student, plain_loss(student, data), n, shape, device)
    rows.append({"bench": "student_train", "depth": student_depth, "samples_per_s": s_rate,
                 "tflops": 6 * layer_params(student) * tokens * s_rate / 1e12})
    teacher.eval().requires_grad_(False)
    spec = RunSpec(kind="student", distill=DistillConfig(blocks=blocks))
    live = make_loss(student, teacher, data, None, t_layers, s_layers, spec)
    rows.append({"bench": "distill_live_teacher", "samples_per_s": timed_training(student, live, n, shape, device)})
    start = time.perf_counter()
    cache = cache_teacher_states(teacher, data.inputs, t_layers, shape.users_per_batch)
    cache_s = time.perf_counter() - start
    cached = make_loss(student, teacher, data, cache, t_layers, s_layers, spec)
    rows.append({"bench": "distill_cached_teacher", "samples_per_s": timed_training(student, cached, n, shape, device),
                 "cache_seconds": cache_s})
    users = examples(shape, max(n, 6 * shape.users_per_batch), device)  # 2 warm-up batches, then at least 4 timed
    rows.append({"bench": "teacher_inference", "users_per_s": inference_users_per_s(teacher, users, shape, device)})
    rows.append({"bench": "student_inference", "users_per_s": inference_users_per_s(student, users, shape, device)})
    by = {r["bench"]: r for r in rows}
    rows.append({"bench": "ratios",
                 "train_student_over_teacher": s_rate / t_rate,
                 "inference_student_over_teacher": by["student_inference"]["users_per_s"]
                 / by["teacher_inference"]["users_per_s"],
                 "cached_distill_over_student_train": by["distill_cached_teacher"]["samples_per_s"] / s_rate,
                 "layer_ratio": teacher_depth / student_depth})
    for r in rows:
        r.update(device=str(device), compiled=compiled, batch=shape.batch, eval_batch=shape.users_per_batch,
                 tokens_per_sample=tokens, peak_mem_mb=peak_memory_mb(device))
    return rows
