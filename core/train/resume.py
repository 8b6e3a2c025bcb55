"""Resumable training state as safetensors + JSON (never pickle).

The loop's resume state holds the optimizer and scheduler state, the three RNG states and the
data position; the stage adds the model's trainable weights. Tensors go to safetensors, the rest
to JSON, and `unpack` restores the exact objects (a test checks a resumed run matches an
uninterrupted one).
"""

from __future__ import annotations

import numpy as np
import torch

from core.store.checkpoints import flatten_state_dict, unflatten_state_dict

_POSITION = ("step", "epoch", "batch", "best_score", "best_step", "stale")


def pack(state: dict, weights: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    """Split a loop resume state plus model weights into (tensors, JSON meta)."""
    opt_tensors, opt_meta = flatten_state_dict(state["optimizer"])
    tensors = {f"optimizer/{k}": v for k, v in opt_tensors.items()}
    tensors.update({f"model/{k}": v.detach().contiguous() for k, v in weights.items()})
    tensors["rng/torch"] = state["torch_rng"]
    name, keys, pos, has_gauss, cached = state["numpy_rng"]
    version, internal, gauss = state["python_rng"]
    meta = {
        "optimizer": opt_meta,
        "scheduler": state["scheduler"],
        "numpy_rng": [name, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)],
        "python_rng": [version, list(internal), gauss],
        **{k: _json_number(state[k]) for k in _POSITION},
    }
    return tensors, meta


def unpack(tensors: dict[str, torch.Tensor], meta: dict) -> tuple[dict, dict[str, torch.Tensor]]:
    """Inverse of `pack`: (loop resume state, model weights)."""
    opt = {k[len("optimizer/"):]: v for k, v in tensors.items() if k.startswith("optimizer/")}
    weights = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    name, keys, pos, has_gauss, cached = meta["numpy_rng"]
    version, internal, gauss = meta["python_rng"]
    state = {
        "optimizer": unflatten_state_dict(opt, meta["optimizer"]),
        "scheduler": meta["scheduler"],
        "torch_rng": tensors["rng/torch"],
        "numpy_rng": (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached),
        "python_rng": (version, tuple(internal), gauss),
        **{k: meta[k] for k in _POSITION},
    }
    state["best_score"] = float(state["best_score"])
    return state, weights


def _json_number(value):
    # -inf (no evaluation yet) is not valid JSON; a string keeps it exact.
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value
