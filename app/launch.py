"""The Launch form's logic: presets, form values -> specs, size and cost estimates, reuse, submit.

A launch is one pipeline: sasrec -> teacher (Lt layers) -> student (Ls layers, distilled in B
blocks) -> analysis (per-layer similarity and readout of student against teacher). The specs come
from core's one pipeline builder (core.jobs.specs), so validation is core's: a bad value raises
ConfigError with core's message and nothing is submitted. `submit_pipeline` is the one place that
writes: through core.jobs.planning, never by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from core.config import ConfigError, apply_preset, settings_hash, valid_blocks
from core.jobs import planning
from core.jobs.specs import PipelineSpecs, pipeline_specs
from core.store.paths import DEFAULT_MODEL_DIR, Paths
from core.store.runs import REUSABLE

# Preset choices of the form: (core preset name, teacher depth, student depth, blocks).
CHOICES = {
    "cpu-quick": ("cpu-quick", 8, 4, 4),
    "paper 4←8": ("paper", 8, 4, 4),
    "deep 4←30": ("deep", 30, 4, 2),
    "tiny (seconds, random model)": ("tiny", 4, 2, 2),
    "custom": ("", 8, 4, 4),
}
# The random test LLaMA of core.models.tiny (that module imports torch; a test keeps these equal).
TINY_CONFIG = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 8, "num_attention_heads": 4,
               "num_key_value_heads": 2, "vocab_size": 512}
DEVICES = ("auto", "cpu", "cuda", "mps")
BASE_NAMES = {"smollm2": "SmolLM2-135M-Instruct", "tiny": "tiny random LLaMA (tests, demos)"}
TARGETS = {"one per user (public code)": "last", "all prefixes (paper)": "prefixes"}


@dataclass(frozen=True)
class LaunchSettings:
    """Everything the Launch form sets."""

    preset: str = "cpu-quick"  # a key of CHOICES
    dataset: str = "ml-100k"
    base: str = "smollm2"
    teacher_depth: int = 8
    student_depth: int = 4
    blocks: int = 4
    layer_selection: str = "first"  # the student's layers
    lambda_cos: float = 1.0
    lambda_norm: float = 0.1
    lambda_sup: float = 1.0
    training: str = "lora"
    teacher_epochs: int = 3
    student_epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 64
    max_len: int = 30
    train_targets: str = "last"
    n_negatives: int = 999  # sampled-protocol negatives per user (data.n_negatives)
    mask_history: bool = True  # full ranking leaves out the user's training items (rec.mask_history)
    device: str = "auto"
    seed: int = 0
    name: str = ""


def defaults(choice: str, dataset: str) -> LaunchSettings:
    """The form's values for a preset choice: core's preset applied to core's defaults."""
    preset, teacher, student, blocks = CHOICES[choice]
    spec = apply_preset(preset, {}, "student")
    return LaunchSettings(
        preset=choice, dataset=dataset, base=spec.backbone.base, teacher_depth=teacher, student_depth=student,
        blocks=blocks, layer_selection=spec.backbone.layer_selection, lambda_cos=spec.distill.lambda_cos,
        lambda_norm=spec.distill.lambda_norm, lambda_sup=spec.distill.lambda_sup, training=spec.backbone.training,
        teacher_epochs=spec.train.epochs, student_epochs=spec.train.epochs, lr=spec.train.lr,
        batch_size=spec.train.batch_size, max_len=spec.data.max_len, train_targets=spec.data.train_targets,
        n_negatives=spec.data.n_negatives, mask_history=spec.rec.mask_history, device=spec.train.device,
        seed=spec.train.seed)


def build_plan(s: LaunchSettings, base_layers: int | None = None) -> PipelineSpecs:
    """The three specs of a launch; ConfigError (core's message) for any invalid value."""
    if base_layers is not None:
        for what, depth in (("teacher depth", s.teacher_depth), ("student layers", s.student_depth)):
            if not 1 <= depth <= base_layers:
                raise ConfigError(f"backbone.depth: {what} {depth} is not possible; {s.base} has {base_layers} "
                                  f"decoder layers")
    shared = {"data": {"dataset": s.dataset, "max_len": s.max_len, "train_targets": s.train_targets,
                       "n_negatives": s.n_negatives},
              "train": {"lr": s.lr, "batch_size": s.batch_size, "device": s.device, "seed": s.seed},
              "backbone": {"base": s.base, "training": s.training}, "rec": {"mask_history": s.mask_history},
              "name": s.name}
    student = {"train": {"epochs": s.student_epochs}, "backbone": {"layer_selection": s.layer_selection},
               "distill": {"blocks": s.blocks, "lambda_cos": s.lambda_cos, "lambda_norm": s.lambda_norm,
                           "lambda_sup": s.lambda_sup}}
    return pipeline_specs(CHOICES[s.preset][0], shared, s.teacher_depth, s.student_depth,
                          teacher={"train": {"epochs": s.teacher_epochs}}, student=student)


def finder(runs: pd.DataFrame):
    """find(spec) -> the newest run id with the spec's kind and settings hash in REUSABLE, or None.

    The same rule as core.store.runs.find_run_by_hash, over an already-read runs table.
    """
    usable = runs[runs["status"].isin(REUSABLE)]
    newest = usable.groupby(["kind", "settings_hash"])["run_id"].max().to_dict()
    return lambda spec: newest.get((spec.kind, settings_hash(spec)))


