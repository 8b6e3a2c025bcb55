"""The real Streamlit server on a localhost port, for the idle benchmark and the browser tests.

`serve(root)` starts `streamlit run streamlit_app.py` with the options `slmrec app` passes (headless,
no usage statistics) on a free port, with SLMREC_ROOT pointing at `root`, waits until its health
endpoint answers, yields (process, url), and stops it on exit. `finished_store(root, pipelines)`
writes the synthetic store of bench/fixture_store.py with nothing queued or running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "test-output" / "browser"  # the browser tests' screenshots (git-ignored)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer at {url}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def serve(root: Path, log: Path | None = None) -> Iterator[tuple[subprocess.Popen, str]]:
    """(the server process, its url) for the project at `root`; stopped on exit."""
    port = free_port()
    env = {**os.environ, "SLMREC_ROOT": str(root), "PYTHONUNBUFFERED": "1"}
    out = open(log, "w") if log else subprocess.DEVNULL
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py",
                                "--server.address", "127.0.0.1", "--server.port", str(port),
                                "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                               cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        yield process, url
    finally:
        stop(process)
        if log:
            out.close()


def finished_store(root: Path, pipelines: int = 3) -> dict:
    """bench/fixture_store.py's store with its running and queued runs cancelled: nothing moves."""
    from bench.fixture_store import build_store
    from core.store import runs as run_store

    ids = build_store(root, pipelines=pipelines, valid_steps=4, users=80)
    runs_root = root / "data" / "runs"
    for key in ("running", "queued"):
        run_store.update_state(runs_root, ids[key], status="cancelled", phase="cancelled", eta_s=0.0)
    return ids
