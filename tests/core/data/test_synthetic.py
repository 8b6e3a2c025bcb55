"""The synthetic generator: deterministic, shaped as asked, its rule recoverable, and its files prepared
exactly like the same interactions written as CSV (each rule's oracle: test_synthetic_rules.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from core.config import ConfigError, DataConfig
from core.data import synthetic as sy
from core.data.oracle import oracle_ranks
from core.data.prepare import prepare
from core.data.sequences import Ragged
from core.data.sources import detect_format, resolve_source
from core.eval.metrics import metrics_from_ranks

SMALL = sy.SynthConfig(users=300, items=120, mean_len=9, order=2, candidates=2, seed=3)


def _simulated(cfg: sy.SynthConfig) -> tuple[sy.Rule, Ragged]:
    rule = sy.make_rule(cfg)
    return rule, sy.simulate(cfg, rule, np.random.default_rng([cfg.seed, 0]))


def test_generation_is_deterministic_per_seed(tmp_path):
    first = sy.generate(SMALL, tmp_path / "a", "s")
    again = sy.generate(SMALL, tmp_path / "b", "s")
    other = sy.generate(sy.SynthConfig(**{**SMALL.__dict__, "seed": 4}), tmp_path / "c", "s")
    table = {d: pq.read_table(tmp_path / d / "s.parquet") for d in "abc"}
    assert table["a"].equals(table["b"]) and not table["a"].equals(table["c"])
    assert pq.read_table(tmp_path / "a" / "s.items.parquet").equals(pq.read_table(tmp_path / "b" / "s.items.parquet"))
    assert first == again and first["oracle"] != other["oracle"]
    assert json.loads((tmp_path / "a" / "s.synth.json").read_text()) == first


def test_lengths_popularity_and_timestamps_have_the_asked_shape():
    cfg = sy.SynthConfig(users=4000, items=500, interactions=60_000, order=1, seed=1)
    rule, seqs = _simulated(cfg)
    assert seqs.lengths.sum() == 60_000 and seqs.lengths.min() == cfg.min_len
    assert seqs.lengths.max() > 5 * np.median(seqs.lengths)  # heavy tail
    assert seqs.lengths.max() <= cfg.longest()
    counts = np.bincount(seqs.flat, minlength=cfg.items)
    assert counts[:10].sum() > counts[-10:].sum() * 3  # popularity falls with the Zipf rank
    stamps = sy._timestamps(seqs, np.random.default_rng(0))
    inside = np.ones(len(stamps), dtype=bool)
    inside[seqs.starts] = False  # a user's first interaction has no predecessor
    assert (np.diff(stamps, prepend=0)[inside] >= 1).all()


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ConfigError, match="interactions: 100 is fewer than users x min_len = 500"):
        sy.validate(sy.SynthConfig(users=100, interactions=100))
    with pytest.raises(ConfigError, match="strength"):
        sy.validate(sy.SynthConfig(strength=1.5))


def _counting_ranks(seqs: Ragged, n_items: int, order: int) -> np.ndarray:
    """A count model of `order`: P(next | last `order` items) counted on training positions
    (targets s[order..L-3], as in examples.py), ties broken by training popularity. Test targets
    are ranked like the oracle: history masked, pessimistic ties."""
    flat, starts, lengths = seqs.flat, seqs.starts, seqs.lengths

    def context(position: np.ndarray) -> np.ndarray:
        return sum(flat[position - order + j] * n_items ** j for j in range(order))

    per_user = np.maximum(lengths - 2 - order, 0)
    first = np.repeat(np.cumsum(per_user) - per_user, per_user)
    position = np.repeat(starts + order, per_user) + np.arange(per_user.sum()) - first
    counts = np.zeros((n_items ** order, n_items))
    np.add.at(counts, (context(position), flat[position]), 1)
    popularity = np.bincount(flat[position], minlength=n_items)
    test = starts + lengths - 1
    scores = counts[context(test)] + 1e-3 * popularity / popularity.max()
    users = np.arange(len(seqs))
    excluded = np.zeros(scores.shape, dtype=bool)
    excluded[np.repeat(users, lengths - 1), seqs.truncated(1).values()] = True
    excluded[users, flat[test]] = True
    return ((scores >= scores[users, flat[test]][:, None]) & ~excluded).sum(axis=1)


def test_the_planted_rule_is_recoverable_by_a_counting_model_of_its_order():
    # Item-level contexts (groups = items) on a small catalogue, so every context repeats.
    cfg = sy.SynthConfig(users=30_000, items=30, mean_len=10, order=3, groups=30, candidates=1, strength=0.9)
    rule, seqs = _simulated(cfg)
    oracle = metrics_from_ranks(oracle_ranks(rule, seqs, "test"))
    third = metrics_from_ranks(_counting_ranks(seqs, cfg.items, 3))
    first = metrics_from_ranks(_counting_ranks(seqs, cfg.items, 1))
    assert oracle["HR@10"] > 0.95 and oracle["MRR"] > 0.9
    assert third["HR@10"] >= oracle["HR@10"] - 0.03 and third["MRR"] >= oracle["MRR"] - 0.05
    assert first["HR@10"] < oracle["HR@10"] - 0.15 and first["MRR"] < oracle["MRR"] - 0.4
    assert third["MRR"] <= oracle["MRR"] + 0.01  # nothing beats the oracle (up to noise)


def test_order_one_data_needs_only_the_last_item():
    cfg = sy.SynthConfig(users=20_000, items=30, mean_len=10, order=1, groups=30, candidates=1, strength=0.9)
    rule, seqs = _simulated(cfg)
    oracle = metrics_from_ranks(oracle_ranks(rule, seqs, "test"))
    first = metrics_from_ranks(_counting_ranks(seqs, cfg.items, 1))
    assert first["MRR"] >= oracle["MRR"] - 0.02


def test_generated_files_prepare_like_the_same_interactions_as_csv(tmp_path):
    data_root = tmp_path / "data"
    sidecar = sy.generate(SMALL, data_root / "raw" / "gen", "gen")
    frame = pq.read_table(data_root / "raw" / "gen" / "gen.parquet").to_pandas()
    (data_root / "raw" / "csv").mkdir(parents=True)
    frame.to_csv(data_root / "raw" / "csv" / "csv.csv", index=False)
    pq.read_table(data_root / "raw" / "gen" / "gen.items.parquet").to_pandas().to_csv(
        data_root / "raw" / "csv" / "csv.items.csv", index=False)
    generated = prepare(DataConfig(dataset="gen", n_negatives=20), data_root)
    written = prepare(DataConfig(dataset="csv", n_negatives=20), data_root)
    assert generated.user_ids == written.user_ids and generated.item_ids == written.item_ids
    assert generated.item_titles == written.item_titles and all(generated.item_titles[1:])
    assert np.array_equal(generated.sequences.flat, written.sequences.flat)
    assert np.array_equal(generated.sequences.lengths, written.sequences.lengths)
    for split in ("valid", "test"):
        assert np.array_equal(generated.candidates(split), written.candidates(split))
    assert generated.stats["oracle"] == sidecar["oracle"] and "oracle" not in written.stats
    assert generated.stats["synthetic"]["groups"] == SMALL.n_groups()


def test_sidecars_are_not_interaction_files(tmp_path):
    sy.generate(SMALL, tmp_path / "raw" / "gen", "gen")
    assert resolve_source("gen", tmp_path).name == "gen.parquet"  # one interaction file in the folder
    for name in ("gen.items.parquet", "gen.items.csv", "gen.synth.json"):
        assert detect_format(tmp_path / name) is None


def test_titles_name_the_group(tmp_path):
    sy.generate(SMALL, tmp_path, "s")
    items = pd.read_parquet(tmp_path / "s.items.parquet")
    rule = sy.make_rule(SMALL)
    nouns = items["title"].str.split().str[1]  # rows are in popularity-rank order
    assert nouns.tolist() == [sy.NOUNS[g] for g in rule.group]  # one noun per group (up to 60 groups)
    assert items["title"].str.fullmatch(r"[a-z]+ [a-z]+ \d+").all()


def test_cli_generates_prepares_and_reports_the_oracle(tmp_path, capsys):
    from core.cli import main

    args = ["--root", str(tmp_path), "data", "synth", "--name", "toy-synth", "--users", "200", "--items", "80",
            "--order", "2", "--seed", "1"]
    assert main([*args, "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["generated"] and made["users"] == 200 and made["oracle"]["test"]["HR@10"] > 0.5
    assert made["files"]["interactions"] == "data/raw/toy-synth/toy-synth.parquet"
    assert main(args) == 0  # same settings: the files are reused
    assert "files reused" in capsys.readouterr().out
    assert main(["--root", str(tmp_path), "data", "stats", "toy-synth", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["oracle"] == made["oracle"] and stats["synthetic"]["order"] == 2
    (tmp_path / "data" / "raw" / "toy-synth" / "notes.csv").write_text("user,item,timestamp\n")
    assert main(args) == 1
    assert "already holds other files (notes.csv)" in capsys.readouterr().err
    assert main(["--root", str(tmp_path), "data", "synth", "--name", "../x"]) == 1
    assert main(["--root", str(tmp_path), "data", "synth", "--name", "x", "--strength", "2"]) == 2
    assert "synth strength" in capsys.readouterr().err
