"""The planted rules of the synthetic generator: how each picks a next item, and which item(s) it
would pick after a given history (what the oracle, oracle.py, needs to be exact).

Items are popularity ranks 0..items-1 (rank 0 the most popular); popularity pi follows a Zipf law.
At every position t a rule either applies (it names one or more items) or not; where it applies,
with probability `strength` the next item is one of the named items, each equally likely, and
otherwise it is drawn from pi (the popularity noise); where it does not apply, it is drawn from pi.

- `MarkovRule` (rule "markov"): at t >= order the context is the groups of the last `order` items;
  it names the context's `candidates` items. A model reading fewer items cannot know them.
- `InductionRule` (rule "induction", k = order hops): hop(p) = 1 + the latest q < p with
  s[q] = s[p], the position just after the previous occurrence of the item at p. Starting at the
  current item, p0 = t - 1, the rule names the single item s[p_k] with p_h = hop(p_(h-1)). So for
  k = 2: find the previous occurrence of the current item, take the item y that followed it, find
  the previous occurrence of y before that point, and name the item that followed it. The rule
  does not apply when some hop finds no previous occurrence (then the next item is popularity
  noise). k = 1 is the classic induction head ("... A B ... A -> B"); k = 2 chains two lookups, so
  one attention layer's lookup is not enough.

Each rule offers `simulate(lengths, rng)` (every user's sequence, vectorised over users and stepped
over positions) and `next_candidates(sequences, position)` (the items it names at given positions,
-1 where it does not apply).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.data.sequences import Ragged
from core.data.synth_config import SynthConfig

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MAX_TABLE = 1 << 24  # contexts up to this many get an evenly spread table (8 bytes each)
INDUCTION_TABLE = 1 << 22  # users x items cells of the last-position table per induction block (int64)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a uint64 -> uint64 hash (numpy wraps uint64 arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def zipf_ranks(cdf: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Popularity ranks for uniform numbers in [0, 1) (inverse CDF)."""
    return np.minimum(np.searchsorted(cdf, uniform, side="right"), len(cdf) - 1)


@dataclass(frozen=True)
class MarkovRule:
    """The order-k rule over popularity ranks (see the module docstring).

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
        return zipf_ranks(self.cdf, uniform)

    def sizes(self) -> dict:
        return {"groups": self.cfg.n_groups(), "contexts": self.cfg.n_groups() ** self.cfg.order}

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

    def next_candidates(self, sequences: Ragged, position: np.ndarray) -> np.ndarray:
        """(U, candidates) ranks the rule names at each user's `position`, -1 where t < order."""
        order = self.cfg.order
        out = np.full((len(sequences), self.cfg.candidates), -1, dtype=np.int64)
        rows = np.flatnonzero(position >= order)
        positions = sequences.starts[rows, None] + position[rows, None] + np.arange(-order, 0)[None, :]
        out[rows] = self.candidates(self.group[sequences.flat[positions]])
        return out

    def simulate(self, lengths: np.ndarray, rng: np.random.Generator) -> Ragged:
        """Every user's sequence of popularity ranks; all users advance one position per step."""
        cfg = self.cfg
        by_length = np.argsort(-lengths, kind="stable")  # active users are a prefix of this order
        sorted_lengths = lengths[by_length]
        starts = np.cumsum(lengths) - lengths
        sorted_starts = starts[by_length]
        flat = np.empty(int(lengths.sum()), dtype=np.int64)
        recent = np.zeros((len(lengths), cfg.order), dtype=np.int64)  # groups of the last `order` items, circular
        for position in range(int(sorted_lengths[0]) if len(lengths) else 0):
            active = int(np.searchsorted(-sorted_lengths, -position, side="left"))  # lengths > position
            ranks = np.empty(active, dtype=np.int64)
            fire = rng.random(active) < cfg.strength if position >= cfg.order else np.zeros(active, dtype=bool)
            ruled = np.flatnonzero(fire)
            if len(ruled):
                columns = [(position + k) % cfg.order for k in range(cfg.order)]  # oldest first
                choices = self.candidates(recent[ruled][:, columns])
                ranks[ruled] = choices[np.arange(len(ruled)), rng.integers(0, cfg.candidates, len(ruled))]
            noise = np.flatnonzero(~fire)
            ranks[noise] = self.zipf_ranks(rng.random(len(noise)))
            flat[sorted_starts[:active] + position] = ranks
            recent[:active, position % cfg.order] = self.group[ranks]
        return Ragged(flat, starts, lengths)


def follow_hops(previous: np.ndarray, position: np.ndarray, hops: int) -> np.ndarray:
    """(N,) index of the item the induction rule names, from the current items' indices (N,), or -1.

    previous: for every index, the index of the previous occurrence of the same item in the same
    sequence, or -1; indices are into one flat array holding the sequences.
    """
    at = position.astype(np.int64)
    for _ in range(hops):
        earlier = np.where(at >= 0, previous[np.maximum(at, 0)], -1)
        at = np.where(earlier >= 0, earlier + 1, -1)
    return at


