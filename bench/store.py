"""Results-store and data-pipeline throughput: query latency over 1M metric rows, sequences/s prepared."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from core.config import DataConfig
from core.data.prepare import prepare
from core.eval.metrics import METRICS
from core.store.events import EventWriter
from core.store.query import ResultsDB
from core.store.runs import create_run


def query_latency(rows: int = 1_000_000, runs: int = 200) -> dict:
    """Median latency of typical app queries over `rows` metric rows spread over `runs` runs."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        per_run = rows // runs
        rng = np.random.default_rng(0)
        metrics = np.array(METRICS)
        for i in range(runs):
            run_id = create_run(root / "runs", {"kind": "teacher"}, "teacher", status="done")
            with EventWriter(root / "runs" / run_id) as writer:
                writer.append_columns("metrics", {
                    "step": np.arange(per_run) // 16, "split": np.where(np.arange(per_run) % 2, "valid", "test"),
                    "protocol": np.where(np.arange(per_run) % 4 < 2, "full", "sampled"),
                    "model": np.full(per_run, "teacher"), "layer": np.full(per_run, None),
                    "metric": metrics[np.arange(per_run) % 8], "value": rng.random(per_run)})
        db = ResultsDB(root)
        sql = {"leaderboard": "SELECT run_id, protocol, metric, max(value) FROM metrics WHERE split = 'test' "
                              "GROUP BY ALL",
               "runs": "SELECT run_id, status, progress FROM runs ORDER BY created_at DESC",
               "one_run_curve": f"SELECT step, value FROM metrics WHERE run_id = '{run_id}' AND metric = 'NDCG@10'"}
        out = {"bench": "store_query", "rows": per_run * runs, "runs": runs}
        start = time.perf_counter()
        db.refresh()
        out["open_s"] = time.perf_counter() - start
        for name, text in sql.items():
            times = []
            for _ in range(5):
                start = time.perf_counter()
                db.query(text)
                times.append(time.perf_counter() - start)
            out[f"{name}_s"] = float(np.median(times))
        return out


def data_pipeline(interactions: int = 200_000) -> dict:
    """Sequences/s and interactions/s of a full preparation of a generated CSV (cache bypassed)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        folder = root / "raw" / "gen"
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        users = rng.integers(0, interactions // 20, interactions)
        items = rng.zipf(1.3, interactions) % 5000
        lines = "\n".join(f"u{u},i{i},{t}" for u, i, t in zip(users, items, range(interactions)))
        (folder / "gen.csv").write_text("user,item,timestamp\n" + lines + "\n")
        start = time.perf_counter()
        prepared = prepare(DataConfig(dataset="gen", kcore=5), root)
        seconds = time.perf_counter() - start
        return {"bench": "data_prepare", "interactions": interactions, "users": prepared.n_users,
                "seconds": seconds, "sequences_per_s": prepared.n_users / seconds,
                "interactions_per_s": interactions / seconds}
