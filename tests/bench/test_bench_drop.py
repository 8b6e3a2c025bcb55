"""bench/drop.py times the drop of one setting from the cpu-quick 8-layer SmolLM2 teacher."""

from bench.drop import teacher_spec
from bench.run import GROUPS, add_arguments


def test_the_drop_benchmark_uses_the_8_layer_smollm2_teacher_and_is_a_group():
    spec = teacher_spec("cpu")
    assert (spec.backbone.base, spec.backbone.depth, spec.train.max_steps, spec.data.dataset) == \
        ("smollm2", 8, 1, "ml-100k")
    import argparse
    assert "drop" in GROUPS and add_arguments(argparse.ArgumentParser()).parse_args(["--only", "drop"]).only == "drop"
