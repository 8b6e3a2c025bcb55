"""The benchmarks run end to end at toy sizes (their numbers are not asserted: no timed tests)."""

import pytest
import torch

from bench import llm


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
    assert {(r["batch"], r["eval_batch"]) for r in rows} == {(2, 3)}


def test_pipeline_benchmark_plans_the_cpu_quick_chain(tmp_path):
    from bench.pipeline import linked_project, pipeline_specs

    teacher, student, analysis = pipeline_specs(tmp_path, "cpu")
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
    assert ops.count == 3
    monkeypatch.setattr(host, "SHAPE", llm.Shape(batch=2, steps=1))
    rows = {r["bench"]: r for r in host.run(teacher_depth=3, student_depth=1)}
    assert list(rows) == ["host_teacher_train", "host_student_train", "host_teacher_inference",
                          "host_student_inference"]
    train, infer = rows["host_teacher_train"], rows["host_teacher_inference"]
    assert train["ops_per_step"] > rows["host_student_train"]["ops_per_step"] > infer["ops_per_batch"]
    assert infer["ops_per_batch"] > rows["host_student_inference"]["ops_per_batch"] > 0
    assert train["max_per_s_at_256"] == pytest.approx(256e3 / train["ms_per_step"])


def test_pipeline_benchmark_reports_the_test_metrics_of_llm_stages():
    from bench.pipeline import test_metrics

    teacher = {"result": {"metrics": {"teacher": {"full/NDCG@10": 0.070378, "full/HR@10": 0.139979, "sampled/HR@10": 0.2}}}}
    assert test_metrics(teacher) == {"test_ndcg10": 0.0704, "test_hr10": 0.14}
    sasrec = {"result": {"metrics": {"popularity": {"full/NDCG@10": 0.04, "full/HR@10": 0.08},
                                     "sasrec": {"full/NDCG@10": 0.05, "full/HR@10": 0.1}}}}
    assert test_metrics(sasrec) == {"test_ndcg10": 0.05, "test_hr10": 0.1}  # the model, not its baseline
    assert test_metrics({"result": {"metrics": {}}}) == {} and test_metrics({"status": "failed"}) == {}
