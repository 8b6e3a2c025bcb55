"""The drop stage end to end on the tiny LLaMA: exact metrics with nothing dropped, equality with a model
built from the remaining layers, the rules' analysis parent on the valid split, healing, the CLI."""

import json

import pytest
import torch

from core.jobs import execution, planning, scheduler
from core.cli import main
from core.data.prepare import prepare
from core.eval.records import metric_rows
from core.models.backbone import decoder_from_model
from core.models.drop import drop_layers
from core.models.tiny import build_tiny_llama, tiny_tokenizer
from core.stages.context import RunContext
from core.stages.llm import evaluate, load_finished_model
from core.store import checkpoints, runs as run_store
from core.store.paths import Paths
from core.store.query import query
from tests.core.stages.test_analysis_stage import run_all, tiny  # the toy data with a short prompt


def metrics(paths, run_id, model, split="test"):
    return {(r["protocol"], r["metric"]): r["value"] for r in query(
        paths.data_root, "SELECT protocol, metric, value FROM metrics WHERE run_id = ? AND model = ? AND split = ? "
                         "AND layer IS NULL", [run_id, model, split])}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny teacher of 4 layers."""
    from tests.conftest import write_toy_dataset

    root = tmp_path_factory.mktemp("drop")
    write_toy_dataset(root)
    paths = Paths(root)
    return paths, run_all(paths, tiny("teacher"))[-1]


def test_dropping_nothing_gives_the_stored_metrics_exactly(trained):
    paths, teacher_id = trained
    drop_id = run_all(paths, tiny("drop", drop={"run": teacher_id, "rule": "last", "n": 0}))[-1]
    own = metrics(paths, teacher_id, "teacher")
    assert len(own) == 16 and metrics(paths, drop_id, "drop") == own
    ranks = "SELECT user, rank FROM ranks WHERE run_id = ? AND model = ? AND split = 'test' ORDER BY ALL"
    assert query(paths.data_root, ranks, [drop_id, "drop"]) == query(paths.data_root, ranks, [teacher_id, "teacher"])
    result = run_store.read_state(paths.runs, drop_id)["result"]
    assert result["dropped"] == [] and result["kept"] == result["depth"] == 4 and result["source_kind"] == "teacher"


def _reference_model(paths, teacher_id, indices):
    """The finished teacher rebuilt over the base layers `indices` alone, each with its trained adapters."""
    ctx = RunContext("test", paths, torch.device("cpu"), events=None)
    spec, model = load_finished_model(ctx, teacher_id, tiny("teacher").train)
    trained_weights = {name: p.detach().clone() for name, p in model.backbone.named_parameters()}
    backbone = decoder_from_model(build_tiny_llama(), tiny_tokenizer(), "tiny", spec.backbone, "cpu", torch.float32,
                                  indices).eval()
    backbone.drop_vocabulary()  # as the recommender does once it has embedded its prompt
    renamed = {f"layers.{new}.": f"layers.{old}." for new, old in enumerate(indices)}
    with torch.no_grad():
        for name, param in backbone.named_parameters():
            source = next((name.replace(k, v, 1) for k, v in renamed.items() if name.startswith(k)), name)
            param.copy_(trained_weights[source])
    model.backbone = backbone
    return spec, model


def test_a_dropped_model_equals_the_model_of_its_remaining_layers(trained):
    paths, teacher_id = trained
    drop_id = run_all(paths, tiny("drop", drop={"run": teacher_id, "rule": "list", "layers": [3, 2]}))[-1]
    result = run_store.read_state(paths.runs, drop_id)["result"]
    assert result["dropped"] == [2, 3] and result["dropped_original"] == [1, 2] and result["kept"] == 2
    spec, reference = _reference_model(paths, teacher_id, [0, 3])
    ctx = RunContext("test", paths, torch.device("cpu"), events=None)
    _, dropped = load_finished_model(ctx, teacher_id, spec.train)
    drop_layers(dropped.backbone, [2, 3])
    items = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5], [0, 0, 0, 7, 9]])
    with torch.no_grad():
        for ours, theirs in zip(dropped.last_states(items, [0, 1, 2, 3]), reference.last_states(items, [0, 1, 2, 3])):
            torch.testing.assert_close(ours, theirs, atol=0, rtol=0)
        torch.testing.assert_close(dropped.scores(dropped.user_vectors(items)),
                                   reference.scores(reference.user_vectors(items)), atol=0, rtol=0)
    prepared = prepare(spec.data, paths.data_root)
    with torch.no_grad():
        expected = evaluate(reference, spec, prepared, "test")
    rows = {(r["protocol"], r["metric"]): r["value"] for r in metric_rows("x", 0, "drop", None, expected)}
    assert metrics(paths, drop_id, "drop") == rows


def test_the_rules_read_an_analysis_of_the_valid_users(trained):
    paths, teacher_id = trained
    ids = run_all(paths, tiny("drop", drop={"run": teacher_id, "rule": "influence", "n": 2}))
    analysis_id, drop_id = ids
    analysis = run_store.read_spec(paths.runs, analysis_id)
    assert analysis["kind"] == "analysis" and analysis["spec"]["analysis"]["split"] == "valid"
    assert analysis["spec"]["analysis"]["run"] == teacher_id
    spec = run_store.read_spec(paths.runs, drop_id)
    assert spec["spec"]["drop"]["analysis_run"] == analysis_id and spec["parent_id"] == analysis_id
    assert set(scheduler.dependencies(spec)) == {analysis_id, teacher_id}
    influence = run_store.read_state(paths.runs, analysis_id)["result"]["block_influence"]["teacher"]
    lowest = sorted(sorted(range(1, 5), key=lambda layer: influence[layer - 1])[:2])
    assert run_store.read_state(paths.runs, drop_id)["result"]["dropped"] == lowest
    # the angular rule reuses the same analysis
    assert planning.plan(paths, tiny("drop", drop={"run": teacher_id, "rule": "angular", "n": 1}))[0] == analysis_id


def test_an_analysis_of_the_test_users_is_refused(trained):
    from core.config import ConfigError
    paths, teacher_id = trained
    on_test = run_all(paths, tiny("analysis", analysis={"run": teacher_id, "split": "test", "users": 0}))[-1]
    spec = tiny("drop", drop={"run": teacher_id, "rule": "angular", "n": 1, "analysis_run": on_test})
    message = f"drop.analysis_run: analysis run '{on_test}' measured the test users"
    with pytest.raises(ConfigError, match=message):
        planning.plan(paths, spec)
    drop_id, _ = planning.submit(paths, spec)  # queued without the plan's check: the stage refuses it too
    state = execution.execute(paths, drop_id)
    assert state["status"] == "failed" and message in state["error"]
    assert metrics(paths, drop_id, "drop") == {}


def test_healing_writes_healed_rows_and_changes_the_weights(trained):
    paths, teacher_id = trained
    drop_id = run_all(paths, tiny("drop", drop={"run": teacher_id, "rule": "last", "n": 1, "heal_steps": 3}))[-1]
    unhealed, healed = metrics(paths, drop_id, "drop"), metrics(paths, drop_id, "drop-healed")
    assert len(unhealed) == len(healed) == 16
    steps = query(paths.data_root, "SELECT DISTINCT model, step FROM metrics WHERE run_id = ? AND split = 'test' "
                                   "ORDER BY ALL", [drop_id])
    assert [(r["model"], r["step"]) for r in steps] == [("drop", 0), ("drop-healed", 3)]
    assert metrics(paths, drop_id, "drop-healed", split="valid")  # checkpoint selection as usual
    losses = query(paths.data_root, "SELECT max(step) s FROM losses WHERE run_id = ? AND name = 'ce'", [drop_id])
    assert losses[0]["s"] == 3
    healed_weights, manifest = checkpoints.load_checkpoint(paths.checkpoints / drop_id)
    source_weights, _ = checkpoints.load_checkpoint(paths.checkpoints / teacher_id)
    assert manifest["dropped"] == [4] and manifest["heal_steps"] == 3 and manifest["layer_indices"] == [0, 1, 2]
    assert set(healed_weights) == {k for k in source_weights if not k.startswith("backbone.layers.3.")}
    assert not torch.equal(healed_weights["score_head.weight"], source_weights["score_head.weight"])
    lora = [k for k in healed_weights if "lora_B" in k]
    assert lora and any(not torch.equal(healed_weights[k], source_weights[k]) for k in lora)


def test_a_student_can_be_dropped_from(trained):
    paths, teacher_id = trained
    student_id = run_all(paths, tiny("student", backbone={"depth": 2}, distill={"teacher_run": teacher_id}))[-1]
    drop_id = run_all(paths, tiny("drop", drop={"run": student_id, "rule": "last", "n": 1}))[-1]
    result = run_store.read_state(paths.runs, drop_id)["result"]
    assert result["source_kind"] == "student" and result["kept"] == 1 and result["depth"] == 2


def test_cli_sweep_plans_one_run_per_rule_and_n(trained, capsys):
    paths, teacher_id = trained
    args = ["--root", str(paths.root), "submit", "drop", "--preset", "tiny", "--dataset", "toy", "--run", teacher_id,
            "--rule", "all", "--n", "1-2,3", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    drops = [run_store.read_spec(paths.runs, r["run_id"])["spec"]["drop"] for r in summary["runs"]
             if r["kind"] == "drop"]
    assert sorted((d["rule"], d["n"]) for d in drops) == sorted(
        (rule, n) for rule in ("last", "influence", "angular") for n in (1, 2, 3))
    analyses = {r["run_id"] for r in summary["runs"] if r["kind"] == "analysis"}
    assert len(analyses) == 1 and {d["analysis_run"] for d in drops if d["rule"] != "last"} == analyses


def test_cli_runs_one_drop(trained, capsys):
    paths, teacher_id = trained
    args = ["--root", str(paths.root), "run", "drop", "--preset", "tiny", "--run", teacher_id, "--rule", "list",
            "--layers", "1", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "done" and summary["runs"][-1]["result"]["dropped"] == [1]


@pytest.mark.parametrize("extra, message", [
    (["--n", "4"], "drop.n: n=4 is not possible for run '{t}' with 4 layers"),
    (["--rule", "list", "--layers", "2,5"], r"drop.layers: layer(s) [5] out of range"),
    (["--rule", "list"], "drop.layers: rule 'list' needs the layers"),
    (["--rule", "influence", "--layers", "2"], "drop.layers: only rule 'list' takes layers"),
    (["--rule", "best"], "--rule: expected last, influence, angular, list"),
    (["--n", "two"], "--n: expected a whole number, got 'two'"),
    (["--heal-steps", "-1"], "drop.heal_steps: expected a whole number of steps >= 0"),
])
def test_cli_refuses_bad_settings_naming_the_field(trained, capsys, extra, message):
    paths, teacher_id = trained
    before = len(run_store.list_runs(paths.runs))
    assert main(["--root", str(paths.root), "submit", "drop", "--preset", "tiny", "--run", teacher_id, *extra]) == 2
    assert message.format(t=teacher_id) in capsys.readouterr().err
    assert len(run_store.list_runs(paths.runs)) == before  # nothing queued


@pytest.mark.parametrize("run, message", [
    ("../x", "drop.run: invalid run id '../x'"),
    ("no-such-run", "drop.run: no run 'no-such-run'"),
    ("SASREC", "is a sasrec run; layers are dropped from a teacher or student run"),
    (None, "--run: the drop stage needs"),
])
def test_cli_refuses_runs_that_cannot_be_dropped_from(trained, capsys, run, message):
    paths, teacher_id = trained
    if run == "SASREC":
        run = run_store.read_spec(paths.runs, teacher_id)["spec"]["sasrec_run"]
    flags = [] if run is None else ["--run", run]
    assert main(["--root", str(paths.root), "submit", "drop", "--preset", "tiny", *flags]) == 2
    assert message in capsys.readouterr().err


def test_drop_flags_belong_to_the_drop_stage(trained, capsys):
    paths, _ = trained
    assert main(["--root", str(paths.root), "submit", "teacher", "--preset", "tiny", "--heal-steps", "2"]) == 2
    assert "--heal-steps: applies to the drop stage only" in capsys.readouterr().err


def test_an_interrupted_healing_resumes_without_repeating_rows(trained, monkeypatch):
    paths, teacher_id = trained
    spec = tiny("drop", drop={"run": teacher_id, "rule": "last", "n": 2, "heal_steps": 6},
                train={"checkpoint_every": 2})
    drop_id = planning.plan(paths, spec)[-1]
    calls = {"n": 0}
    from core.stages import context

    def cancel_at_step_3(self):
        calls["n"] += 1
        return calls["n"] == 3
    monkeypatch.setattr(context.RunContext, "cancel_requested", cancel_at_step_3)
    assert execution.execute(paths, drop_id)["status"] == "cancelled"
    monkeypatch.undo()
    assert execution.execute(paths, drop_id)["status"] == "done"
    dupes = query(paths.data_root, "SELECT step, split, protocol, model, metric, count(*) n FROM metrics "
                                   "WHERE run_id = ? GROUP BY ALL HAVING n > 1", [drop_id])
    assert dupes == [] and len(metrics(paths, drop_id, "drop")) == len(metrics(paths, drop_id, "drop-healed")) == 16


def test_healing_a_run_trained_without_lora_is_refused_before_queueing(trained):
    from core.config import ConfigError
    paths, _ = trained
    full_id, _ = planning.submit(paths, tiny("teacher", backbone={"training": "full"}))  # queued, never run
    with pytest.raises(ConfigError, match=f"drop.heal_steps: healing fine-tunes LoRA adapters, but run '{full_id}'"):
        planning.plan(paths, tiny("drop", drop={"run": full_id, "rule": "last", "n": 1, "heal_steps": 5}))
    assert planning.plan(paths, tiny("drop", drop={"run": full_id, "rule": "last", "n": 1}))  # unhealed is fine


@pytest.mark.parametrize("drop, message", [
    ({"run": ""}, "drop.run: expected the id of a finished teacher or student run"),
    ({"run": "t", "rule": "random"}, "drop.rule: expected one of last, influence, angular, list"),
    ({"run": "t", "n": -1}, "drop.n: expected a whole number of layers >= 0"),
    ({"run": "t", "rule": "list", "layers": [0, 2]}, "drop.layers: expected 1-based layer numbers >= 1"),
    ({"run": "t", "rule": "list", "layers": [2, 2]}, "drop.layers: a layer is listed twice"),
    ({"run": "t", "heal_steps": 1.5}, "spec.drop.heal_steps: expected a whole number, got 1.5"),
])
def test_drop_settings_are_validated_by_field(drop, message):
    from core.config import ConfigError, from_dict
    with pytest.raises(ConfigError, match=message):
        from_dict({"kind": "drop", "drop": drop})


def test_the_drop_section_leaves_other_runs_hashes_alone():
    from dataclasses import replace

    from core.config import DropConfig, RunSpec, settings_hash
    teacher = RunSpec(kind="teacher")
    assert settings_hash(teacher) == settings_hash(replace(teacher, drop=DropConfig(run="x", n=3)))
    drop = RunSpec(kind="drop", drop=DropConfig(run="x"))
    assert settings_hash(drop) != settings_hash(replace(drop, drop=DropConfig(run="x", n=2)))
