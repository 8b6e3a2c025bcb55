"""One run as several processes (torch.distributed, started by torchrun): who this process is, and
the few collectives the loop and the evaluation need.

A `Dist` says where this process stands (global rank, world size, rank and process count on its
node). It is read once from torchrun's environment (`from_env`) and passed down like the device.
The semantics, stated once for the whole project:

- `train.batch_size` is the GLOBAL batch. Every rank walks the same epoch order, seeded by
  (seed, epoch), in the same global micro-batches, and takes its own contiguous slice (`shard`).
  Each rank weights its loss by its share of the step's examples and the gradients are summed over
  the ranks (`all_reduce_grads`), so N processes make the update one process makes on the whole
  batch. The training position (epoch, micro-batch) is the same for every world size, so a
  checkpoint resumes on any number of processes.
- Rank 0 alone writes: results, events, checkpoints, state. Every decision all ranks must share
  (stop, early stopping, which run is next) comes from rank 0 or from all-reduced values, so no
  rank ever takes another branch.
- Gradients travel on the run's device (NCCL on CUDA); control values (flags, texts, evaluation
  ranks) travel as CPU tensors over gloo, so on a GPU machine the group has both backends.

We all-reduce gradients ourselves rather than wrap the model in DistributedDataParallel: the
stages' loss functions call model methods, not `forward` (DDP synchronises only through `forward`),
a rank may get an empty slice of a short last batch, and with gradient accumulation one reduction
per optimizer step is what DDP's `no_sync` would give anyway.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as torch_dist

BUCKET_ELEMENTS = 1 << 24  # gradients are reduced in flat buckets of at most this many (64 MB in fp32)
REPORT_GRACE_S = 30.0  # how long a failed rank > 0 leaves rank 0 to record the run's end


@dataclass(frozen=True)
class Dist:
    """This process's place in a run: global rank and world size, rank and process count on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Dist()


def from_env(env: Mapping[str, str] = os.environ) -> Dist:
    """The `Dist` torchrun describes in RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE; one process without them."""
    if "WORLD_SIZE" not in env:
        return SINGLE
    try:
        world = int(env["WORLD_SIZE"])
        dist = Dist(int(env.get("RANK", 0)), world, int(env.get("LOCAL_RANK", 0)),
                    int(env.get("LOCAL_WORLD_SIZE", world)))
    except ValueError as exc:
        raise ValueError(f"torchrun environment: RANK, WORLD_SIZE, LOCAL_RANK must be integers ({exc})") from exc
    if not 0 <= dist.rank < dist.world_size or not 0 <= dist.local_rank < dist.local_world_size:
        raise ValueError(f"torchrun environment: rank {dist.rank} of {dist.world_size}, local rank "
                         f"{dist.local_rank} of {dist.local_world_size} is not a valid place")
    return dist


@contextlib.contextmanager
def process_group(dist: Dist, even_alone: bool = False) -> Iterator[None]:
    """Join the run's process group (MASTER_ADDR/PORT from torchrun) for the duration; nothing for one
    process, unless `even_alone` (torchrun started it: one process then runs the collectives, on NCCL
    for a GPU, as each of many would)."""
    if dist.world_size == 1 and not even_alone:
        yield
        return
    backend = "gloo"
    if torch.cuda.is_available() and torch_dist.is_nccl_available():
        backend = "cpu:gloo,cuda:nccl"
        if dist.local_rank < torch.cuda.device_count():  # more ranks than GPUs is refused by resolve_device
            torch.cuda.set_device(dist.local_rank)
    torch_dist.init_process_group(backend, rank=dist.rank, world_size=dist.world_size)
    try:
        yield
    finally:
        torch_dist.destroy_process_group()


def shard(indices: torch.Tensor, dist: Dist) -> torch.Tensor:
    """This rank's contiguous slice of a global micro-batch (sizes differ by at most one; rank 0's is never empty)."""
    if dist.world_size == 1:
        return indices
    return indices.tensor_split(dist.world_size)[dist.rank]


def check_batch(batch_size: int, dist: Dist) -> None:
    """Refuse a global batch smaller than the number of processes: some rank would never get an example."""
    if batch_size < dist.world_size:
        raise ValueError(f"train.batch_size: {batch_size} is the global batch, split over {dist.world_size} "
                         f"processes; use at least {dist.world_size}")


def all_reduce_grads(params: Sequence[torch.nn.Parameter], dist: Dist) -> None:
    """Sum every parameter's gradient over the ranks, in place; a parameter no rank used keeps none."""
    if dist.world_size == 1:
        return
    used = torch.tensor([float(p.grad is not None) for p in params])
    torch_dist.all_reduce(used)
    for p in params:
        if p.grad is None:  # a part in another rank's loss only: counts as zero here
            p.grad = torch.zeros_like(p)
    for bucket in _buckets([p.grad for p in params]):
        flat = torch.cat([g.reshape(-1) for g in bucket])
        torch_dist.all_reduce(flat)
        offset = 0
        for g in bucket:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
    for p, count in zip(params, used.tolist()):
        if not count:  # as with one process: no gradient, so AdamW leaves it alone (no weight decay either)
            p.grad = None


