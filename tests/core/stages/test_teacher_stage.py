"""The teacher stage on the tiny random LLaMA: trains, evaluates both protocols, saves, resumes."""

import json

import pytest

from core.jobs import execution, planning
from core.stages.llm import StageError
from core.store import checkpoints
from core.store.paths import Paths
from core.store.query import query
from tests.conftest import toy_spec


def tiny(kind="teacher", **sections):
    return toy_spec(kind, **{"train": {"checkpoint_every": 2, **sections.pop("train", {})}, **sections})


def run_all(paths, spec):
    ids = planning.plan(paths, spec)
    for run_id in ids:
        state = execution.execute(paths, run_id)
        assert state["status"] == "done", state.get("error")
    return ids


def test_teacher_trains_and_records_both_protocols(project):
    paths = Paths(project)
    sasrec_id, teacher_id = run_all(paths, tiny())
    rows = query(paths.data_root, "SELECT DISTINCT split, protocol FROM metrics WHERE run_id = ? ORDER BY 1, 2",
                 [teacher_id])
    assert [(r["split"], r["protocol"]) for r in rows] == [("test", "full"), ("test", "sampled"),
                                                           ("valid", "full"), ("valid", "sampled")]
    tensors, manifest = checkpoints.load_checkpoint(paths.checkpoints / teacher_id)
    assert all("lora" in k or k.startswith(("input_map", "score_head")) for k in tensors)
    counts = manifest["parameters"]
    assert 0 < counts["trainable"] < counts["total"] <= counts["inference"]
    assert manifest["spec"]["sasrec_run"] == sasrec_id
    losses = query(paths.data_root, "SELECT DISTINCT name FROM losses WHERE run_id = ?", [teacher_id])
    assert {r["name"] for r in losses} >= {"ce", "total", "lr", "grad_norm"}


def test_teacher_resume_after_interruption_matches(project, monkeypatch):
    paths = Paths(project)
    (_, reference) = run_all(paths, tiny())
    expected = query(paths.data_root, "SELECT split, protocol, metric, value FROM metrics WHERE run_id = ? "
                                      "ORDER BY ALL", [reference])
    # the same settings with another name: interrupt it after its first checkpoint, then resume
    spec = tiny(name="interrupted")
    ids = planning.plan(paths, spec, reuse=False)
    assert execution.execute(paths, ids[0])["status"] == "done"  # its own SASRec parent, same seed
    calls = {"n": 0}
    from core.stages import context

    def cancel_once(self):
        calls["n"] += 1
        return calls["n"] == 3
    monkeypatch.setattr(context.RunContext, "cancel_requested", cancel_once)
    assert execution.execute(paths, ids[-1])["status"] == "cancelled"
    monkeypatch.undo()
    assert execution.execute(paths, ids[-1])["status"] == "done"
    got = query(paths.data_root, "SELECT split, protocol, metric, value FROM metrics WHERE run_id = ? ORDER BY ALL",
                [ids[-1]])
    assert [(r["split"], r["metric"]) for r in got] == [(r["split"], r["metric"]) for r in expected]
    for a, b in zip(got, expected):
        assert a["value"] == pytest.approx(b["value"], abs=1e-9), a
    dupes = query(paths.data_root, "SELECT step, split, protocol, model, metric, count(*) n FROM metrics "
                                   "WHERE run_id = ? GROUP BY ALL HAVING n > 1", [ids[-1]])
    assert dupes == []


def test_teacher_refuses_bad_parents_and_depths(project):
    paths = Paths(project)
    spec = tiny(backbone={"depth": 9})
    ids = planning.plan(paths, spec)
    assert execution.execute(paths, ids[0])["status"] == "done"
    state = execution.execute(paths, ids[1])
    assert state["status"] == "failed" and "depth" in state["error"] and "8" in state["error"]
    missing = planning.submit(paths, tiny(name="x"), reuse=False)[0]
    spec_file = paths.runs / missing / "spec.json"
    data = json.loads(spec_file.read_text())
    data["spec"]["sasrec_run"] = "20260101-000000-000000-sasrec-ffffff"
    spec_file.write_text(json.dumps(data))
    state = execution.execute(paths, missing)
    assert state["status"] == "failed" and "has no checkpoint" in state["error"]


