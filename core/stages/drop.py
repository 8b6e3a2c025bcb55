"""The drop stage: a finished teacher or student with some decoder layers removed, evaluated as it
is and, optionally, after a short LoRA fine-tune ("healing", Gromov et al. 2024).

The layers come from a rule (core/eval/drop_rules.py): truncation (last n), block influence
(ShortGPT, Men et al. 2024), angular distance (Gromov et al. 2024), or an explicit list. The
influence and angular rules read the similarity rows of an analysis run of the same model measured
on the validation users (core/jobs/drop_plan.py plans it), never on the test users scored here.
The model is evaluated on the source run's data, prompt and users, both protocols, as model "drop"
(step 0); with `drop.heal_steps` > 0 the weights the source trained (LoRA and the item maps) train
for that many steps with plain cross-entropy through the shared loop, the best by validation is
kept, and it is evaluated as model "drop-healed" (step = heal_steps).
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from core.config import RunSpec
from core.data.prepare import prepare
from core.jobs.drop_plan import SOURCE_KINDS, analysis_of, check_healing
from core.eval.drop_rules import pick
from core.eval.evaluate import eval_users
from core.eval.records import metric_rows, metric_values
from core.models.drop import drop_layers
from core.stages.common import fit, manifest, write_evaluation
from core.stages.context import RunContext
from core.stages.llm import StageError, evaluate, examples, load_finished_model, parameter_counts
from core.store import checkpoints, runs as run_store
from core.store.atomic import write_json_atomic
from core.store.segments import read_segment, scan_events
from core.runtime.device import seed_everything

DROPPED, HEALED = "drop", "drop-healed"


def similarity_of(ctx: RunContext, run_id: str) -> list[dict]:
    """Every visible similarity row of one run, read from its own segments."""
    scan = scan_events(ctx.paths.run_dir(run_id))
    return [row for segment in scan.segments.get("similarity", []) for row in read_segment(segment).to_pylist()]


def analysis_rows(ctx: RunContext, spec: RunSpec, source: RunSpec) -> tuple[list[dict], str]:
    """(similarity rows, the model name of drop.run in them) from drop.analysis_run, after checking that
    it is a finished analysis of drop.run that never measured the test users."""
    d, name = spec.drop, spec.drop.analysis_run
    if not name:
        raise StageError(f"drop.analysis_run: rule '{d.rule}' reads an analysis of run '{d.run}' and none is named; "
                         "plan the drop with `slmrec run drop` (or core.planning.plan), which adds one")
    a = analysis_of(ctx.paths, spec)
    status = run_store.read_state(ctx.paths.runs, name).get("status")
    if status != "done":
        raise StageError(f"drop.analysis_run: analysis run '{name}' is {status}, not done")
    model = source.kind
    if a.get("run") != d.run and run_store.read_spec(ctx.paths.runs, a["run"])["spec"].get("kind") == source.kind:
        model += "2"  # the analysis names a second run of the same kind "<kind>2"
    return similarity_of(ctx, name), model


def _heal(ctx: RunContext, spec: RunSpec, source: RunSpec, model, prepared):
    """Fine-tune the source's trainable weights (LoRA, maps) for drop.heal_steps steps; the shared loop's result."""
    for name, param in model.named_parameters():
        param.requires_grad_(".lora_" in name or name.startswith(("input_map.", "score_head.")))
    steps = spec.drop.heal_steps
    # heal_steps is the budget: as many epochs as needed, each at least one step
    heal_spec = replace(spec, train=replace(spec.train, max_steps=steps, epochs=max(spec.train.epochs, steps)))
    seed_everything(spec.train.seed)
    data = examples(source, prepared, ctx.device)

    def loss_fn(indices: torch.Tensor):
        ce = model.loss(data.inputs[indices], data.targets[indices])
        return ce, {"total": ce, "ce": ce}

    result = fit(ctx, heal_spec, model, loss_fn, len(data),
                 lambda: evaluate(model, spec_for_eval(spec, source), prepared, "valid", ctx.dist), HEALED,
                 {"role": HEALED, "layer_indices": list(model.backbone.layer_indices)})
    model.requires_grad_(False)
    return result


def spec_for_eval(spec: RunSpec, source: RunSpec) -> RunSpec:
    """The source's data, prompt and evaluated users, with this run's device settings: a drop is scored
    on exactly the users its source was."""
    return replace(source, train=replace(spec.train, eval_users=source.train.eval_users))


def _test(ctx: RunContext, spec: RunSpec, model, prepared, step: int, name: str, write: bool) -> tuple[dict, float]:
    """({protocol/metric: value}, seconds) of the test evaluation; stored unless `write` is False."""
    start = time.perf_counter()
    with torch.no_grad():
        ranks = evaluate(model, spec, prepared, "test", ctx.dist)
    seconds = time.perf_counter() - start
    if write:
        return write_evaluation(ctx, step, name, None, ranks), seconds
    return metric_values(metric_rows(ctx.run_id, step, name, None, ranks)), seconds


def run_drop(spec: RunSpec, ctx: RunContext) -> dict:
    """Drop the chosen layers of drop.run, evaluate on test, and (heal_steps > 0) heal and evaluate again."""
    d = spec.drop
    kind = run_store.read_spec(ctx.paths.runs, d.run).get("kind")
    if kind not in SOURCE_KINDS:
        raise StageError(f"drop.run: run '{d.run}' is a {kind} run; layers are dropped from a teacher or student run")
    ctx.set_state(phase="load")
    source, model = load_finished_model(ctx, d.run, spec.train)
    check_healing(spec, source)
    depth = model.num_layers
    rows, name = analysis_rows(ctx, spec, source) if d.rule in ("influence", "angular") else ([], "")
    numbers = pick(d.rule, depth, d.n, d.layers, rows, name, d.run, d.analysis_run)
    original = drop_layers(model.backbone, numbers)
    model.adapters, model.adapter_layers = torch.nn.ModuleList(), ()  # block boundaries of layers that may be gone
    ctx.log(f"drop: rule {d.rule}, layers {numbers} of {depth} (original indices {original}); "
            f"{model.num_layers} kept: {list(model.backbone.layer_indices)}")
    prepared = prepare(source.data, ctx.paths.data_root)
    scored = spec_for_eval(spec, source)
    n_users = len(eval_users(prepared.n_users, scored.train.eval_users))
    resumed = checkpoints.load_resume_state(ctx.checkpoint_dir) is not None  # its "drop" rows are stored
    ctx.set_state(phase="test")
    metrics, seconds = {}, {}
    metrics[DROPPED], seconds[DROPPED] = _test(ctx, scored, model, prepared, 0, DROPPED, write=not resumed)
    timings = [ctx.timing_row("inference", n_users, seconds[DROPPED])]
    healed = None
    if d.heal_steps:
        healed = _heal(ctx, spec, source, model, prepared)
        ctx.set_state(phase="test")
        metrics[HEALED], seconds[HEALED] = _test(ctx, scored, model, prepared, d.heal_steps, HEALED, write=True)
        timings.append(ctx.timing_row("train", healed.samples, healed.train_seconds))
    ctx.events.append("timings", timings)
    ctx.events.flush()
    result = {"dropped": numbers, "dropped_original": original, "kept": model.num_layers, "depth": depth,
              "rule": d.rule, "n": len(numbers), "heal_steps": d.heal_steps, "source_kind": kind,
              "metrics": metrics, "seconds": seconds, "parameters": parameter_counts(model)}
    if healed is not None:
        result["best_step"] = healed.best_step
    _write_manifest(ctx, spec, model, result, healed is not None)
    return result


def _write_manifest(ctx: RunContext, spec: RunSpec, model, result: dict, healed: bool) -> None:
    """checkpoints/<run_id>/manifest.json: the drop's settings and result (beside the healed weights)."""
    info = {**manifest(spec, ctx, model, role=DROPPED, layer_indices=list(model.backbone.layer_indices)), **result}
    if healed:
        checkpoints.write_manifest(ctx.checkpoint_dir, {**checkpoints.read_manifest(ctx.checkpoint_dir), **info})
    else:
        ctx.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(ctx.checkpoint_dir / checkpoints.MANIFEST_FILE, info)
