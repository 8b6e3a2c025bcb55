"""Device, precision and seeding, chosen once at the entry point and passed down.

`resolve_device("auto")` picks CUDA when present, else CPU; in a run of several processes each
takes the GPU of its local rank (core/runtime/distributed.py). bf16 autocast is used on CUDA only:
CPU autocast in bf16 is slower than fp32 on most CPUs and changes numerics for no gain here.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import sys

import numpy as np
import torch

from core.config import ConfigError
from core.runtime.distributed import SINGLE, Dist


def resolve_device(name: str = "auto", dist: Dist = SINGLE) -> torch.device:
    """The torch device for a setting: auto | cpu | cuda | cuda:N | mps."""
    if dist.world_size > 1:
        return _rank_device(name, dist)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device: '{name}' was asked for but no CUDA device is available; use 'cpu' or 'auto'")
    return device


def uses_bf16(device: torch.device, precision: str = "auto") -> bool:
    """Whether training runs under bf16 autocast (precision 'bf16', or 'auto' on CUDA)."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def _rank_device(name: str, dist: Dist) -> torch.device:
    """A distributed run's device for this process: the GPU of its local rank, or the CPU."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if name not in ("auto", "cuda"):
        raise ConfigError(f"train.device: '{name}' cannot be shared by {dist.local_world_size} processes per node; "
                          "a run of several processes takes 'cuda' (each process the GPU of its local rank), "
                          "'cpu' or 'auto' (also check the worker's --device)")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if dist.local_world_size > count:
        raise ConfigError(f"train.nproc_per_node: {dist.local_world_size} processes per node, but this node has "
                          f"{count} CUDA device(s); use at most {count} (one GPU per process), or train.device=cpu")
    return torch.device("cuda", dist.local_rank)


def autocast(device: torch.device, precision: str = "auto"):
    """The autocast context for a device and precision setting (bf16 on CUDA under 'auto')."""
    if not uses_bf16(device, precision):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def frozen_weights_dtype(device: torch.device, precision: str, training: str) -> torch.dtype:
    """The dtype to load a backbone's weights in: bf16 when they stay frozen (LoRA or frozen) and
    the run is under bf16 autocast, which would round them to bf16 at every matmul anyway; storing
    them so halves their memory and saves a cast per weight per step. fp32 otherwise."""
    return torch.bfloat16 if training != "full" and uses_bf16(device, precision) else torch.float32


def compile_mode(setting: str, device: torch.device) -> str | None:
    """What train.compile asks for on this device: None (eager), "default" (torch.compile of the whole
    layer stack) or "reduce-overhead" (compiled and replayed as CUDA graphs: `graphs`, CUDA only).
    'auto' compiles on CUDA only, where it pays; on CPU the compilation costs more than a short run saves."""
    if setting == "graphs":
        if device.type != "cuda":
            raise ValueError(f"train.compile: graphs (CUDA graphs) needs a CUDA device; this run is on {device}. "
                             "Use --compile on (or auto) instead")
        return "reduce-overhead"
    return "default" if setting == "on" or (setting == "auto" and device.type == "cuda") else None


def inference_autocast(device: torch.device, precision: str = "auto"):
    """Autocast for inference-only measurements: like `autocast`, but 'auto' also takes bf16 on a CPU
    with native bf16 matrix units (AVX512-BF16/AMX), where it is about 1.8x faster than fp32."""
    if precision == "auto" and device.type == "cpu" and _cpu_has_native_bf16():
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    return autocast(device, precision)


def _cpu_has_native_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def host_to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host batch on `device`; on CUDA through pinned memory without blocking the host, so the
    copy overlaps the work already queued on the GPU."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def environment(device: torch.device) -> dict:
    """Library versions and hardware, recorded in every run's manifest."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    def installed(name: str) -> str | None:  # the version without importing the (slow) package
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": installed("transformers"),
        "safetensors": installed("safetensors"),
        "numpy": np.__version__,
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory since the last reset, or this process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource  # noqa: PLC0415 - POSIX only

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
