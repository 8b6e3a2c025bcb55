"""Nested training state (optimizer state_dicts, RNG states) as tensors plus JSON, never pickle.

`flatten_state_dict` walks a nested structure of dicts, lists, tuples, tensors and JSON scalars and
returns (tensors, meta): every tensor moves to a flat dict under a path-like key, and `meta` is JSON
that records where each one was and keeps what JSON cannot say by itself (integer dict keys,
tuples), so `unflatten_state_dict` rebuilds the same structure exactly. An AdamW state_dict
({"state": {0: {"step", "exp_avg", ...}}, "param_groups": [{"betas": (..), ...}]}) round-trips.
The RNG helpers capture torch, CUDA, numpy and Python generator states the same way.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

_TENSOR, _TUPLE, _DICT = "__tensor__", "__tuple__", "__dict__"


def flatten_state_dict(state: Any, prefix: str = "") -> tuple[dict, Any]:
    """(tensors, meta): the tensors of `state` under keys "<prefix><path>", the rest as JSON."""
    tensors: dict = {}
    meta = _flatten(state, prefix.rstrip("/") + "/" if prefix else "", tensors)
    return tensors, meta


def _flatten(value: Any, path: str, tensors: dict) -> Any:
    if _is_tensor(value):
        key = path.rstrip("/") or "tensor"
        while key in tensors:  # keys that differ only in type (0 and "0") would collide
            key += "_"
        tensors[key] = value
        return {_TENSOR: key}
    if isinstance(value, dict):  # as [key, value] pairs: JSON objects would turn int keys into str
        for k in value:
            if k is not None and type(k) not in (bool, int, float, str):
                raise TypeError(f"cannot store dict key {k!r} at {path.rstrip('/') or '<root>'}: "
                                "keys must be strings or numbers")
        return {_DICT: [[k, _flatten(v, f"{path}{k}/", tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [_flatten(v, f"{path}{i}/", tensors) for i, v in enumerate(value)]
        return {_TUPLE: items} if isinstance(value, tuple) else items
    if value is None or type(value) in (bool, int, float, str):
        return value
    raise TypeError(f"cannot store {type(value).__name__} at {path.rstrip('/') or '<root>'} without pickle; "
                    "expected tensors, dicts, lists, tuples, numbers, strings, bools or None")


def unflatten_state_dict(tensors: dict, meta: Any) -> Any:
    """The structure that `flatten_state_dict` split into (tensors, meta)."""
    if isinstance(meta, list):
        return [unflatten_state_dict(tensors, m) for m in meta]
    if not isinstance(meta, dict):  # every dict in meta is one of the three tagged forms
        return meta
    if _TENSOR in meta:
        return tensors[meta[_TENSOR]]
    if _TUPLE in meta:
        return tuple(unflatten_state_dict(tensors, m) for m in meta[_TUPLE])
    return {k: unflatten_state_dict(tensors, v) for k, v in meta[_DICT]}


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "untyped_storage")


def capture_rng_state() -> tuple[dict, dict]:
    """(tensors, meta) holding the torch, CUDA, numpy and Python RNG states."""
    import torch

    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = state
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()
    version, internal, gauss_next = random.getstate()
    meta = {"numpy": numpy_state, "python": [version, list(internal), gauss_next],
            "cuda_devices": sum(k.startswith("rng/cuda/") for k in tensors)}
    return tensors, meta


def restore_rng_state(tensors: dict, meta: dict) -> None:
    """Set every RNG back to a state from `capture_rng_state`."""
    import torch

    torch.set_rng_state(tensors["rng/torch"].cpu())
    if meta.get("cuda_devices") and torch.cuda.is_available():
        count = min(meta["cuda_devices"], torch.cuda.device_count())
        torch.cuda.set_rng_state_all([tensors[f"rng/cuda/{i}"].cpu() for i in range(count)])
    numpy_state = dict(meta["numpy"], state=dict(meta["numpy"]["state"]))
    numpy_state["state"]["key"] = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(numpy_state)
    version, internal, gauss_next = meta["python"]
    random.setstate((version, tuple(internal), gauss_next))
