"""Several processes: the loop and the evaluation on 2 gloo ranks equal one process; the helpers; bad settings.

The two-process checks run once, under torchrun, in tests/dist_helpers/toy_ranks.py (a toy model, so
they take seconds); the rest are plain functions here.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import ConfigError, DataConfig, RunSpec, TrainConfig, apply_preset, settings_hash
from core.data.prepare import prepare
from core.cli.options import nodes_from_args
from core.jobs.launch import Nodes, torchrun_command
from core.runtime.device import resolve_device
from core.runtime.distributed import Dist, batches_of_rank, check_batch, from_env, shard
from tests.conftest import write_toy_dataset

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """What tests/dist_helpers/toy_ranks.py found on 2 processes."""
    root = tmp_path_factory.mktemp("toy")
    write_toy_dataset(root)
    prepare(DataConfig(dataset="toy", kcore=0, n_negatives=20), root / "data")  # the ranks only read it
    out = root / "found.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               str(REPO / "tests" / "dist_helpers" / "toy_ranks.py"), str(out), str(root / "data")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=root)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(out.read_text())


def test_two_ranks_make_the_updates_of_one_process_on_the_global_batch(two_ranks):
    training = two_ranks["training"]
    assert two_ranks["world"] == 2
    assert [s for s, _ in training["two_logs"]] == [s for s, _ in training["one_logs"]] == list(range(1, 10))
    for (_, two), (_, one) in zip(training["two_logs"], training["one_logs"]):
        assert two == pytest.approx(one, rel=1e-5)  # the logged loss is the global batch's mean (float32)
    assert training["params_gap"] < 1e-6
    assert training["unused_moved"] == 0.0  # no gradient on any rank: no step, no weight decay


def test_a_checkpoint_resumes_on_another_number_of_processes(two_ranks):
    training = two_ranks["training"]
    assert training["two_then_one_gap"] < 1e-6  # 2 ranks stopped at step 3, then 1 process to the end
    assert training["one_then_two_gap"] < 1e-6  # and the other way round


def test_sharded_evaluation_gives_every_user_the_single_process_rank(two_ranks):
    for case, found in two_ranks["evaluation"].items():
        assert found == {"users_equal": True, "ranks_equal": True, "n": found["n"]}, case
    assert two_ranks["evaluation"]["all users, 9 batches"]["n"] == 60


def test_control_values_come_from_rank_0(two_ranks):
    assert two_ranks["text"] == "plan é"
    assert two_ranks["same_rank"] is False and two_ranks["same_value"] is True


def test_shards_cover_each_global_batch_once():
    batch = torch.arange(10, 17)
    parts = [shard(batch, Dist(r, 3, r, 3)) for r in range(3)]
    assert torch.equal(torch.cat(parts), batch) and [len(p) for p in parts] == [3, 2, 2]
    assert [len(shard(torch.arange(1), Dist(r, 2, r, 2))) for r in range(2)] == [1, 0]
    rows = np.arange(23)
    mine = [batches_of_rank(rows, 5, Dist(r, 2, r, 2)) for r in range(2)]
    assert mine[0].tolist() == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14, 20, 21, 22]
    assert mine[1].tolist() == [5, 6, 7, 8, 9, 15, 16, 17, 18, 19]


def test_place_read_from_torchrun_environment():
    assert from_env({}) == Dist()
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert from_env(env) == Dist(3, 4, 1, 2) and not from_env(env).is_main
    with pytest.raises(ValueError, match="RANK, WORLD_SIZE, LOCAL_RANK must be integers"):
        from_env({**env, "RANK": "x"})
    with pytest.raises(ValueError, match="rank 4 of 4"):
        from_env({**env, "RANK": "4"})


def test_bad_process_settings_are_refused_by_name(monkeypatch):
    with pytest.raises(ConfigError, match="train.nproc_per_node: expected >= 1"):
        apply_preset("tiny", {"train": {"nproc_per_node": 0}}, "teacher")
    with pytest.raises(ConfigError, match="analysis stage runs in one process"):
        apply_preset("tiny", {"train": {"nproc_per_node": 2}}, "analysis")
    with pytest.raises(ValueError, match="train.batch_size: 2 is the global batch, split over 4 processes"):
        check_batch(2, Dist(0, 4, 0, 4))
    two = Dist(1, 2, 1, 2)
    assert resolve_device("cpu", two) == torch.device("cpu")
    with pytest.raises(ConfigError, match="train.device: 'cuda:1' cannot be shared by 2 processes"):
        resolve_device("cuda:1", two)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="train.nproc_per_node: 2 processes per node, but this node has 1 CUDA"):
        resolve_device("auto", two)
    assert resolve_device("cuda", Dist(1, 4, 0, 1)) == torch.device("cuda", 0)  # 4 nodes of one GPU each


def test_the_process_count_leaves_settings_hash_unchanged():
    # the values of these specs before train.nproc_per_node existed: no run already stored is orphaned
    assert settings_hash(RunSpec(kind="teacher")) == "10cb413da5f8d6fe"
    assert settings_hash(apply_preset("tiny", {}, "student")) == "90b35336a3f404f6"
    many = RunSpec(kind="teacher", train=TrainConfig(nproc_per_node=8))
    assert settings_hash(many) == settings_hash(RunSpec(kind="teacher"))
    wide = RunSpec(kind="teacher", train=TrainConfig(eval_batch_size=4096))  # nor does the no-grad batch
    assert settings_hash(wide) == settings_hash(RunSpec(kind="teacher"))


def test_torchrun_commands_for_one_node_and_several():
    one = torchrun_command(4, ["core.jobs.worker", "run-one", "RUN"])
    assert one[1:] == ["-m", "torch.distributed.run", "--nproc-per-node=4", "--standalone", "-m", "core.jobs.worker",
                       "run-one", "RUN"]
    nodes = Nodes(nnodes=2, rdzv_endpoint="node0:29500", rdzv_id="job7")
    several = torchrun_command(8, ["core.cli", "run", "teacher"], nodes)
    assert several[4:8] == ["--nnodes=2", "--rdzv-backend=c10d", "--rdzv-endpoint=node0:29500", "--rdzv-id=job7"]
    assert "--standalone" not in several


def test_launch_options_are_checked():
    from argparse import Namespace

    def options(**given):
        return Namespace(**{"nnodes": 1, "node_rank": None, "rdzv_backend": "c10d", "rdzv_endpoint": "",
                            "rdzv_id": "", **given})
    assert nodes_from_args(options()) == Nodes()
    with pytest.raises(ConfigError, match="--rdzv-endpoint: a run over several nodes needs HOST:PORT"):
        nodes_from_args(options(nnodes=2))
    with pytest.raises(ConfigError, match="--nnodes: expected >= 1, got 0"):
        nodes_from_args(options(nnodes=0))
    with pytest.raises(ConfigError, match="--node-rank: expected 0..1, got 2"):
        nodes_from_args(options(nnodes=2, rdzv_endpoint="h:1", node_rank=2))


def test_one_process_started_by_torchrun_still_joins_a_process_group(monkeypatch):
    """`torchrun --nproc-per-node 1` runs the collectives as one of many would (gloo here, NCCL on a
    GPU), so that path is exercised on a one-GPU machine; a plain single process joins none."""
    import socket

    import torch.distributed as torch_dist

    from core.runtime.distributed import process_group

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    with process_group(Dist()):
        assert not torch_dist.is_initialized()
    with process_group(Dist(), even_alone=True):
        assert torch_dist.is_initialized() and torch_dist.get_world_size() == 1
        total = torch.ones(3)
        torch_dist.all_reduce(total)
        assert total.tolist() == [1.0, 1.0, 1.0]
    assert not torch_dist.is_initialized()
