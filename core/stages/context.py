"""What a stage gets besides its spec: where to write, which device, how to report and stop.

One `RunContext` is built per run by the executor (foreground `slmrec run` and the worker alike).
State updates go through a lock because a heartbeat thread writes state.json too.
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


@dataclass
class RunContext:
    """Paths, device and reporting for one run."""

    run_id: str
    paths: Paths
    device: torch.device
    events: EventWriter
    echo: bool = False  # also print log lines (foreground runs)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _started: float = field(default_factory=time.monotonic)

    @property
    def checkpoint_dir(self) -> Path:
        return self.paths.checkpoints / self.run_id

    def log(self, text: str) -> None:
        """Append a timestamped line to the run's log.txt."""
        line = f"{time.strftime('%H:%M:%S')} {text}"
        run_store.append_log(self.paths.runs, self.run_id, line + "\n")
        if self.echo:
            print(line, flush=True)

    def set_state(self, **fields) -> None:
        """Update state.json (phase, progress, eta_s, samples_per_s, ...)."""
        with self._lock:
            run_store.update_state(self.paths.runs, self.run_id, **fields)

    def progress(self, phase: str, fraction: float, samples_per_s: float | None = None) -> None:
        """Report a phase's progress in [0, 1] with an ETA estimated from the time spent so far."""
        elapsed = time.monotonic() - self._started
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
        self.set_state(phase=phase, progress=round(float(fraction), 4), eta_s=eta, samples_per_s=samples_per_s)

    def cancel_requested(self) -> bool:
        return run_store.cancel_requested(self.paths.runs, self.run_id)

    def heartbeat(self) -> None:
        self.set_state(heartbeat_at=run_store.now_iso())
