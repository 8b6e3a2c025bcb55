"""Checkpoints: exact safetensors round trips, pickle refused, optimizer and RNG state without pickle."""

import json
import pickle
import random

import numpy as np
import pytest
import torch

from core.store.checkpoints import (
    CheckpointError,
    capture_rng_state,
    flatten_state_dict,
    load_checkpoint,
    load_resume_state,
    read_manifest,
    restore_rng_state,
    save_checkpoint,
    save_resume_state,
    unflatten_state_dict,
    write_manifest,
)


def _assert_same(a, b):
    """Deep equality of nested state with tensors compared exactly (dtype, shape, values)."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


def test_checkpoint_round_trip_exact(tmp_path):
    embed = torch.randn(10, 4)
    tensors = {"embed.weight": embed, "head.weight": embed,  # tied weights share memory
               "layer.bias": torch.arange(6, dtype=torch.bfloat16)[::2],  # a non-contiguous view
               "ids": torch.tensor([1, 2, 3], dtype=torch.int64)}
    manifest = {"kind": "student", "layers": [0, 2], "metrics": {"NDCG@10": 0.1}}
    save_checkpoint(tmp_path / "ck", tensors, manifest)
    loaded, loaded_manifest = load_checkpoint(tmp_path / "ck")
    assert loaded_manifest == manifest
    assert loaded.keys() == tensors.keys()
    for name, tensor in tensors.items():
        _assert_same(tensor.contiguous(), loaded[name])
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["manifest.json", "model.safetensors"]
    assert load_checkpoint(tmp_path / "ck" / "model.safetensors")[0].keys() == tensors.keys()
    write_manifest(tmp_path / "ck", {**manifest, "test": {"HR@10": 0.2}})
    assert read_manifest(tmp_path / "ck")["test"] == {"HR@10": 0.2}
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        write_manifest(tmp_path / "empty", {})


def test_pickle_files_are_refused(tmp_path):
    weights = {"w": torch.ones(2)}
    torch.save(weights, tmp_path / "model.pt")
    (tmp_path / "model.bin").write_bytes(pickle.dumps(weights))
    for name in ("model.pt", "model.bin"):
        with pytest.raises(CheckpointError, match="never"):
            load_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError, match="pickle files are never loaded"):
        load_checkpoint(tmp_path)  # a folder of pickles, no manifest
    disguised = tmp_path / "ck"
    disguised.mkdir()
    (disguised / "model.safetensors").write_bytes(pickle.dumps(weights))
    (disguised / "manifest.json").write_text("{}")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(disguised)


def _trained_adamw():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1)
    for _ in range(3):
        model(torch.randn(5, 4)).pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, optimizer


def test_adamw_state_dict_round_trip_exact(tmp_path):
    model, optimizer = _trained_adamw()
    state = optimizer.state_dict()
    tensors, meta = flatten_state_dict(state, prefix="optimizer")
    assert all(k.startswith("optimizer/") for k in tensors)
    save_resume_state(tmp_path, {**tensors, **model.state_dict()}, {"optimizer": meta, "step": 3})
    loaded, saved = load_resume_state(tmp_path)
    restored = unflatten_state_dict(loaded, saved["optimizer"])
    _assert_same(state, restored)
    fresh = torch.optim.AdamW(model.parameters(), lr=1.0)
    fresh.load_state_dict(restored)  # and torch accepts it
    _assert_same(fresh.state_dict(), state)


def test_flatten_keeps_key_types_and_refuses_objects():
    state = {0: {"a": (1, 2.5, None, True)}, "0": [torch.zeros(2)], "x": {"nested": {1: "s"}}}
    tensors, meta = flatten_state_dict(state)
    _assert_same(unflatten_state_dict(tensors, meta), state)
    with pytest.raises(TypeError, match="without pickle"):
        flatten_state_dict({"f": lambda: 0})


def test_a_crash_between_the_two_resume_writes_keeps_the_previous_state(tmp_path, monkeypatch):
    from core.store import checkpoints

    save_resume_state(tmp_path, {"w": torch.ones(1)}, {"step": 1})

    write_json = checkpoints.write_json_atomic

    def crash_on_commit(path, obj):
        if path.name == "resume.json":
            raise OSError("killed")
        write_json(path, obj)
    with monkeypatch.context() as patch:
        patch.setattr(checkpoints, "write_json_atomic", crash_on_commit)  # killed after the tensors, before the JSON
        with pytest.raises(OSError):
            save_resume_state(tmp_path, {"w": torch.ones(1) * 2}, {"step": 2})
    tensors, state = load_resume_state(tmp_path)
    assert state == {"step": 1} and torch.equal(tensors["w"], torch.ones(1))
    save_resume_state(tmp_path, {"w": torch.ones(1) * 3}, {"step": 3})  # the next save tidies up
    assert len(list(tmp_path.glob("resume-*.safetensors"))) == 2  # the newest and the previous state
    assert load_resume_state(tmp_path)[1]["step"] == 3
    assert load_resume_state(tmp_path / "none") is None


def test_rng_states_restore_exactly(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    tensors, meta = capture_rng_state()
    save_resume_state(tmp_path, tensors, {"rng": meta})
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    loaded, saved = load_resume_state(tmp_path)
    restore_rng_state(loaded, saved["rng"])
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_a_truncated_safetensors_file_is_named_with_what_to_do(tmp_path):
    save_checkpoint(tmp_path / "ck", {"w": torch.randn(50, 50)}, {"kind": "teacher"})
    path = tmp_path / "ck" / "model.safetensors"
    whole = path.read_bytes()
    for size in (len(whole) - 100, 200, 12, 0):  # inside the data, inside the header, in its length
        path.write_bytes(whole[:size])
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(tmp_path / "ck", advice="run that teacher again")
        message = str(caught.value)
        assert str(path) in message and "truncated or corrupt" in message and "run that teacher again" in message
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            load_checkpoint(path)


def _save_states(folder, steps):
    for step in steps:
        save_resume_state(folder, {"w": torch.full((64,), float(step))}, {"step": step})


def _newest_tensors(folder):
    return folder / json.loads((folder / "resume.json").read_text())["tensors"]


def test_an_unreadable_newest_resume_state_falls_back_to_the_previous_one(tmp_path):
    _save_states(tmp_path, [1, 2, 3])
    assert len(list(tmp_path.glob("resume-*.safetensors"))) == 2  # at most two states take disk space
    newest = _newest_tensors(tmp_path)
    newest.write_bytes(newest.read_bytes()[:-10])
    logged = []
    tensors, state = load_resume_state(tmp_path, log=logged.append)
    assert state == {"step": 2} and torch.equal(tensors["w"], torch.full((64,), 2.0))
    assert len(logged) == 1 and str(newest) in logged[0] and "truncated or corrupt" in logged[0]
    (tmp_path / "resume.json").write_text('{"token": ')  # a cut JSON half falls back the same way
    logged.clear()
    assert load_resume_state(tmp_path, log=logged.append)[1] == {"step": 2}
    assert "resume.json" in logged[0] and "not valid JSON" in logged[0]


def test_after_a_fallback_the_skipped_state_is_never_kept_as_the_previous_one(tmp_path):
    from core.store.checkpoints import read_resume_state, settle_resume_state

    _save_states(tmp_path, [1, 2, 3])
    newest = _newest_tensors(tmp_path)
    newest.write_bytes(b"")
    settle_resume_state(tmp_path, read_resume_state(tmp_path))  # the run resumes from step 2
    assert not newest.exists() and load_resume_state(tmp_path)[1] == {"step": 2}
    _save_states(tmp_path, [4])  # step 3 belongs to the abandoned attempt: 2 is the fallback now
    _newest_tensors(tmp_path).write_bytes(b"")
    assert load_resume_state(tmp_path)[1] == {"step": 2}


def test_with_no_readable_resume_state_the_run_starts_over(tmp_path):
    from core.store.checkpoints import settle_resume_state

    _save_states(tmp_path, [1])
    only = _newest_tensors(tmp_path)
    only.write_bytes(only.read_bytes()[:100])
    logged = []
    assert load_resume_state(tmp_path, log=logged.append) is None  # never an error
    assert str(only) in logged[0] and "starting over" in logged[-1]
    settle_resume_state(tmp_path, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
