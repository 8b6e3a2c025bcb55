"""Summary numbers of a prepared dataset, as plain JSON data (`slmrec data stats --json`)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np

from core.data.sequences import Ragged

if TYPE_CHECKING:
    from core.data.prepare import PreparedData


def compute_stats(sequences: Ragged | list[np.ndarray], n_items: int, drops: dict[str, int],
                  read_rows: int) -> dict[str, Any]:
    """users, items, interactions, sequence-length summary, density and drop counts.

    read_rows: interactions in the source before any drop (duplicates and missing values included).
    """
    lengths = Ragged.from_lists(sequences).lengths
    n_users, interactions = len(sequences), int(lengths.sum())
    return {
        "users": n_users,
        "items": int(n_items),
        "interactions": interactions,
        "source_rows": int(read_rows),
        "seq_len": {
            "min": int(lengths.min()), "mean": float(lengths.mean()),
            "median": float(np.median(lengths)), "max": int(lengths.max()),
        },
        "density": interactions / (n_users * n_items),
        "drops": {reason: int(count) for reason, count in drops.items()},
    }


def candidate_stats(n_negatives: int, n_items: int, short: dict[str, int]) -> dict[str, Any]:
    """The sampled protocol's summary: n_negatives, per split how many users have a short list
    (fewer unseen items than n_negatives: each unseen item once, the rest padding), and a note when any do."""
    out: dict[str, Any] = {"n_negatives": int(n_negatives), "short_negative_lists": dict(short)}
    if any(short.values()):
        out["note"] = short_lists_note(n_negatives, n_items, max(short.values()))
    return out


def short_lists_note(n_negatives: int, n_items: int, users: int, setting: str = "Set data.n_negatives") -> str:
    """What `users` short sampled lists mean; `setting` names where the user lowers n_negatives."""
    return (f"data.n_negatives is {n_negatives} but {users} users have fewer unseen items than that among the "
            f"{n_items} items; they are ranked against each of their unseen items once (a shorter list, so their "
            "sampled metrics are easier than with a full one; full ranking is unaffected). "
            f"{setting} lower (e.g. 99) for equal lists, or read the full-ranking metrics.")


def stats(prepared: PreparedData) -> dict[str, Any]:
    """The prepared data's stats plus its cache key, as a fresh JSON-able dict."""
    return {"key": prepared.key, **copy.deepcopy(prepared.stats)}
