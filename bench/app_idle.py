"""What an open page costs the Streamlit server while nothing runs; prints JSON, asserts nothing.

Writes a finished synthetic store (bench/app_server.py `finished_store`: nothing queued or running),
starts the real server as `slmrec app` does, opens each page in headless Chromium (Debian's,
`make browser`), lets it settle, then reads the server process's CPU time (user + system) over
--seconds. `core_fraction` is CPU seconds per wall second: 1.0 is one core busy. The aim is under
LIMIT (0.05) for every page; `under_limit` says whether each page met it.
Run: python -m bench.app_idle [--seconds 30] [--pages tour,runs,...] [--pipelines 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMIT = 0.05  # the acceptance aim: under 5% of a core
TITLES = {"tour": "Tour", "data": "Data", "launch": "Launch", "runs": "Runs", "layers": "Layers",
          "results": "Results"}


def cpu_seconds(process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def settle(page) -> None:
    """Until the script run is over (the 'Running...' status widget is gone)."""
    page.wait_for_timeout(1000)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=60_000)


def measure(page, server, name: str, seconds: float) -> dict:
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=TITLES[name], exact=True).click()
    settle(page)
    page.wait_for_timeout(3000)  # past the first render's follow-up work (charts, fragment registration)
    start_cpu, start = cpu_seconds(server), time.monotonic()
    page.wait_for_timeout(seconds * 1000)
    cpu, wall = cpu_seconds(server) - start_cpu, time.monotonic() - start
    return {"cpu_s": round(cpu, 3), "wall_s": round(wall, 1), "core_fraction": round(cpu / wall, 4)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--pages", default=",".join(TITLES), help=f"comma-separated, of {', '.join(TITLES)}")
    parser.add_argument("--pipelines", type=int, default=10)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    import psutil
    from playwright.sync_api import sync_playwright

    from bench.app_server import CHROMIUM, CHROMIUM_ARGS, finished_store, serve

    pages = [p.strip() for p in args.pages.split(",") if p.strip()]
    unknown = sorted(set(pages) - set(TITLES))
    if unknown:
        raise SystemExit(f"--pages: unknown page(s) {', '.join(unknown)}; expected some of {', '.join(TITLES)}")
    with tempfile.TemporaryDirectory() as tmp:
        finished_store(Path(tmp), args.pipelines)
        with serve(Path(tmp)) as (process, url), sync_playwright() as p:
            server = psutil.Process(process.pid)
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            settle(page)
            results = {name: measure(page, server, name, args.seconds) for name in pages}
            browser.close()
    under = all(r["core_fraction"] < LIMIT for r in results.values())
    print(json.dumps({"seconds": args.seconds, "limit_core_fraction": LIMIT, "under_limit": under, "pages": results},
                     indent=1))


if __name__ == "__main__":
    main()
