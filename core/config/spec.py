"""The settings of every stage: small frozen dataclasses, hashable, so a spec is also a cache key.

A field that changes only how fast a run goes, never its result, is marked `speed_only`: the
settings hash leaves it out (core/config/codec.py), so the same run on another machine is reused.
Standard library only: the app reads it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SPEED_ONLY = "speed_only"


def speed_only(default: Any, hashed_as: Any = None) -> Any:
    """A field that changes speed, not results: out of the settings hash, or hashed as `hashed_as`
    when given (the value it had before it became a setting, so stored runs keep their hashes)."""
    return field(default=default, metadata={SPEED_ONLY: True, "hashed_as": hashed_as})


DEFAULT_PROMPT = "What is the top recommended item for user who interacted with {items}?"


@dataclass(frozen=True)
class DataConfig:
    """Which interactions to read and how to turn them into sequences (docs/method.md section 1)."""

    dataset: str = "ml-100k"  # a name under data/raw/, or a file path inside data/
    min_rating: float | None = None  # keep interactions with rating >= this (None: keep all)
    kcore: int = 5  # repeat until every user and item has >= kcore interactions (0: off)
    min_seq_len: int = 3  # users with fewer interactions are dropped (need train, valid, test)
    max_len: int = 30  # keep the last max_len items as model input
    train_targets: str = "last"  # "last": one target per user; "prefixes": every prefix
    n_negatives: int = 999  # sampled-evaluation negatives per user and split
    seed: int = 0  # for the sampled candidates
    user_column: str = "user"  # column names for CSV/Parquet sources
    item_column: str = "item"
    time_column: str = "timestamp"
    rating_column: str = "rating"
    max_users: int = 0  # keep only the first max_users users after filtering (0: all); for demos


@dataclass(frozen=True)
class TrainConfig:
    """The shared training loop's settings; identical for every stage."""

    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 64
    grad_accum: int = 1
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    grad_clip: float = 1.0
    patience: int = 0  # stop after this many evaluations without improvement (0: never)
    eval_every: int = 1  # evaluate every this many epochs
    max_steps: int = 0  # stop after this many optimizer steps (0: no limit); for tests
    log_every: int = 10  # optimizer steps between loss rows
    checkpoint_every: int = 50  # optimizer steps between resumable checkpoints (0: epoch ends only)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 elsewhere) | fp32 | bf16
    # torch.compile the layer stack: auto (on for CUDA, off elsewhere) | on | off | graphs (+ CUDA graphs);
    # hashed as False, the value it had when it was a bool
    compile: str = speed_only("auto", hashed_as=False)
    eval_users: int = 0  # evaluate on the first eval_users users only (0: all)
    # Processes (one per GPU) per node, launched by torchrun; batch_size stays the global batch, so
    # the count changes speed, not results (core/runtime/distributed.py).
    nproc_per_node: int = speed_only(1)
    # Users per batch in the no-grad passes (evaluation, the teacher-state cache, analysis states):
    # without gradients a bigger batch fits, and on a GPU these passes are bound by per-batch launch
    # overhead. 0: auto, see `eval_batch`. The same ranks at any size.
    eval_batch_size: int = speed_only(0)


@dataclass(frozen=True)
class SASRecConfig:
    """SASRec (Kang and McAuley 2018) trained with full-softmax CE at every position.

    Its training settings live here, not in `train`, so a pipeline's SASRec parent keeps its own
    schedule while `train` configures the LLM stage; seed and device still come from `train`.
    """

    hidden: int = 128
    layers: int = 2
    heads: int = 2
    dropout: float = 0.2
    epochs: int = 60
    lr: float = 1e-3
    batch_size: int = 128
    patience: int = 5


@dataclass(frozen=True)
class BackboneConfig:
    """Which LLM, which of its layers, and how it is trained."""

    base: str = "smollm2"  # smollm2 | tiny | a local Hugging Face folder
    depth: int = 8  # decoder layers kept
    layer_selection: str = "first"  # first | even
    training: str = "lora"  # lora | full | frozen
    lora_r: int = 16
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class RecConfig:
    """The E4SRec-style recommender around the backbone (docs/method.md section 2)."""

    prompt: str = DEFAULT_PROMPT  # must contain {items}
    mask_history: bool = True  # full ranking masks the user's training items


@dataclass(frozen=True)
class DistillConfig:
    """SLMRec's block-wise distillation (docs/method.md section 3)."""

    teacher_run: str = ""  # run id of a finished teacher
    blocks: int = 4
    lambda_cos: float = 1.0
    lambda_norm: float = 0.1
    lambda_sup: float = 1.0
    teacher_states: str = "cached"  # cached | live
    init_maps_from_teacher: bool = False
    # GB of device memory the bf16 teacher-state cache may take; larger caches go to pinned host
    # memory, or the teacher runs live (core/train/teacher_cache.py). 0: auto, half the free device
    # memory (half the available RAM on CPU). Where the cache lives changes speed, not results.
    cache_budget_gb: float = speed_only(0.0)


@dataclass(frozen=True)
class AnalysisConfig:
    """Which run (or pretrained base) to analyse, and on how many users."""

    run: str = ""  # a teacher or student run id; empty: the pretrained backbone alone
    against: str = ""  # a second run for teacher x student similarity
    users: int = 512
    split: str = "test"
    seed: int = 0


@dataclass(frozen=True)
class DropConfig:
    """Which decoder layers of a finished teacher or student to drop, and the optional healing."""

    run: str = ""  # the finished teacher or student run
    rule: str = "last"  # last | influence | angular | list
    n: int = 1  # layers to drop (last, influence, angular); 0 = drop nothing
    layers: tuple[int, ...] = ()  # rule list: the 1-based kept-layer numbers to drop
    heal_steps: int = 0  # LoRA fine-tune steps after dropping (0: not healed)
    analysis_run: str = ""  # the analysis run the rules read (planned as a parent when empty)


@dataclass(frozen=True)
class RunSpec:
    """Everything one run needs; `kind` picks the stage."""

    kind: str
    name: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sasrec: SASRecConfig = field(default_factory=SASRecConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    rec: RecConfig = field(default_factory=RecConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    drop: DropConfig = field(default_factory=DropConfig)
    sasrec_run: str = ""  # the SASRec run whose item table the LLM recommender uses
    depths: tuple[int, ...] = ()  # for kind == "sweep"


SECTIONS = {
    "data": DataConfig,
    "train": TrainConfig,
    "sasrec": SASRecConfig,
    "backbone": BackboneConfig,
    "rec": RecConfig,
    "distill": DistillConfig,
    "analysis": AnalysisConfig,
    "drop": DropConfig,
}



def eval_batch(train: TrainConfig, device_type: str) -> int:
    """Users per batch of the no-grad passes: train.eval_batch_size, or for 0 (auto) max(batch_size,
    1024) on CUDA, where per-batch launch overhead dominates, and batch_size elsewhere (on 2 CPU cores
    an 8-layer teacher evaluated ml-100k in 8 s at batch 32 or 256 but 12 s at 1024: memory-bound)."""
    if train.eval_batch_size:
        return train.eval_batch_size
    return max(train.batch_size, 1024) if device_type == "cuda" else train.batch_size
