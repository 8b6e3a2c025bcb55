"""Synthetic interactions with a planted sequential rule whose best possible score is known.

`generate(cfg, folder, name)` writes the files a real source would (readers: read_table.py):

    <name>.parquet        user, item, timestamp (int64), rows in time order
    <name>.items.parquet  item, title: "<adjective> <noun> <id>", the noun naming the item's group
    <name>.synth.json     the settings, the rule's sizes and the oracle's scores (oracle.py)

The process, vectorised over all users at once and stepped over positions (never user by user):
- popularity pi follows a Zipf law over popularity ranks r: pi(r) ~ (r + 1) ** -zipf;
- sequence lengths follow a Pareto law with minimum `min_len` whose tail index gives the wanted
  mean, capped at `max_len`, then scaled so they sum to exactly `interactions`;
- every item belongs to one of `groups` groups (uniformly at random). At position t >= order,
  with probability `strength` the next item is one of the `candidates` items of the context, the
  groups of the last `order` items (see `Rule`); otherwise (and at t < order) it is drawn from pi,
  the popularity noise. The candidates depend on all `order` previous items, so a model that reads
  only the last one cannot know them, while `order` 1 makes a dataset where that is enough;
- timestamps start at a random time per user and increase by at least one second per step.
By default (groups 0) there are about items / candidates contexts, groups = ceil((items /
candidates) ** (1 / order)), so every item is a candidate of some context and even the tail of
the catalogue survives a 5-core filter. A counting model over item tuples needs `groups = items` on
a small catalogue; a neural model can learn the groups from co-occurrence or from the titles.
Original ids are random permutations, so an id says nothing about popularity.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from core.config import ConfigError
from core.data.cache import read_json, write_json, write_parquet
from core.data.sequences import Ragged

START_TIME = 1_400_000_000  # 2014-05-13, Unix seconds
START_SPAN = 4 * 365 * 86_400  # users start within four years
MEAN_GAP = 2 * 86_400  # mean seconds between two interactions of a user
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MAX_TABLE = 1 << 24  # contexts up to this many get an evenly spread table (8 bytes each)
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


@dataclass(frozen=True)
class SynthConfig:
    """Settings of the generator (see the module docstring for what each one does)."""

    users: int = 10_000
    items: int = 5_000
    interactions: int = 0  # total; 0: users * mean_len
    mean_len: float = 20.0  # used when interactions is 0
    min_len: int = 5
    max_len: int = 0  # longest sequence; 0: 50 x the mean length, at most items / 2
    order: int = 3  # how many previous items the rule reads
    strength: float = 0.8  # probability that the rule picks the next item (else popularity)
    candidates: int = 3  # items per context
    groups: int = 0  # item groups the rule reads; 0: ceil((items / candidates) ** (1 / order))
    zipf: float = 0.75  # popularity exponent
    seed: int = 0

    def total(self) -> int:
        return self.interactions or round(self.users * self.mean_len)

    def n_groups(self) -> int:
        if self.groups:
            return self.groups
        return min(self.items, math.ceil((self.items / self.candidates) ** (1 / self.order) - 1e-9))

    def longest(self) -> int:
        """max_len, or by default 50 x the mean length but at most half the catalogue (a longer
        sequence could hold every item, leaving no sampled-evaluation negatives)."""
        automatic = min(math.ceil(50 * self.total() / self.users), self.items // 2)
        return self.max_len or max(2 * self.min_len, automatic)


def validate(cfg: SynthConfig) -> None:
    """Raise ConfigError naming the setting and what was expected (the first problem found)."""
    checks = [
        lambda: (cfg.users >= 1, f"users: expected >= 1, got {cfg.users}"),
        lambda: (cfg.items >= 2, f"items: expected >= 2, got {cfg.items}"),
        lambda: (cfg.min_len >= 3, f"min_len: expected >= 3 (train, validation and test items), got {cfg.min_len}"),
        lambda: (cfg.interactions >= 0 and cfg.mean_len > 0, "interactions and mean_len: expected positive values"),
        lambda: (cfg.order >= 1, f"order: expected >= 1, got {cfg.order}"),
        lambda: (0.0 <= cfg.strength <= 1.0, f"strength: expected a probability in [0, 1], got {cfg.strength}"),
        lambda: (1 <= cfg.candidates <= cfg.items, f"candidates: expected 1..items, got {cfg.candidates}"),
        lambda: (0 <= cfg.groups <= cfg.items, f"groups: expected 0 (automatic) or 1..items, got {cfg.groups}"),
        lambda: (cfg.zipf >= 0, f"zipf: expected >= 0, got {cfg.zipf}"),
        lambda: (cfg.seed >= 0, f"seed: expected >= 0, got {cfg.seed}"),
        lambda: (cfg.total() >= cfg.users * cfg.min_len,
                 f"interactions: {cfg.total()} is fewer than users x min_len = {cfg.users * cfg.min_len}"),
        lambda: (cfg.longest() >= cfg.min_len, f"max_len: expected >= min_len ({cfg.min_len}), got {cfg.max_len}"),
        lambda: (cfg.total() <= cfg.users * cfg.longest(),
                 f"interactions: {cfg.total()} do not fit users x max_len = {cfg.users * cfg.longest()}"),
    ]
    for check in checks:
        ok, message = check()
        if not ok:
            raise ConfigError(f"synth {message}")


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a uint64 -> uint64 hash (numpy wraps uint64 arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@dataclass(frozen=True)
class Rule:
    """The planted rule over popularity ranks 0..items-1 (rank 0 is the most popular item).

    A context (the groups of the last `order` items) gets a base slot; its candidates are the
    items at slots base * candidates + j (mod items), j < candidates, of a random order of all
    items. When there are at most MAX_TABLE contexts, the bases are a random permutation of the
    contexts, so the slots are spread evenly and every item is a candidate somewhere as soon as
    contexts x candidates >= items; beyond that, the base is a hash of the context.
    """

    cfg: SynthConfig
    popularity: np.ndarray  # (items,) float64, decreasing, sums to 1
    cdf: np.ndarray  # (items,) cumulative popularity
    group: np.ndarray  # (items,) int64 group of each rank
    slot_item: np.ndarray  # (items,) a random order of the ranks
    context_base: np.ndarray | None  # (groups ** order,) a random permutation, or None: hashed
    salt: np.uint64

    def zipf_ranks(self, uniform: np.ndarray) -> np.ndarray:
        """Popularity ranks for uniform numbers in [0, 1) (inverse CDF)."""
        return np.minimum(np.searchsorted(self.cdf, uniform, side="right"), len(self.cdf) - 1)

    def candidates(self, context_groups: np.ndarray) -> np.ndarray:
        """(N, candidates) distinct ranks for contexts given as groups (N, order), oldest first."""
        n_items, n_groups = len(self.slot_item), self.cfg.n_groups()
        if self.context_base is not None:
            index = np.zeros(len(context_groups), dtype=np.int64)
            for column in range(context_groups.shape[1]):
                index = index * n_groups + context_groups[:, column]
            base = self.context_base[index] % n_items
        else:
            h = np.full(len(context_groups), self.salt, dtype=np.uint64)
            for column in range(context_groups.shape[1]):
                h = _mix(h ^ (context_groups[:, column].astype(np.uint64) * GOLDEN))
            base = (h % np.uint64(n_items)).astype(np.int64)
        slots = (base[:, None] * self.cfg.candidates + np.arange(self.cfg.candidates)[None, :]) % n_items
        return self.slot_item[slots]


def make_rule(cfg: SynthConfig) -> Rule:
    rng = np.random.default_rng([cfg.seed, 1])
    weights = np.arange(1, cfg.items + 1, dtype=np.float64) ** -cfg.zipf
    popularity = weights / weights.sum()
    cdf = np.cumsum(popularity)
    cdf[-1] = 1.0
    group = rng.integers(0, cfg.n_groups(), cfg.items)
    contexts = cfg.n_groups() ** cfg.order
    base = rng.permutation(contexts) if contexts <= MAX_TABLE else None
    return Rule(cfg, popularity, cdf, group, rng.permutation(cfg.items), base, np.uint64(rng.integers(0, 2**63)))


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
    """Every user's sequence of popularity ranks; all users advance one position per step."""
    lengths = _lengths(cfg, rng)
    by_length = np.argsort(-lengths, kind="stable")  # active users are a prefix of this order
    sorted_lengths = lengths[by_length]
    starts = np.cumsum(lengths) - lengths
    sorted_starts = starts[by_length]
    flat = np.empty(int(lengths.sum()), dtype=np.int64)
    recent = np.zeros((cfg.users, cfg.order), dtype=np.int64)  # groups of the last `order` items, circular
    for position in range(int(sorted_lengths[0]) if cfg.users else 0):
        active = int(np.searchsorted(-sorted_lengths, -position, side="left"))  # lengths > position
        ranks = np.empty(active, dtype=np.int64)
        fire = rng.random(active) < cfg.strength if position >= cfg.order else np.zeros(active, dtype=bool)
        ruled = np.flatnonzero(fire)
        if len(ruled):
            columns = [(position + k) % cfg.order for k in range(cfg.order)]  # oldest first
            choices = rule.candidates(recent[ruled][:, columns])
            ranks[ruled] = choices[np.arange(len(ruled)), rng.integers(0, cfg.candidates, len(ruled))]
        noise = np.flatnonzero(~fire)
        ranks[noise] = rule.zipf_ranks(rng.random(len(noise)))
        flat[sorted_starts[:active] + position] = ranks
        recent[:active, position % cfg.order] = rule.group[ranks]
    return Ragged(flat, starts, lengths)


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
    from core.data.oracle import oracle_metrics  # noqa: PLC0415 - oracle imports this module

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
        "rule": {"groups": cfg.n_groups(), "contexts": cfg.n_groups() ** cfg.order,
                 "interactions": int(len(sequences.flat)), "longest": int(sequences.lengths.max())},
        "oracle": oracle_metrics(rule, sequences),
    }
    write_json(sidecar, paths["rule"])
    return sidecar


def same_settings(folder: Path, name: str, cfg: SynthConfig) -> bool:
    """Whether `folder` already holds this dataset generated with exactly these settings."""
    paths = files(Path(folder), name)
    sidecar = read_json(paths["rule"])
    return (sidecar is not None and sidecar.get("settings") == dataclasses.asdict(cfg)
            and all(os.path.isfile(p) for p in paths.values()))

