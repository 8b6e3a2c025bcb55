"""Issue 20 in a real browser: drop a layer from a tiny teacher on the Layers page and watch the roads chart
gain the truncation road, healed and not, when the worker finishes the drop run.

Debian's chromium driven by Playwright, as tests/app/test_browser.py. The project holds the toy dataset and
one tiny teacher trained by the CLI beforehand; Streamlit and a worker run on it as child processes. Any
error in the browser console fails the test. The screenshot goes to test-output/browser/layers-drop.png.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.app_server import CHROMIUM, CHROMIUM_ARGS, SHOTS, serve, stop

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make browser)")]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(project root, app url, teacher run id): a finished tiny teacher, Streamlit and a worker."""
    from bench.fixture_store import write_toy_csv
    from core.store import runs as run_store

    root = tmp_path_factory.mktemp("droplab")
    write_toy_csv(root)
    env = {**os.environ, "SLMREC_ROOT": str(root), "PYTHONUNBUFFERED": "1"}
    subprocess.run([sys.executable, "-m", "core.cli", "--root", str(root), "run", "teacher", "--preset", "tiny",
                    "--dataset", "toy", "--device", "cpu"], cwd=REPO, env=env, check=True, capture_output=True)
    [teacher] = [r["run_id"] for r in run_store.list_runs(root / "data" / "runs") if r["kind"] == "teacher"]
    logs = root / "logs"
    logs.mkdir()
    worker = subprocess.Popen([sys.executable, "-m", "core.cli", "--root", str(root), "worker", "--device", "cpu"],
                              cwd=REPO, env=env, stdout=open(logs / "worker.log", "w"), stderr=subprocess.STDOUT)
    try:
        with serve(root, log=logs / "app.log") as (_, url):
            yield root, url, teacher
    finally:
        stop(worker)


def _settle(page) -> None:
    """Wait until the script run is over (the 'Running...' status widget is gone)."""
    page.wait_for_timeout(500)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=60_000)


def _legend(page, name: str):
    """The roads chart's legend entry `name`."""
    chart = page.locator(".js-plotly-plot").filter(has_text="Roads to a small recommender")
    return chart.locator(".legendtext").filter(has_text=name)


def test_drop_a_layer_and_see_the_chart_update(lab):
    from playwright.sync_api import sync_playwright

    from core.store import runs as run_store

    root, url, teacher = lab
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        try:
            page.goto(url)
            page.get_by_text("[1] The question").wait_for(timeout=60_000)
            page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Layers", exact=True).click()
            page.get_by_text("Drop layers: roads to a small recommender").wait_for(timeout=60_000)
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
            page.screenshot(path=str(SHOTS / "layers-drop.png"), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
    [drop] = [r for r in run_store.list_runs(root / "data" / "runs") if r["kind"] == "drop"]
    spec = run_store.read_spec(root / "data" / "runs", drop["run_id"])["spec"]["drop"]
    assert (spec["run"], spec["rule"], spec["n"], spec["heal_steps"]) == (teacher, "last", 1, 2)
    assert drop["status"] == "done"