def reuse_preview(runs: pd.DataFrame, plan: PipelineSpecs) -> list[dict]:
    """For each stage: the finished/queued/running run it would reuse (same settings hash), or ''."""
    find = finder(runs)
    found = {"sasrec": find(planning.sasrec_parent(plan.teacher))}
    found["teacher"] = find(replace(plan.teacher, sasrec_run=found["sasrec"])) if found["sasrec"] else None
    found["student"] = found["analysis"] = None
    if found["teacher"]:
        found["student"] = find(plan.linked(found["sasrec"], found["teacher"], "").student)
    if found["student"]:
        found["analysis"] = find(plan.linked(found["sasrec"], found["teacher"], found["student"]).analysis)
    status = dict(zip(runs["run_id"], runs["status"]))
    return [{"stage": stage, "reuses": run_id or "", "status": status.get(run_id, "new run")}
            for stage, run_id in found.items()]


def submit_pipeline(paths: Paths, plan: PipelineSpecs) -> list[str]:
    """Queue sasrec -> teacher -> student -> analysis (core.planning.plan_pipeline); the four run ids.

    Each link reuses a finished, queued or running run with the same settings hash.
    """
    return planning.plan_pipeline(paths, plan)


def existing_runs(paths: Paths) -> set[str]:
    """The run ids on disk now (to tell the runs a submission reused from the ones it created)."""
    if not paths.runs.is_dir():
        return set()
    return {p.name for p in paths.runs.iterdir() if p.is_dir() and not p.name.startswith(".")}


def submission_text(run_ids: list[str], before: set[str], names: dict[str, str]) -> str:
    """'Queued 4 runs (2 reused, 2 new): <label> (reused); …' for the run ids a submission returned, given the
    runs that existed before it and their labels."""
    reused = sum(1 for r in run_ids if r in before)
    count = len(run_ids)
    return (f"Queued {count} run{'s' if count > 1 else ''} ({reused} reused, {count - reused} new): "
            + "; ".join(f"{names.get(r, r)} ({'reused' if r in before else 'new'})" for r in run_ids))


def blocks_note(old: int, new: int, teacher: int, student: int) -> str:
    """Why the form changed B: it must divide both depths; the valid values."""
    options = ", ".join(map(str, valid_blocks(teacher, student)))
    return (f"Blocks B changed from {old} to {new}: B must divide both the teacher depth {teacher} and the student "
            f"depth {student}, so the valid B are {options}. Pick another valid B in the box above if you "
            "prefer.")


# --- sizes and cost --------------------------------------------------------------------------

def base_choices(paths: Paths) -> list[str]:
    """'smollm2' (if fetched), 'tiny', and any other model folder under checkpoints/base/."""
    folder = paths.base_models
    found = ["smollm2"] if (folder / DEFAULT_MODEL_DIR / "config.json").is_file() else []
    found.append("tiny")
    if folder.is_dir():
        found += sorted(str(p) for p in folder.iterdir()
                        if p.is_dir() and p.name != DEFAULT_MODEL_DIR and (p / "config.json").is_file())
    return found


def base_name(base: str) -> str:
    """A readable name for a backbone.base value."""
    return BASE_NAMES.get(base, Path(base).name)


def model_config(paths: Paths, base: str) -> dict | None:
    """The base LLM's config.json as a dict (None when it is not on this machine)."""
    if base == "tiny":
        return dict(TINY_CONFIG)
    folder = paths.base_models / DEFAULT_MODEL_DIR if base == "smollm2" else Path(base)
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None


def layer_params(cfg: dict) -> int:
    """Parameters of one LLaMA decoder layer: attention (grouped KV), gated MLP, two RMSNorms."""
    h, inter = cfg["hidden_size"], cfg["intermediate_size"]
    heads = cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or h // heads
    attention = h * heads * head_dim + 2 * h * kv_heads * head_dim + heads * head_dim * h
    if cfg.get("attention_bias"):
        attention += heads * head_dim + 2 * kv_heads * head_dim + h
    mlp = 3 * h * inter + (2 * inter + h if cfg.get("mlp_bias") else 0)
    return attention + mlp + 2 * h


def estimate(cfg: dict, s: LaunchSettings, item_dim: int, n_items: int | None) -> list[dict]:
    """Parameters and relative training cost of teacher and student (an estimate from config.json).

    Inference parameters = kept layers + final norm + input and score maps + item table (the token
    vocabulary is dropped after embedding the prompt). Cost per training step scales with the
    number of layers run, so it is given relative to the full-depth model.
    """
    h, inter, total = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    per_layer, maps = layer_params(cfg), (item_dim * h + h) + (h * item_dim + item_dim)
    table = (n_items + 1) * item_dim if n_items else 0
    lora = 3 * 16 * (h + inter)  # r=16 on gate, up and down: A (r x in) + B (out x r) each
    rows = []
    for role, depth in (("teacher", s.teacher_depth), ("student", s.student_depth)):
        layers = depth * per_layer
        trainable = {"lora": depth * lora, "full": layers + h, "frozen": 0}[s.training] + maps
        if role == "student" and s.lambda_sup > 0:
            trainable += (s.blocks - 1) * (h * item_dim + item_dim)  # multiple-supervision adapters
        rows.append({"model": role, "layers": depth, "layer params": layers,
                     "inference params": layers + h + maps + table, "trainable params": trainable,
                     "cost per step vs full depth": round(depth / total, 3),
                     "cost per step vs teacher": round(depth / s.teacher_depth, 3),
                     "speed vs teacher": "–" if role == "teacher" else speed(s.teacher_depth, depth)})
    return rows


def speed(teacher_depth: int, student_depth: int) -> str:
    """'2.00× faster', '2.00× slower' or 'the same' per training step (cost grows with the layers run)."""
    if student_depth == teacher_depth:
        return "the same (no smaller model)"
    if student_depth < teacher_depth:
        return f"{teacher_depth / student_depth:.2f}× faster"
    return f"{student_depth / teacher_depth:.2f}× slower (deeper than its teacher)"
