"""The analysis stage end to end on the tiny LLaMA: trained runs (readout + similarity) and the base LLM."""

import math

import pytest
import torch

from core.jobs import execution, planning
from core.store import runs as run_store
from core.config import BackboneConfig, ConfigError, apply_preset
from core.models.backbone import load_backbone
from core.stages.analysis import prompt_texts, sample_users, text_states
from core.eval.similarity import block_influence
from core.store.paths import Paths
from core.store.query import query


def tiny(kind, **sections):
    # a short prompt keeps the byte-level tiny model's sequences short, so every run takes seconds
    base = {"data": {"dataset": "toy", "kcore": 0}, "train": {"max_steps": 0, "epochs": 1},
            "rec": {"prompt": "Seen {items}."}}
    for key, value in sections.items():
        base.setdefault(key, {}).update(value)
    return apply_preset("tiny", base, kind)


def run_all(paths, spec):
    ids = planning.plan(paths, spec)
    for run_id in ids:
        if run_store.read_state(paths.runs, run_id)["status"] != "done":
            state = execution.execute(paths, run_id)
            assert state["status"] == "done", state.get("error")
    return ids


def rows(paths, sql, *params):
    return query(paths.data_root, sql, list(params))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny teacher (4 layers) and a student (2 layers, one block adapter) distilled from it."""
    from tests.conftest import write_toy_dataset

    root = tmp_path_factory.mktemp("analysis")
    write_toy_dataset(root)
    paths = Paths(root)
    teacher_id = run_all(paths, tiny("teacher"))[-1]
    student_id = run_all(paths, tiny("student", backbone={"depth": 2}, distill={"teacher_run": teacher_id}))[-1]
    return paths, teacher_id, student_id


def test_last_layer_readout_equals_the_models_own_evaluation(trained):
    paths, teacher_id, _ = trained
    analysis_id = run_all(paths, tiny("analysis", analysis={"run": teacher_id, "users": 0}))[-1]
    own = rows(paths, "SELECT protocol, metric, value FROM metrics WHERE run_id = ? AND split = 'test' "
                      "AND layer IS NULL ORDER BY ALL", teacher_id)
    readout = rows(paths, "SELECT protocol, metric, value FROM metrics WHERE run_id = ? AND model = 'teacher' "
                          "AND layer = 4 ORDER BY ALL", analysis_id)
    assert len(own) == 16
    assert [(r["protocol"], r["metric"]) for r in readout] == [(r["protocol"], r["metric"]) for r in own]
    for a, b in zip(readout, own):
        assert a["value"] == pytest.approx(b["value"], abs=1e-12), a
    layers = rows(paths, "SELECT DISTINCT model, layer FROM metrics WHERE run_id = ? ORDER BY ALL", analysis_id)
    assert [(r["model"], r["layer"]) for r in layers] == [("teacher", layer) for layer in range(5)]
    ranks = rows(paths, "SELECT count(*) n, count(DISTINCT user_id) users FROM ranks WHERE run_id = ? AND "
                        "layer = 2 AND protocol = 'full'", analysis_id)[0]
    assert ranks == {"n": 60, "users": 60}  # ranks stored, so confidence intervals work


def test_student_against_teacher_writes_all_pairs_and_adapter_readouts(trained):
    paths, teacher_id, student_id = trained
    analysis_id = run_all(paths, tiny("analysis", analysis={"run": student_id, "against": teacher_id,
                                                            "users": 40}))[-1]
    counts = rows(paths, "SELECT measure, a_model, b_model, count(*) c, min(n) lo, max(n) hi FROM similarity "
                         "WHERE run_id = ? GROUP BY ALL ORDER BY ALL", analysis_id)
    got = {(r["measure"], r["a_model"], r["b_model"]): r["c"] for r in counts}
    within = {"cka": (25, 9), "cosine": (25, 9), "angular": (10, 3), "block_influence": (4, 2)}  # 5 and 3 states
    expected = {(m, "teacher", "teacher"): t for m, (t, _) in within.items()}
    expected |= {(m, "student", "student"): s for m, (_, s) in within.items()}
    expected |= {(m, "teacher", "student"): 15 for m in ("cka", "cosine", "angular")}  # teacher is a_model
    assert got == expected
    assert {(r["lo"], r["hi"]) for r in counts} == {(40, 40)}
    diag = rows(paths, "SELECT a_model, a_layer, value FROM similarity WHERE run_id = ? AND measure = 'cka' "
                       "AND a_model = b_model AND a_layer = b_layer ORDER BY ALL", analysis_id)
    # layer 0 at the last position is the prompt's last token for every user: no variance, CKA undefined
    assert [r["value"] for r in diag if r["a_layer"] == 0] == [None, None]
    assert all(r["value"] == pytest.approx(1.0, abs=1e-9) for r in diag if r["a_layer"] > 0)
    angular = rows(paths, "SELECT min(value) lo, max(value) hi FROM similarity WHERE run_id = ? "
                          "AND measure = 'angular'", analysis_id)[0]
    assert 0 <= angular["lo"] <= angular["hi"] <= 1
    models = rows(paths, "SELECT DISTINCT model, layer FROM metrics WHERE run_id = ? ORDER BY ALL", analysis_id)
    expected = [("student", 0), ("student", 1), ("student", 2), ("student-adapter", 1)]
    assert [(r["model"], r["layer"]) for r in models] == expected + [("teacher", layer) for layer in range(5)]
    users = rows(paths, "SELECT count(DISTINCT user_id) u FROM ranks WHERE run_id = ?", analysis_id)[0]["u"]
    assert users == 40


def test_pretrained_analysis_of_the_base_llm(project):
    paths = Paths(project)
    spec = tiny("analysis", analysis={"users": 20, "seed": 3})
    (analysis_id,) = run_all(paths, spec)
    counts = rows(paths, "SELECT measure, count(*) c, min(n) lo, max(n) hi FROM similarity WHERE run_id = ? "
                         "AND a_model = 'base' AND b_model = 'base' GROUP BY ALL ORDER BY 1", analysis_id)
    # every layer of the tiny model (8), whatever backbone.depth says (4 in the tiny preset)
    assert {r["measure"]: (r["c"], r["lo"], r["hi"]) for r in counts} == {
        "angular": (36, 20, 20), "block_influence": (8, 20, 20), "cka": (81, 20, 20), "cosine": (81, 20, 20)}
    assert rows(paths, "SELECT count(*) c FROM metrics WHERE run_id = ?", analysis_id)[0]["c"] == 0
    # a fixed, seeded sample: the same settings give the same values
    again = planning.submit(paths, spec, reuse=False)[0]
    assert execution.execute(paths, again)["status"] == "done"
    sql = "SELECT measure, a_layer, b_layer, value FROM similarity WHERE run_id = ? ORDER BY ALL"
    assert rows(paths, sql, analysis_id) == rows(paths, sql, again)


def test_too_few_users_and_bad_runs_are_refused(project):
    paths = Paths(project)
    (run_id,) = planning.plan(paths, tiny("analysis", analysis={"users": 3}))
    state = execution.execute(paths, run_id)
    assert state["status"] == "failed" and "at least 4 users" in state["error"] and "got 3" in state["error"]
    missing = tiny("analysis", analysis={"run": "20260101-000000-000000-teacher-ffffff"})
    with pytest.raises(ConfigError, match="analysis.run: no run '20260101-000000-000000-teacher-ffffff'"):
        planning.plan(paths, missing)  # refused before it is queued
    run_id, _ = planning.submit(paths, missing)  # queued without the plan's check: the stage refuses it too
    state = execution.execute(paths, run_id)
    assert state["status"] == "failed" and "no run '20260101-000000-000000-teacher-ffffff'" in state["error"]


def test_block_influence_is_zero_for_a_layer_replaced_by_the_identity():
    class Identity(torch.nn.Module):
        """A decoder layer that changes nothing (its keys and values are never read here)."""

        def forward(self, x, *args, **kwargs):
            return x, None

    backbone = load_backbone(BackboneConfig(base="tiny", depth=4, training="frozen"), None, "cpu")
    texts = [f"What is the top item after {'x' * i}?" for i in range(6)]
    before = block_influence(text_states(backbone, texts, batch_size=4))
    backbone.layers[2] = Identity()  # decoder layer 3: state 2 -> state 3 unchanged
    after = block_influence(text_states(backbone, texts, batch_size=4))
    assert before[2] > 1e-3 and after[2] == pytest.approx(0.0, abs=1e-9)
    assert after[:2].tolist() == pytest.approx(before[:2].tolist(), abs=1e-6)  # padding changes nothing


def test_text_prompts_and_user_sample():
    class Prepared:
        item_titles = ["", "Toy Story (1995)", ""]
        item_ids = ["", "1", "i2"]
    texts = prompt_texts("Seen {items}?", [[0, 0, 1, 2], [0, 2, 2, 1]], Prepared())
    assert texts == ["Seen Toy Story (1995), item i2?", "Seen item i2, item i2, Toy Story (1995)?"]
    sample = sample_users(100, 10, seed=0)
    assert len(sample) == 10 and list(sample) == sorted(set(sample.tolist()))
    assert (sample == sample_users(100, 10, seed=0)).all() and not (sample == sample_users(100, 10, seed=1)).all()
    assert list(sample_users(5, 0, 0)) == list(range(5)) and list(sample_users(5, 9, 0)) == list(range(5))
    assert math.isfinite(float(block_influence([torch.ones(3, 2), torch.ones(3, 2)])[0]))
