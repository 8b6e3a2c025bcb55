"""The rule families of the generator: long-order Markov and k-hop induction, each with an oracle
equal to scoring every item by its Bayes probability, sequences that obey the rule, old datasets
kept, and the rule module free of the generator (no import circle)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from core.config import ConfigError
from core.data import synthetic as sy
from core.data.oracle import oracle_ranks
from core.data.sequences import Ragged
from core.eval.metrics import metrics_from_ranks


def _simulated(cfg: sy.SynthConfig):
    sy.validate(cfg)
    rule = sy.make_rule(cfg)
    return rule, sy.simulate(cfg, rule, np.random.default_rng([cfg.seed, 0]))


def _named_by_hops(s: np.ndarray, t: int, hops: int) -> int | None:
    """The induction rule read off its definition: from p = t - 1, `hops` times move to the position
    just after the latest earlier occurrence of s[p]; None when some occurrence is missing."""
    p = t - 1
    if p < 0:
        return None
    for _ in range(hops):
        earlier = [q for q in range(p) if s[q] == s[p]]
        if not earlier:
            return None
        p = earlier[-1] + 1
    return int(s[p])


def _named_by_context(rule, s: np.ndarray, t: int) -> list[int] | None:
    order = rule.cfg.order
    return rule.candidates(rule.group[s[t - order:t]][None, :])[0].tolist() if t >= order else None


def _bayes_ranks(rule, seqs: Ragged, offset: int, mask: bool) -> np.ndarray:
    """Score every item by P(next = i | history) and count the ones at or above the target."""
    cfg, out = rule.cfg, []
    named_by = _named_by_context if cfg.rule == "markov" else lambda r, s, t: (
        None if (z := _named_by_hops(s, t, cfg.order)) is None else [z])
    for s in seqs:
        t = len(s) - offset
        p = rule.popularity.copy()
        named = named_by(rule, s, t)
        if named is not None:
            count = np.bincount(named, minlength=cfg.items)
            p = cfg.strength / len(named) * count + (1 - cfg.strength) * rule.popularity
        excluded = np.zeros(cfg.items, dtype=bool)
        if mask:
            excluded[s[:t]] = True
        excluded[s[t]] = True
        out.append(int(((p >= p[s[t]]) & ~excluded).sum()))
    return np.array(out)


CASES = {
    "markov order 2": sy.SynthConfig(users=400, items=40, mean_len=8, order=2, candidates=2, strength=0.7, zipf=0.9,
                                     seed=2),
    "markov order 5, 2 groups": sy.SynthConfig(users=300, items=40, mean_len=10, order=5, groups=2, candidates=2,
                                               strength=0.7, zipf=0.9, seed=2),
    "markov order 6, 3 groups": sy.SynthConfig(users=300, items=40, mean_len=10, order=6, groups=3, candidates=1,
                                               strength=0.8, seed=4),
    "induction 1 hop": sy.SynthConfig(users=300, items=25, mean_len=12, rule="induction", order=1, strength=0.7,
                                      zipf=1.0, seed=2),
    "induction 2 hops": sy.SynthConfig(users=300, items=25, mean_len=12, rule="induction", order=2, strength=0.7,
                                       zipf=1.0, seed=3),
    "induction 3 hops": sy.SynthConfig(users=300, items=30, mean_len=14, rule="induction", order=3, strength=0.9,
                                       zipf=1.0, seed=5),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("split,offset", [("test", 1), ("valid", 2)])
@pytest.mark.parametrize("mask", [True, False])
def test_each_oracle_equals_scoring_every_item_by_its_bayes_probability(case, split, offset, mask):
    rule, seqs = _simulated(CASES[case])
    expected = _bayes_ranks(rule, seqs, offset, mask)
    assert np.array_equal(oracle_ranks(rule, seqs, split, mask_history=mask), expected)


@pytest.mark.parametrize("hops", [1, 2, 3])
def test_with_strength_one_every_position_where_induction_applies_follows_it(hops):
    cfg = sy.SynthConfig(users=200, items=30, mean_len=15, rule="induction", order=hops, strength=1.0, seed=hops)
    _, seqs = _simulated(cfg)
    applicable = 0
    for s in seqs:
        for t in range(len(s)):
            named = _named_by_hops(s, t, hops)
            if named is not None:
                applicable += 1
                assert s[t] == named
    assert applicable > 0.2 * len(seqs.flat)  # the rule is exercised, not vacuous


def test_induction_generates_and_reports_where_it_applies(tmp_path):
    cfg = sy.SynthConfig(users=300, items=40, mean_len=12, rule="induction", order=2, strength=0.9, zipf=1.0)
    sidecar = sy.generate(cfg, tmp_path, "ind")
    rule, seqs = _simulated(cfg)
    assert sidecar["settings"]["rule"] == "induction" and sidecar["rule"]["hops"] == 2
    assert "groups" not in sidecar["rule"]  # the markov rule's sizes mean nothing here
    share = np.mean([_named_by_hops(s, len(s) - 1, 2) is not None for s in seqs])
    assert sidecar["rule"]["applies"]["test"] == pytest.approx(share) and 0 < share < 1
    unmasked = metrics_from_ranks(oracle_ranks(rule, seqs, "test", mask_history=False))
    assert sidecar["oracle"]["unmasked"]["test"] == unmasked
    assert unmasked["HR@1"] > sidecar["oracle"]["popularity"]["test"]["HR@1"]


def test_a_long_markov_rule_needs_all_of_its_order():
    # 2 groups, order 6: 64 contexts over 60 items, one candidate each. A counting model over the
    # last 6 groups matches the oracle; one over the last 5 sees two contexts mixed and picks the
    # more frequent one's candidate (the groups are unequally popular, so it is right well over half the time).
    cfg = sy.SynthConfig(users=4000, items=60, mean_len=12, order=6, groups=2, candidates=1, strength=0.9, seed=1)
    rule, seqs = _simulated(cfg)
    oracle = metrics_from_ranks(oracle_ranks(rule, seqs, "test"))["HR@1"]
    six, five = (_group_counting_hit1(rule, seqs, k) for k in (6, 5))
    assert six >= oracle - 0.03 and five < oracle - 0.1


def _group_counting_hit1(rule, seqs: Ragged, k: int) -> float:
    """HR@1 of predicting the most frequent training successor of the last k groups (history masked)."""
    counts: dict[tuple, np.ndarray] = {}
    for s in seqs:
        for t in range(k, len(s) - 2):
            key = tuple(rule.group[s[t - k:t]])
            counts.setdefault(key, np.zeros(rule.cfg.items))[s[t]] += 1
    hits = []
    for s in seqs:
        t = len(s) - 1
        scores = counts.get(tuple(rule.group[s[t - k:t]]), np.zeros(rule.cfg.items)) + 1e-6 * rule.popularity
        scores[np.setdiff1d(s[:t], [s[t]])] = -1  # history masked, as the oracle's ranking
        hits.append(np.argmax(scores) == s[t])
    return float(np.mean(hits))


def test_the_rule_setting_is_checked_by_name():
    with pytest.raises(ConfigError, match="synth rule: expected one of markov, induction, got 'bigram'"):
        sy.validate(sy.SynthConfig(rule="bigram"))


def test_a_dataset_generated_before_the_rule_setting_is_still_the_same_markov_dataset(tmp_path):
    cfg = sy.SynthConfig(users=200, items=80, order=2, seed=1)
    sy.generate(cfg, tmp_path, "old")
    path = tmp_path / "old.synth.json"
    sidecar = json.loads(path.read_text())
    del sidecar["settings"]["rule"]  # as written before the setting existed
    path.write_text(json.dumps(sidecar))
    assert sy.same_settings(tmp_path, "old", cfg)
    assert not sy.same_settings(tmp_path, "old", dataclasses.replace(cfg, rule="induction"))


def test_the_rules_and_the_oracle_do_not_import_the_generator():
    code = ("import sys, core.data.oracle, core.data.rules; "
            "assert 'core.data.synthetic' not in sys.modules, 'oracle or rules imported the generator'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
