"""The teacher-state cache: every training example's aligned teacher states, kept where they fit.

A frozen teacher in eval mode is deterministic, so its last-position states at the aligned layers
(n examples, K blocks, hidden H) can be computed once and read back every epoch. They are stored in
bf16: half the memory of float32, at a relative rounding of at most 2^-9 per element, which moves
the cosine and distance terms by far less than one step changes them (tests/core/stages/
test_teacher_cache.py bounds it). The placement is chosen before caching, from the size in bytes:

- "device": the cache fits the device budget (`distill.cache_budget_gb`; 0: auto, half the free
  device memory on CUDA, half the available RAM elsewhere, where host memory is the device);
- "host" (CUDA only): it fits the host budget (half the available RAM, shared by the processes of
  a node): pinned host memory, each batch's rows gathered into a pinned buffer and copied to the
  device without blocking;
- "live": it fits neither: the teacher runs every step, its states rounded to bf16 as a cache would
  hold them, so the placement changes speed and memory, never the loss.

At Amazon-Clothing size (7.6M examples x 4 blocks x 576) the cache is 35 GB in bf16.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor

GB = 1e9  # budgets and sizes are in decimal gigabytes, as the log prints them
AUTO_FRACTION = 0.5  # of the free memory: the rest is left to training (activations, optimizer state)
DTYPE = torch.bfloat16


@dataclass(frozen=True)
class CachePlan:
    """Where the cache goes and why: its size and the budgets it was held against (bytes)."""

    placement: str  # device | host | live
    nbytes: int
    device_budget: int
    host_budget: int  # 0 where host memory is the device (no host tier)

    def describe(self) -> str:
        where = {"device": "on the device", "host": "in pinned host memory",
                 "live": "does not fit: the live teacher runs every step"}[self.placement]
        budgets = f"device budget {self.device_budget / GB:.3g} GB"
        if self.placement != "device" and self.host_budget:
            budgets += f", host budget {self.host_budget / GB:.3g} GB"
        return f"teacher states: {self.nbytes / GB:.3g} GB bf16 cache {where} ({budgets})"

    def manifest(self) -> dict:
        return {"placement": self.placement, "bytes": self.nbytes, "device_budget_bytes": self.device_budget,
                "host_budget_bytes": self.host_budget}


def available_ram() -> int:
    """Bytes of RAM available to new allocations: MemAvailable on Linux, else the free physical pages."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file counts kB
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def device_budget(device: torch.device, budget_gb: float) -> int:
    """The device budget in bytes: `budget_gb` when set, else AUTO_FRACTION of the free device memory."""
    if budget_gb:
        return int(budget_gb * GB)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(AUTO_FRACTION * free)
    return int(AUTO_FRACTION * available_ram())


def host_budget(device: torch.device, local_processes: int = 1) -> int:
    """The host budget in bytes on CUDA (every process of a node keeps its own copy); 0 elsewhere."""
    if device.type != "cuda":
        return 0
    return int(AUTO_FRACTION * available_ram() / local_processes)


def choose_placement(nbytes: int, device_bytes: int, host_bytes: int) -> str:
    """'device' if the cache fits the device budget, else 'host' if it fits the host budget, else 'live'."""
    if nbytes <= device_bytes:
        return "device"
    return "host" if nbytes <= host_bytes else "live"


def plan_cache(nbytes: int, device: torch.device, budget_gb: float, local_processes: int = 1) -> CachePlan:
    """The placement of a cache of `nbytes` for a run on `device`, with the budgets it was held against."""
    on_device, on_host = device_budget(device, budget_gb), host_budget(device, local_processes)
    return CachePlan(choose_placement(nbytes, on_device, on_host), nbytes, on_device, on_host)


class TeacherCache:
    """A batch's teacher states, from a stored (n, K, H) bf16 tensor or from the live teacher."""

    def __init__(self, plan: CachePlan, store: Tensor | None, teacher, layers: list[int], device: torch.device):
        self.plan, self.store, self.teacher, self.layers, self.device = plan, store, teacher, list(layers), device
        self._pinned = store is not None and store.is_pinned()
        self._order: Tensor | None = None  # the device tensor the loop's indices are views of
        self._order_host: Tensor | None = None  # its host copy

    def states(self, items: Tensor, indices: Tensor) -> list[Tensor]:
        """K states (batch, H) in bf16 on the device for the examples `indices` (whose inputs are `items`)."""
        if self.plan.placement == "device":
            return list(self.store[indices].unbind(dim=1))
        if self.plan.placement == "host":
            return list(self._stream(self._host_indices(indices)).unbind(dim=1))
        with torch.no_grad():
            return [s.to(DTYPE) for s in self.teacher.last_states(items, self.layers)]

    def _stream(self, rows: Tensor) -> Tensor:
        # A fresh pinned buffer per batch comes from PyTorch's caching host allocator, which hands a
        # block out again only once the non-blocking copy that read it has finished: the next batch's
        # gather never overwrites rows still in flight, without an event of ours.
        staging = torch.empty((len(rows), *self.store.shape[1:]), dtype=DTYPE, pin_memory=self._pinned)
        torch.index_select(self.store, 0, rows, out=staging)
        return staging.to(self.device, non_blocking=True)

    def _host_indices(self, indices: Tensor) -> Tensor:
        """The batch's indices on the host, without a host-device sync per step.

        The training loop puts each epoch's example order on the device once and hands the loss
        views of it (batches, then each rank's slice). The first view of a new order copies that
        whole order to the host (one sync per epoch); each batch's indices are then read from the
        host copy at the view's offset and strides, which are host-side metadata. Indices that are
        no view of a contiguous tensor are copied as they are: correct, at one sync for that batch.
        """
        base = indices._base
        if base is None or base.storage_offset() != 0 or not base.is_contiguous():
            return indices.cpu()
        if base is not self._order:
            self._order, self._order_host = base, base.cpu()
        return self._order_host.as_strided(indices.shape, indices.stride(), indices.storage_offset())


@torch.no_grad()
def build_cache(teacher, inputs: Tensor, layers: list[int], batch_size: int, budget_gb: float = 0.0,
                local_processes: int = 1) -> TeacherCache:
    """Plan the cache from its size (the first batch gives the row shape), then fill it batch by batch."""
    device, n = inputs.device, len(inputs)
    first = torch.stack(teacher.last_states(inputs[:batch_size], layers), dim=1).to(DTYPE)  # (b, K, H)
    plan = plan_cache(n * first[0].numel() * first.element_size(), device, budget_gb, local_processes)
    if plan.placement == "live":
        return TeacherCache(plan, None, teacher, layers, device)
    pinned = plan.placement == "host" and torch.cuda.is_available()
    store = torch.empty((n, *first.shape[1:]), dtype=DTYPE, device=device if plan.placement == "device" else "cpu",
                        pin_memory=pinned)  # filled in place: no second copy from concatenating parts
    store[:len(first)] = first
    for start in range(len(first), n, batch_size):
        # into host memory this copy waits for the teacher's batch: once per batch of a one-off pass
        store[start:start + batch_size] = torch.stack(teacher.last_states(inputs[start:start + batch_size], layers), 1)
    return TeacherCache(plan, store, teacher, layers, device)
