"""Synthetic interactions with a planted sequential rule whose best possible score is known.

`generate(cfg, folder, name)` writes the files a real source would (readers: read_table.py):

    <name>.parquet        user, item, timestamp (int64), rows in time order
    <name>.items.parquet  item, title: "<adjective> <noun> <id>", the noun naming the item's group
    <name>.synth.json     the settings, the rule's sizes and the oracle's scores (oracle.py)

The process, vectorised over all users at once and stepped over positions (never user by user):
- popularity pi follows a Zipf law over popularity ranks r: pi(r) ~ (r + 1) ** -zipf;
- sequence lengths follow a Pareto law with minimum `min_len` whose tail index gives the wanted
  mean, capped at `max_len`, then scaled so they sum to exactly `interactions`;
- every item belongs to one of `groups` groups (uniformly at random);
- the next item follows the planted rule (`rule`, rules.py) with probability `strength` where
  the rule applies, else it is drawn from pi, the popularity noise:
  - markov: at position t >= order, one of the `candidates` items of the context, the groups of
    the last `order` items. The candidates depend on all `order` previous items, so a model that
    reads only the last one cannot know them, while `order` 1 makes a dataset where that is enough;
  - induction: `order` hops back through the user's own history (order 2: the item that followed
    the previous occurrence of the item that followed the previous occurrence of the current
    item); it applies only where every hop finds a previous occurrence. Its target is usually an
    item of the history, so score it with full ranking WITHOUT history masking (the oracle's
    "unmasked" block; `rec.mask_history false`): masking the history, or sampling negatives the user
    never saw, would hand a model that merely favours the history's items most hits;
- timestamps start at a random time per user and increase by at least one second per step.
By default (groups 0) there are about items / candidates contexts, groups = ceil((items /
candidates) ** (1 / order)), so every item is a candidate of some context and even the tail of
the catalogue survives a 5-core filter. A counting model over item tuples needs `groups = items` on
a small catalogue; a neural model can learn the groups from co-occurrence or from the titles.
Original ids are random permutations, so an id says nothing about popularity.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from core.data.cache import read_json, write_json, write_parquet
from core.data.errors import DataError
from core.data.oracle import applies, oracle_metrics
from core.data.rules import Rule, make_rule
from core.data.sequences import Ragged
from core.data.synth_config import LEGACY_DEFAULTS, SynthConfig, validate

START_TIME = 1_400_000_000  # 2014-05-13, Unix seconds
START_SPAN = 4 * 365 * 86_400  # users start within four years
MEAN_GAP = 2 * 86_400  # mean seconds between two interactions of a user
ADJECTIVES = ("amber", "bold", "brisk", "calm", "crisp", "dusky", "eager", "faint", "gentle", "golden",
              "hazy", "humble", "icy", "jolly", "keen", "lively", "lucky", "mellow", "misty", "noble",
              "odd", "pale", "plain", "proud", "quiet", "rapid", "rosy", "rustic", "shiny", "silent",
              "sleek", "smoky", "snowy", "sturdy", "sunny", "swift", "tidy", "vivid", "warm", "witty")
NOUNS = ("anchor", "apron", "badge", "basket", "beacon", "blanket", "boot", "bottle", "bucket", "cable",
         "candle", "canvas", "cap", "chair", "clock", "coat", "compass", "cup", "cushion", "desk",
         "drum", "easel", "fan", "flask", "glove", "hammer", "helmet", "jacket", "jar", "kettle",
         "kite", "ladder", "lamp", "lantern", "mirror", "mug", "notebook", "oar", "pan", "pencil",
         "pillow", "plate", "pouch", "quilt", "rope", "rug", "saddle", "satchel", "scarf", "shelf",
         "shovel", "sock", "spoon", "stool", "table", "teapot", "towel", "vase", "wallet", "whistle")
MATERIALS = ("bamboo", "brass", "canvas", "ceramic", "copper", "cotton", "denim", "felt", "glass", "granite",
             "iron", "leather", "linen", "marble", "oak", "paper", "rubber", "silk", "steel", "wool")


def _lengths(cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """(users,) int64 lengths in [min_len, longest] summing to exactly cfg.total()."""
    n, low, room = cfg.users, cfg.min_len, cfg.longest() - cfg.min_len
    extra_total = cfg.total() - n * low
    mean = cfg.total() / n
    if extra_total == 0 or room == 0:
        return np.full(n, low + (extra_total // n if room else 0), dtype=np.int64)
    alpha = mean / (mean - low)  # Pareto(min low, index alpha) has this mean
    extra = low * (1.0 - rng.random(n)) ** (-1.0 / alpha) - low
    low_c, high_c = 0.0, 1.0
    while np.minimum(extra * high_c, room).sum() < extra_total and high_c < 1e12:
        high_c *= 2
    for _ in range(60):  # bisection on the scale so that the capped extras sum to extra_total
        middle = (low_c + high_c) / 2
        if np.minimum(extra * middle, room).sum() <= extra_total:
            low_c = middle
        else:
            high_c = middle
    scaled = np.minimum(extra * low_c, room)
    lengths = np.floor(scaled).astype(np.int64)
    missing = extra_total - int(lengths.sum())  # >= 0: hand out by largest remainder
    while missing > 0:
        open_ = np.flatnonzero(lengths < room)
        take = open_[np.argsort(-(scaled[open_] - lengths[open_]), kind="stable")[:missing]]
        lengths[take] += 1
        missing -= len(take)
    return lengths + low


def simulate(cfg: SynthConfig, rule: Rule, rng: np.random.Generator) -> Ragged:
    """Every user's sequence of popularity ranks under `rule` (lengths drawn first, from `rng`)."""
    return rule.simulate(_lengths(cfg, rng), rng)