def previous_occurrences(sequences: Ragged) -> np.ndarray:
    """(len(flat),) for every item of every row, the flat index of its previous occurrence in the row, or -1."""
    index, row = sequences.row_positions(), sequences.row_ids()
    item = sequences.flat[index]
    order = np.lexsort((index, item, row))  # by row, then item, then position
    same = (row[order][1:] == row[order][:-1]) & (item[order][1:] == item[order][:-1])
    previous = np.full(len(sequences.flat), -1, dtype=np.int64)
    previous[index[order][1:][same]] = index[order][:-1][same]
    return previous


@dataclass(frozen=True)
class InductionRule:
    """The k-hop induction rule, k = cfg.order (see the module docstring). `group` only names the
    title nouns; the rule reads item identities."""

    cfg: SynthConfig
    popularity: np.ndarray  # (items,) float64, decreasing, sums to 1
    cdf: np.ndarray  # (items,) cumulative popularity
    group: np.ndarray  # (items,) int64 title group of each rank

    def zipf_ranks(self, uniform: np.ndarray) -> np.ndarray:
        return zipf_ranks(self.cdf, uniform)

    def sizes(self) -> dict:
        return {"hops": self.cfg.order}

    def next_candidates(self, sequences: Ragged, position: np.ndarray) -> np.ndarray:
        """(U, 1) the rank the rule names at each user's `position`, -1 where it does not apply."""
        out = np.full((len(sequences), 1), -1, dtype=np.int64)
        rows = np.flatnonzero(position >= 1)
        at = follow_hops(previous_occurrences(sequences), sequences.starts[rows] + position[rows] - 1, self.cfg.order)
        out[rows[at >= 0], 0] = sequences.flat[at[at >= 0]]
        return out

    def simulate(self, lengths: np.ndarray, rng: np.random.Generator) -> Ragged:
        """Every user's sequence, a block of users at a time (each block keeps a users x items table
        of where each item last occurred)."""
        starts = np.cumsum(lengths) - lengths
        flat = np.empty(int(lengths.sum()), dtype=np.int64)
        block = max(1, INDUCTION_TABLE // self.cfg.items)
        for first in range(0, len(lengths), block):
            users = np.arange(first, min(first + block, len(lengths)))
            users = users[np.argsort(-lengths[users], kind="stable")]  # active users are a prefix
            items = self._block(lengths[users], rng)  # (block, longest), row-major
            inside = np.arange(items.shape[1])[None, :] < lengths[users][:, None]
            flat[(starts[users][:, None] + np.arange(items.shape[1])[None, :])[inside]] = items[inside]
        return Ragged(flat, starts, lengths)

    def _block(self, lengths: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(users, longest) ranks of users sorted by decreasing length; indices below are into its ravel."""
        n, width = len(lengths), int(lengths[0])
        items = np.zeros((n, width), dtype=np.int64)
        previous = np.full(n * width, -1, dtype=np.int64)
        last = np.full((n, self.cfg.items), -1, dtype=np.int64)  # index where each item last occurred
        for t in range(width):
            rows = np.arange(int(np.searchsorted(-lengths, -t, side="left")))  # lengths > t
            fire = rng.random(len(rows)) < self.cfg.strength
            ranks = self.zipf_ranks(rng.random(len(rows)))
            if t >= 1:
                at = follow_hops(previous, rows * width + t - 1, self.cfg.order)
                ruled = fire & (at >= 0)
                ranks[ruled] = items.ravel()[at[ruled]]
            items[rows, t] = ranks
            previous[rows * width + t] = last[rows, ranks]
            last[rows, ranks] = rows * width + t
        return items


Rule = MarkovRule | InductionRule


def make_rule(cfg: SynthConfig) -> Rule:
    """The rule of `cfg.rule`, its random tables drawn from (seed, 1)."""
    rng = np.random.default_rng([cfg.seed, 1])
    weights = np.arange(1, cfg.items + 1, dtype=np.float64) ** -cfg.zipf
    popularity = weights / weights.sum()
    cdf = np.cumsum(popularity)
    cdf[-1] = 1.0
    group = rng.integers(0, cfg.n_groups(), cfg.items)
    if cfg.rule == "induction":
        return InductionRule(cfg, popularity, cdf, group)
    contexts = cfg.n_groups() ** cfg.order
    base = rng.permutation(contexts) if contexts <= MAX_TABLE else None
    return MarkovRule(cfg, popularity, cdf, group, rng.permutation(cfg.items), base,
                      np.uint64(rng.integers(0, 2**63)))
