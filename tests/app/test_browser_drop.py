"""Issue 20 in a real browser: drop a layer from a tiny teacher on the Layers page and watch the roads chart
gain the truncation road, healed and not, when the worker finishes the drop run.

Debian's chromium driven by Playwright, as tests/app/test_browser.py; `lab` (conftest.py) runs Streamlit and a worker
on a project with the toy dataset; the worker trains one tiny teacher first. Any error in the browser console
fails the test. The screenshot goes to test-output/browser/layers-drop.png.
"""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.app_server import CHROMIUM, SHOTS
from tests.app.test_browser import _open, _settle, browser_page

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make browser)")]


def _tiny_teacher(root: Path) -> str:
    """Queue a tiny teacher (and its SASRec run) for the lab's worker and wait until it is done; its run id."""
    from core.store import runs as run_store

    subprocess.run([sys.executable, "-m", "core.cli", "--root", str(root), "submit", "teacher", "--preset", "tiny",
                    "--dataset", "toy", "--device", "cpu"], cwd=REPO, check=True, capture_output=True)
    runs_root = root / "data" / "runs"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        [teacher] = [r for r in run_store.list_runs(runs_root) if r["kind"] == "teacher"]
        if teacher["status"] in run_store.FINISHED:
            assert teacher["status"] == "done", teacher
            return teacher["run_id"]
        time.sleep(1)
    raise TimeoutError("the tiny teacher did not finish in 5 minutes")


def _legend(page, name: str):
    """The roads chart's legend entry `name`."""
    chart = page.locator(".js-plotly-plot").filter(has_text="Roads to a small recommender")
    return chart.locator(".legendtext").filter(has_text=name)


def test_drop_a_layer_and_see_the_chart_update(lab):
    from core.store import runs as run_store

    root, url = lab
    teacher = _tiny_teacher(root)
    with browser_page(url) as page:
        _open(page, "Layers", "Drop layers: roads to a small recommender")
        _settle(page)
        _legend(page, "teacher (full depth)").wait_for(timeout=30_000)  # the teacher alone so far
        assert _legend(page, "truncation").count() == 0

        page.get_by_label("n: layers to drop", exact=True).fill("1")
        page.get_by_label("Heal steps (0: not healed)", exact=True).fill("2")
        page.get_by_role("button", name="Launch drop runs").click()
        page.get_by_text("Queued 1 run (0 reused, 1 new)").wait_for(timeout=30_000)

        # the worker runs it; the live section redraws the chart when it finishes, with no reload
        _legend(page, "truncation, healed (2 steps)").wait_for(timeout=300_000)
        _legend(page, "truncation").first.wait_for(timeout=30_000)
        _settle(page)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.locator('[data-testid="stMain"]').evaluate("m => m.scrollTo(0, m.scrollHeight)")
        page.wait_for_timeout(800)
        page.screenshot(path=str(SHOTS / "layers-drop.png"))
    [drop] = [r for r in run_store.list_runs(root / "data" / "runs") if r["kind"] == "drop"]
    spec = run_store.read_spec(root / "data" / "runs", drop["run_id"])["spec"]["drop"]
    assert (spec["run"], spec["rule"], spec["n"], spec["heal_steps"]) == (teacher, "last", 1, 2)
    assert drop["status"] == "done"