def test_item_table_size_mismatch_is_refused(project):
    from core.stages.llm import load_item_table
    from core.stages.context import RunContext
    paths = Paths(project)
    sasrec_id = run_all(paths, tiny())[0]
    ctx = RunContext(sasrec_id, paths, device=None, events=None)
    with pytest.raises(StageError, match="has 30 items but the dataset has 31"):
        load_item_table(ctx, sasrec_id, 31)


def test_a_restart_without_checkpoint_does_not_duplicate_rows(project):
    paths = Paths(project)
    spec = tiny(train={"checkpoint_every": 0})
    ids = planning.plan(paths, spec)
    assert execution.execute(paths, ids[0])["status"] == "done"
    from core.store.events import EventWriter
    with EventWriter(paths.runs / ids[1]) as writer:  # what a killed first attempt left behind
        writer.append("losses", [{"step": 1, "epoch": 0.1, "name": "ce", "value": 9.0}])
    assert execution.execute(paths, ids[1])["status"] == "done"
    dupes = query(paths.data_root, "SELECT step, name, count(*) n FROM losses WHERE run_id = ? GROUP BY ALL "
                                   "HAVING n > 1", [ids[1]])
    assert dupes == [] and not query(paths.data_root, "SELECT * FROM losses WHERE value = 9.0")


def test_eval_batch_size_changes_the_batches_not_the_ranks(project):
    from dataclasses import replace

    import numpy as np
    import torch

    from core.data.prepare import prepare
    from core.stages.context import RunContext
    from core.stages.llm import evaluate, load_finished_model
    paths = Paths(project)
    teacher_id = run_all(paths, tiny())[-1]
    assert checkpoints.read_manifest(paths.checkpoints / teacher_id)["eval_batch_size"] == tiny().train.batch_size  # auto on CPU, resolved
    ctx = RunContext("probe", paths, torch.device("cpu"), events=None)
    spec, model = load_finished_model(ctx, teacher_id, tiny().train)
    prepared = prepare(spec.data, paths.data_root)
    own_user_vectors, batches = model.user_vectors, []

    def counted(items):
        batches.append(len(items))
        return own_user_vectors(items)
    model.user_vectors = counted
    ranks = {}
    for size in (3, 1000):
        batches.clear()
        ranks[size] = evaluate(model, replace(spec, train=replace(spec.train, eval_batch_size=size)), prepared, "test")
        assert max(batches) == min(size, prepared.n_users) and sum(batches) == prepared.n_users
    assert ranks[3].ranks.keys() == ranks[1000].ranks.keys() == {"full", "sampled"}
    for protocol in ranks[3].ranks:
        np.testing.assert_array_equal(ranks[3].ranks[protocol], ranks[1000].ranks[protocol])


def test_a_resume_state_saved_with_the_old_layer_names_is_refused_by_name(project, monkeypatch):
    """Before the lean decoder, resume states held peft's names; their optimizer moments follow the old
    parameter order, so such a run cannot resume (a finished run of that time still loads)."""
    import re

    from core.stages import context

    paths = Paths(project)
    ids = planning.plan(paths, tiny(name="old resume"), reuse=False)
    assert execution.execute(paths, ids[0])["status"] == "done"
    monkeypatch.setattr(context.RunContext, "cancel_requested", lambda self: True)
    assert execution.execute(paths, ids[-1])["status"] == "cancelled"
    monkeypatch.undo()
    folder = paths.checkpoints / ids[-1]
    tensors, meta = checkpoints.load_resume_state(folder)
    old = re.compile(r"^(model/backbone\.layers\.\d+\.)(self_attn|mlp)\.\w+_proj\.lora_([AB])\.(\w+_proj)$")
    renamed = {(f"{m[1]}{m[2]}.{m[4]}.lora_{m[3]}.default.weight" if (m := old.match(k)) else k): v
               for k, v in tensors.items()}
    assert renamed.keys() != tensors.keys()  # the LoRA weights now carry peft's names
    checkpoints.save_resume_state(folder, renamed, meta)
    state = execution.execute(paths, ids[-1])
    assert state["status"] == "failed"
    assert "saved before the decoder" in state["error"] and "cannot resume" in state["error"]
