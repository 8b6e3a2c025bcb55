"""One builder makes a pipeline's specs: the CLI's `submit pipeline`, the app's Launch form and
`slmrec reproduce` give the same settings the same specs, and each link only its own settings."""

import pytest

from app import launch
from core.cli.parser import build_parser
from core.cli.run import pipeline_from_args
from core.config import ConfigError, settings_hash
from core.jobs.specs import pipeline_specs


def hashes(chain) -> tuple[str, str, str]:
    return settings_hash(chain.teacher), settings_hash(chain.student), settings_hash(chain.analysis)


def test_the_cli_and_the_launch_form_build_the_same_specs():
    args = build_parser().parse_args(["submit", "pipeline", "--preset", "cpu-quick", "--teacher-depth", "8",
                                      "--student-layers", "4", "--dataset", "ml-100k", "--lr", "0.002",
                                      "--epochs", "3", "--batch-size", "32", "--max-len", "20"])
    form = launch.defaults("cpu-quick", "ml-100k")
    assert hashes(pipeline_from_args(args)) == hashes(launch.build_plan(form))


def test_each_link_gets_the_shared_settings_and_only_its_own():
    chain = pipeline_specs("tiny", {"data": {"dataset": "toy"}, "train": {"seed": 3, "nproc_per_node": 2}}, 4, 2,
                           teacher={"train": {"epochs": 5}}, student={"distill": {"lambda_sup": 0.0}},
                           analysis={"analysis": {"users": 7}})
    assert (chain.teacher.backbone.depth, chain.student.backbone.depth) == (4, 2)
    assert chain.teacher.train.epochs == 5 and chain.student.train.epochs != 5
    assert chain.teacher.train.seed == chain.student.train.seed == chain.analysis.train.seed == 3
    assert chain.student.distill.lambda_sup == 0.0 and chain.teacher.distill.lambda_sup == 1.0
    assert chain.analysis.analysis.users == 7 and chain.analysis.train.nproc_per_node == 1
    linked = chain.linked("S", "T", "U")
    assert (linked.student.sasrec_run, linked.student.distill.teacher_run) == ("S", "T")
    assert (linked.analysis.analysis.run, linked.analysis.analysis.against) == ("U", "T")


def test_a_link_cannot_take_another_links_section_and_blocks_must_divide():
    with pytest.raises(ConfigError, match="teacher: the distill settings belong to the student"):
        pipeline_specs("tiny", {}, 4, 2, teacher={"distill": {"blocks": 2}})
    with pytest.raises(ConfigError, match="B=2 must divide both the teacher depth 4 and the student depth 3"):
        pipeline_specs("tiny", {}, 4, 3, student={"distill": {"blocks": 2}})


def test_the_launch_form_carries_history_masking_to_every_link():
    form = launch.defaults("tiny (seconds, random model)", "toy")
    masked = launch.build_plan(form)
    plain = launch.build_plan(launch.LaunchSettings(**{**form.__dict__, "mask_history": False}))
    assert masked.teacher.rec.mask_history and masked.student.rec.mask_history
    assert not plain.teacher.rec.mask_history and not plain.student.rec.mask_history
    assert not plain.analysis.rec.mask_history
    assert hashes(masked) != hashes(plain)
