"""The app in a real browser: launch the tiny pipeline, watch it finish, look at Layers and Results.

Debian's chromium (`make browser` installs it) driven by Playwright. A temporary project holds the
toy dataset; Streamlit and a worker (`python -m core.cli worker`) run as child processes on it
(the `lab` fixture of conftest.py, shared with test_browser_drop.py).
Screenshots of every page go to test-output/browser/ (git-ignored). Any error in the browser
console fails the test.
"""

from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.app_server import CHROMIUM, CHROMIUM_ARGS, SHOTS

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make browser)")]


@contextmanager
def browser_page(url: str):
    """A page at 1400 x 1000 on the app's first page (the Tour); fails on any browser error."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        try:
            page.goto(url)
            page.get_by_text("[1] The question").wait_for(timeout=60_000)
            yield page
        finally:
            browser.close()
    assert not errors, errors


@contextmanager
def _browser_on_launch(url: str):
    """browser_page on the Launch page with the tiny preset picked."""
    with browser_page(url) as page:
        _open(page, "Launch", "Launch a pipeline")
        page.get_by_role("radio", name="tiny (seconds, random model)").click()
        page.get_by_text("(2, 1), (4, 2)").wait_for(timeout=30_000)  # teacher 4, student 2, B = 2
        _settle(page)  # the form below is re-filled with the preset's values by the same script run
        yield page


def _open(page, name: str, text: str, timeout_ms: int = 60_000) -> None:
    """Go to a page through the sidebar (as a user does; a deep link makes Streamlit probe paths that 404)."""
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=name, exact=True).click()
    page.get_by_text(text, exact=False).first.wait_for(timeout=timeout_ms)


def _settle(page) -> None:
    """Wait until the script run is over (the 'Running...' status widget is gone)."""
    page.wait_for_timeout(500)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=60_000)


def _shot(page, name: str) -> None:
    """The whole page: Streamlit scrolls inside its main element, so grow the viewport to fit it first."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("""() => {
        document.querySelector('[data-testid="stMain"]').scrollTo(0, 0);
        const block = document.querySelector('[data-testid="stMainBlockContainer"]');
        return block.getBoundingClientRect().top + block.scrollHeight;
    }""")
    page.set_viewport_size({"width": 1400, "height": min(int(height) + 40, 12_000)})
    page.wait_for_timeout(800)  # plotly charts re-lay out to the new size
    page.screenshot(path=str(SHOTS / f"{name}.png"))
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_launch_watch_and_inspect(lab):
    from core.store import runs as run_store

    root, url = lab
    with _browser_on_launch(url) as page:
        page.get_by_role("button", name="Launch pipeline").click()
        page.get_by_text("Queued 4 runs (0 reused, 4 new)").wait_for(timeout=30_000)
        _settle(page)
        _shot(page, "launch")

        _open(page, "Runs", "One run")
        page.get_by_text("done 4").wait_for(timeout=420_000)  # the live table refreshes by itself
        _settle(page)
        _shot(page, "runs")

        _open(page, "Layers", "Representation similarity")
        page.get_by_text("CKA: teacher × student").first.wait_for(timeout=60_000)
        page.locator(".js-plotly-plot .heatmaplayer").first.wait_for(timeout=30_000)
        _settle(page)
        _shot(page, "layers")

        _open(page, "Results", "Reproduction table")
        page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=30_000)
        _settle(page)
        _shot(page, "results")

        _open(page, "Data", "Sample sequences")
        _settle(page)
        _shot(page, "data")

        _open(page, "Tour", "[1] The question")
        page.get_by_text("CKA teacher × student").first.wait_for(timeout=60_000)  # cell 4 found the launched runs
        _settle(page)
        _shot(page, "tour")
    specs = {s["kind"]: s["spec"] for s in (run_store.read_spec(root / "data" / "runs", r["run_id"])
                                            for r in run_store.list_runs(root / "data" / "runs"))}
    assert specs["teacher"]["data"]["max_len"] == 10 and specs["teacher"]["backbone"]["depth"] == 4  # the tiny preset
    assert specs["student"]["backbone"]["depth"] == 2 and specs["student"]["distill"]["blocks"] == 2


def _slider(page, label: str, value: int) -> None:
    """Move a slider with the arrow keys, as a user can, until it shows `value`; wait for the rerun.

    Each key press may start a rerun that redraws the slider, so the value is read back after each.
    """
    slider = page.locator('[data-testid="stSlider"]').filter(has_text=label)
    for _ in range(20):
        shown = int(slider.locator('[data-testid="stSliderThumbValue"]').inner_text())
        if shown == value:
            _settle(page)
            return
        thumb = slider.get_by_role("slider")
        thumb.focus()
        thumb.press("ArrowRight" if shown < value else "ArrowLeft")
        page.wait_for_timeout(250)
        _settle(page)
    raise AssertionError(f"the {label} slider did not reach {value}")


def test_launch_form_warns_explains_b_and_counts_reuse(lab):
    """Issue 17, defects 1-3 as a user meets them on the Launch page, launching tiny runs of seed 7."""
    root, url = lab
    with _browser_on_launch(url) as page:
        # 3. the banner counts new and reused runs, and goes when the form changes
        seed = page.get_by_label("Seed")
        seed.fill("7")
        page.get_by_role("button", name="Launch pipeline").click()
        page.get_by_text("Queued 4 runs (0 reused, 4 new)").wait_for(timeout=30_000)
        _settle(page)
        _slider(page, "Student layers", 1)
        page.get_by_text("The settings changed since your last launch").wait_for(timeout=30_000)
        assert page.get_by_text("Queued 4 runs").count() == 0
        page.get_by_role("button", name="Launch pipeline").click()
        page.get_by_text("Queued 4 runs (2 reused, 2 new)").wait_for(timeout=30_000)
        _settle(page)
        _shot(page, "launch-reuse")

        # 1. a student deeper than its teacher: the warning and the cost, before launch
        _slider(page, "Student layers", 8)
        page.get_by_text("The student has 8 layers and its teacher 4").wait_for(timeout=30_000)
        page.locator('[data-testid="stCaptionContainer"]').filter(
            has_text="2.00× slower (deeper than its teacher)").wait_for(timeout=30_000)
        page.locator('[role="gridcell"]', has_text="2.00× slower (deeper than its teacher)").wait_for(
            state="attached", timeout=30_000)  # the cost table's student row (a canvas grid)
        _shot(page, "launch-deeper-student")

        # 2. B changed by the depths: said beside B, with the valid values
        _slider(page, "Teacher depth", 8)
        _slider(page, "Student layers", 4)
        page.locator('[data-testid="stSelectbox"]').filter(has_text="Blocks B").click()
        page.get_by_role("option", name="4", exact=True).click()
        _settle(page)
        _slider(page, "Student layers", 3)
        page.get_by_text("Blocks B changed from 4 to 1").wait_for(timeout=30_000)
        page.get_by_text("Valid B for teacher 8 and student 3 (divisors of both): 1").wait_for(timeout=30_000)
        _shot(page, "launch-blocks")
    from core.store import runs as run_store

    seeds = [run_store.read_spec(root / "data" / "runs", r["run_id"])["spec"]["train"]["seed"]
             for r in run_store.list_runs(root / "data" / "runs")]
    assert seeds.count(7) == 6  # sasrec, teacher, two students and two analyses
