"""The depth sweep expands into one teacher run per depth over a shared SASRec item table."""

import json

from core.cli import main
from core.store.query import query
from core.store.paths import Paths


def test_sweep_trains_one_model_per_depth(project, capsys):
    code = main(["--root", str(project), "run", "sweep", "--preset", "tiny", "--dataset", "toy", "--kcore", "0",
                 "--depths", "1,2,4", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and len(out["run_ids"]) == 4
    rows = query(Paths(project).data_root, """
        SELECT CAST(json_extract(r.spec, '$.backbone.depth') AS INT) AS depth, count(DISTINCT r.run_id) AS runs,
               count(DISTINCT json_extract_string(r.spec, '$.sasrec_run')) AS tables
        FROM runs r JOIN metrics m USING (run_id)
        WHERE r.kind = 'teacher' AND m.split = 'test' AND m.metric = 'NDCG@10' GROUP BY 1 ORDER BY 1""")
    assert [(r["depth"], r["runs"], r["tables"]) for r in rows] == [(1, 1, 1), (2, 1, 1), (4, 1, 1)]
