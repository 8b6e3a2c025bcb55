"""Prepared data: filtered, time-sorted, remapped sequences plus fixed evaluation candidates.

`prepare(cfg, data_root)` resolves the dataset, and either reads the cache folder
`<data_root>/prepared/<key>/` or builds it: read the source, filter and remap (filters.py), draw
the sampled-evaluation negatives (candidates.py) and write Parquet files plus `meta.json` (cache.py).

Cache folder:
    interactions.parquet  user, item, timestamp: sorted by user then time (ties: file order)
    items.parquet         item_id, title; row i is item i, row 0 the padding item ("")
    users.parquet         user_id; row u is user u
    candidates.parquet    valid, test: fixed-size lists of n_negatives item ids, row u is user u
    meta.json             written last: key, source, settings, stats (with drop counts)

Split (leave-one-out) for a sequence s of length L >= 3: test input s[:-1], target s[-1];
validation input s[:-2], target s[-2]; training items s[:-2] (see examples.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.config import DataConfig
from core.data.cache import CACHE_VERSION, cache_key, key_settings, read_json, write_json, write_parquet
from core.data.candidates import SPLITS, draw_candidates
from core.data.errors import DataError
from core.data.filters import filter_and_remap
from core.data.sources import read_interactions, resolve_source, title_file
from core.data.stats import compute_stats


@dataclass(frozen=True, eq=False)
class PreparedData:
    """One prepared dataset. Arrays are read-only; item id 0 is padding and never a real item."""

    key: str
    folder: Path
    n_users: int
    n_items: int
    sequences: list[np.ndarray] = field(repr=False)  # per user: time-ordered item ids, int64
    item_ids: list[str] = field(repr=False)  # item id -> original id ("" for 0)
    item_titles: list[str] = field(repr=False)  # item id -> title ("" for 0 or unknown)
    user_ids: list[str] = field(repr=False)  # user id -> original id
    stats: dict[str, Any] = field(repr=False)
    negatives: dict[str, np.ndarray] = field(repr=False)  # split -> (n_users, n_negatives)

    def candidates(self, split: str) -> np.ndarray:
        """Stored sampled-evaluation negatives (n_users, n_negatives) int64 for 'valid' or 'test'."""
        if split not in self.negatives:
            raise DataError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
        return self.negatives[split]


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _sequences(user: np.ndarray, item: np.ndarray, n_users: int) -> list[np.ndarray]:
    """Split the user-sorted item column into one (read-only) view per user."""
    counts = np.bincount(user, minlength=n_users)
    return np.split(_read_only(item.astype(np.int64)), np.cumsum(counts)[:-1])


def prepare(cfg: DataConfig, data_root: Path) -> PreparedData:
    """The prepared data for these settings: from the cache when it is complete, else built."""
    data_root = Path(data_root)
    source = resolve_source(cfg.dataset, data_root)
    key = cache_key(source, title_file(source), cfg)
    folder = data_root / "prepared" / key
    cached = _load(folder, key)
    if cached is not None:
        return cached
    return _build(cfg, source, data_root, key, folder)


def _build(cfg: DataConfig, source: Path, data_root: Path, key: str, folder: Path) -> PreparedData:
    data = read_interactions(source, cfg)
    read_rows = len(data.frame) + sum(data.dropped.values())
    kept = filter_and_remap(data, cfg, source)
    n_users, n_items = len(kept.user_ids), len(kept.item_ids) - 1
    sequences = _sequences(kept.user, kept.item, n_users)
    titles = [""] + [data.titles.get(original, "") for original in kept.item_ids[1:]]
    negatives, repeats = {}, {}
    for split in SPLITS:
        drawn, repeats[split] = draw_candidates(sequences, n_items, cfg.n_negatives, cfg.seed, split, kept.user_ids)
        negatives[split] = _read_only(drawn)
    stats = compute_stats(sequences, n_items, kept.drops, read_rows)
    stats["titled_items"] = sum(1 for t in titles[1:] if t)
    stats["candidates"] = {"n_negatives": cfg.n_negatives, "users_with_repeats": repeats}
    prepared = PreparedData(key=key, folder=folder, n_users=n_users, n_items=n_items, sequences=sequences,
                            item_ids=kept.item_ids, item_titles=titles, user_ids=kept.user_ids,
                            stats=stats, negatives=negatives)
    meta = {"version": CACHE_VERSION, "key": key, "dataset": cfg.dataset,
            "source": os.path.relpath(source, data_root), "settings": key_settings(cfg),
            "n_users": n_users, "n_items": n_items, "stats": stats}
    try:
        _save(prepared, kept.user, kept.item, kept.timestamp, meta)
    except OSError as error:  # e.g. a full disk: no half-written file is left (atomic writes)
        raise DataError(f"{folder}: cannot write the prepared data ({error.strerror or error})") from None
    return prepared


def _fixed_lists(matrix: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.astype(np.int32).ravel()), matrix.shape[1])


def _save(prepared: PreparedData, user: np.ndarray, item: np.ndarray, timestamp: np.ndarray,
          meta: dict[str, Any]) -> None:
    folder = prepared.folder
    folder.mkdir(parents=True, exist_ok=True)
    write_parquet(pa.table({"user": user.astype(np.int32), "item": item.astype(np.int32),
                            "timestamp": timestamp}), folder / "interactions.parquet")
    write_parquet(pa.table({"item_id": prepared.item_ids, "title": prepared.item_titles}), folder / "items.parquet")
    write_parquet(pa.table({"user_id": prepared.user_ids}), folder / "users.parquet")
    write_parquet(pa.table({split: _fixed_lists(prepared.negatives[split]) for split in SPLITS}),
                  folder / "candidates.parquet", compress=False)
    write_json(meta, folder / "meta.json")  # last: marks the folder complete


def _load(folder: Path, key: str) -> PreparedData | None:
    """The cached data, or None when the folder is missing, incomplete or unreadable (rebuild)."""
    meta = read_json(folder / "meta.json")
    if meta is None or meta.get("version") != CACHE_VERSION or meta.get("key") != key:
        return None
    try:
        inter = pq.read_table(folder / "interactions.parquet")
        items = pq.read_table(folder / "items.parquet")
        users = pq.read_table(folder / "users.parquet").column("user_id").to_pylist()
        candidates = pq.read_table(folder / "candidates.parquet")
        n_users, n_items = int(meta["n_users"]), int(meta["n_items"])
        negatives = {}
        for split in SPLITS:
            lists = candidates.column(split).combine_chunks()
            flat = lists.flatten().to_numpy().astype(np.int64)
            negatives[split] = _read_only(flat.reshape(n_users, lists.type.list_size))
        user = inter.column("user").to_numpy().astype(np.int64)
        item = inter.column("item").to_numpy()
    except (OSError, KeyError, ValueError, pa.ArrowException):
        return None
    return PreparedData(
        key=key, folder=folder, n_users=n_users, n_items=n_items,
        sequences=_sequences(user, item, n_users), item_ids=items.column("item_id").to_pylist(),
        item_titles=items.column("title").to_pylist(), user_ids=users, stats=meta["stats"],
        negatives=negatives)
