"""`slmrec reproduce`: the paper's comparison table on our data.

Rows: popularity, SASRec, the teacher E4SRec_M, E4SRec_N without distillation, and SLMRec N<-M
with the four loss ablations (cos; cos+norm; cos+supervision; all three). Every row is run (or a
finished run with the same settings is reused) for each seed, evaluated under both protocols on
the test split, and written as Markdown + CSV under docs/results/ with mean and std over seeds,
95% CIs (over seeds and users where a row has several seeds), each trained row's budget
(core/results/budget.py), parameters at inference and the wall times as they happened. The report
prints no speed ratio: wall times of runs that share a machine are not controlled measurements,
and ratios come from `slmrec bench` medians on a stated machine.
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.eval.metrics import METRICS
from core.jobs import planning
from core.jobs.specs import pipeline_specs
from core.store import runs as run_store
from core.store.checkpoints import read_manifest
from core.store.paths import Paths
from core.store.query import query


@dataclass(frozen=True)
class Plan:
    """Which config preset, depths, blocks and seeds a reproduction uses."""

    config_preset: str
    teacher_depth: int
    student_depth: int
    blocks: int
    seeds: tuple[int, ...]
    shared_teacher: bool = False  # one SASRec + teacher (seed 0) for every student seed, to fit a CPU budget
    ablation_seeds: int = 0  # run the three ablation rows for the first this many seeds only (0: all)


PLANS = {
    "cpu": Plan("cpu-quick", 8, 4, 4, (0, 1, 2), shared_teacher=True),
    "paper": Plan("paper", 8, 4, 4, (0, 1, 2)),
    "tiny": Plan("tiny", 4, 2, 2, (0, 1)),
}
LAMBDAS = {  # row label suffix -> (lambda_cos, lambda_norm, lambda_sup)
    "no distillation": (0.0, 0.0, 0.0),
    "cos": (1.0, 0.0, 0.0),
    "cos+norm": (1.0, 0.1, 0.0),
    "cos+sup": (1.0, 0.0, 1.0),
    "all": (1.0, 0.1, 1.0),
}


def _done(paths: Paths, run_ids: list[str], execute: bool) -> bool:
    """Run what is not done yet (when `execute`) in this process; whether every run is done."""
    if execute:
        from core.jobs.foreground import run_planned  # noqa: PLC0415 - torch loads when a run executes

        run_planned(paths, run_ids, say=print)
    states = {r: run_store.read_state(paths.runs, r) for r in run_ids}
    unfinished = [(r, s) for r, s in states.items() if s["status"] != "done"]
    if execute and unfinished:
        run_id, state = unfinished[0]
        raise RuntimeError(f"run {run_id} ended {state['status']}: {state.get('error')}")
    return not unfinished


def row_order(plan: Plan) -> list[str]:
    """The report's rows, top to bottom."""
    m, n = plan.teacher_depth, plan.student_depth
    return ["Popularity", "SASRec", f"E4SRec_{m} (teacher)", f"E4SRec_{n} (no distillation)"] + \
        [f"SLMRec {n}<-{m} ({label})" for label in LAMBDAS if label != "no distillation"]


def run_rows(paths: Paths, dataset: str, plan: Plan, overrides: dict,
             execute: bool = True) -> dict[str, list[tuple[str, str]]]:
    """Run every row for every seed; {row label: [(run_id, model name in the store)]}.

    The two rows the comparison hinges on (E4SRec_N without distillation and SLMRec with all
    terms) run for every seed before the ablations, so a cut-short reproduction still answers it.
    With `execute` False nothing runs: missing runs are queued (for a worker) and left out.
    """
    rows: dict[str, list[tuple[str, str]]] = {}
    m, n = plan.teacher_depth, plan.student_depth
    jobs = [(seed, label) for label in ("no distillation", "all") for seed in plan.seeds]
    jobs += [(seed, label) for seed in plan.seeds[:plan.ablation_seeds or None] for label in LAMBDAS
             if label not in ("no distillation", "all")]
    for seed, label in jobs:
        base = {"data": {"dataset": dataset}, "train": {"seed": seed}}
        for section, values in overrides.items():
            base.setdefault(section, {}).update(values)
        cos, norm, sup = LAMBDAS[label]
        teacher_seed = plan.seeds[0] if plan.shared_teacher else seed
        chain = pipeline_specs(plan.config_preset, base, m, n, teacher={"train": {"seed": teacher_seed}},
                               student={"distill": {"blocks": plan.blocks, "lambda_cos": cos, "lambda_norm": norm,
                                                    "lambda_sup": sup}})
        ids = planning.plan(paths, chain.teacher)
        if not _done(paths, ids, execute):
            continue
        sasrec_id, teacher_id = ids[0], ids[-1]
        for name, model, run_id in (("Popularity", "popularity", sasrec_id), ("SASRec", "sasrec", sasrec_id),
                                    (f"E4SRec_{m} (teacher)", "teacher", teacher_id)):
            if (run_id, model) not in rows.get(name, []):
                rows.setdefault(name, []).append((run_id, model))
        ids = planning.plan(paths, chain.linked(sasrec_id, teacher_id, "").student)
        if _done(paths, ids, execute):
            name = f"E4SRec_{n} (no distillation)" if label == "no distillation" else f"SLMRec {n}<-{m} ({label})"
            rows.setdefault(name, []).append((ids[-1], "student"))
    return {name: rows[name] for name in row_order(plan) if name in rows}


