"""Run by tests/core/train/test_distributed.py under torchrun (2 processes, gloo): the shared loop and
the sharded evaluation on a toy model, each against one process computed in the same rank.

Usage: toy_ranks.py OUT.json DATA_ROOT. Rank 0 writes what it found to OUT.json; the test asserts.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
from torch import nn

from core.config import DataConfig, TrainConfig
from core.data.prepare import prepare
from core.jobs.launch import exit_process
from core.eval.evaluate import evaluate_split
from core.runtime import distributed
from core.train import loop, resume
from core.runtime.distributed import SINGLE

# 41 examples in global batches of 8: the last micro-batch holds 1 example, so rank 1's slice of it
# is empty; grad_accum 2 makes every step average two micro-batches of different sizes. Weight
# decay would move a parameter that gets a (zero) gradient where one process gets none.
CFG = TrainConfig(epochs=3, lr=5e-2, batch_size=8, grad_accum=2, log_every=1, checkpoint_every=0,
                  warmup_ratio=0.1, seed=3, weight_decay=0.1)


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 1))
        self.unused = nn.Linear(3, 3)  # trainable, in no loss

    def forward(self, x):
        return self.net(x)


def toy():
    """The same seeded data and model in every process (no dropout, so ranks may be compared exactly)."""
    torch.manual_seed(0)
    x = torch.randn(41, 5)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.1
    return Toy(), x, y


def train(dist, stop_at=None, state=None):
    """(logged (step, mse) pairs, final flat parameters, the last resume state) of one training."""
    model, x, y = toy()
    loop_state = None
    if state is not None:
        loop_state, weights = resume.unpack(*state)
        model.load_state_dict(weights)
    logs, saved = [], {}

    def loss_fn(indices):
        mse = ((model(x[indices]).squeeze(-1) - y[indices]) ** 2).mean()
        return mse, {"mse": mse}

    def save_resume(s):
        saved["state"] = resume.pack(s, {k: v.clone() for k, v in model.state_dict().items()})

    hooks = loop.Hooks(lambda step, epoch: -step, lambda step: None, save_resume,
                       lambda step, epoch, terms: logs.append((step, terms["mse"])), lambda *a: None,
                       lambda: stop_at is not None and len(logs) >= stop_at)
    try:
        loop.train(model, loss_fn, len(x), CFG, torch.device("cpu"), hooks, loop_state, dist)
    except loop.Cancelled:
        pass
    return logs, torch.cat([p.detach().flatten() for p in model.parameters()]), saved.get("state")


def training_checks(dist) -> dict:
    untouched = torch.cat([p.detach().flatten() for p in toy()[0].unused.parameters()])
    two_logs, two_params, _ = train(dist)
    one_logs, one_params, _ = train(SINGLE)
    _, _, two_state = train(dist, stop_at=3)  # rank 0's state is what a checkpoint holds
    _, two_then_one, _ = train(SINGLE, state=two_state)
    _, _, one_state = train(SINGLE, stop_at=3)
    _, one_then_two, _ = train(dist, state=one_state)
    return {"two_logs": two_logs, "one_logs": one_logs,
            "params_gap": float((two_params - one_params).abs().max()),
            "unused_moved": float((two_params[-len(untouched):] - untouched).abs().max()),
            "two_then_one_gap": float((two_then_one - one_params).abs().max()),
            "one_then_two_gap": float((one_then_two - one_params).abs().max())}


def evaluation_checks(dist, data_root: str) -> dict:
    prepared = prepare(DataConfig(dataset="toy", kcore=0, n_negatives=20), data_root)  # cached by the test
    table = torch.randn(prepared.n_items + 1, 8, generator=torch.Generator().manual_seed(1))

    def user_vectors(items):  # (B, L) -> (B, 8): the sum of the input items' rows
        return table[items].sum(dim=1)

    found = {}
    for name, users, batch in (("all users, 9 batches", None, 7), ("10 users, 1 batch", np.arange(10), 16)):
        sharded = evaluate_split(user_vectors, table, prepared, "test", 10, batch_size=batch, users=users, dist=dist)
        single = evaluate_split(user_vectors, table, prepared, "test", 10, batch_size=batch, users=users)
        found[name] = {"users_equal": bool(np.array_equal(sharded.users, single.users)),
                       "ranks_equal": all(np.array_equal(sharded.ranks[p], single.ranks[p]) for p in single.ranks),
                       "n": int(len(single.users))}
    return found


def main(out: str, data_root: str) -> None:
    dist = distributed.from_env()
    with distributed.process_group(dist):
        found = {"world": dist.world_size, "training": training_checks(dist),
                 "evaluation": evaluation_checks(dist, data_root),
                 "text": distributed.text_from_main("plan é" if dist.is_main else "", dist),
                 "same_rank": distributed.same_on_all_ranks(dist.rank, dist),
                 "same_value": distributed.same_on_all_ranks(7, dist)}
    if dist.is_main:
        with open(out, "w") as f:
            json.dump(found, f)


if __name__ == "__main__":
    main(*sys.argv[1:3])
    exit_process(0)
