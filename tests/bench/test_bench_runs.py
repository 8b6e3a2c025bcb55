"""The benchmarks run end to end at toy sizes (their numbers are not asserted: no timed tests)."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import llm, repeat


def test_llm_benchmark_produces_every_row(monkeypatch):
    monkeypatch.setattr(llm, "SMOLLM2_SHAPE", dict(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                                   num_key_value_heads=2, vocab_size=512,
                                                   max_position_embeddings=256))
    rows = llm.run(torch.device("cpu"), llm.Shape(batch=2, steps=1, n_items=40, items=5, prompt_tokens=6,
                                                  eval_batch=3), teacher_depth=4, student_depth=2, blocks=2)
    names = [r["bench"] for r in rows]
    assert names == ["teacher_train", "student_train", "distill_live_teacher", "distill_cached_teacher",
                     "teacher_inference", "student_inference", "ratios"]
    assert all(r.get("samples_per_s", 1) > 0 and r.get("users_per_s", 1) > 0 for r in rows)
    assert {(r["batch"], r["eval_batch"], r["repeats"]) for r in rows} == {(2, 3, 3)}
    for r in rows[:-1]:  # each a median within its range over the default 3 interleaved rounds
        key = "samples_per_s" if "samples_per_s" in r else "users_per_s"
        low, high = r[f"{key}_range"]
        assert 0 < low <= r[key] <= high
    by = {r["bench"]: r for r in rows}
    assert by["distill_cached_teacher"]["cache_seconds"] > 0
    assert all(r["first_call_s"] > 0 for r in rows[:-1])  # the warm-up call, compilation when compiled
    ratios = by["ratios"]
    assert ratios["train_student_over_teacher"] == pytest.approx(
        by["student_train"]["samples_per_s"] / by["teacher_train"]["samples_per_s"])
    low, high = ratios["inference_student_over_teacher_paired_range"]
    assert low <= ratios["inference_student_over_teacher_paired"] <= high


def test_interleaved_warms_up_once_then_alternates_teacher_and_student(capsys):
    calls = []

    def fake(name, values):
        values = iter(values)
        return lambda: calls.append(name) or next(values)

    measured = repeat.interleaved({"teacher": fake("teacher", [99.0, 4.0, 1.0, 3.0]),
                                   "student": fake("student", [1.0, 40.0, 20.0, 9.0])}, repeats=3)
    assert calls == ["teacher", "student"] * 4  # one warm-up round (dropped), then three
    assert measured.values == {"teacher": [4.0, 1.0, 3.0], "student": [40.0, 20.0, 9.0]}
    assert set(measured.first_call_s) == {"teacher", "student"} and min(measured.first_call_s.values()) >= 0
    warm_ups = capsys.readouterr().err.splitlines()  # as each ends, so a run cut short shows how far it got
    assert [line.split(":")[0] for line in warm_ups] == ["warm-up teacher", "warm-up student"]
    assert repeat.summary(measured.values["teacher"], "rate") == {"rate": 3.0, "rate_range": [1.0, 4.0], "repeats": 3}
    ratios = repeat.ratio(measured.values["student"], measured.values["teacher"], "speed_up")
    assert ratios["speed_up"] == pytest.approx(20.0 / 3.0)  # the ratio of the medians
    assert ratios["speed_up_paired"] == pytest.approx(10.0)  # per round: 10, 20, 3
    assert ratios["speed_up_paired_range"] == pytest.approx([3.0, 20.0])
    with pytest.raises(ValueError, match="repeats"):
        repeat.interleaved({"teacher": lambda: 1.0}, repeats=0)


def _bench_subparser():
    from core.cli.parser import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["bench"]


def test_slmrec_bench_accepts_exactly_the_options_of_bench_run():
    from bench import run

    own = run.add_arguments(argparse.ArgumentParser())
    options = [a for a in own._actions if a.option_strings and a.dest != "help"]
    assert {"--only", "--compile", "--eval-batch", "--repeats"} <= {a.option_strings[0] for a in options}
    assert set(_bench_subparser()._option_string_actions) == set(own._option_string_actions)
    from core.cli.parser import build_parser

    for action in options:
        for value in action.choices or ["2"]:
            argv = [action.option_strings[0], value]
            expected = vars(own.parse_args(argv))
            parsed = vars(build_parser().parse_args(["bench", *argv]))
            assert {k: parsed[k] for k in expected} == expected, argv
    assert build_parser().parse_args(["bench", "--only", "host"]).only == "host"
    assert build_parser().parse_args(["bench", "--only", "pipeline"]).only == "pipeline"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--repeats", "0"])


def test_slmrec_bench_help_lists_every_option_without_importing_torch():
    root = Path(__file__).resolve().parents[2]
    code = "from core.cli import main; main(['bench', '--only', 'host', '--help'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stderr
    for option in ("--device", "--only", "--batch", "--eval-batch", "--compile", "--repeats", "median"):
        assert option in out.stdout
    check = "import sys; from core.cli.parser import build_parser; build_parser(); assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", check], cwd=root).returncode == 0


def test_slmrec_bench_runs_what_it_parsed_and_names_the_machine(monkeypatch, capsys):
    from bench import host
    from core.cli import main

    seen = {}

    def fake_run(repeats):
        seen["repeats"] = repeats
        return [{"bench": "fake"}]

    monkeypatch.setattr(host, "run", fake_run)
    assert main(["bench", "--device", "cpu", "--only", "host", "--repeats", "5"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert seen == {"repeats": 5} and [r["bench"] for r in rows] == ["environment", "fake"]
    env = rows[0]
    assert env["device"] == "cpu" and env["cores"] >= 1 and env["cpu"] and env["repeats"] == 5


def test_pipeline_benchmark_plans_the_cpu_quick_chain(tmp_path):
    from bench.pipeline import linked_project, pipeline_specs

    chain = pipeline_specs(tmp_path, "cpu")
    teacher, student, analysis = chain.teacher, chain.student, chain.analysis
    assert (teacher.backbone.depth, student.backbone.depth, student.distill.blocks) == (8, 4, 4)
    assert teacher.backbone.base == "smollm2" and teacher.data.dataset == "ml-100k" and analysis.kind == "analysis"
    with pytest.raises(SystemExit, match="run `slmrec fetch`"):
        linked_project(tmp_path / "no-assets", tmp_path / "project")


def test_profile_step_times_every_variant_and_lists_kernels(monkeypatch, capsys):
    from bench import profile_step

    monkeypatch.setattr(llm, "SMOLLM2_SHAPE", dict(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                                   num_key_value_heads=2, vocab_size=512,
                                                   max_position_embeddings=256))
    monkeypatch.setattr("sys.argv", ["profile_step", "--device", "cpu", "--batch", "2", "--depth", "2"])
    profile_step.main()
    out = capsys.readouterr().out
    for variant in ("lora", "full", "frozen", "lora_nomask"):
        assert f'"variant": "{variant}"' in out
    assert "aten::" in out  # the kernel table


def test_host_benchmark_counts_operators_per_step(monkeypatch):
    from bench import host

    with host._OperatorCount() as ops:
        torch.ones(3).add(1).sum()
        torch.ones(2, 3).t()  # a view: dispatched, computes nothing
    assert ops.count == 5 and ops.computing == 4
    monkeypatch.setattr(host, "SHAPE", llm.Shape(batch=2, steps=1))
    rows = {r["bench"]: r for r in host.run(teacher_depth=3, student_depth=1, repeats=2)}
    assert list(rows) == ["host_teacher_train", "host_student_train", "host_teacher_inference",
                          "host_student_inference"]
    train, infer = rows["host_teacher_train"], rows["host_teacher_inference"]
    assert train["ops_per_step"] > rows["host_student_train"]["ops_per_step"] > infer["ops_per_batch"]
    assert infer["ops_per_batch"] > rows["host_student_inference"]["ops_per_batch"] > 0
    assert 0 < train["computing_ops_per_step"] < train["ops_per_step"]
    # two norms per layer and the final one, as many in a step as in a batch; each is one operator
    # each way when fused, so the fused count is lower by the decomposition's length less two
    assert train["rms_norm_calls_per_step"] == infer["rms_norm_calls_per_batch"] == 2 * 3 + 1
    assert train["ops_with_fused_rms_norm_per_step"] == (train["ops_per_step"] - train["ops_in_cpu_rms_norm_per_step"]
                                                         + 2 * train["rms_norm_calls_per_step"])
    assert 0 < infer["ops_in_cpu_rms_norm_per_batch"] < train["ops_in_cpu_rms_norm_per_step"]
    assert 0 < train["attention_ms_per_step"] < train["ms_per_step"]
    assert train["max_per_s_at_256_less_attention"] == pytest.approx(
        256e3 / (train["ms_per_step"] - train["attention_ms_per_step"]))
    assert train["max_per_s_at_256"] == pytest.approx(256e3 / train["ms_per_step"])  # of the median
    low, high = infer["ms_per_batch_range"]
    assert low <= infer["ms_per_batch"] <= high and infer["repeats"] == train["repeats"] == 2


def _norm_then_scaled(x: torch.Tensor, norm: bool) -> None:
    y = x * 2
    if norm:
        y = torch.nn.functional.rms_norm(y, (y.shape[-1],), None, 1e-5)
    (y * 3).sum().backward()


def test_host_benchmark_attributes_the_operators_of_rms_norm_forward_and_backward():
    from bench import host

    x = torch.randn(4, 18, dtype=torch.bfloat16, requires_grad=True)
    with host._Counts() as with_norm:
        _norm_then_scaled(x, norm=True)
    with host._Counts() as without:
        _norm_then_scaled(x, norm=False)
    ops = with_norm.ops
    # what is not the norm's is exactly the same computation without it: the forward and the backward
    # operators of its decomposition are all attributed, and nothing around it is
    assert with_norm.norms.calls == 1 and without.norms.calls == 0 and without.ops.in_rms_norm == 0
    assert ops.count - ops.in_rms_norm == without.ops.count
    assert ops.in_rms_norm > 10  # on a CPU: upcast, pow, mean, rsqrt, ... and their backward


def test_pipeline_benchmark_reports_the_test_metrics_of_llm_stages():
    from bench.pipeline import test_metrics

    teacher = {"result": {"metrics": {"teacher": {"full/NDCG@10": 0.070378, "full/HR@10": 0.139979, "sampled/HR@10": 0.2}}}}
    assert test_metrics(teacher) == {"test_ndcg10": 0.0704, "test_hr10": 0.14}
    sasrec = {"result": {"metrics": {"popularity": {"full/NDCG@10": 0.04, "full/HR@10": 0.08},
                                     "sasrec": {"full/NDCG@10": 0.05, "full/HR@10": 0.1}}}}
    assert test_metrics(sasrec) == {"test_ndcg10": 0.05, "test_hr10": 0.1}  # the model, not its baseline
    assert test_metrics({"result": {"metrics": {}}}) == {} and test_metrics({"status": "failed"}) == {}