def _buckets(tensors: list[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    """Consecutive groups of one dtype and device, each of at most BUCKET_ELEMENTS elements (or one tensor)."""
    bucket: list[torch.Tensor] = []
    size = 0
    for t in tensors:
        other_kind = bool(bucket) and (t.dtype, t.device) != (bucket[0].dtype, bucket[0].device)
        if bucket and (size + t.numel() > BUCKET_ELEMENTS or other_kind):
            yield bucket
            bucket, size = [], 0
        bucket.append(t)
        size += t.numel()
    if bucket:
        yield bucket


@torch.no_grad()
def broadcast_params(params: Sequence[torch.Tensor], dist: Dist) -> None:
    """Give every rank rank 0's values of `params` (so the ranks cannot start or finish apart)."""
    if dist.world_size == 1:
        return
    for p in params:
        torch_dist.broadcast(p.data, src=0)


def sum_over_ranks(values: Mapping[str, torch.Tensor], dist: Dist) -> dict[str, float]:
    """{name: value summed over the ranks}, read back as floats; every rank holds the same names."""
    names = sorted(values)
    if not names:
        return {}
    stacked = torch.stack([torch.as_tensor(values[n]).detach().double().cpu() for n in names])
    if dist.world_size > 1:
        torch_dist.all_reduce(stacked)
    return dict(zip(names, stacked.tolist()))


def flag_from_main(flag: bool, dist: Dist) -> bool:
    """Rank 0's `flag` on every rank."""
    if dist.world_size == 1:
        return flag
    value = torch.tensor([int(flag)])
    torch_dist.broadcast(value, src=0)
    return bool(value.item())


def text_from_main(text: str, dist: Dist) -> str:
    """Rank 0's `text` on every rank (bytes in a tensor: nothing is pickled)."""
    if dist.world_size == 1:
        return text
    data = torch.tensor(list(text.encode("utf-8")) if dist.is_main else [], dtype=torch.uint8)
    length = torch.tensor([len(data)])
    torch_dist.broadcast(length, src=0)
    if not dist.is_main:
        data = torch.zeros(int(length.item()), dtype=torch.uint8)
    if len(data):
        torch_dist.broadcast(data, src=0)
    return bytes(data.tolist()).decode("utf-8")


def same_on_all_ranks(value: int, dist: Dist) -> bool:
    """Whether every rank holds the same integer `value`."""
    if dist.world_size == 1:
        return True
    bounds = torch.tensor([value, -value], dtype=torch.long)  # max of both: (max, -min)
    torch_dist.all_reduce(bounds, op=torch_dist.ReduceOp.MAX)
    return int(bounds[0]) == -int(bounds[1])


def barrier(dist: Dist) -> None:
    """Wait for every rank (over gloo, whatever the device)."""
    if dist.world_size > 1:
        torch_dist.all_reduce(torch.zeros(1))


def seed_rank_stream(seed: int, step: int, dist: Dist) -> None:
    """Ranks > 0 reseed torch's RNG from (seed, step, rank) so the shards of one batch draw different
    dropout masks; rank 0 keeps the stream one process would have, which is what a checkpoint saves."""
    if dist.rank:
        torch.manual_seed((seed * 1_000_003 + step) * 1_009 + dist.rank)


def batches_of_rank(rows: np.ndarray, batch_size: int, dist: Dist) -> np.ndarray:
    """This rank's batches r, r + N, r + 2N, ... of `rows`: each batch is the one a single process forms."""
    if dist.world_size == 1:
        return rows
    starts = range(dist.rank * batch_size, len(rows), dist.world_size * batch_size)
    return np.concatenate([rows[s:s + batch_size] for s in starts]) if len(starts) else rows[:0]


def gather_batches(local: np.ndarray, batch_size: int, dist: Dist) -> np.ndarray:
    """Every rank's results over its `batches_of_rank`, on every rank, in single-process order."""
    if dist.world_size == 1:
        return local
    parts = all_gather_array(local, dist)
    total = sum(len(p) for p in parts)
    pieces = [parts[k % dist.world_size][(k // dist.world_size) * batch_size:][:batch_size]
              for k in range(math.ceil(total / batch_size))]
    return np.concatenate(pieces) if pieces else local[:0]


def all_gather_array(local: np.ndarray, dist: Dist) -> list[np.ndarray]:
    """Each rank's 1-D integer array (lengths may differ), as int64, on every rank."""
    size = torch.tensor([len(local)])
    sizes = [torch.zeros_like(size) for _ in range(dist.world_size)]
    torch_dist.all_gather(sizes, size)
    longest = max(1, max(int(s) for s in sizes))  # collectives over empty tensors are not portable
    padded = torch.zeros(longest, dtype=torch.long)
    padded[:len(local)] = torch.from_numpy(np.asarray(local, dtype=np.int64))
    parts = [torch.zeros_like(padded) for _ in range(dist.world_size)]
    torch_dist.all_gather(parts, padded)
    return [p[:int(s)].numpy() for p, s in zip(parts, sizes)]


def leave_after_failure(dist: Dist, error: BaseException, quiet: bool = False) -> None:
    """End a rank > 0 whose run failed: say why on stderr, give rank 0 time to record the end, exit 1.

    When the failure is shared (a bad setting, a cancel), rank 0 records it and exits, and torchrun
    stops this process within the grace period; when only this rank failed, leaving makes torchrun
    stop rank 0, and the launcher (worker or `slmrec run`) reports the run failed.
    """
    if not quiet:
        print(f"rank {dist.rank}: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
    time.sleep(REPORT_GRACE_S)
    os._exit(1)  # skip interpreter teardown: the process group may be mid-collective
