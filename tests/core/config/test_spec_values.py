"""Spec values of the wrong type or out of range are refused when the spec is read, naming the
field, the value and what was expected (never a traceback, never queued to fail in the worker)."""

import math

import pytest

from core.cli import main
from core.config import ConfigError, apply_preset, from_dict, settings_hash


@pytest.mark.parametrize("section, values, says", [
    ("train", {"epochs": "3"}, "spec.train.epochs: expected a whole number, got '3' (str)"),
    ("train", {"lr": "fast"}, "spec.train.lr: expected a finite number, got 'fast' (str)"),
    ("train", {"epochs": None}, "spec.train.epochs: expected a whole number, got null"),
    ("train", {"batch_size": 16.5}, "spec.train.batch_size: expected a whole number, got 16.5"),
    ("data", {"max_len": 10.5}, "spec.data.max_len: expected a whole number, got 10.5"),
    ("train", {"weight_decay": math.nan}, "spec.train.weight_decay: expected a finite number, got nan"),
    ("train", {"lr": math.inf}, "spec.train.lr: expected a finite number, got inf"),
    ("train", {"grad_clip": math.nan}, "spec.train.grad_clip: expected a finite number, got nan"),
    ("train", {"epochs": True}, "spec.train.epochs: expected a whole number, got true"),
    ("backbone", {"lora_targets": "gate_proj"}, "spec.backbone.lora_targets: expected a list of strings"),
    ("backbone", {"lora_targets": ["gate"]}, "backbone.lora_targets: expected a list of some of q_proj"),
    ("train", {"max_steps": -1}, "train.max_steps: expected >= 0 (0: no limit), got -1"),
    ("train", {"weight_decay": -0.1}, "train.weight_decay: expected >= 0"),
    ("sasrec", {"heads": 0}, "sasrec.heads: expected >= 1, got 0"),
    ("sasrec", {"dropout": 1.5}, "sasrec.dropout: expected in [0, 1)"),
    ("train", {"compile": 1}, "spec.train.compile: expected a string, got 1 (int)"),
    ("data", {"min_rating": "4"}, "spec.data.min_rating: expected a finite number, got '4' (str)"),
])
def test_a_wrong_value_is_refused_by_name(section, values, says):
    with pytest.raises(ConfigError) as caught:
        from_dict({"kind": "teacher", section: values})
    assert says in str(caught.value)


def test_the_top_level_must_be_an_object():
    with pytest.raises(ConfigError, match="spec: expected an object .* got list"):
        from_dict(["teacher"])
    with pytest.raises(ConfigError, match=r"spec.train: expected an object of settings, got \[1\]"):
        from_dict({"kind": "teacher", "train": [1]})


def test_good_values_keep_their_types_and_hashes():
    spec = from_dict({"kind": "teacher", "train": {"lr": 1, "epochs": 2}, "data": {"min_rating": None},
                      "backbone": {"lora_targets": ["gate_proj", "up_proj"]}})
    assert spec.train.lr == 1 and spec.backbone.lora_targets == ("gate_proj", "up_proj")
    stored = {"kind": "teacher", "train": {"compile": True}}  # written when compile was a bool
    assert from_dict(stored).train.compile == "on"
    assert settings_hash(from_dict(stored)) == settings_hash(from_dict({"kind": "teacher"}))


def test_speed_only_settings_are_left_out_of_the_hash_by_their_mark():
    base = apply_preset("tiny", {}, "student")
    faster = apply_preset("tiny", {"train": {"nproc_per_node": 2, "eval_batch_size": 512, "compile": "on"},
                                   "distill": {"cache_budget_gb": 3.0}}, "student")
    other = apply_preset("tiny", {"train": {"batch_size": 8}}, "student")
    assert settings_hash(faster) == settings_hash(base) != settings_hash(other)


@pytest.mark.parametrize("field, value", [("sasrec_run", "../../x"), ("distill", {"teacher_run": "../etc"}),
                                          ("analysis", {"run": "a/b"}), ("drop", {"run": ".hidden"})])
def test_every_run_a_spec_names_is_a_plain_run_id(field, value):
    kind = {"distill": "student", "analysis": "analysis", "drop": "drop"}.get(field, "teacher")
    with pytest.raises(ConfigError, match="invalid run id"):
        from_dict({"kind": kind, field: value})


def test_a_bad_spec_file_is_an_error_line_not_a_traceback(tmp_path, capsys):
    for content, says in [('{"train": {"epochs": "3"}}', "spec.train.epochs: expected a whole number"),
                          ('["teacher"]', "expected a JSON object of settings sections, got list"),
                          ('{"train": {"lr": NaN}}', "spec.train.lr: expected a finite number, got nan"),
                          ('{"sasrec": {"heads": 0}}', "sasrec.heads: expected >= 1, got 0")]:
        spec = tmp_path / "spec.json"
        spec.write_text(content)
        assert main(["--root", str(tmp_path), "submit", "teacher", "--spec", str(spec)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {spec}: ") and says in err and "Traceback" not in err
        runs = tmp_path / "data" / "runs"
        assert not runs.exists() or not any(runs.iterdir())  # nothing was queued
