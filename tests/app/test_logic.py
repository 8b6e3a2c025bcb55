"""The app's non-UI logic: metrics and intervals from ranks (core's statistics), seed groups, parameter
estimates, datasets, config diff, aligned pairs, the run finder."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app import datasets, launch, layers, results, stats
from core.config import apply_preset, block_pairs, to_dict
from core.data.errors import DataError
from core.eval.metrics import per_user_metric
from core.eval.stats import bootstrap_ci
from core.results.compare import CompareError, pair_seeds
from core.store.paths import Paths

REPO = Path(__file__).resolve().parents[2]


def test_metric_table_per_run_and_protocol_uses_core_statistics():
    ranks = pd.DataFrame({"run_id": ["a"] * 4 + ["b"] * 4, "model": "teacher", "protocol": "full",
                          "user_id": [0, 1, 2, 3] * 2, "rank": [0, 1, 20, 30, 0, 0, 0, 99]})
    table = stats.metric_table(ranks, "HR@10", resamples=200).set_index("run_id")
    assert table.loc["a", "value"] == 0.5 and table.loc["b", "value"] == 0.75
    assert table.loc["a", "users"] == 4 and table.loc["a", "seeds"] == 1
    core = bootstrap_ci(per_user_metric(np.array([0, 1, 20, 30]), "HR@10"), resamples=200)
    assert (table.loc["a", "ci_low"], table.loc["a", "ci_high"]) == (core.low, core.high)  # one implementation


def test_metric_table_of_a_seed_group_resamples_seeds_when_they_disagree():
    users = np.arange(100)
    ranks = pd.DataFrame({"run_id": np.repeat(["s0", "s1", "s2"], 100), "model": "teacher", "protocol": "full",
                          "user_id": np.tile(users, 3),
                          "rank": np.concatenate([np.zeros(100), users % 2 * 50, np.full(100, 50)]).astype(int)})
    group = pd.DataFrame({"run_id": ["s0", "s1", "s2"], "unit": "g"})
    table = stats.metric_table(ranks, "HR@10", group, resamples=200).iloc[0]
    assert table["value"] == 0.5 and table["seeds"] == 3 and table["ci_over"] == "seeds and users"
    users_only = bootstrap_ci(np.array([2 / 3, 1 / 3] * 50), resamples=200)  # each user's HR@10 over seeds
    assert table["ci_high"] - table["ci_low"] > 3 * (users_only.high - users_only.low)
    single = stats.metric_table(ranks, "HR@10", resamples=200).set_index("run_id")
    assert (single["ci_over"] == "users").all()


def test_seed_groups_follow_run_references():
    def spec(kind, seed, **sections):
        return json.dumps(to_dict(apply_preset("tiny", {"train": {"seed": seed}, **sections}, kind)))

    runs = pd.DataFrame({"run_id": ["s0", "s1", "t0", "t1", "t2", "bad"],
                         "spec": [spec("sasrec", 0), spec("sasrec", 1), spec("teacher", 0, sasrec_run="s0"),
                                  spec("teacher", 1, sasrec_run="s1"),
                                  spec("teacher", 0, sasrec_run="s0", backbone={"depth": 2}),
                                  json.dumps({"kind": "teacher", "unknown": 1})]})
    groups = stats.seed_groups(runs).set_index("run_id")
    assert groups.loc["s0", "group"] == groups.loc["s1", "group"]
    assert groups.loc["t0", "group"] == groups.loc["t1", "group"]  # each refers to its own seed's SASRec
    assert groups.loc["t2", "group"] != groups.loc["t0", "group"]
    assert groups.loc["bad", "group"] == "bad" and list(groups["seed"]) == [0, 1, 0, 1, 0, 0]
    with pytest.raises(CompareError, match="different seeds"):
        pair_seeds({0: "t0", 1: "t1"}, {0: "t2"})


def test_layer_parameters_of_smollm2():
    config = {"hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9, "num_key_value_heads": 3,
              "head_dim": 64, "num_hidden_layers": 30, "vocab_size": 49152}
    per_layer = launch.layer_params(config)
    assert per_layer == 3_540_096
    total = 30 * per_layer + 576 + 49152 * 576  # layers + final norm + (tied) embeddings
    assert total == 134_515_008  # SmolLM2-135M


def test_layer_parameters_equal_the_tiny_model():
    from core.models.tiny import build_tiny_llama, tiny_llama_config

    config = tiny_llama_config()
    assert {k: getattr(config, k) for k in launch.TINY_CONFIG} == launch.TINY_CONFIG
    model = build_tiny_llama()
    assert launch.layer_params(launch.TINY_CONFIG) == sum(p.numel() for p in model.layers[0].parameters())


def test_estimate_scales_with_depth():
    settings = launch.defaults("cpu-quick", "ml-100k")
    config = {"hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9, "num_key_value_heads": 3,
              "num_hidden_layers": 30}
    teacher, student = launch.estimate(config, settings, 128, 1349)
    assert teacher["layers"] == 8 and student["layers"] == 4
    assert teacher["layer params"] == 2 * student["layer params"]
    assert student["cost per step vs teacher"] == 0.5 and teacher["cost per step vs full depth"] == round(8 / 30, 3)
    assert student["trainable params"] > 4 * 3 * 16 * (576 + 1536)  # LoRA plus maps and adapters


def test_presets_build_valid_plans():
    for choice, (_, teacher, student, blocks) in launch.CHOICES.items():
        plan = launch.build_plan(launch.defaults(choice, "ml-100k"))
        assert plan.teacher.backbone.depth == teacher and plan.student.backbone.depth == student
        assert plan.student.distill.blocks == blocks


def test_finder_follows_the_reuse_rule():
    spec = launch.build_plan(launch.defaults("cpu-quick", "x")).teacher
    from core.config import settings_hash

    runs = pd.DataFrame({"run_id": ["1", "2", "3"], "kind": "teacher", "settings_hash": settings_hash(spec),
                         "status": ["done", "failed", "queued"]})
    assert launch.finder(runs)(spec) == "3"
    assert launch.finder(runs[runs["run_id"] != "3"])(spec) == "1"


def test_aligned_pairs():
    assert block_pairs(8, 4, 4) == [(2, 1), (4, 2), (6, 3), (8, 4)]
    assert block_pairs(30, 4, 2) == [(15, 2), (30, 4)]
    info = {"teacher_depth": 8, "student_depth": 4, "blocks": 2}
    assert layers.pairs_for("student", "teacher", info) == [(2, 4), (4, 8)]
    assert layers.pairs_for("teacher", "teacher", info) is None


def test_config_diff_keeps_only_differences():
    runs = pd.DataFrame({"label": ["a", "b"], "kind": ["teacher", "teacher"],
                         "spec": [json.dumps({"train": {"lr": 0.001, "seed": 0}, "backbone": {"depth": 8}}),
                                  json.dumps({"train": {"lr": 0.002, "seed": 0}, "backbone": {"depth": 8}})]})
    diff = results.config_diff(runs)
    assert list(diff["setting"]) == ["kind", "train.lr"] and list(diff["a"]) == ["teacher", 0.001]
    # a SASRec run carries backbone settings it never reads: they are not differences
    runs.loc[1, "kind"] = "sasrec"
    diff = results.config_diff(runs).set_index("setting")
    assert list(diff.index) == ["kind"] and diff.loc["kind", "b"] == "sasrec"


def test_paper_names():
    row = {"kind": "student", "teacher_depth": 8, "student_depth": 4, "lambda_cos": 1.0, "lambda_norm": 0.1,
           "lambda_sup": 1.0}
    assert results.paper_name(row) == "SLMRec 4←8"
    assert results.paper_name({**row, "lambda_cos": 0.0, "lambda_norm": 0.0, "lambda_sup": 0.0}).startswith(
        "E4SRec, 4 layers")


def test_datasets_stats_upload_and_refusals(tmp_path):
    from bench.fixture_store import write_toy_csv

    paths = Paths(tmp_path)
    write_toy_csv(tmp_path)
    assert datasets.list_datasets(paths) == ["toy"]
    info = datasets.describe(paths, datasets.locate(paths, "toy"), None)
    assert info["stats"]["users"] == 60 and info["stats"]["items"] == 30
    assert info["histogram"]["count"].sum() == 60
    assert len(info["samples"]) == 5 and info["samples"]["last_items"].str.contains("→").all()
    with pytest.raises(DataError, match="outside the data folder"):
        datasets.locate(paths, "../../etc/passwd.csv")
    with pytest.raises(DataError, match="upload limit"):
        datasets.save_upload(paths, "big", "big.csv", b"x" * ((datasets.MAX_UPLOAD_MB << 20) + 1))
    with pytest.raises(DataError, match="dataset name"):
        datasets.save_upload(paths, "../up", "a.csv", b"user,item,timestamp\n")
    with pytest.raises(DataError, match="not a recognised interaction file"):
        datasets.save_upload(paths, "notes", "notes.txt", b"hello")
    saved = datasets.save_upload(paths, "mine", "mine.csv", (tmp_path / "data/raw/toy/toy.csv").read_bytes())
    assert saved == tmp_path / "data" / "raw" / "mine" / "mine.csv"
    assert datasets.list_datasets(paths) == ["mine", "toy"]
    with pytest.raises(DataError, match="already exists"):
        datasets.save_upload(paths, "mine", "mine.csv", b"user,item,timestamp\n")


def test_prepared_stats_have_titles(tmp_path):
    from bench.fixture_store import write_toy_csv
    from core.config import DataConfig
    from core.data.prepare import prepare

    write_toy_csv(tmp_path)
    prepared = prepare(DataConfig(dataset="toy", kcore=0), tmp_path / "data")
    paths = Paths(tmp_path)
    versions = datasets.prepared_versions(paths, datasets.locate(paths, "toy"))
    assert [v["key"] for v in versions] == [prepared.key]
    info = datasets.describe(paths, datasets.locate(paths, "toy"), versions[0])
    assert info["stats"]["users"] == prepared.n_users and info["stats"]["items"] == prepared.n_items
    assert info["stats"]["interactions"] == sum(len(s) for s in prepared.sequences)
