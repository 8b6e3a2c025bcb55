"""Re-evaluate a finished teacher or student with the current code: its stored test metrics against
what its saved weights give now (a model change must leave a finished run's results as they were).

    python -m bench.reevaluate RUN_ID [--root DIR]     # prints one JSON object
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from core.config import TrainConfig
from core.data.prepare import prepare
from core.eval.records import metric_rows, metric_values
from core.stages.context import RunContext
from core.stages.llm import evaluate, load_finished_model
from core.store import checkpoints
from core.store.events import EventWriter
from core.store.paths import Paths


def reevaluate(paths: Paths, run_id: str, scratch: Path) -> dict:
    """{metric: (stored, now)} for the run's test split, both protocols, evaluated on the CPU in fp32."""
    ctx = RunContext(run_id=run_id, paths=paths, device=torch.device("cpu"), events=EventWriter(scratch))
    spec, model = load_finished_model(ctx, run_id, TrainConfig(device="cpu", precision="fp32", compile="off"))
    role = spec.kind
    stored = checkpoints.read_manifest(paths.checkpoint_dir(run_id))["test_metrics"]
    with torch.no_grad():
        result = evaluate(model, spec, prepare(spec.data, paths.data_root), "test")
    now = metric_values(metric_rows(run_id, 0, role, None, result))
    return {"run_id": run_id, "role": role,
            "metrics": {name: {"stored": stored[name], "now": now[name]} for name in sorted(stored)}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.reevaluate")
    parser.add_argument("run_id")
    parser.add_argument("--root", default=".")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        print(json.dumps(reevaluate(Paths(Path(args.root).resolve()), args.run_id, Path(scratch))))
