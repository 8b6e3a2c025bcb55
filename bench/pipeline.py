"""The cpu-quick preset end to end: SASRec -> teacher (8 layers) -> student (4) -> analysis on
MovieLens-100K with the default LLM, timed stage by stage. Prints one JSON object.

    python -m bench.pipeline [--device cpu] [--root PROJECT]

It plans the same runs as `slmrec submit pipeline --preset cpu-quick --teacher-depth 8
--student-layers 4` in a fresh temporary project (so nothing is reused from earlier runs) that
links the real assets of PROJECT (data/raw/ml-100k and checkpoints/base, from `slmrec fetch`),
then executes them in order in this process, as a worker's child would.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIPELINE_ARGS = ["submit", "pipeline", "--preset", "cpu-quick", "--teacher-depth", "8", "--student-layers", "4"]


def linked_project(source: Path, target: Path) -> None:
    """A fresh project at `target` that reads the fetched assets of `source`."""
    for part in ("data/raw/ml-100k", "checkpoints/base"):
        if not (source / part).exists():
            raise SystemExit(f"{source / part} is missing: run `slmrec fetch` (or `make app`) first")
        (target / part).parent.mkdir(parents=True, exist_ok=True)
        (target / part).symlink_to((source / part).resolve())


def pipeline_specs(root: Path, device: str):
    """The pipeline's specs exactly as the `slmrec submit pipeline` command line builds them."""
    from core.cli.parser import build_parser  # noqa: PLC0415
    from core.cli.run import pipeline_from_args  # noqa: PLC0415

    return pipeline_from_args(build_parser().parse_args(["--root", str(root), *PIPELINE_ARGS, "--device", device]))


def test_metrics(state: dict) -> dict:
    """The full-ranking test NDCG@10 and HR@10 of a SASRec, teacher or student run (none for an
    analysis), so a speed change that moved the results shows next to its timing."""
    by_model = (state.get("result") or {}).get("metrics") or {}
    metrics = next((by_model[m] for m in ("sasrec", "teacher", "student") if m in by_model), None)
    if not isinstance(metrics, dict) or "full/NDCG@10" not in metrics:
        return {}
    return {"test_ndcg10": round(metrics["full/NDCG@10"], 4), "test_hr10": round(metrics["full/HR@10"], 4)}


def run_pipeline(root: Path, device: str) -> dict:
    from core.jobs import execution, planning  # noqa: PLC0415
    from core.store.paths import Paths  # noqa: PLC0415

    paths = Paths(root)
    stages, start = [], time.perf_counter()
    for run_id in planning.plan_pipeline(paths, pipeline_specs(root, device)):
        began = time.perf_counter()
        state = execution.execute(paths, run_id)
        stages.append({"run_id": run_id, "status": state["status"], "seconds": round(time.perf_counter() - began, 1),
                       "error": state.get("error"), **test_metrics(state)})
    return {"bench": "pipeline_cpu_quick", "device": device, "stages": stages,
            "total_s": round(time.perf_counter() - start, 1), "target_s": 600}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--root", type=Path, default=ROOT, help="the project whose fetched assets to use")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="slmrec-bench-pipeline-") as folder:
        linked_project(args.root, Path(folder))
        print(json.dumps(run_pipeline(Path(folder), args.device)), flush=True)


if __name__ == "__main__":
    main()
