"""Planning a drop-layer run: check its source run, and the analysis parent its rule reads.

A drop run (core/stages/drop.py) evaluates a finished teacher or student with some decoder layers
removed. Here, before anything is queued, the source run is checked (it exists, it is a teacher or
student, the layers asked for exist and leave one), the drop spec takes the source's data and
prompt (it is scored on the source's own test users), and a rule that reads similarity rows
(influence, angular) gets an analysis parent of the source on the VALID split: the rules must never
read the states of the test users the drop is scored on. Standard library and the store only: the
app plans drop runs through this without torch.
"""

from __future__ import annotations

from dataclasses import replace

from core.config import ConfigError, RunSpec, TrainConfig, from_dict
from core.eval.drop_rules import RuleError, check_n, listed
from core.jobs.references import referenced_spec
from core.store.paths import Paths

SOURCE_KINDS = ("teacher", "student")
READS_ANALYSIS = ("influence", "angular")
ANALYSIS_SPLIT = "valid"


def source_spec(paths: Paths, spec: RunSpec) -> RunSpec:
    """The spec of drop.run, refused with a ConfigError naming the field when it cannot be dropped from."""
    d = spec.drop
    header = referenced_spec(paths, "drop.run", d.run, "expected the id of a teacher or student run (`slmrec runs` lists them)")
    if header.get("kind") not in SOURCE_KINDS:
        raise ConfigError(f"drop.run: run '{d.run}' is a {header.get('kind')} run; layers are dropped from a "
                          f"teacher or student run")
    source = from_dict(header["spec"])
    check_healing(spec, source)
    if d.analysis_run:
        analysis_of(paths, spec)
    depth = source.backbone.depth
    try:
        if d.rule == "list":
            listed(depth, d.layers, d.run)
        else:
            check_n(depth, d.n, d.run)
    except RuleError as exc:
        raise ConfigError(str(exc)) from exc
    return source


def analysis_of(paths: Paths, spec: RunSpec) -> dict:
    """The analysis section of drop.analysis_run, refused unless it analyses drop.run on users other
    than the test users (the rules must never read the states of the users the drop is scored on)."""
    d = spec.drop
    header = referenced_spec(paths, "drop.analysis_run", d.analysis_run, "leave it empty and an analysis is planned")
    a = header["spec"].get("analysis") or {}
    if header.get("kind") != "analysis" or d.run not in (a.get("run"), a.get("against")):
        raise ConfigError(f"drop.analysis_run: run '{d.analysis_run}' is not an analysis of run '{d.run}'")
    if a.get("split", "test") == "test":
        raise ConfigError(f"drop.analysis_run: analysis run '{d.analysis_run}' measured the test users "
                          f"(analysis.split 'test'), on which the drop is scored; use an analysis on the "
                          f"'{ANALYSIS_SPLIT}' split (leave drop.analysis_run empty and one is planned)")
    return a


def check_healing(spec: RunSpec, source: RunSpec) -> None:
    """Healing fine-tunes LoRA adapters: refuse it for a source trained without them."""
    if spec.drop.heal_steps and source.backbone.training != "lora":
        raise ConfigError(f"drop.heal_steps: healing fine-tunes LoRA adapters, but run '{spec.drop.run}' was "
                          f"trained with backbone.training '{source.backbone.training}'; set heal_steps to 0")


def analysis_parent(spec: RunSpec, source: RunSpec) -> RunSpec:
    """The analysis of drop.run alone on the valid split that the influence and angular rules read.

    Its train section holds only what changes how it runs (device, precision, no-grad batch), so
    drop runs that differ in their healing settings share one analysis.
    """
    train = replace(TrainConfig(), device=spec.train.device, precision=spec.train.precision,
                    eval_batch_size=spec.train.eval_batch_size)
    analysis = replace(spec.analysis, run=spec.drop.run, against="", split=ANALYSIS_SPLIT)
    return RunSpec(kind="analysis", name=f"{spec.drop.run} for drop", data=source.data, rec=source.rec,
                   train=train, analysis=analysis)


def prepare_drop(paths: Paths, spec: RunSpec) -> tuple[RunSpec, RunSpec | None]:
    """(the drop spec with the source's data and prompt, its analysis parent or None)."""
    source = source_spec(paths, spec)
    spec = replace(spec, data=source.data, rec=source.rec)
    if spec.drop.rule not in READS_ANALYSIS or spec.drop.analysis_run:
        return spec, None
    return spec, analysis_parent(spec, source)