def _test_metrics(paths: Paths, run_id: str, model: str) -> dict[str, float]:
    rows = query(paths.data_root, "SELECT protocol, metric, value FROM metrics WHERE run_id = ? AND split = 'test' "
                                  "AND model = ? AND layer IS NULL", [run_id, model])
    return {f"{r['protocol']}/{r['metric']}": r["value"] for r in rows}


def _costs(paths: Paths, run_id: str, model: str) -> dict[str, float]:
    if model in ("popularity", "sasrec"):
        return {}
    manifest = read_manifest(paths.checkpoint_dir(run_id))
    epochs = manifest["spec"]["train"]["epochs"]
    return {"params": manifest["parameters"]["inference"], "train_s_per_epoch": manifest["train_seconds"] / epochs,
            "inference_s": manifest["inference_seconds"]}


def user_ci(paths: Paths, runs: list[tuple[str, str]], protocol: str,
            metric: str = "NDCG@10") -> tuple[float, float, str]:
    """95% bootstrap CI of a row's metric and what it resamples (compare.pooled_ci): the training
    seeds and the test users for a row of several seeds, the users only for one."""
    from core.eval.metrics import per_user_metric  # noqa: PLC0415
    from core.results.compare import pooled_ci, resolve, user_ranks  # noqa: PLC0415

    per_seed = [user_ranks(paths, resolve(paths, f"{r}:{m}"), "test", protocol) for r, m in runs]
    users = sorted(set.intersection(*(set(x) for x in per_seed)))
    values = np.stack([per_user_metric(np.array([x[u] for u in users]), metric) for x in per_seed])  # (seeds, users)
    ci, resampled = pooled_ci(values)
    return ci.low, ci.high, resampled


def summarise(paths: Paths, rows: dict[str, list[tuple[str, str]]]) -> list[dict]:
    """Mean and std over seeds of every metric and cost, one dict per row, with user CIs of NDCG@10."""
    table = []
    for label, runs in rows.items():
        values = [_test_metrics(paths, r, m) | _costs(paths, r, m) for r, m in runs]
        out = {"model": label, "seeds": len(values), "run_ids": " ".join(r for r, _ in runs)}
        for protocol in ("full", "sampled"):
            out[f"{protocol}/NDCG@10 ci"] = user_ci(paths, runs, protocol)
        for key in values[0]:
            if key.endswith(" ci"):
                continue
            column = [v[key] for v in values if key in v]
            out[key] = statistics.fmean(column)
            out[key + " std"] = statistics.stdev(column) if len(column) > 1 else 0.0
        table.append(out)
    return table


def _cell(row: dict, key: str, percent: bool = True) -> str:
    if key not in row:
        return "-"
    scale = 100 if percent else 1
    return f"{row[key] * scale:.2f} ± {row[key + ' std'] * scale:.2f}" if row["seeds"] > 1 else f"{row[key] * scale:.2f}"


