"""Page render times of the Streamlit app on a large synthetic store; prints JSON, asserts nothing.

Builds 50 pipelines (200 finished runs, plus a running, a queued and a failed one) with about a
million metric rows in a temporary project folder (bench/fixture_store.py), then renders every page
with Streamlit's AppTest and reports seconds: `cold_s` with a fresh results handle (the first page
view after the app starts), `warm_s` (best of --repeats views with nothing changed), and
`heartbeat_s` just after a running run's state.json changed (as every few seconds during training:
the views are rebuilt, memoised metric queries stay valid). Besides the six pages as first opened,
it times links: the Runs page on a finished student (its loss chart, notes, command) and Results
on two teachers (?runs=). `under_limit` says whether every warm view took under LIMIT_S.
Run: python -m bench.app_pages [--pipelines N] [--valid-steps N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = ("tour", "data", "launch", "runs", "layers", "results")
LIMIT_S = 1.5  # the acceptance aim for a warm view


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pipelines", type=int, default=50)
    parser.add_argument("--valid-steps", type=int, default=420)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from bench.fixture_store import build_store
    from core.store.query import query

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        build_store(Path(tmp), pipelines=args.pipelines, valid_steps=args.valid_steps)
        built_s = time.perf_counter() - start
        counts = query(Path(tmp) / "data", "SELECT (SELECT count(*) FROM runs) AS runs, "
                                           "(SELECT count(*) FROM metrics) AS metric_rows, "
                                           "(SELECT count(*) FROM ranks) AS rank_rows")[0]
        os.environ["SLMREC_ROOT"] = tmp
        import streamlit as st
        from streamlit.testing.v1 import AppTest

        from core.store import runs as run_store

        app = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120)
        app.run()
        running = query(Path(tmp) / "data", "SELECT run_id FROM runs WHERE status = 'running'")[0]["run_id"]
        done = {kind: [r["run_id"] for r in query(Path(tmp) / "data", "SELECT run_id FROM runs WHERE kind = ? AND "
                                                  "status = 'done' ORDER BY created_at", [kind])]
                for kind in ("teacher", "student")}
        views = {page: (page, {}) for page in PAGES}
        views["runs?run=student"] = ("runs", {"run": done["student"][0]})
        views["results?runs=2 teachers"] = ("results", {"runs": ",".join(done["teacher"][:2])})

        def view(name: str) -> float:
            page, params = views[name]
            app.query_params.clear()
            app.query_params.update(params)
            begin = time.perf_counter()
            app.switch_page(f"app/pages/{page}.py").run()
            if app.exception:
                raise SystemExit(f"{page}: {app.exception[0].value}")
            return round(time.perf_counter() - begin, 3)

        timings: dict[str, dict] = {}
        for page in views:
            st.cache_resource.clear()
            cold = view(page)
            warm = [view(page) for _ in range(args.repeats)]
            run_store.update_state(Path(tmp) / "data" / "runs", running, heartbeat_at=run_store.now_iso())
            time.sleep(1.1)  # past the refresh interval
            heartbeat = view(page)
            timings[page] = {"cold_s": cold, "warm_s": min(warm), "heartbeat_s": heartbeat}
        under = all(t["warm_s"] < LIMIT_S for t in timings.values())
        print(json.dumps({"store": {**counts, "build_s": round(built_s, 1)}, "pages": timings, "limit_warm_s": LIMIT_S,
                          "under_limit": under}, indent=1))


if __name__ == "__main__":
    main()
