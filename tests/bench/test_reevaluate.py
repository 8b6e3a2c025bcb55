"""bench.reevaluate: a finished run's saved weights give its stored test metrics again."""

import pytest

from bench.reevaluate import reevaluate
from core.jobs import execution, planning
from core.store.paths import Paths
from tests.conftest import toy_spec


def test_a_finished_teacher_reevaluates_to_its_stored_test_metrics(project, tmp_path):
    paths = Paths(project)
    ids = planning.plan(paths, toy_spec("teacher", train={"epochs": 1}))
    for run_id in ids:
        assert execution.execute(paths, run_id)["status"] == "done"
    result = reevaluate(paths, ids[-1], tmp_path / "scratch")
    assert result["role"] == "teacher" and len(result["metrics"]) == 16  # 8 metrics x 2 protocols
    for name, values in result["metrics"].items():
        assert values["now"] == pytest.approx(values["stored"], abs=1e-6), name
