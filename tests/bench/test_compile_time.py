"""The compile-time benchmark runs end to end (traced without kernels: its numbers are not asserted)."""

import json

import pytest

from bench import compile_time

TINY = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2, vocab_size=512,
            max_position_embeddings=256)


def test_measure_times_the_first_and_a_later_step_and_batch_of_a_compiled_stack():
    row = compile_time.measure(3, "cpu", batch=2, backend="aot_eager", dims=TINY)
    assert (row["depth"], row["device"], row["backend"], row["batch"]) == (3, "cpu", "aot_eager", 2)
    for what, unit in (("train", "step"), ("inference", "batch")):
        first, later = row[f"{what}_first_{unit}_s"], row[f"{what}_{unit}_s"]
        assert first > 0 and later > 0
        assert row[f"{what}_compile_s"] == pytest.approx(first - later)


def test_run_measures_each_role_in_a_process_of_its_own_and_slmrec_bench_runs_it(monkeypatch, capsys):
    rows = compile_time.run("cpu", backend="aot_eager", depths={"student": 2})
    assert [(r["role"], r["depth"], r["backend"]) for r in rows] == [("student", 2, "aot_eager")]
    assert rows[0]["train_first_step_s"] > 0 and rows[0]["inference_first_batch_s"] > 0

    seen = []
    monkeypatch.setattr(compile_time, "run", lambda *args: seen.append(args) or [{"bench": "compile_time"}])
    from core.cli import main

    assert main(["bench", "--device", "cpu", "--only", "compile", "--compile", "graphs"]) == 0
    assert seen == [("cpu", "reduce-overhead", None)]
    assert [json.loads(line)["bench"] for line in capsys.readouterr().out.splitlines()] == ["environment",
                                                                                             "compile_time"]