def _titles(rule: Rule, item_ids: np.ndarray, rng: np.random.Generator) -> list[str]:
    """'<adjective> <noun> <id>' per popularity rank; the noun (plus a material beyond 60 groups)
    names the item's group, so text models can see the structure the rule reads."""
    n_groups = rule.cfg.n_groups()
    nouns = [NOUNS[g % len(NOUNS)] if n_groups <= len(NOUNS) else
             f"{MATERIALS[(g // len(NOUNS)) % len(MATERIALS)]} {NOUNS[g % len(NOUNS)]}" for g in range(n_groups)]
    adjectives = rng.integers(0, len(ADJECTIVES), len(item_ids))
    return [f"{ADJECTIVES[a]} {nouns[g]} {i}" for a, g, i in zip(adjectives.tolist(), rule.group.tolist(),
                                                                  item_ids.tolist())]


def _timestamps(sequences: Ragged, rng: np.random.Generator) -> np.ndarray:
    """Per user: a random start, then strictly increasing by 1 + an exponential gap (seconds)."""
    gaps = 1 + rng.exponential(MEAN_GAP, len(sequences.flat)).astype(np.int64)
    running = np.cumsum(gaps)
    before = np.concatenate([[0], running])[sequences.starts]  # total of earlier users' gaps
    start = START_TIME + rng.integers(0, START_SPAN, len(sequences))
    return running + np.repeat(start - before, sequences.lengths)


def files(folder: Path, name: str) -> dict[str, Path]:
    """The files `generate` writes for dataset `name`."""
    return {"interactions": folder / f"{name}.parquet", "items": folder / f"{name}.items.parquet",
            "rule": folder / f"{name}.synth.json"}


def generate(cfg: SynthConfig, folder: Path, name: str) -> dict:
    """Write the dataset's files into `folder` (see the module docstring); return the sidecar's content.

    Deterministic per seed. Each file is written atomically; the sidecar last.
    """
    validate(cfg)
    rng = np.random.default_rng([cfg.seed, 0])
    rule = make_rule(cfg)
    sequences = simulate(cfg, rule, rng)
    user_ids = rng.permutation(cfg.users).astype(np.int64) + 1  # original ids, by generation order
    item_ids = rng.permutation(cfg.items).astype(np.int64) + 1  # original ids, by popularity rank
    timestamps = _timestamps(sequences, rng)
    in_time = np.argsort(timestamps, kind="stable")
    paths = files(Path(folder), name)
    paths["rule"].parent.mkdir(parents=True, exist_ok=True)
    write_parquet(pa.table({"user": user_ids[sequences.row_ids()][in_time], "item": item_ids[sequences.flat][in_time],
                            "timestamp": timestamps[in_time]}), paths["interactions"])
    write_parquet(pa.table({"item": item_ids, "title": _titles(rule, item_ids, rng)}), paths["items"])
    sidecar = {
        "name": name, "settings": dataclasses.asdict(cfg),
        "rule": {**rule.sizes(), "interactions": len(sequences.flat), "longest": int(sequences.lengths.max()),
                 "applies": applies(rule, sequences)},
        "oracle": oracle_metrics(rule, sequences),
    }
    write_json(sidecar, paths["rule"])
    return sidecar


def generated_sidecar(folder: Path, name: str, cfg: SynthConfig) -> dict | None:
    """The sidecar of `folder` when it holds this dataset generated with exactly these settings (a sidecar
    written before a setting existed stands for that setting's legacy value, e.g. rule markov), else None."""
    paths = files(Path(folder), name)
    sidecar = read_json(paths["rule"])
    settings = sidecar.get("settings") if sidecar is not None else None
    same = (isinstance(settings, dict) and {**LEGACY_DEFAULTS, **settings} == dataclasses.asdict(cfg)
            and all(os.path.isfile(p) for p in paths.values()))
    return sidecar if same else None


def same_settings(folder: Path, name: str, cfg: SynthConfig) -> bool:
    """Whether `folder` already holds this dataset generated with exactly these settings."""
    return generated_sidecar(folder, name, cfg) is not None


def ensure(cfg: SynthConfig, folder: Path, name: str, force: bool = False) -> bool:
    """Generate the dataset into `folder` unless it already holds it (or `force`); whether it generated.
    DataError when the folder holds files of something else."""
    ours = {p.name for p in files(Path(folder), name).values()}
    foreign = sorted(p.name for p in Path(folder).iterdir() if p.name not in ours) if Path(folder).is_dir() else []
    if foreign:
        raise DataError(f"{folder} already holds other files ({', '.join(foreign)}); pick another name")
    if force or not same_settings(folder, name, cfg):
        generate(cfg, folder, name)
        return True
    return False
