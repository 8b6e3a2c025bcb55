"""Checkpoint folders: weights as safetensors, settings as JSON, and resumable training state.

checkpoints/<run_id>/ holds model.safetensors and manifest.json (settings, versions, metrics;
nothing is encoded in file names), and for resuming, resume.safetensors and resume.json: the trainable weights,
the optimizer state, the RNG states and the step. Nothing is ever pickled: an optimizer state_dict is
flattened into tensors plus JSON (`flatten_state_dict`), RNG states become a uint8 tensor and JSON
lists. Loading refuses anything that is not a safetensors file, because unpickling runs code.
Every file is written atomically; manifest.json is written after model.safetensors, and the two
resume files carry the same random token, so a crash between two writes is detected, not loaded.
torch and safetensors are imported inside the functions: importing the store stays light.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from core.store.atomic import atomic_path, read_json, write_json_atomic
from core.store.tensorstate import (  # noqa: F401  (re-exported: resume state is built from these)
    capture_rng_state,
    flatten_state_dict,
    restore_rng_state,
    unflatten_state_dict,
)

MODEL_FILE, MANIFEST_FILE = "model.safetensors", "manifest.json"
RESUME_FILE, RESUME_STATE_FILE = "resume.safetensors", "resume.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
_TOKEN_KEY = "slmrec_token"


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or not in a format we load; the message says which."""


def save_checkpoint(ckpt_dir: Path, tensors: dict, manifest: dict) -> None:
    """Write model.safetensors, then manifest.json (its presence means the weights are complete).

    An older manifest is removed first, so a crash while overwriting leaves no manifest (an
    incomplete checkpoint) rather than new weights described by the old manifest.
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    (ckpt_dir / MANIFEST_FILE).unlink(missing_ok=True)
    _save_tensors(ckpt_dir / MODEL_FILE, tensors)
    write_json_atomic(ckpt_dir / MANIFEST_FILE, manifest)


def write_manifest(ckpt_dir: Path, manifest: dict) -> None:
    """Replace the manifest of an existing checkpoint (e.g. to add test metrics), weights untouched."""
    ckpt_dir = Path(ckpt_dir)
    if not (ckpt_dir / MODEL_FILE).exists():
        raise CheckpointError(f"{ckpt_dir}: no {MODEL_FILE}; save the checkpoint before its manifest")
    write_json_atomic(ckpt_dir / MANIFEST_FILE, manifest)


def read_manifest(ckpt_dir: Path) -> dict:
    """The manifest.json of a checkpoint folder (without loading the weights)."""
    path = Path(ckpt_dir) / MANIFEST_FILE
    if not path.exists():
        raise CheckpointError(f"{ckpt_dir}: no {MANIFEST_FILE}, so not a complete checkpoint")
    return read_json(path)


def load_checkpoint(ckpt_dir: Path, device: str = "cpu") -> tuple[dict, dict]:
    """(tensors, manifest) from a checkpoint folder, or (tensors, {}) from a .safetensors file."""
    path = Path(ckpt_dir)
    if path.is_file():
        return load_safetensors(path, device), {}
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.exists():
        pickles = sorted(p.name for p in path.glob("*") if p.suffix in PICKLE_SUFFIXES)
        hint = f" It holds {', '.join(pickles)}: pickle files are never loaded; convert them to " \
               "safetensors." if pickles else ""
        raise CheckpointError(f"{path}: no {MANIFEST_FILE}, so not a complete checkpoint.{hint}")
    return load_safetensors(path / MODEL_FILE, device), read_json(manifest_path)


def load_safetensors(path: Path, device: str = "cpu") -> dict:
    """The tensors of one .safetensors file; anything else (a pickle, a torch .pt) is refused."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: only .safetensors weights are loaded, never pickle files "
                              f"(.bin, .pt, .pth, .ckpt); convert it to safetensors first")
    if not path.exists():
        raise CheckpointError(f"{path}: no such weights file")
    check_safetensors_header(path)
    return load_file(path, device=device)


def check_safetensors_header(path: Path) -> None:
    """Refuse a file whose first bytes are not a safetensors header (e.g. a renamed pickle)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(9)
    header_len = int.from_bytes(head[:8], "little") if len(head) == 9 else -1
    if not (0 < header_len <= size - 8 and head[8:9] == b"{"):
        raise CheckpointError(f"{path}: not a safetensors file (bad header); pickle files are never loaded")


def save_resume_state(ckpt_dir: Path, tensors: dict, state: dict) -> None:
    """Write resume-<token>.safetensors, then resume.json naming it: the JSON's atomic rename is the
    commit point, so a crash between the two writes leaves the previous pair whole and loadable."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    name = f"resume-{token}.safetensors"
    _save_tensors(ckpt_dir / name, tensors, metadata={_TOKEN_KEY: token})
    write_json_atomic(ckpt_dir / RESUME_STATE_FILE, {"token": token, "tensors": name, "state": state})
    for old in [*ckpt_dir.glob("resume-*.safetensors"), ckpt_dir / RESUME_FILE]:
        if old.name != name and old.exists():
            old.unlink()


def load_resume_state(ckpt_dir: Path, device: str = "cpu") -> tuple[dict, dict] | None:
    """(tensors, state) saved by `save_resume_state`, or None if there is no committed resume state."""
    from safetensors import safe_open

    ckpt_dir = Path(ckpt_dir)
    json_path = ckpt_dir / RESUME_STATE_FILE
    if not json_path.exists():
        return None  # nothing committed (tensors written before a crash are not a resume state)
    saved = read_json(json_path)
    tensor_path = ckpt_dir / saved.get("tensors", RESUME_FILE)
    if not tensor_path.exists():
        raise CheckpointError(f"{ckpt_dir}: {json_path.name} names {tensor_path.name}, which is missing")
    check_safetensors_header(tensor_path)
    with safe_open(tensor_path, framework="pt") as f:
        token = (f.metadata() or {}).get(_TOKEN_KEY)
    if token != saved.get("token"):
        raise CheckpointError(f"{ckpt_dir}: {tensor_path.name} and {RESUME_STATE_FILE} come from different "
                              "saves; resume from an earlier checkpoint")
    return load_safetensors(tensor_path, device), saved["state"]


def _save_tensors(path: Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """safetensors refuses tensors that share memory (tied weights) or are not contiguous, so copy
    those; the file is written under a temporary name and renamed into place."""
    import torch
    from safetensors.torch import save_file

    seen: set[tuple[str, int]] = set()
    ready = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach()
        storage = tensor.untyped_storage()
        key = (str(tensor.device), storage.data_ptr())
        partial = storage.nbytes() != tensor.numel() * tensor.element_size()  # a view of a bigger tensor
        copy = key in seen or partial or not tensor.is_contiguous()
        seen.add(key)
        ready[name] = tensor.clone(memory_format=torch.contiguous_format) if copy else tensor
    with atomic_path(Path(path)) as tmp:
        save_file(ready, tmp, metadata=metadata)


def manifest_versions() -> dict[str, Any]:
    """Library versions worth recording in a manifest."""
    import platform

    import safetensors
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "safetensors": safetensors.__version__}
