"""Config: JSON round trip, unknown keys named, validation messages, presets, block choice."""

import pytest

from core.config import (ConfigError, RunSpec, TrainConfig, apply_preset, check_blocks, eval_batch, from_dict,
                         settings_hash, to_dict, valid_blocks)


def test_round_trip_and_hash_ignores_name():
    spec = apply_preset("tiny", {"train": {"lr": 0.01}}, "teacher")
    again = from_dict(to_dict(spec))
    assert again == spec
    renamed = from_dict({**to_dict(spec), "name": "other"})
    assert settings_hash(renamed) == settings_hash(spec)
    assert settings_hash(from_dict({**to_dict(spec), "train": {**to_dict(spec)["train"], "seed": 1}})) != settings_hash(spec)


def test_unknown_keys_are_named():
    with pytest.raises(ConfigError, match="spec: unknown key\\(s\\) colour"):
        from_dict({"kind": "teacher", "colour": 1})
    with pytest.raises(ConfigError, match="spec.train: unknown key\\(s\\) learning_rate"):
        from_dict({"kind": "teacher", "train": {"learning_rate": 1}})


@pytest.mark.parametrize("section,field,value,message", [
    ("train", "lr", 0.0, "train.lr: expected > 0, got 0.0"),
    ("train", "batch_size", 0, "train.batch_size: expected >= 1, got 0"),
    ("data", "max_len", 0, "data.max_len: expected >= 1, got 0"),
    ("backbone", "depth", 0, "backbone.depth: expected >= 1, got 0"),
    ("backbone", "training", "qlora", "backbone.training: expected lora, full or frozen, got 'qlora'"),
    ("distill", "lambda_cos", -1.0, "distill.lambda_cos: expected >= 0, got -1.0"),
    ("train", "compile", "yes", "train.compile: expected auto, on, off or graphs, got 'yes'"),
    ("train", "eval_batch_size", -1, "train.eval_batch_size: expected >= 0 (0: auto, max(batch_size, 1024) on CUDA, batch_size elsewhere), got -1"),
])
def test_invalid_settings_give_the_field_and_expectation(section, field, value, message):
    with pytest.raises(ConfigError) as err:
        from_dict({"kind": "student", section: {field: value}})
    assert str(err.value) == message


def test_compile_is_a_speed_setting_outside_the_hash_and_old_bools_still_load():
    spec = apply_preset("tiny", {}, "teacher")
    assert spec.train.compile == "auto"
    for old, new in ((True, "on"), (False, "off")):
        loaded = from_dict({**to_dict(spec), "train": {**to_dict(spec)["train"], "compile": old}})
        assert loaded.train.compile == new
        assert settings_hash(loaded) == settings_hash(spec)


def test_eval_batch_size_auto_rule_and_outside_the_hash():
    assert eval_batch(TrainConfig(), "cuda") == 1024  # auto on CUDA: at least 1024 users per no-grad batch
    assert eval_batch(TrainConfig(batch_size=4096), "cuda") == 4096  # never below the training batch
    assert eval_batch(TrainConfig(batch_size=48), "cpu") == 48  # auto elsewhere: the training batch
    assert eval_batch(TrainConfig(batch_size=4096, eval_batch_size=3), "cuda") == 3  # set: taken as is
    spec = apply_preset("tiny", {}, "teacher")
    loaded = from_dict({**to_dict(spec), "train": {**to_dict(spec)["train"], "eval_batch_size": 3}})
    assert loaded.train.eval_batch_size == 3 and settings_hash(loaded) == settings_hash(spec)


def test_unknown_preset_and_stage():
    with pytest.raises(ConfigError, match="preset: unknown preset 'huge'; expected one of tiny"):
        apply_preset("huge", {}, "teacher")
    with pytest.raises(ConfigError, match="kind: 'fly' is not a stage"):
        from_dict({"kind": "fly"})


def test_valid_blocks_and_refusal():
    assert valid_blocks(8, 4) == [1, 2, 4]
    assert valid_blocks(30, 4) == [1, 2]
    with pytest.raises(ConfigError, match="B=4 must divide both the teacher depth 30 and the student depth 4; valid B: 1, 2"):
        check_blocks(30, 4, 4)


def test_spec_is_hashable():
    assert hash(RunSpec(kind="sasrec")) == hash(RunSpec(kind="sasrec"))
