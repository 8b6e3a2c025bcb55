"""What a stage gets besides its spec: where to write, which device, how to report and stop.

One `RunContext` is built per run by the executor (foreground `slmrec run` and the worker alike).
State updates go through a lock because a heartbeat thread writes state.json too. In a run of
several processes every rank gets one, but only rank 0's writes anything: the others' log, state
and cancel checks do nothing and their event writer drops its rows.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.store import runs as run_store
from core.store.events import EventWriter
from core.store.paths import Paths
from core.runtime.device import peak_memory_mb
from core.runtime.distributed import SINGLE, Dist


@dataclass
class RunContext:
    """Paths, device and reporting for one run."""

    run_id: str
    paths: Paths
    device: torch.device
    events: EventWriter
    echo: bool = False  # also print log lines (foreground runs)
    dist: Dist = SINGLE  # this process's place in a run of several processes
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _started: float = field(default_factory=time.monotonic)

    @property
    def checkpoint_dir(self) -> Path:
        return self.paths.checkpoint_dir(self.run_id)

    @property
    def device_label(self) -> str:
        """The device as recorded in state and timings: "cuda:0", or "8 x cuda" for 8 processes."""
        return str(self.device) if self.dist.world_size == 1 else f"{self.dist.world_size} x {self.device.type}"

    def log(self, text: str, echo: bool = True) -> None:
        """Append a timestamped line to the run's log.txt (and print it on a foreground run, unless not `echo`)."""
        if not self.dist.is_main:
            return
        line = f"{time.strftime('%H:%M:%S')} {text}"
        run_store.append_log(self.paths.runs, self.run_id, line + "\n")
        if self.echo and echo:
            print(line, flush=True)

    def set_state(self, **fields) -> None:
        """Update state.json (phase, progress, eta_s, samples_per_s, ...)."""
        if not self.dist.is_main:
            return
        with self._lock:
            run_store.update_state(self.paths.runs, self.run_id, **fields)

    def progress(self, phase: str, fraction: float, samples_per_s: float | None = None) -> None:
        """Report a phase's progress in [0, 1] with an ETA estimated from the time spent so far."""
        elapsed = time.monotonic() - self._started
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
        self.set_state(phase=phase, progress=round(float(fraction), 4), eta_s=eta, samples_per_s=samples_per_s)

    def timing_row(self, phase: str, samples: int, seconds: float) -> dict:
        """One row of the timings table: `samples` in `seconds` of `phase`, with the device's peak memory."""
        return {"run_id": self.run_id, "phase": phase, "samples": samples, "seconds": seconds,
                "samples_per_s": samples / max(seconds, 1e-9), "peak_mem_mb": peak_memory_mb(self.device),
                "device": self.device_label}

    def cancel_requested(self) -> bool:
        return self.dist.is_main and run_store.cancel_requested(self.paths.runs, self.run_id)

    def heartbeat(self) -> None:
        self.set_state(heartbeat_at=run_store.now_iso())
