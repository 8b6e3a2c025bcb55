"""The sasrec stage end to end on generated data: rows in the store agree with the ranks."""

import json

from core.jobs import execution, planning
from core.cli import main
from core.config import apply_preset
from core.store.paths import Paths
from core.store.query import query


def tiny_sasrec(**train):
    return apply_preset("tiny", {"data": {"dataset": "toy", "kcore": 0},
                                 "sasrec": {"epochs": 3}, "train": {"max_steps": 0, **train}}, "sasrec")


def test_sasrec_run_writes_metrics_equal_to_rank_aggregates(project):
    paths = Paths(project)
    (run_id,) = planning.plan(paths, tiny_sasrec())
    state = execution.execute(paths, run_id)
    assert state["status"] == "done", state.get("error")
    rows = query(paths.data_root, """
        WITH agg AS (SELECT split, protocol, model, avg(CASE WHEN rank < 10 THEN 1.0 ELSE 0 END) hr10,
                            avg(1.0 / (rank + 1)) mrr FROM ranks GROUP BY ALL)
        SELECT a.*, m1.value AS hr10_row, m2.value AS mrr_row FROM agg a
        JOIN metrics m1 USING (split, protocol, model) JOIN metrics m2 USING (split, protocol, model)
        WHERE m1.metric = 'HR@10' AND m2.metric = 'MRR' AND m1.step = m2.step""")
    models = {(r["model"], r["split"], r["protocol"]) for r in rows}
    assert ("sasrec", "test", "full") in models and ("popularity", "test", "sampled") in models
    for r in rows:
        if r["model"] == "popularity" or r["split"] == "test":
            assert abs(r["hr10"] - r["hr10_row"]) < 1e-12 and abs(r["mrr"] - r["mrr_row"]) < 1e-12
    assert (paths.checkpoints / run_id / "model.safetensors").exists()
    manifest = json.loads((paths.checkpoints / run_id / "manifest.json").read_text())
    assert manifest["environment"]["torch"] and manifest["seed"] == 0 and manifest["n_items"] == 30


def test_sasrec_learns_the_sequential_rule(project):
    paths = Paths(project)
    spec = apply_preset("tiny", {"data": {"dataset": "toy", "kcore": 0, "max_len": 8},
                                 "sasrec": {"epochs": 40, "lr": 5e-3, "batch_size": 32, "dropout": 0.1},
                                 "train": {"max_steps": 0, "log_every": 5}}, "sasrec")
    (run_id,) = planning.plan(paths, spec)
    assert execution.execute(paths, run_id)["status"] == "done"
    value = {r["model"]: r["value"] for r in query(paths.data_root, "SELECT model, value FROM metrics WHERE "
                                                   "split='test' AND protocol='full' AND metric='HR@5'")}
    assert value["sasrec"] > value["popularity"] + 0.2


def test_cli_run_and_query_json(project, capsys):
    code = main(["--root", str(project), "run", "sasrec", "--preset", "tiny", "--dataset", "toy", "--kcore", "0",
                 "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["status"] == "done" and out["run_ids"] == [out["run_id"]]
    assert "full/NDCG@10" in out["runs"][0]["result"]["metrics"]["sasrec"]
    main(["--root", str(project), "query", "SELECT DISTINCT model, protocol FROM metrics ORDER BY 1, 2", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"model": m, "protocol": p} for m in ("popularity", "sasrec") for p in ("full", "sampled")]
    # the same settings again reuse the finished run instead of training another
    main(["--root", str(project), "run", "sasrec", "--preset", "tiny", "--dataset", "toy", "--kcore", "0", "--json"])
    assert json.loads(capsys.readouterr().out)["run_id"] == out["run_id"]


def test_cli_errors_are_clear(project, capsys):
    assert main(["--root", str(project), "run", "sasrec", "--preset", "tiny", "--lr", "0"]) == 2
    assert "train.lr: expected > 0, got 0.0" in capsys.readouterr().err
    assert main(["--root", str(project), "query", "DROP TABLE metrics"]) == 1
    assert "only read queries are allowed" in capsys.readouterr().err
    assert main(["--root", str(project), "data", "stats", "nope"]) == 1
    assert "nope" in capsys.readouterr().err
