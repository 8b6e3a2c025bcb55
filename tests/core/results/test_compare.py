"""`slmrec compare`: paired statistics over stored ranks; refusal across datasets."""

import json

from core.jobs import execution, planning
from core.cli import main
from core.config import apply_preset
from core.store.paths import Paths
from core.store.query import query
from tests.conftest import write_toy_dataset


def sasrec_run(paths, dataset):
    spec = apply_preset("tiny", {"data": {"dataset": dataset, "kcore": 0}, "sasrec": {"epochs": 2},
                                 "train": {"max_steps": 0}}, "sasrec")
    (run_id,) = planning.plan(paths, spec)
    assert execution.execute(paths, run_id)["status"] == "done"
    return run_id


def test_compare_matches_the_stored_metrics_and_refuses_other_data(project, capsys):
    paths = Paths(project)
    write_toy_dataset(project, name="other", seed=5)
    run_id, other = sasrec_run(paths, "toy"), sasrec_run(paths, "other")
    assert main(["--root", str(project), "compare", run_id, f"{run_id}:popularity", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    stored = {r["model"]: r["value"] for r in query(
        paths.data_root, "SELECT model, value FROM metrics WHERE run_id = ? AND split='test' AND protocol='full' "
                         "AND metric='NDCG@10'", [run_id])}
    assert abs(out["a_value"] - stored["sasrec"]) < 1e-12 and abs(out["b_value"] - stored["popularity"]) < 1e-12
    assert out["low"] <= out["difference"] <= out["high"] and 0 < out["p_value"] <= 1 and out["n"] > 0
    assert main(["--root", str(project), "compare", run_id, other]) == 1
    assert "different data (dataset: 'toy' vs 'other')" in capsys.readouterr().err
