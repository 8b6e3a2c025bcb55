"""The synthetic generator's settings (`SynthConfig`) and their checks, a leaf module.

The generator (synthetic.py), the rules (rules.py) and the oracle (oracle.py) all read these
settings; keeping them here lets each of those import them without importing the others.
Every field carries its help text in `metadata["help"]`, which the `data synth` options show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from core.config import ConfigError

RULES = ("markov", "induction")
# Fields added after datasets were generated, with the value an older sidecar that lacks them meant.
LEGACY_DEFAULTS = {"rule": "markov"}


def _setting(default, help_text: str):
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class SynthConfig:
    """Settings of the generator (see synthetic.py and rules.py for what each one does)."""

    users: int = _setting(10_000, "number of users")
    items: int = _setting(5_000, "number of items")
    interactions: int = _setting(0, "total interactions (0: users x mean-len)")
    mean_len: float = _setting(20.0, "mean sequence length")
    min_len: int = _setting(5, "shortest sequence")
    max_len: int = _setting(0, "longest sequence (0: 50 x the mean, at most items / 2)")
    rule: str = _setting("markov", "the planted rule: markov (the groups of the last `order` items pick the "
                                   "next) or induction (follow `order` hops back through the user's history)")
    order: int = _setting(3, "markov: how many previous items the rule reads; induction: how many hops it follows")
    strength: float = _setting(0.8, "probability that the rule picks the next item where it applies "
                                    "(else popularity noise)")
    candidates: int = _setting(3, "markov: items the rule can pick in each context")
    groups: int = _setting(0, "item groups the markov rule reads (0: about items / candidates contexts); "
                              "the title nouns name them")
    zipf: float = _setting(0.75, "popularity exponent")
    seed: int = _setting(0, "random seed")

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
        lambda: (cfg.rule in RULES, f"rule: expected one of {', '.join(RULES)}, got {cfg.rule!r}"),
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
