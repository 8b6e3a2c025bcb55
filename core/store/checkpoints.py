"""Checkpoint folders: weights as safetensors, settings as JSON, and resumable training state.

checkpoints/<run_id>/ holds model.safetensors and manifest.json (settings, versions, metrics;
nothing is encoded in file names), and for resuming, resume.safetensors and resume.json: the trainable weights,
the optimizer state, the RNG states and the step. Nothing is ever pickled: an optimizer state_dict is
flattened into tensors plus JSON (`flatten_state_dict`), RNG states become a uint8 tensor and JSON
lists. Loading refuses anything that is not a safetensors file, because unpickling runs code.
Every file is written atomically; manifest.json is written after model.safetensors, and the two
resume files carry the same random token, so a crash between two writes is detected, not loaded.
The state a save replaces stays on disk as resume.previous.json (with its tensors): should the newest
become unreadable (a cut copy, a bad disk), the run resumes from the previous one, and with neither
readable it starts over; never more than two states take disk space. A file that safetensors cannot
read is reported by path, as truncated or corrupt, with what to do.
torch and safetensors are imported inside the functions: importing the store stays light.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.store.atomic import (
    CorruptFileError,
    atomic_path,
    read_json,
    write_json_atomic,
)
from core.store.paths import PREVIOUS_STATE_FILE, RESUME_STATE_FILE
from core.store.tensorstate import (  # noqa: F401  (re-exported: resume state is built from these)
    capture_rng_state,
    flatten_state_dict,
    restore_rng_state,
    unflatten_state_dict,
)

MODEL_FILE, MANIFEST_FILE = "model.safetensors", "manifest.json"
RESUME_FILE = "resume.safetensors"
REWRITE_ADVICE = "restore it from a copy or run again the run that wrote it"
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


def load_checkpoint(ckpt_dir: Path, device: str = "cpu", advice: str = REWRITE_ADVICE) -> tuple[dict, dict]:
    """(tensors, manifest) from a checkpoint folder, or (tensors, {}) from a .safetensors file;
    `advice` ends the message when the weights are unreadable (what the user should do)."""
    path = Path(ckpt_dir)
    if path.is_file():
        return load_safetensors(path, device, advice), {}
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.exists():
        pickles = sorted(p.name for p in path.glob("*") if p.suffix in PICKLE_SUFFIXES)
        hint = f" It holds {', '.join(pickles)}: pickle files are never loaded; convert them to " \
               "safetensors." if pickles else ""
        raise CheckpointError(f"{path}: no {MANIFEST_FILE}, so not a complete checkpoint.{hint}")
    return load_safetensors(path / MODEL_FILE, device, advice), read_json(manifest_path)


def load_safetensors(path: Path, device: str = "cpu", advice: str = REWRITE_ADVICE) -> dict:
    """The tensors of one .safetensors file; anything else (a pickle, a torch .pt) is refused."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: only .safetensors weights are loaded, never pickle files "
                              f"(.bin, .pt, .pth, .ckpt); convert it to safetensors first")
    if not path.exists():
        raise CheckpointError(f"{path}: no such weights file")
    with open_safetensors(path, device, advice) as handle:
        return _all_tensors(handle)


