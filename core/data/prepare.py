"""Prepared data: filtered, time-sorted, remapped sequences plus fixed evaluation candidates.

`prepare(cfg, data_root)` resolves the dataset, and either reads the cache folder
`<data_root>/prepared/<key>/` or builds it: read the source, filter and remap (filters.py), draw
the sampled-evaluation negatives (candidates.py) and write the files below (cache.py).

Cache folder:
    interactions.parquet  user, item, timestamp: sorted by user then time (ties: file order)
    items.parquet         item_id, title; row i is item i, row 0 the padding item ("")
    users.parquet         user_id; row u is user u
    candidates_valid.npy, candidates_test.npy
                          (n_users, n_negatives) int32 item ids, row u is user u, 0 padding the
                          row of a user with fewer unseen items (candidates.py). Plain .npy, not
                          Parquet, so that they are memory-mapped instead of loaded: at Amazon size
                          (1.2M users x 999) each is 4.8 GB. Written a block of users at a time.
    meta.json             written last: key, source, settings, stats (with drop counts)

Sequences are held as one flat array plus offsets (sequences.Ragged), not one array per user.
A generated dataset's sidecar (`<stem>.synth.json`, synthetic.py) adds its settings and the
planted rule's oracle scores to the stats under "synthetic" and "oracle"; it is read afresh on
every call, not cached.

Split (leave-one-out) for a sequence s of length L >= 3: test input s[:-1], target s[-1];
validation input s[:-2], target s[-2]; training items s[:-2] (see examples.py).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.config import DataConfig
from core.data.cache import CACHE_VERSION, cache_key, key_settings, read_json, write_json, write_npy, write_parquet
from core.data.candidates import SPLITS, candidate_chunks, check_candidates, seen_items
from core.data.errors import DataError
from core.data.filters import filter_and_remap
from core.data.sequences import Ragged
from core.data.sources import read_interactions, resolve_source, synthetic_file, title_file
from core.data.stats import candidate_stats, compute_stats


@dataclass(frozen=True, eq=False)
class PreparedData:
    """One prepared dataset. Arrays are read-only; item id 0 is padding and never a real item.

    `sequences` may be given as a list of arrays; it is stored as a `Ragged`, which reads like one.
    """

    key: str
    folder: Path
    n_users: int
    n_items: int
    sequences: Ragged = field(repr=False)  # per user: time-ordered item ids, int64
    item_ids: list[str] = field(repr=False)  # item id -> original id ("" for 0)
    item_titles: list[str] = field(repr=False)  # item id -> title ("" for 0 or unknown)
    user_ids: list[str] = field(repr=False)  # user id -> original id
    stats: dict[str, Any] = field(repr=False)
    negatives: dict[str, np.ndarray] = field(repr=False)  # split -> (n_users, n_negatives) int32

    def __post_init__(self):
        object.__setattr__(self, "sequences", Ragged.from_lists(self.sequences))

    def candidates(self, split: str) -> np.ndarray:
        """Stored sampled-evaluation negatives (n_users, n_negatives) int32 for 'valid' or 'test'
        (a read-only memory map for cached data: index it by user ids to read rows)."""
        if split not in self.negatives:
            raise DataError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
        return self.negatives[split]


def prepare(cfg: DataConfig, data_root: Path) -> PreparedData:
    """The prepared data for these settings: from the cache when it is complete, else built."""
    data_root = Path(data_root)
    source = resolve_source(cfg.dataset, data_root)
    key = cache_key(source, title_file(source), cfg)
    folder = data_root / "prepared" / key
    prepared = _load(folder, key) or _build(cfg, source, data_root, key, folder)
    extra = _synthetic_stats(source)
    return dataclasses.replace(prepared, stats={**prepared.stats, **extra}) if extra else prepared


def _synthetic_stats(source: Path) -> dict[str, Any]:
    sidecar = synthetic_file(source)
    data = read_json(sidecar) if sidecar else None
    if not data:
        return {}
    return {"synthetic": {**data.get("settings", {}), **data.get("rule", {})}, "oracle": data.get("oracle", {})}


def _candidates_file(folder: Path, split: str) -> Path:
    return folder / f"candidates_{split}.npy"


def _build(cfg: DataConfig, source: Path, data_root: Path, key: str, folder: Path) -> PreparedData:
    data = read_interactions(source, cfg)
    read_rows = len(data.frame) + sum(data.dropped.values())
    kept = filter_and_remap(data, cfg, source)
    titles = [""] + [data.titles.get(original, "") for original in kept.item_ids[1:]]
    del data  # the raw frame is the largest thing held; the candidates below need the room
    n_users, n_items = len(kept.user_ids), len(kept.item_ids) - 1
    sequences = Ragged.from_sorted(kept.user, kept.item, n_users)
    seen = seen_items(sequences, n_items)
    short = {split: check_candidates(seen, n_items, cfg.n_negatives, split, kept.user_ids) for split in SPLITS}
    stats = compute_stats(sequences, n_items, kept.drops, read_rows)
    stats["titled_items"] = sum(1 for t in titles[1:] if t)
    stats["candidates"] = candidate_stats(cfg.n_negatives, n_items, short)
    meta = {"version": CACHE_VERSION, "key": key, "dataset": cfg.dataset,
            "source": os.path.relpath(source, data_root), "settings": key_settings(cfg),
            "n_users": n_users, "n_items": n_items, "stats": stats}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_parquet(pa.table({"user": kept.user.astype(np.int32), "item": kept.item.astype(np.int32),
                                "timestamp": kept.timestamp}), folder / "interactions.parquet")
        write_parquet(pa.table({"item_id": kept.item_ids, "title": titles}), folder / "items.parquet")
        write_parquet(pa.table({"user_id": kept.user_ids}), folder / "users.parquet")
        for split in SPLITS:
            write_npy(_candidates_file(folder, split), (n_users, cfg.n_negatives), np.int32,
                      candidate_chunks(seen, n_items, cfg.n_negatives, cfg.seed, split))
        write_json(meta, folder / "meta.json")  # last: marks the folder complete
    except OSError as error:  # e.g. a full disk: no half-written file is left (atomic writes)
        raise DataError(f"{folder}: cannot write the prepared data ({error.strerror or error})") from None
    negatives = _open_candidates(folder, n_users, cfg.n_negatives)
    if negatives is None:
        raise DataError(f"{folder}: the candidates just written cannot be read back")
    return PreparedData(key=key, folder=folder, n_users=n_users, n_items=n_items, sequences=sequences,
                        item_ids=kept.item_ids, item_titles=titles, user_ids=kept.user_ids,
                        stats=stats, negatives=negatives)


def _open_candidates(folder: Path, n_users: int, n_negatives: int) -> dict[str, np.ndarray] | None:
    """Each split's candidates as a read-only memory map, or None when one is missing or malformed."""
    negatives = {}
    for split in SPLITS:
        try:
            array = np.load(_candidates_file(folder, split), mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return None
        if array.shape != (n_users, n_negatives) or array.dtype != np.int32:
            return None
        negatives[split] = array
    return negatives


def _load(folder: Path, key: str) -> PreparedData | None:
    """The cached data, or None when the folder is missing, incomplete or unreadable (rebuild)."""
    meta = read_json(folder / "meta.json")
    if meta is None or meta.get("version") != CACHE_VERSION or meta.get("key") != key:
        return None
    try:
        n_users, n_items = int(meta["n_users"]), int(meta["n_items"])
        negatives = _open_candidates(folder, n_users, int(meta["settings"]["n_negatives"]))
        if negatives is None:
            return None
        inter = pq.read_table(folder / "interactions.parquet", columns=["user", "item"])
        items = pq.read_table(folder / "items.parquet")
        users = pq.read_table(folder / "users.parquet").column("user_id").to_pylist()
        user = inter.column("user").to_numpy()
        item = inter.column("item").to_numpy().astype(np.int64)
    except (OSError, KeyError, ValueError, TypeError, pa.ArrowException):
        return None
    return PreparedData(
        key=key, folder=folder, n_users=n_users, n_items=n_items,
        sequences=Ragged.from_sorted(user, item, n_users), item_ids=items.column("item_id").to_pylist(),
        item_titles=items.column("title").to_pylist(), user_ids=users, stats=meta["stats"],
        negatives=negatives)
