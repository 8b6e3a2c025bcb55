"""Throughput of the LLM stages on a SmolLM2-shaped LLaMA with random weights.

Measured through the real code paths: `core.train.loop.train` for training (AdamW, schedule,
clipping, autocast) and `core.eval.evaluate`'s ranking for inference, so any speed-up in those
paths shows here. Teacher and student are built once; every measurement is warmed up once, then
repeated in interleaved rounds (bench/repeat.py), and each row gives the median and range.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from statistics import median

import torch

from bench.repeat import interleaved, ratio, summary
from core.config import BackboneConfig, DistillConfig, RunSpec, TrainConfig
from core.eval.ranking import full_ranks
from core.models.backbone import decoder_from_model
from core.models.decoder import Decoder
from core.models.llmrec import LLMRec
from core.models.tiny import build_tiny_llama, tiny_tokenizer
from core.stages.llm import Examples, user_vectors_in
from core.stages.student import make_loss
from core.train import loop
from core.runtime.device import frozen_weights_dtype, peak_memory_mb
from core.config import block_pairs
from core.train.teacher_cache import build_cache

SMOLLM2_SHAPE = dict(hidden_size=576, intermediate_size=1536, num_attention_heads=9, num_key_value_heads=3,
                     vocab_size=49152, max_position_embeddings=2048, initializer_range=0.02)


@dataclass(frozen=True)
class Shape:
    batch: int
    items: int = 50  # items per sample
    prompt_tokens: int = 30
    n_items: int = 1682
    steps: int = 5  # timed optimizer steps per repetition
    eval_batch: int = 0  # users per inference batch and teacher-cache batch (0: the training batch)

    @property
    def users_per_batch(self) -> int:
        return self.eval_batch or self.batch


def random_backbone(depth: int, device, training: str = "lora", layers: int = 30, dims: dict | None = None,
                    precision: str = "auto") -> Decoder:
    """A SmolLM2-shaped decoder (or `dims`, a variant of SMOLLM2_SHAPE) with seeded random weights,
    first `depth` layers kept, its weights in the dtype a stage would load them in on this device."""
    model = build_tiny_llama(num_layers=layers, **(dims or SMOLLM2_SHAPE))
    return decoder_from_model(model, tiny_tokenizer(), "bench", BackboneConfig(base="bench", depth=depth, training=training),
                              device, frozen_weights_dtype(torch.device(device), precision, training))


def recommender(depth: int, shape: Shape, device, adapters=(), compiled: bool | str = False,
                training: str = "lora", dims: dict | None = None, precision: str = "auto") -> LLMRec:
    """The recommender of a stage; `compiled`: True or "graphs" compiles its layer stack (graphs: replayed
    as CUDA graphs), as core.stages.llm.build_model does under train.compile on / graphs."""
    torch.manual_seed(0)
    table = torch.randn(shape.n_items + 1, 128)
    # the byte tokenizer gives one token per character: a prompt of exactly `prompt_tokens` tokens
    prompt = "x" * (shape.prompt_tokens - 2) + "{items}" + "?"
    backbone = random_backbone(depth, device, training=training, dims=dims, precision=precision)
    if compiled:
        backbone.compile_stack(mode="reduce-overhead" if compiled == "graphs" else None)
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


def timed_training(model, loss_fn, n: int, shape: Shape, device, precision: str = "auto",
                   warm_up: bool = True) -> float:
    """Samples/s over `shape.steps` steps of the shared loop, after as many warm-up steps when `warm_up`
    (without: every step is timed, for a model bench/repeat.py has warmed up already)."""
    rates: list[float] = []
    cfg = TrainConfig(epochs=1, batch_size=shape.batch, max_steps=(2 if warm_up else 1) * shape.steps,
                      log_every=shape.steps, checkpoint_every=0, warmup_ratio=0.0, device=str(device),
                      precision=precision)
    hooks = loop.Hooks(lambda s, e: 0.0, lambda s: None, lambda s: None, lambda *a: None,
                       lambda step, total, rate: rates.append(rate), lambda: False)
    loop.train(model, loss_fn, n, cfg, device, hooks)
    return rates[-1]


def sync(device) -> None:
    """Wait for the device's queued work (a CUDA timing ends only when its kernels have)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rank_batch(model: LLMRec, user_vectors, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """One batch's full ranking as evaluation runs it: targets checked once before, not per batch."""
    return full_ranks(user_vectors(items).float(), model.item_table, targets, validate=False)


@torch.no_grad()
def inference_users_per_s(model: LLMRec, data: Examples, shape: Shape, device, precision: str = "auto") -> float:
    """Full ranking as evaluation runs it: user vectors in the training precision, scores in fp32.
    Every batch is timed: warm the model up with one call first (bench/repeat.py does)."""
    model.eval()
    user_vectors = user_vectors_in(model, precision)
    sync(device)
    start = time.perf_counter()
    for items, target in zip(data.inputs.split(shape.users_per_batch), data.targets.split(shape.users_per_batch)):
        rank_batch(model, user_vectors, items, target)
    sync(device)
    return len(data.inputs) / (time.perf_counter() - start)


def _measures(teacher: LLMRec, student: LLMRec, data: Examples, users: Examples, shape: Shape, device,
              pairs: list[tuple[int, int]], blocks: int) -> dict:
    """Every measurement of one round, teacher before student (the order bench/repeat.py calls them in)."""
    n = len(data.targets)
    t_layers, s_layers = [t for t, _ in pairs], [s for _, s in pairs]
    spec = RunSpec(kind="student", distill=DistillConfig(blocks=blocks))
    trainable = [p for p in teacher.parameters() if p.requires_grad]
    teacher.eval().requires_grad_(False)  # frozen, as the student stage holds it, except while it trains
    cache: dict[str, torch.Tensor] = {}

    def teacher_train() -> float:
        for p in trainable:
            p.requires_grad_(True)
        try:
            return timed_training(teacher, plain_loss(teacher, data), n, shape, device, warm_up=False)
        finally:
            teacher.eval().requires_grad_(False)

    def teacher_cache() -> float:  # seconds, not a rate
        cache.clear()  # the last round's states go before the next are built
        start = time.perf_counter()
        cache["states"] = build_cache(teacher, data.inputs, t_layers, shape.users_per_batch)
        sync(device)
        return time.perf_counter() - start

    def student_train(loss_fn) -> float:
        return timed_training(student, loss_fn, n, shape, device, warm_up=False)

    return {
        "teacher_train": teacher_train,
        "student_train": lambda: student_train(plain_loss(student, data)),
        "distill_live_teacher": lambda: student_train(
            make_loss(student, teacher, data, None, t_layers, s_layers, spec)),
        "teacher_cache": teacher_cache,
        "distill_cached_teacher": lambda: student_train(
            make_loss(student, teacher, data, cache["states"], t_layers, s_layers, spec)),
        "teacher_inference": lambda: inference_users_per_s(teacher, users, shape, device),
        "student_inference": lambda: inference_users_per_s(student, users, shape, device),
    }


def run(device: torch.device, shape: Shape, teacher_depth: int, student_depth: int, blocks: int,
        compiled: bool | str = False, repeats: int = 3) -> list[dict]:
    """Every LLM measurement on one machine, as JSON-able rows (`compiled`: see `recommender`):
    teacher and student interleaved over `repeats` rounds, each row their median and range."""
    n = shape.steps * shape.batch
    data = examples(shape, n, device)
    users = examples(shape, max(n, 4 * shape.users_per_batch), device)  # at least 4 timed batches
    tokens = shape.prompt_tokens + shape.items
    pairs = block_pairs(teacher_depth, student_depth, blocks)
    teacher = recommender(teacher_depth, shape, device, compiled=compiled)
    student = recommender(student_depth, shape, device, [s for _, s in pairs][:-1], compiled=compiled)
    rounds = interleaved(_measures(teacher, student, data, users, shape, device, pairs, blocks), repeats)
    v = rounds.values

    def row(name: str, key: str, **extra) -> dict:  # the warm-up call: mostly compilation when compiled
        return {"bench": name, **extra, **summary(v[name], key), "first_call_s": rounds.first_call_s[name]}

    rows = [
        row("teacher_train", "samples_per_s", depth=teacher_depth,
            tflops=6 * layer_params(teacher) * tokens * median(v["teacher_train"]) / 1e12),
        row("student_train", "samples_per_s", depth=student_depth,
            tflops=6 * layer_params(student) * tokens * median(v["student_train"]) / 1e12),
        row("distill_live_teacher", "samples_per_s"),
        row("distill_cached_teacher", "samples_per_s", **summary(v["teacher_cache"], "cache_seconds")),
        row("teacher_inference", "users_per_s"),
        row("student_inference", "users_per_s"),
        {"bench": "ratios", **ratio(v["student_train"], v["teacher_train"], "train_student_over_teacher"),
         **ratio(v["student_inference"], v["teacher_inference"], "inference_student_over_teacher"),
         **ratio(v["distill_cached_teacher"], v["student_train"], "cached_distill_over_student_train"),
         "layer_ratio": teacher_depth / student_depth, "repeats": repeats},
    ]
    for r in rows:
        r.update(device=str(device), compiled=compiled, batch=shape.batch, eval_batch=shape.users_per_batch,
                 tokens_per_sample=tokens, peak_mem_mb=peak_memory_mb(device))
    return rows