def _all_tensors(handle) -> dict:
    return {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (a handle is not iterable)


@contextlib.contextmanager
def open_safetensors(path: Path, device: str = "cpu", advice: str = REWRITE_ADVICE) -> Iterator[Any]:
    """safetensors' `safe_open` handle on `path`; a file it cannot read (truncated, corrupt, missing)
    raises CheckpointError naming the file, the reason and `advice`, also while tensors are read."""
    from safetensors import SafetensorError, safe_open

    check_safetensors_header(path, advice)
    try:
        handle = safe_open(path, framework="pt", device=device)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(_unreadable(path, str(err), advice)) from err
    try:
        with handle:
            yield handle
    except SafetensorError as err:  # only the reads raise it: the caller's own errors pass unchanged
        raise CheckpointError(_unreadable(path, str(err), advice)) from err


def _unreadable(path: Path, reason: str, advice: str) -> str:
    return f"{path}: not a readable safetensors file (truncated or corrupt: {reason}); {advice}"


def check_safetensors_header(path: Path, advice: str = REWRITE_ADVICE) -> None:
    """Refuse a file whose first bytes are not a safetensors header (e.g. a renamed pickle), or are the
    start of one that the file is too short to hold (a cut copy)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as err:
        raise CheckpointError(_unreadable(path, err.strerror or str(err), advice)) from err
    header_len = int.from_bytes(head[:8], "little") if len(head) == 9 else -1
    if size < 9 or (head[8:9] == b"{" and header_len > size - 8):
        raise CheckpointError(_unreadable(path, f"{size} bytes, too short for its header", advice))
    if not (0 < header_len <= size - 8 and head[8:9] == b"{"):
        raise CheckpointError(f"{path}: not a safetensors file (bad header); pickle files are never loaded")


@dataclass(frozen=True)
class ResumeState:
    """A resume state as read: its tensors and JSON state, and the JSON entry and file it came from."""

    tensors: dict
    state: dict
    entry: dict  # {"token", "tensors": file name, "state"}
    source: str  # RESUME_STATE_FILE, or PREVIOUS_STATE_FILE after a fallback


def save_resume_state(ckpt_dir: Path, tensors: dict, state: dict) -> None:
    """Write resume-<token>.safetensors, then resume.json naming it: the JSON's atomic rename is the
    commit point, so a crash between the two writes leaves the previous pair whole and loadable.
    The replaced state becomes resume.previous.json first; older tensors go before the new ones are
    written, so at most two states (plus the one being written) take disk space."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    newest = _read_entry(ckpt_dir / RESUME_STATE_FILE)
    if newest is not None:  # an unreadable newest one is no fallback: the previous one stays
        write_json_atomic(ckpt_dir / PREVIOUS_STATE_FILE, newest)
    _remove_unnamed_tensors(ckpt_dir)
    token = secrets.token_hex(8)
    name = f"resume-{token}.safetensors"
    _save_tensors(ckpt_dir / name, tensors, metadata={_TOKEN_KEY: token})
    write_json_atomic(ckpt_dir / RESUME_STATE_FILE, {"token": token, "tensors": name, "state": state})


def load_resume_state(ckpt_dir: Path, device: str = "cpu",
                      log: Callable[[str], None] | None = None) -> tuple[dict, dict] | None:
    """(tensors, state) of the newest readable resume state (see `read_resume_state`), or None."""
    saved = read_resume_state(ckpt_dir, device, log)
    return None if saved is None else (saved.tensors, saved.state)


def read_resume_state(ckpt_dir: Path, device: str = "cpu",
                      log: Callable[[str], None] | None = None) -> ResumeState | None:
    """resume.json's state, else resume.previous.json's when the newest is unreadable; None when there
    is none or none is readable (the run starts over). Each skipped state is logged with why."""
    ckpt_dir = Path(ckpt_dir)
    say = log or (lambda _: None)
    tokens, skipped = set(), False
    for source in (RESUME_STATE_FILE, PREVIOUS_STATE_FILE):
        path = ckpt_dir / source
        if not path.exists():
            continue  # nothing committed (tensors written before a crash are not a resume state)
        try:
            entry = _read_entry(path, strict=True)
            if entry["token"] in tokens:
                continue  # a save stopped between its two JSON writes: both name the same state
            tokens.add(entry["token"])
            return ResumeState(_resume_tensors(ckpt_dir, path, entry, device), entry["state"], entry, source)
        except (CheckpointError, CorruptFileError) as err:
            skipped = True
            say(f"resume state skipped: {err}")
    if skipped:
        say(f"no readable resume state in {ckpt_dir}: starting over from the first step")
    return None


def settle_resume_state(ckpt_dir: Path, kept: ResumeState | None) -> None:
    """After a resume from `kept` (None: a start over), forget the newer states that were unreadable,
    so that a later save never keeps one of them as its fallback. Call from one process only."""
    ckpt_dir = Path(ckpt_dir)
    if kept is None:
        for path in [ckpt_dir / RESUME_STATE_FILE, ckpt_dir / PREVIOUS_STATE_FILE]:
            path.unlink(missing_ok=True)
    elif kept.source != RESUME_STATE_FILE:
        write_json_atomic(ckpt_dir / RESUME_STATE_FILE, kept.entry)
        (ckpt_dir / kept.source).unlink(missing_ok=True)
    _remove_unnamed_tensors(ckpt_dir)


def _read_entry(path: Path, strict: bool = False) -> dict | None:
    """A resume JSON file's {"token", "tensors", "state"}; None (strict: CorruptFileError) if it is
    missing or unreadable."""
    try:
        entry = read_json(path)
        if not (isinstance(entry, dict) and isinstance(entry.get("token"), str)
                and isinstance(entry.get("tensors", RESUME_FILE), str) and isinstance(entry.get("state"), dict)):
            raise CorruptFileError(f"{path}: not a resume state (expected token, tensors and state)")
        return entry
    except (FileNotFoundError, CorruptFileError):
        if strict:
            raise
        return None


def _resume_tensors(ckpt_dir: Path, json_path: Path, entry: dict, device: str) -> dict:
    """The tensors that a resume JSON entry names, checked to come from the same save."""
    tensor_path = ckpt_dir / entry.get("tensors", RESUME_FILE)
    if not tensor_path.exists():
        raise CheckpointError(f"{json_path} names {tensor_path.name}, which is missing")
    with open_safetensors(tensor_path, device, advice="an earlier state is used if one is readable") as handle:
        if (handle.metadata() or {}).get(_TOKEN_KEY) != entry["token"]:
            raise CheckpointError(f"{tensor_path} and {json_path.name} come from different saves")
        return _all_tensors(handle)


def _remove_unnamed_tensors(ckpt_dir: Path) -> None:
    """Delete resume tensors that neither resume JSON names (replaced, skipped or never committed)."""
    named = {entry.get("tensors", RESUME_FILE) for entry in
             (_read_entry(ckpt_dir / name) for name in (RESUME_STATE_FILE, PREVIOUS_STATE_FILE)) if entry}
    for path in [*ckpt_dir.glob("resume-*.safetensors"), ckpt_dir / RESUME_FILE]:
        if path.name not in named:
            path.unlink(missing_ok=True)


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
