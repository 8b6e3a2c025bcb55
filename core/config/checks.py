"""The rules a spec's settings must meet, checked when a spec is read (`core.config.from_dict`).

Each refusal raises `ConfigError` with a message naming the field, the value and what was expected.
Also the block rule of SLMRec's distillation (B divides both depths, docs/method.md section 3) and
the warning for a student that is not shallower than its teacher. Standard library only.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from core.store.paths import check_run_id

if TYPE_CHECKING:
    from core.config.spec import DropConfig, RunSpec

STAGES = ("sasrec", "teacher", "student", "analysis", "sweep", "drop")
DROP_RULES = ("last", "influence", "angular", "list")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class ConfigError(ValueError):
    """A setting is invalid; the message names the field and what was expected."""


def valid_blocks(teacher_depth: int, student_depth: int) -> list[int]:
    """Block counts B that divide both depths (docs/method.md section 3)."""
    return [b for b in range(1, min(teacher_depth, student_depth) + 1)
            if teacher_depth % b == 0 and student_depth % b == 0]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate(spec: RunSpec) -> None:
    """Raise ConfigError for any setting that cannot run; the message says what is expected."""
    _check(spec.kind in STAGES, f"kind: '{spec.kind}' is not a stage; expected one of {', '.join(STAGES)}")
    d, t, b, r = spec.data, spec.train, spec.backbone, spec.rec
    _check(d.kcore >= 0, f"data.kcore: expected >= 0, got {d.kcore}")
    _check(d.min_seq_len >= 3, f"data.min_seq_len: expected >= 3 (train, valid, test), got {d.min_seq_len}")
    _check(d.max_len >= 1, f"data.max_len: expected >= 1, got {d.max_len}")
    _check(d.train_targets in ("last", "prefixes"),
           f"data.train_targets: expected 'last' or 'prefixes', got '{d.train_targets}'")
    _check(d.n_negatives >= 1, f"data.n_negatives: expected >= 1, got {d.n_negatives}")
    _check(t.epochs >= 1, f"train.epochs: expected >= 1, got {t.epochs}")
    _check(t.lr > 0, f"train.lr: expected > 0, got {t.lr}")
    _check(t.weight_decay >= 0, f"train.weight_decay: expected >= 0, got {t.weight_decay}")
    _check(t.grad_clip >= 0, f"train.grad_clip: expected >= 0 (0: no clipping), got {t.grad_clip}")
    _check(t.max_steps >= 0, f"train.max_steps: expected >= 0 (0: no limit), got {t.max_steps}")
    _check(t.patience >= 0, f"train.patience: expected >= 0 (0: never stop early), got {t.patience}")
    _check(t.eval_every >= 1, f"train.eval_every: expected >= 1, got {t.eval_every}")
    _check(t.eval_users >= 0, f"train.eval_users: expected >= 0 (0: all), got {t.eval_users}")
    _check(t.batch_size >= 1, f"train.batch_size: expected >= 1, got {t.batch_size}")
    _check(t.grad_accum >= 1, f"train.grad_accum: expected >= 1, got {t.grad_accum}")
    _check(t.log_every >= 1, f"train.log_every: expected >= 1, got {t.log_every}")
    _check(t.nproc_per_node >= 1, f"train.nproc_per_node: expected >= 1 (processes per node), got {t.nproc_per_node}")
    _check(t.eval_batch_size >= 0, "train.eval_batch_size: expected >= 0 (0: auto, max(batch_size, 1024) on CUDA, "
                                   f"batch_size elsewhere), got {t.eval_batch_size}")
    _check(spec.kind not in ("analysis", "drop") or t.nproc_per_node == 1,
           f"train.nproc_per_node: the {spec.kind} stage runs in one process; set it to 1, got {t.nproc_per_node}")
    _check(t.checkpoint_every >= 0, f"train.checkpoint_every: expected >= 0, got {t.checkpoint_every}")
    _check(0 <= t.warmup_ratio < 1, f"train.warmup_ratio: expected in [0, 1), got {t.warmup_ratio}")
    _check(t.precision in ("auto", "fp32", "bf16"), f"train.precision: expected auto, fp32 or bf16, got '{t.precision}'")
    _check(t.compile in ("auto", "on", "off", "graphs"),
           f"train.compile: expected auto, on, off or graphs, got '{t.compile}'")
    _validate_sasrec(spec)
    _check(b.depth >= 1, f"backbone.depth: expected >= 1, got {b.depth}")
    _check(b.layer_selection in ("first", "even"),
           f"backbone.layer_selection: expected 'first' or 'even', got '{b.layer_selection}'")
    _check(b.training in ("lora", "full", "frozen"),
           f"backbone.training: expected lora, full or frozen, got '{b.training}'")
    _check(b.lora_r >= 1, f"backbone.lora_r: expected >= 1, got {b.lora_r}")
    _check(b.lora_alpha > 0, f"backbone.lora_alpha: expected > 0, got {b.lora_alpha}")
    _check(0 <= b.lora_dropout < 1, f"backbone.lora_dropout: expected in [0, 1), got {b.lora_dropout}")
    wrong = [x for x in b.lora_targets if x not in LORA_TARGETS]
    _check(bool(b.lora_targets) and not wrong, f"backbone.lora_targets: expected a list of some of "
                                               f"{', '.join(LORA_TARGETS)}, got {list(b.lora_targets)}")
    _check(d.max_users >= 0, f"data.max_users: expected >= 0 (0: all), got {d.max_users}")
    _check(spec.analysis.users >= 0, f"analysis.users: expected >= 0 (0: all), got {spec.analysis.users}")
    _check(spec.analysis.split in ("valid", "test"),
           f"analysis.split: expected 'valid' or 'test', got '{spec.analysis.split}'")
    _check("{items}" in r.prompt, "rec.prompt: must contain the placeholder {items}")
    _validate_references(spec)
    if spec.kind == "student":
        _validate_distill(spec)
    if spec.kind == "drop":
        _validate_drop(spec.drop)
    if spec.kind == "sweep":
        _check(len(spec.depths) > 0 and all(x >= 1 for x in spec.depths),
               f"depths: expected a list of depths >= 1, got {list(spec.depths)}")


def _validate_references(spec: RunSpec) -> None:
    """Every run a spec names is a plain run id: it becomes a folder name, so nothing may climb out."""
    named = {"sasrec_run": spec.sasrec_run, "distill.teacher_run": spec.distill.teacher_run,
             "analysis.run": spec.analysis.run, "analysis.against": spec.analysis.against,
             "drop.run": spec.drop.run, "drop.analysis_run": spec.drop.analysis_run}
    for field, run_id in named.items():
        if run_id:
            try:
                check_run_id(run_id)
            except ValueError as exc:
                raise ConfigError(f"{field}: {exc}") from None


def _validate_sasrec(spec: RunSpec) -> None:
    s = spec.sasrec
    for name in ("hidden", "layers", "heads", "epochs", "batch_size"):
        _check(getattr(s, name) >= 1, f"sasrec.{name}: expected >= 1, got {getattr(s, name)}")
    _check(s.hidden % s.heads == 0, f"sasrec.hidden: {s.hidden} is not divisible by sasrec.heads={s.heads}")
    _check(0 <= s.dropout < 1, f"sasrec.dropout: expected in [0, 1), got {s.dropout}")
    _check(s.lr > 0, f"sasrec.lr: expected > 0, got {s.lr}")
    _check(s.patience >= 0, f"sasrec.patience: expected >= 0, got {s.patience}")


def _validate_distill(spec: RunSpec) -> None:
    k = spec.distill
    for name in ("lambda_cos", "lambda_norm", "lambda_sup"):
        value = getattr(k, name)
        _check(value >= 0, f"distill.{name}: expected >= 0, got {value}")
    _check(k.blocks >= 1, f"distill.blocks: expected >= 1, got {k.blocks}")
    _check(k.teacher_states in ("cached", "live"),
           f"distill.teacher_states: expected 'cached' or 'live', got '{k.teacher_states}'")
    _check(k.cache_budget_gb >= 0, "distill.cache_budget_gb: expected a number of GB >= 0 (0: auto, half the "
                                   f"free device memory), got {k.cache_budget_gb!r}")


def _validate_drop(k: DropConfig) -> None:
    # n < the run's depth is checked when the run's depth is known (core/stages/drop.py)
    _check(bool(k.run), "drop.run: expected the id of a finished teacher or student run, got ''")
    _check(k.rule in DROP_RULES, f"drop.rule: expected one of {', '.join(DROP_RULES)}, got '{k.rule}'")
    _check(k.n >= 0, f"drop.n: expected a whole number of layers >= 0, got {k.n!r}")
    _check(k.heal_steps >= 0,
           f"drop.heal_steps: expected a whole number of steps >= 0 (0: not healed), got {k.heal_steps!r}")
    _check(all(x >= 1 for x in k.layers),
           f"drop.layers: expected 1-based layer numbers >= 1, got {list(k.layers)}")
    _check(len(set(k.layers)) == len(k.layers), f"drop.layers: a layer is listed twice in {list(k.layers)}")
    if k.rule == "list":
        _check(len(k.layers) > 0, "drop.layers: rule 'list' needs the layers to drop, e.g. [3, 4]")
    else:
        _check(not k.layers, f"drop.layers: only rule 'list' takes layers; rule '{k.rule}' picks its own n={k.n} "
                             f"layers, got layers {list(k.layers)}")


def check_blocks(teacher_depth: int, student_depth: int, blocks: int) -> None:
    """Refuse a block count that does not divide both depths, naming the valid ones."""
    options = valid_blocks(teacher_depth, student_depth)
    _check(blocks in options,
           f"distill.blocks: B={blocks} must divide both the teacher depth {teacher_depth} and the "
           f"student depth {student_depth}; valid B: {', '.join(map(str, options))}")


def block_pairs(teacher_depth: int, student_depth: int, blocks: int) -> list[tuple[int, int]]:
    """[(teacher layer k*m, student layer k*n)] for k = 1..B, m and n the depths over B; refuses B not
    dividing both depths (docs/method.md section 3)."""
    check_blocks(teacher_depth, student_depth, blocks)
    m, n = teacher_depth // blocks, student_depth // blocks
    return [(k * m, k * n) for k in range(1, blocks + 1)]


# What a student must share with its teacher: the data (the same users, items and splits), the
# base LLM (the block pairs align the same model's states) and the prompt (the same token positions).
MUST_MATCH = (("data", lambda s: s.data), ("backbone.base", lambda s: s.backbone.base),
              ("rec.prompt", lambda s: s.rec.prompt))


def teacher_mismatch(teacher: RunSpec, student: RunSpec) -> str | None:
    """The first setting a student must share with its teacher and does not, as 'field: teacher's
    value, student's value' (a data section names its differing fields), or None when all match."""
    for name, part in MUST_MATCH:
        theirs, ours = part(teacher), part(student)
        if theirs == ours:
            continue
        if name == "data":
            fields = [f.name for f in dataclasses.fields(ours) if getattr(theirs, f.name) != getattr(ours, f.name)]
            return "; ".join(f"data.{f}: the teacher's is {getattr(theirs, f)!r}, the student's "
                             f"{getattr(ours, f)!r}" for f in fields)
        return f"{name}: the teacher's is {theirs!r}, the student's {ours!r}"
    return None


def depth_warning(teacher_depth: int, student_depth: int) -> str | None:
    """A warning (not an error) when the student is not shallower than its teacher."""
    if student_depth < teacher_depth:
        return None
    return (f"warning: the student has {student_depth} layers and its teacher {teacher_depth}; distillation "
            "is meant to make a shallower model (student layers < teacher depth)")
