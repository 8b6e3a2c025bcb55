"""Links and clone in a real browser: ?run= and ?runs= open Runs, Layers and Results on those runs,
a reload keeps the pick, the run's links lead to its views, and "Clone into Launch" fills the form.

Debian's chromium (`make browser`) driven by Playwright, against the real server on a synthetic
store with nothing running (bench/app_server.py). Screenshots go to test-output/browser/.
"""

from pathlib import Path

import pytest

from bench.app_server import CHROMIUM, CHROMIUM_ARGS, SHOTS, finished_store, serve

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make browser)")]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(runs frame, app url) of a finished synthetic store served by Streamlit."""
    root = tmp_path_factory.mktemp("links")
    finished_store(root, pipelines=3)  # seeds 0, 1, 2: the pages' defaults show the newest (seed 2)
    from core.store import runs as run_store

    runs = {r["run_id"]: r for r in run_store.list_runs(root / "data" / "runs")}
    with serve(root, log=root / "app.log") as (_, url):
        yield runs, url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    yield page
    page.close()
    assert not page.errors, page.errors


def _settle(page) -> None:
    page.wait_for_timeout(500)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=60_000)


def _picked(page, label: str, *wanted: str) -> str:
    """The text of the select box or multiselect labelled `label`, once it shows every `wanted` text
    (waits up to 30 s; '' if it never does)."""
    box = page.locator('[data-testid="stSelectbox"], [data-testid="stMultiSelect"]').filter(
        has=page.get_by_text(label, exact=True)).first
    for _ in range(60):
        if box.count():
            text = " ".join([box.inner_text(), *(i.input_value() for i in box.locator("input").all())])
            if all(w in text for w in wanted):
                return text
        page.wait_for_timeout(500)
    return ""


def _one(runs: dict, kind: str, seed: int) -> str:
    return next(r for r, v in runs.items() if v["kind"] == kind and v["spec"]["train"]["seed"] == seed)


def test_run_link_reload_and_views(site, page):
    runs, url = site
    student, analysis = _one(runs, "student", 0), _one(runs, "analysis", 0)
    page.goto(f"{url}/runs?run={student}")
    page.get_by_text("One run").wait_for(timeout=60_000)
    _settle(page)
    assert _picked(page, "Run", student[-6:])
    page.reload()
    page.get_by_text("One run").wait_for(timeout=60_000)
    _settle(page)
    assert _picked(page, "Run", student[-6:]) and f"run={student}" in page.url

    page.get_by_role("link", name="This run on Layers").click()
    page.get_by_text("Representation similarity").wait_for(timeout=60_000)
    _settle(page)
    assert "/layers" in page.url and _picked(page, "Analysis run", analysis[-6:])
    page.reload()
    page.get_by_text("Representation similarity").wait_for(timeout=60_000)
    _settle(page)
    assert _picked(page, "Analysis run", analysis[-6:])

    page.goto(f"{url}/runs?run={student}")
    page.get_by_text("One run").wait_for(timeout=60_000)
    _settle(page)
    page.get_by_role("link", name="This run on Results").click()
    page.get_by_text("Reproduction table").wait_for(timeout=60_000)
    _settle(page)
    assert "/results" in page.url and _picked(page, "Runs", student[-6:])
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "links-results.png"))


def test_runs_link_opens_results_on_several(site, page):
    runs, url = site
    linked = [_one(runs, "teacher", 0), _one(runs, "sasrec", 0)]
    page.goto(f"{url}/results?runs={','.join(linked)}")
    page.get_by_text("Reproduction table").wait_for(timeout=60_000)
    _settle(page)
    picked = _picked(page, "Runs", *(r[-6:] for r in linked))
    assert picked and _one(runs, "student", 2)[-6:] not in picked  # the links' runs, not the default pick
    assert all(r in page.url for r in linked)


def test_clone_into_launch(site, page):
    runs, url = site
    student = _one(runs, "student", 1)  # teacher 4, student 2, B 2, seed 1 (the form's defaults are 8, 4, 4, 0)
    page.goto(f"{url}/runs?run={student}")
    page.get_by_text("One run").wait_for(timeout=60_000)
    _settle(page)
    page.get_by_role("button", name="Clone into Launch").click()
    page.get_by_text(f"The form holds the settings of run {student}").wait_for(timeout=60_000)
    _settle(page)

    def slider(label: str) -> str:
        box = page.locator('[data-testid="stSlider"]').filter(has=page.get_by_text(label, exact=True))
        return box.get_by_test_id("stSliderThumbValue").inner_text()
    assert (slider("Teacher depth (layers kept)"), slider("Student layers")) == ("4", "2")
    assert page.locator('[data-testid="stNumberInput"]').filter(
        has=page.get_by_text("Seed", exact=True)).locator("input").input_value() == "1"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "links-clone.png"))