def significance(paths: Paths, rows: dict[str, list[tuple[str, str]]], plan: Plan,
                 metrics: tuple[str, ...] = ("NDCG@10", "HR@10", "MRR")) -> list[str]:
    """Paired comparisons of SLMRec (all terms) against E4SRec_N without distillation, seed by seed,
    then over all seeds (resampling the seeds as well as the users)."""
    from core.results.compare import compare_seeds, resolve, user_ranks  # noqa: PLC0415

    n, m = plan.student_depth, plan.teacher_depth
    ours, base = rows.get(f"SLMRec {n}<-{m} (all)", []), rows.get(f"E4SRec_{n} (no distillation)", [])
    lines = [f"## SLMRec {n}<-{m} against E4SRec_{n} without distillation", "",
             ("Paired over the same test users: difference of the means (SLMRec - E4SRec) with a 95% CI "
             "(1,000 resamples) and a p-value. A seed's row resamples the test users (paired bootstrap, "
             "sign-flip permutation p). The all-seeds row resamples the training seeds of each side as well as "
             "the users (hierarchical bootstrap, bootstrap p), so its CI includes training noise. Significant "
             "only when the CI excludes 0."), "",
             "| seed | protocol | metric | SLMRec | E4SRec | difference [95% CI] | p | resamples | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for protocol in ("full", "sampled"):
        pairs = [(seed, user_ranks(paths, resolve(paths, a), "test", protocol),
                  user_ranks(paths, resolve(paths, b), "test", protocol))
                 for seed, (a, _), (b, _) in zip(plan.seeds, ours, base)]
        for metric in metrics:
            for r in compare_seeds(pairs, metric):  # one row per seed, then all seeds
                verdict = ("SLMRec better" if r["low"] > 0 else "SLMRec worse") if r["significant"] \
                    else "inside the noise"
                seed = "all seeds" if r["seed"] is None else r["seed"]
                lines.append(f"| {seed} | {protocol} | {metric} | {100 * r['a_value']:.2f} | "
                             f"{100 * r['b_value']:.2f} | {100 * r['difference']:+.2f} [{100 * r['low']:+.2f}, "
                             f"{100 * r['high']:+.2f}] | {r['p_value']:.3f} | {r['resampled']} | {verdict} |")
    return lines + [""]


def run_time(paths: Paths, rows: dict[str, list[tuple[str, str]]]) -> str:
    """How long the table's runs took: the sum of their wall times, and the span they ran in."""
    from datetime import datetime  # noqa: PLC0415

    states = [run_store.read_state(paths.runs, r) for r in {r for runs in rows.values() for r, _ in runs}]
    spans = [(datetime.fromisoformat(s["started_at"]), datetime.fromisoformat(s["finished_at"]))
             for s in states if s.get("started_at") and s.get("finished_at")]
    if not spans:
        return ""
    total = sum((end - start).total_seconds() for start, end in spans)
    first, last = min(s for s, _ in spans), max(e for _, e in spans)
    return (f"The {len(spans)} runs took {total / 60:.1f} min of wall time in all, between "
            f"{first:%Y-%m-%d %H:%M} and {last:%H:%M} UTC.")


def _ci(row: dict, protocol: str) -> str:
    low, high, resampled = row[f"{protocol}/NDCG@10 ci"]
    return f"[{100 * low:.2f}, {100 * high:.2f}] {resampled}"


def markdown(table: list[dict], dataset: str, preset: str, plan: Plan, wall_s: float,
             extra: list[str] | None = None, timing: str = "", budget: list[str] | None = None) -> str:
    """The report: one table per protocol, the paired comparisons (`extra`), the training budget
    (budget.budget_lines) and the wall times; never a speed ratio computed from wall times."""
    lines = [f"# Reproduction on {dataset}, preset `{preset}`", "",
             f"Teacher depth {plan.teacher_depth}, student depth {plan.student_depth}, B = {plan.blocks}, "
             f"config preset `{plan.config_preset}`, seeds {list(plan.seeds)} (mean ± std over seeds"
             + ("; SASRec and the teacher trained once, with the first seed, and shared by every student seed"
                if plan.shared_teacher else "")
             + (f"; the three ablation rows with the first {plan.ablation_seeds} seed(s) only"
                if plan.ablation_seeds else "") + "). "
             "Test split, metrics in percent. The CI column is a 95% bootstrap CI of NDCG@10 (1,000 draws) and "
             "says what it resamples: a row of several seeds resamples its training seeds and the test users "
             "(hierarchical bootstrap), a row of one seed the test users only (no training noise). "
             f"The training budget of every row is below. This report took {wall_s / 60:.1f} min to "
             f"make (finished runs are reused). {timing}", ""]
    for protocol, title in (("full", "Full ranking over all items (primary)"),
                            ("sampled", "Sampled 1 + 999 negatives (the paper's protocol)")):
        lines += [f"## {title}", "", "| model | seeds | " + " | ".join(METRICS) + " | NDCG@10 95% CI, resamples |",
                  "|---" * (len(METRICS) + 3) + "|"]
        lines += [f"| {r['model']} | {r['seeds']} | " + " | ".join(_cell(r, f"{protocol}/{m}") for m in METRICS)
                  + " | " + _ci(r, protocol) + " |" for r in table]
        lines.append("")
    lines += (extra or []) + (budget or [])
    lines += ["## Wall times", "", ("Wall seconds of each run as it happened (training excludes its validation passes; "
              "inference is the test evaluation of every user, both protocols), mean over seeds. They were measured "
              "as the runs happened, on a machine that other work may have shared, so no speed ratio is drawn "
              "from them: controlled speed ratios come from `slmrec bench` (medians of interleaved rounds on a "
              "stated machine, docs/performance.md)."), "",
              "| model | parameters at inference | train s / epoch | inference s |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['params'] / 1e6:.1f}M | {r['train_s_per_epoch']:.1f} | {r['inference_s']:.1f} |"
              for r in table if "params" in r]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, name: str, table: list[dict], text: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md, csv_path = out_dir / f"{name}.md", out_dir / f"{name}.csv"
    md.write_text(text)
    keys = sorted({k for r in table for k in r}, key=lambda k: (k != "model", k))
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(table)
    return md, csv_path
