"""From read interactions to sorted, remapped per-user sequences (docs/method.md section 1).

Order of operations, each drop counted (as interactions, except where a key says users):
1. rating threshold: keep rating >= min_rating (a missing rating fails it);
2. k-core and min_seq_len together, repeated to a fixed point: every user keeps >= max(kcore,
   min_seq_len) interactions and every item >= kcore (kcore 0 or 1: no item or k-core condition);
   doing both in one loop keeps the k-core property after short users are removed;
3. max_users: the first N users in order of first appearance in the filtered file (demos; items
   left without interactions disappear, so the item k-core property may no longer hold);
4. remap: users 0..U-1 and items 1..I by order of first appearance in the filtered file (0 is
   padding and never a real item);
5. stable sort by (user, timestamp): ties keep file order.
Everything is vectorised over rows with numpy (bincount, lexsort); no Python loop over rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import DataConfig
from core.data.errors import DataError
from core.data.interactions import Interactions


@dataclass(frozen=True)
class Filtered:
    """Interactions sorted by (user, timestamp, file order), with new integer ids."""

    user: np.ndarray  # (n,) int64 in 0..n_users-1, non-decreasing
    item: np.ndarray  # (n,) int64 in 1..n_items
    timestamp: np.ndarray  # (n,) int64
    user_ids: list[str]  # new user id -> original id
    item_ids: list[str]  # new item id -> original id; [0] = "" (padding)
    drops: dict[str, int]


def _rating_mask(data: Interactions, cfg: DataConfig, path: Path, drops: dict[str, int]) -> np.ndarray:
    if cfg.min_rating is None:
        return np.ones(len(data.frame), dtype=bool)
    if not data.has_rating:
        raise DataError(f"{path}: data.min_rating={cfg.min_rating} is set but the file has no rating "
                        "column; unset min_rating or use a file with ratings")
    keep = (data.frame["rating"] >= cfg.min_rating).to_numpy()  # NaN ratings fail the test
    drops[f"rating below {cfg.min_rating:g}"] = int((~keep).sum())
    return keep


def _core_mask(user: np.ndarray, item: np.ndarray, alive: np.ndarray, cfg: DataConfig,
               drops: dict[str, int]) -> np.ndarray:
    """Repeat the k-core and sequence-length conditions until nothing changes."""
    k = cfg.kcore if cfg.kcore > 1 else 0
    alive = alive.copy()
    core_rows = short_rows = short_users = 0
    while True:
        user_count = np.bincount(user[alive], minlength=user.max() + 1 if len(user) else 0)
        item_count = np.bincount(item[alive], minlength=item.max() + 1 if len(item) else 0)
        core_fail = alive & ((user_count[user] < k) | (item_count[item] < k))
        short_fail = alive & ~core_fail & (user_count[user] < cfg.min_seq_len)
        if not (core_fail.any() or short_fail.any()):
            break
        core_rows += int(core_fail.sum())
        short_rows += int(short_fail.sum())
        short_users += int(np.count_nonzero(np.bincount(user[short_fail])))
        alive &= ~(core_fail | short_fail)
    if k:
        drops[f"k-core filter (k={cfg.kcore})"] = core_rows
    drops[f"short sequences (< {cfg.min_seq_len} interactions)"] = short_rows
    drops[f"users with < {cfg.min_seq_len} interactions"] = short_users
    return alive


def _max_users_mask(user: np.ndarray, alive: np.ndarray, max_users: int, drops: dict[str, int]) -> np.ndarray:
    if max_users <= 0:
        return alive
    kept_codes = pd.unique(user[alive])  # in order of first appearance among kept rows
    chosen = np.zeros(user.max() + 1, dtype=bool)
    chosen[kept_codes[:max_users]] = True
    limited = alive & chosen[user]
    drops["max_users limit"] = int(alive.sum() - limited.sum())
    return limited


def filter_and_remap(data: Interactions, cfg: DataConfig, path: Path) -> Filtered:
    """Apply the steps in the module docstring; raise DataError if no user survives."""
    drops = dict(data.dropped)
    frame = data.frame
    user_codes, _ = pd.factorize(frame["user"])
    item_codes, _ = pd.factorize(frame["item"])
    alive = _rating_mask(data, cfg, path, drops)
    alive = _core_mask(user_codes, item_codes, alive, cfg, drops)
    alive = _max_users_mask(user_codes, alive, cfg.max_users, drops)
    if not alive.any():
        raise DataError(f"{path}: no interactions left after filtering ({_drops_text(drops)}); lower "
                        "data.kcore, data.min_rating or data.min_seq_len")
    kept = frame.loc[alive]
    user, user_ids = pd.factorize(kept["user"])
    item, item_ids = pd.factorize(kept["item"])
    timestamp = kept["timestamp"].to_numpy(dtype=np.int64)
    # np.lexsort is stable and sorts by the last key first: user, then time, then file order.
    order = np.lexsort((np.arange(len(kept)), timestamp, user))
    return Filtered(
        user=user[order].astype(np.int64), item=item[order].astype(np.int64) + 1,
        timestamp=timestamp[order], user_ids=[str(u) for u in user_ids],
        item_ids=[""] + [str(i) for i in item_ids], drops=drops)


def _drops_text(drops: dict[str, int]) -> str:
    return ", ".join(f"{reason}: {count}" for reason, count in drops.items() if count) or "nothing dropped"
