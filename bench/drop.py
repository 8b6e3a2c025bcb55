"""The drop-layer evaluation of one setting on the 8-layer ml-100k teacher, timed. Prints one JSON object.

    python -m bench.drop [--device cpu] [--root PROJECT] [--rule last] [--n 2]

In a fresh temporary project linked to the fetched assets of PROJECT (bench/pipeline.py), it trains
a cheap cpu-quick teacher of 8 SmolLM2 layers (one optimizer step: what is timed does not depend on
how well it is trained), then times the drop run (`slmrec run drop --run TEACHER --rule last --n 2`,
not healed) as a worker runs it: loading the teacher's weights, dropping the layers and evaluating
every test user under both protocols. The target is under a minute on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.pipeline import ROOT, linked_project

TARGET_S = 60.0


def teacher_spec(device: str):
    from core.config import apply_preset  # noqa: PLC0415

    return apply_preset("cpu-quick", {"train": {"max_steps": 1, "device": device}, "backbone": {"depth": 8}},
                        "teacher")


def run(root: Path, device: str, rule: str, n: int) -> dict:
    from core.jobs import execution, planning  # noqa: PLC0415
    from core.config import apply_preset  # noqa: PLC0415
    from core.store.paths import Paths  # noqa: PLC0415

    paths = Paths(root)
    began = time.perf_counter()
    for run_id in planning.plan(paths, teacher_spec(device)):
        state = execution.execute(paths, run_id)
        if state["status"] != "done":
            raise SystemExit(f"the teacher's run {run_id} ended {state['status']}: {state.get('error')}")
    teacher_id, setup_s = run_id, time.perf_counter() - began
    drop = apply_preset("cpu-quick", {"train": {"device": device}, "drop": {"run": teacher_id, "rule": rule, "n": n}},
                        "drop")
    ids = planning.plan(paths, drop)
    for run_id in ids[:-1]:  # an analysis parent (influence, angular rules) is not what is timed
        execution.execute(paths, run_id)
    began = time.perf_counter()
    state = execution.execute(paths, ids[-1])
    seconds = time.perf_counter() - began
    result = state.get("result") or {}
    full = (result.get("metrics") or {}).get("drop", {})
    return {"bench": "drop_layers", "device": device, "status": state["status"], "error": state.get("error"),
            "teacher_depth": result.get("depth"), "rule": rule, "n": n, "dropped": result.get("dropped"),
            "kept": result.get("kept"), "drop_s": round(seconds, 1),
            "evaluation_s": round((result.get("seconds") or {}).get("drop", float("nan")), 1),
            "test_ndcg10": round(full.get("full/NDCG@10", float("nan")), 4), "teacher_setup_s": round(setup_s, 1),
            "target_s": TARGET_S, "under_target": seconds < TARGET_S}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--root", type=Path, default=ROOT, help="the project whose fetched assets to use")
    parser.add_argument("--rule", default="last", choices=["last", "influence", "angular"])
    parser.add_argument("--n", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="slmrec-bench-drop-") as folder:
        linked_project(args.root, Path(folder))
        print(json.dumps(run(Path(folder), args.device, args.rule, args.n)), flush=True)


if __name__ == "__main__":
    main()
