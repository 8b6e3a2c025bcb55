"""The planted rule's best possible ranking, scored exactly like a model (docs/method.md section 4).

An oracle that knows the rule (rules.py) gives item i, at a position where the rule names the
list C of m items (m = candidates for markov, 1 for induction), its true probability of coming next:

    P(i) = strength * (number of times i is in C) / m + (1 - strength) * pi(i)

and P(i) = pi(i) where the rule does not apply (markov: t < order; induction: a hop finds no
previous occurrence). Ranking by P maximises every hit-rate metric in
expectation, so its scores on the generated targets are the ceiling for any model. It is scored
like a model under full ranking: the target's 0-based rank counts the items with P >= P(target)
(pessimistic ties), leaving out the user's history items other than the target.

No item is scored one by one: non-candidates score (1 - strength) * pi(r), which falls with the
popularity rank r, so the ones at or above the target are a prefix of the ranks (one search per
user); the few candidates and the history items are then added or removed individually.
The same counting gives the true-popularity ranker, a floor to compare against.
"""

from __future__ import annotations

import numpy as np

from core.data.rules import Rule
from core.data.sequences import Ragged, unique_sorted
from core.eval.metrics import metrics_from_ranks

SPLIT_OFFSETS = {"valid": 2, "test": 1}  # target = s[L - offset], as in examples.py
PROTOCOL = "full ranking over all items, history masked (except the target), pessimistic ties"


def _at_least(values: np.ndarray, weight: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """Per user u, how many r have weight[u] * values[r] >= threshold[u]; `values` decreasing.

    A search on values >= threshold / weight, then fixed up with the exact product, so a tie is
    decided by the very expression the scores use.
    """
    safe = np.where(weight > 0, weight, 1.0)
    count = np.searchsorted(-values, -(threshold / safe), side="right")
    count = np.where(weight > 0, count, np.where(threshold <= 0, len(values), 0))
    while True:
        up = (weight > 0) & (count < len(values))
        up[up] = weight[up] * values[count[up]] >= threshold[up]
        down = (weight > 0) & (count > 0)
        down[down] = weight[down] * values[count[down] - 1] < threshold[down]
        if not (up.any() or down.any()):
            return count
        count = count + up - down


def _distinct(candidates: np.ndarray) -> np.ndarray:
    """(U, m) candidates with repeats and -1 replaced by -1, so each real one appears once."""
    ordered = np.sort(candidates, axis=1)
    repeat = np.zeros_like(ordered, dtype=bool)
    repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    return np.where(repeat, -1, ordered)


def oracle_ranks(rule: Rule, sequences: Ragged, split: str, mask_history: bool = True,
                 popularity_only: bool = False) -> np.ndarray:
    """(U,) 0-based rank of every user's `split` target under the oracle (or the popularity ranker).

    sequences: every user's generated popularity ranks (synthetic.simulate), unfiltered.
    """
    cfg, pi = rule.cfg, rule.popularity
    target_position = sequences.lengths - SPLIT_OFFSETS[split]
    target = sequences.flat[sequences.starts + target_position]
    candidates = rule.next_candidates(sequences, target_position)  # (U, m), -1 where the rule does not apply
    has_context = (candidates[:, 0] >= 0) & (not popularity_only)
    slot = np.where(has_context, cfg.strength / candidates.shape[1], 0.0)  # weight of one candidate slot
    noise = np.where(has_context, 1.0 - cfg.strength, 1.0)  # weight of popularity

    def score(items: np.ndarray, users: np.ndarray) -> np.ndarray:
        count = (candidates[users] == items[:, None]).sum(axis=1) if not popularity_only else 0
        return slot[users] * count + noise[users] * pi[items]

    users = np.arange(len(sequences))
    target_score = score(target, users)
    prefix = _at_least(pi, noise, target_score)  # non-candidates at or above: ranks < prefix
    distinct = _distinct(candidates) if not popularity_only else np.full_like(candidates, -1)
    real = distinct >= 0
    in_prefix = (real & (distinct < prefix[:, None])).sum(axis=1)
    target_is_candidate = (distinct == target[:, None]).any(axis=1)
    above = prefix - in_prefix - ((~target_is_candidate) & (target < prefix))  # non-candidates
    others = real & (distinct != target[:, None])
    rows, cols = np.nonzero(others)
    counted = score(distinct[rows, cols], rows) >= target_score[rows]
    ranks = above + np.bincount(rows[counted], minlength=len(users))
    if mask_history:
        history = Ragged(sequences.flat, sequences.starts, target_position)
        width = len(pi) + 1
        pairs = unique_sorted(history.row_ids() * width + history.values())  # distinct (user, item)
        user, item = pairs // width, pairs % width
        counted = (item != target[user]) & (score(item, user) >= target_score[user])
        ranks = ranks - np.bincount(user[counted], minlength=len(users))
    return ranks


def oracle_metrics(rule: Rule, sequences: Ragged) -> dict:
    """The oracle's and the popularity ranker's metrics on the validation and test targets, plus the
    oracle's without history masking ("unmasked": every item ranked, the history included)."""
    result = {"protocol": PROTOCOL, "computed_on": "the generated sequences, before any filtering",
              "users": len(sequences)}
    for split in SPLIT_OFFSETS:
        result[split] = metrics_from_ranks(oracle_ranks(rule, sequences, split))
    result["popularity"] = {split: metrics_from_ranks(oracle_ranks(rule, sequences, split, popularity_only=True))
                            for split in SPLIT_OFFSETS}
    result["unmasked"] = {split: metrics_from_ranks(oracle_ranks(rule, sequences, split, mask_history=False))
                          for split in SPLIT_OFFSETS}
    return result


def applies(rule: Rule, sequences: Ragged) -> dict[str, float]:
    """Per split, the share of targets at which the rule applies (names an item)."""
    return {split: float((rule.next_candidates(sequences, sequences.lengths - offset)[:, 0] >= 0).mean())
            for split, offset in SPLIT_OFFSETS.items()}
