"""The prepared-data cache: its key, and atomic Parquet/JSON writes.

Key = sha256 of (cache format version, a fingerprint of the source file and of its sibling title
file, and every DataConfig field that changes the prepared data). `dataset` is left out (two
names for the same file share a cache; the file is in the fingerprint), and so are `max_len` and
`train_targets`, which only shape training examples.

Fingerprint = size + modification time (ns) + the first and last MiB of content, not a full hash:
it is instant on multi-GB Amazon files, and editing, replacing or touching a file changes it. A
same-size edit in the middle of a large file that also keeps the mtime would be missed.

Every file is written to a temporary name in the same folder and moved into place with
`os.replace` after an fsync (core/store/atomic.py), so a reader never sees half a file; `meta.json` is written last and marks the folder
complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.config import DataConfig
from core.data.errors import DataError
from core.store.atomic import atomic_path, write_bytes_atomic

CACHE_VERSION = 3  # 2: candidates as int32 .npy files (memory-mapped); 3: a short list is padded with 0, not repeats
EDGE_BYTES = 1 << 20
NOT_IN_KEY = ("dataset", "max_len", "train_targets")


def fingerprint(path: Path) -> str:
    """A cheap content fingerprint (see the module docstring)."""
    try:
        info = path.stat()
        digest = hashlib.sha256(f"{info.st_size}:{info.st_mtime_ns}".encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(EDGE_BYTES))
            if info.st_size > EDGE_BYTES:
                handle.seek(max(EDGE_BYTES, info.st_size - EDGE_BYTES))
                digest.update(handle.read(EDGE_BYTES))
    except OSError as error:
        raise DataError(f"{path}: cannot read the file: {error.strerror or error}") from None
    return digest.hexdigest()


def key_settings(cfg: DataConfig) -> dict[str, Any]:
    """The DataConfig fields that change the prepared data."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_IN_KEY}


def cache_key(source: Path, titles: Path | None, cfg: DataConfig) -> str:
    payload = {
        "version": CACHE_VERSION,
        "source": [source.name, fingerprint(source)],
        "titles": [titles.name, fingerprint(titles)] if titles else None,
        "settings": key_settings(cfg),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_parquet(table: pa.Table, path: Path, compress: bool = True) -> None:
    """Write atomically; compress=False for random ids (candidates): they do not compress, and
    dictionary encoding them only costs time."""
    with atomic_path(path) as temporary:
        if compress:
            pq.write_table(table, temporary)
        else:
            pq.write_table(table, temporary, use_dictionary=False, compression="none")


def write_npy(path: Path, shape: tuple[int, int], dtype: np.dtype, rows: Iterable[np.ndarray]) -> None:
    """Write an .npy file atomically from consecutive blocks of rows, never holding the whole array
    (nor mapping it: written pages would count as this process's memory)."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    written = 0
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.lib.format.write_array_header_2_0(handle, header)
            for block in rows:
                np.ascontiguousarray(block, dtype=dtype).tofile(handle)
                written += len(block)
        if written != shape[0]:
            raise ValueError(f"{path.name}: {written} rows written, {shape[0]} expected")


def write_json(data: dict[str, Any], path: Path) -> None:
    write_bytes_atomic(path, json.dumps(data, indent=2, sort_keys=True).encode())


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at path, or None when it is missing or unreadable (an incomplete cache)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
