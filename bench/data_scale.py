"""Data and evaluation at Amazon scale: generate, prepare, full-rank. Prints JSON; asserts nothing.

    python bench/data_scale.py                       # 1.2M users, 377k items, 11.3M interactions
    python bench/data_scale.py --users 100000 --items 30000 --interactions 940000   # a quick run

Each phase runs in its own subprocess, so its wall time and peak resident memory (ru_maxrss) are
its own:
- generate: core.data.synthetic.generate into <root>/data/raw/<name>/;
- prepare:  core.data.prepare.prepare from scratch (the cache folder is removed first): read,
            dedupe, k-core, remap, leave-one-out, 999 sampled negatives per user and split
            (int32, written in user blocks), then loading the finished cache a second time;
- rank:     one full-ranking evaluation of every user's test target against every item with a
            tiny model (random user vectors and a random item table, dim 32), history masked,
            through core.eval.batched.rank_users (user batches x item chunks) with a top-10 list.
Threads are capped (default 2: the machine this was written on) for numpy/BLAS and torch;
`--device cuda` scores on a GPU. `--rank-users N` ranks the first N users only (against every
item) and reports `estimated_all_users_s`, linear in the number of users.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process: on a shared machine, wall time also counts
    the time other processes held the cores."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _synth_config(args):
    from core.data.synthetic import SynthConfig  # noqa: PLC0415

    return SynthConfig(users=args.users, items=args.items, interactions=args.interactions, seed=args.seed)


def phase_generate(args) -> dict:
    from core.data.synthetic import generate  # noqa: PLC0415

    folder = Path(args.root) / "data" / "raw" / args.name
    shutil.rmtree(folder, ignore_errors=True)
    start, cpu = time.perf_counter(), _cpu_s()
    sidecar = generate(_synth_config(args), folder, args.name)
    seconds, cpu = time.perf_counter() - start, _cpu_s() - cpu
    size = sum(p.stat().st_size for p in folder.iterdir())
    return {"seconds": round(seconds, 2), "cpu_s": round(cpu, 2), "peak_rss_mb": round(_peak_mb()),
            "files_mb": round(size / 2**20, 1), "rule": sidecar["rule"], "oracle_test": sidecar["oracle"]["test"],
            "popularity_test": sidecar["oracle"]["popularity"]["test"]}


def phase_prepare(args) -> dict:
    from core.config import DataConfig  # noqa: PLC0415
    from core.data.prepare import prepare  # noqa: PLC0415

    data_root = Path(args.root) / "data"
    shutil.rmtree(data_root / "prepared", ignore_errors=True)
    cfg = DataConfig(dataset=args.name)
    start, cpu = time.perf_counter(), _cpu_s()
    prepared = prepare(cfg, data_root)
    seconds, cpu = time.perf_counter() - start, _cpu_s() - cpu
    peak = _peak_mb()
    start = time.perf_counter()
    again = prepare(cfg, data_root)
    reload_s = time.perf_counter() - start
    size = sum(p.stat().st_size for p in prepared.folder.iterdir())
    stats = again.stats
    return {"seconds": round(seconds, 2), "cpu_s": round(cpu, 2), "peak_rss_mb": round(peak),
            "reload_from_cache_s": round(reload_s, 2), "peak_rss_after_reload_mb": round(_peak_mb()),
            "cache_mb": round(size / 2**20, 1),
            "users": stats["users"], "items": stats["items"], "interactions": stats["interactions"],
            "source_rows": stats["source_rows"], "drops": stats["drops"], "seq_len": stats["seq_len"],
            "candidates": stats["candidates"]}


def phase_rank(args) -> dict:
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from core.config import DataConfig  # noqa: PLC0415
    from core.data.examples import history  # noqa: PLC0415
    from core.data.prepare import prepare  # noqa: PLC0415
    from core.eval.batched import rank_users  # noqa: PLC0415
    from core.eval.metrics import metrics_from_ranks  # noqa: PLC0415

    torch.set_num_threads(args.threads)
    prepared = prepare(DataConfig(dataset=args.name), Path(args.root) / "data")
    seqs = prepared.sequences
    targets = seqs.flat[seqs.starts + seqs.lengths - 1]  # test targets
    users = np.arange(min(args.rank_users or prepared.n_users, prepared.n_users))
    generator = torch.Generator().manual_seed(0)
    item_table = torch.randn(prepared.n_items + 1, args.dim, generator=generator).to(args.device)

    def vectors_of(rows: np.ndarray) -> torch.Tensor:  # a "model": fixed random vectors per user
        return torch.randn(len(rows), args.dim, generator=torch.Generator().manual_seed(int(rows[0])))

    start, cpu = time.perf_counter(), _cpu_s()
    ranks, top = rank_users(vectors_of, item_table, targets, history(prepared, "test"), users=users,
                            batch_size=args.batch, item_chunk=args.item_chunk, top_k=10)
    seconds, cpu = time.perf_counter() - start, _cpu_s() - cpu
    hits = float(np.mean((top == targets[users, None]).any(axis=1)))
    return {"seconds": round(seconds, 2), "cpu_s": round(cpu, 2), "peak_rss_mb": round(_peak_mb()),
            "users": int(len(users)),
            "items": prepared.n_items, "dim": args.dim, "user_batch": args.batch, "item_chunk": args.item_chunk,
            "users_per_s": round(len(users) / seconds, 1),
            "scores_per_s": float(f"{len(users) * prepared.n_items / seconds:.3g}"),
            "threads": args.threads, "all_users": prepared.n_users,
            "estimated_all_users_s": round(seconds * prepared.n_users / len(users)),
            "HR@10": metrics_from_ranks(ranks)["HR@10"], "top10_hit_rate": hits,
            "expected_HR@10_random": round(10 / prepared.n_items, 7), "device": args.device,
            "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20) if item_table.is_cuda else None}


PHASES = {"generate": phase_generate, "prepare": phase_prepare, "rank": phase_rank}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_200_000)
    parser.add_argument("--items", type=int, default=377_000)
    parser.add_argument("--interactions", type=int, default=11_300_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="synth-amazon")
    parser.add_argument("--root", default=str(ROOT / "build" / "bench-data-scale"), help="project root to write in")
    parser.add_argument("--phases", default="generate,prepare,rank")
    parser.add_argument("--rank-users", type=int, default=0, help="rank only the first N users (0: all)")
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--item-chunk", type=int, default=16384)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="where the rank phase scores (cpu, cuda)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)  # internal: run one phase in this process
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # run as a script: bench/ is sys.path[0], not the project
    if args.phase:
        print(json.dumps(PHASES[args.phase](args)))
        return
    threads = {v: str(args.threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    env = {**os.environ, **threads, "PYTHONPATH": str(ROOT)}
    result = {"config": {k: v for k, v in vars(args).items() if k != "phase"}, "cpu_count": os.cpu_count()}
    for phase in args.phases.split(","):
        child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--phase", phase], env=env,
                               capture_output=True, text=True)
        if child.returncode:
            result[phase] = {"error": child.stderr.strip().splitlines()[-1:] or ["failed"]}
            break
        result[phase] = json.loads(child.stdout.strip().splitlines()[-1])
        print(json.dumps({phase: result[phase]}), file=sys.stderr, flush=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
