"""The training budget of finished runs, read from the store, for reports (`slmrec reproduce`).

A report says what each trained model was given: epochs (set, and run: SASRec stops early after
`patience` evaluations without improvement), examples per epoch, optimizer steps, batch, max_len,
the training targets, and the time it took. The spec holds the settings; the counts are derived
from what a run records, since no field stores them:
- optimizer steps: the step of the model's last validation evaluation (the loop always evaluates
  at its final step);
- steps per epoch: from the first logged loss row, at step s and fractional epoch e <= 1 of the
  first epoch: s * grad_accum / e micro-batches per epoch; else the first validation step divided
  by eval_every;
- examples per epoch: the training samples of the run's timings row over the epochs they cover.
  A resumed run's row counts only its last session; when that session does not cover whole
  epochs, examples per epoch is left out rather than guessed.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass

from core.store.paths import Paths
from core.store.query import ResultsDB


@dataclass(frozen=True)
class Budget:
    epochs_set: int
    epochs_run: float
    steps: int
    examples_per_epoch: int | None  # None: not whole epochs in the recorded session
    batch_size: int  # examples per optimizer step (batch x grad_accum)
    max_len: int
    train_targets: str
    train_s: float  # training only, validation passes excluded
    wall_s: float  # the run, start to finish (data, training, evaluation, saving)


def run_budgets(paths: Paths, runs: list[tuple[str, str]]) -> dict[tuple[str, str], Budget]:
    """{(run_id, model): Budget} of finished trained runs (SASRec, teacher, student)."""
    ids = sorted({run_id for run_id, _ in runs})
    marks = ", ".join("?" for _ in ids)
    with ResultsDB(paths.data_root) as db:
        state = {r["run_id"]: r for r in db.query(
            f"SELECT run_id, spec, resume_step, epoch(finished_at) - epoch(started_at) AS wall_s FROM runs "
            f"WHERE run_id IN ({marks})", ids)}
        valid = {(r["run_id"], r["model"]): r for r in db.query(
            f"SELECT run_id, model, min(step) AS first, max(step) AS last FROM metrics WHERE split = 'valid' "
            f"AND layer IS NULL AND run_id IN ({marks}) GROUP BY run_id, model", ids)}
        first_loss = {r["run_id"]: r for r in db.query(
            f"SELECT run_id, arg_min(step, step) AS step, arg_min(epoch, step) AS epoch FROM losses "
            f"WHERE run_id IN ({marks}) GROUP BY run_id", ids)}
        trained = {r["run_id"]: r for r in db.query(
            f"SELECT run_id, last(samples) AS samples, last(seconds) AS seconds FROM timings "
            f"WHERE phase = 'train' AND run_id IN ({marks}) GROUP BY run_id", ids)}
    return {(run_id, model): _budget(state[run_id], valid[(run_id, model)], first_loss.get(run_id), trained[run_id])
            for run_id, model in runs}


def _budget(state: dict, valid: dict, first_loss: dict | None, trained: dict) -> Budget:
    spec = json.loads(state["spec"])
    train, data = spec["train"], spec["data"]
    if spec["kind"] == "sasrec":  # SASRec keeps its own schedule (core/stages/sasrec.py sasrec_schedule)
        epochs, batch, accum, targets = spec["sasrec"]["epochs"], spec["sasrec"]["batch_size"], 1, "every position"
    else:
        epochs, batch, accum, targets = train["epochs"], train["batch_size"], train["grad_accum"], data["train_targets"]
    per_epoch = _steps_per_epoch(first_loss, valid["first"], accum, train["eval_every"])
    steps, start = valid["last"], state["resume_step"] or 0
    examples = None
    if start % per_epoch == 0 and steps % per_epoch == 0 and steps > start:
        examples = round(trained["samples"] / ((steps - start) / per_epoch))
    return Budget(epochs, steps / per_epoch, steps, examples, batch * accum, data["max_len"], targets,
                  trained["seconds"], state["wall_s"])


def _steps_per_epoch(first_loss: dict | None, first_valid: int, accum: int, eval_every: int) -> int:
    if first_loss and 0 < first_loss["epoch"] <= 1:
        micro_batches = round(first_loss["step"] * accum / first_loss["epoch"])
        return math.ceil(micro_batches / accum)
    return first_valid // eval_every


def _shown(value, digits: int) -> str:
    if value is None:
        return "not recorded"
    return value if isinstance(value, str) else f"{value:,.{digits}f}"


def _value(values: list, digits: int = 0) -> str:
    """One value when the runs agree, else 'low-high' (numbers) or each value once."""
    shown = list(dict.fromkeys(_shown(v, digits) for v in values))
    if len(shown) == 1:
        return shown[0]
    if all(isinstance(v, (int, float)) for v in values):
        return f"{_shown(min(values), digits)}-{_shown(max(values), digits)}"
    return " / ".join(shown)


def _seconds(values: list[float]) -> str:
    digits = 1 if max(values) < 10 else 0
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def budget_lines(paths: Paths, rows: dict[str, list[tuple[str, str]]]) -> list[str]:
    """The report's budget section: one line per trained row (Popularity has no training)."""
    trained = {label: runs for label, runs in rows.items() if all(m != "popularity" for _, m in runs)}
    budgets = run_budgets(paths, [run for runs in trained.values() for run in runs])
    lines = ["## Training budget", "",
             ("What each trained row was given, read from its runs (core/results/budget.py): epochs set and run "
             "(SASRec stops early after `patience` validations without improvement), training examples per epoch, "
             "optimizer steps in all, batch (examples per optimizer step), max_len, training targets (`last`: one "
             "per user; `prefixes`: every prefix; SASRec: the next item at every position of each user's "
             "sequence), and the time: training seconds (validation excluded) and the run's wall seconds, mean ± "
             "std over the row's runs, as they happened."), "",
             ("| model | runs | epochs set / run | examples per epoch | optimizer steps | batch | max_len | "
              "train targets | train s | run wall s |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for label, runs in trained.items():
        b = [budgets[run] for run in runs]
        lines.append(f"| {label} | {len(b)} | {_value([x.epochs_set for x in b])} / "
                     f"{_value([x.epochs_run for x in b], 1 if any(x.epochs_run % 1 for x in b) else 0)} | "
                     f"{_value([x.examples_per_epoch for x in b])} | {_value([x.steps for x in b])} | "
                     f"{_value([x.batch_size for x in b])} | {_value([x.max_len for x in b])} | "
                     f"{_value([x.train_targets for x in b])} | {_seconds([x.train_s for x in b])} | "
                     f"{_seconds([x.wall_s for x in b])} |")
    return lines + [""]
