"""Fixtures for the app tests: a synthetic results store in a temporary project, and page runners.

The store comes from bench/fixture_store.py (also used by bench/app_pages.py). Pages run through
the real entry point (streamlit_app.py) with AppTest, so navigation and page links work as in the
browser. SLMREC_ROOT points the app at the temporary project.
"""

import io
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # bench/ is a folder of scripts, not an installed package

from bench.fixture_store import build_seed_store, build_store  # noqa: E402

PAGES = ("tour", "data", "launch", "runs", "layers", "results")


@pytest.fixture(scope="session")
def shared_project(tmp_path_factory):
    """A read-only project with three finished pipelines and a running, a queued and a failed run."""
    root = tmp_path_factory.mktemp("store")
    ids = build_store(root, pipelines=3, valid_steps=4, users=80)
    return root, ids


@pytest.fixture
def shared(shared_project, monkeypatch):
    root, ids = shared_project
    monkeypatch.setenv("SLMREC_ROOT", str(root))
    return root, ids


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """A project of its own (for tests that submit or cancel)."""
    ids = build_store(tmp_path, pipelines=1, valid_steps=2, users=20)
    monkeypatch.setenv("SLMREC_ROOT", str(tmp_path))
    return tmp_path, ids


def _open_page(page: str):
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=60)
    app.run()
    app.switch_page(f"app/pages/{page}.py").run()
    return app


def _figures(app) -> list[dict]:
    return [json.loads(element.proto.spec) for element in app.get("plotly_chart")]


def _run_folders(root: Path) -> set[str]:
    runs = root / "data" / "runs"
    return {p.name for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")} if runs.is_dir() else set()


@pytest.fixture
def open_page():
    """open_page(name) -> the AppTest after running the entry point and switching to app/pages/<name>.py."""
    return _open_page


@pytest.fixture
def figures():
    """figures(app) -> every plotly figure on the page as its JSON spec."""
    return _figures


@pytest.fixture
def run_folders():
    """run_folders(root) -> the run ids under root/data/runs."""
    return _run_folders


@pytest.fixture(scope="session")
def seed_project(tmp_path_factory):
    """A read-only project of teacher seed groups with planted ranks (bench/fixture_store.py build_seed_store)."""
    root = tmp_path_factory.mktemp("seeds")
    return root, build_seed_store(root)


@pytest.fixture
def seeded(seed_project, monkeypatch):
    root, ids = seed_project
    monkeypatch.setenv("SLMREC_ROOT", str(root))
    return root, ids


@pytest.fixture
def exports(monkeypatch):
    """{download key: DataFrame} of every CSV button the page drew (the last run wins)."""
    import pandas as pd
    import streamlit

    found = {}
    original = streamlit.download_button

    def record(label, data, *args, **kwargs):
        found[kwargs.get("key")] = pd.read_csv(io.BytesIO(data))
        return original(label, data, *args, **kwargs)

    monkeypatch.setattr(streamlit, "download_button", record)
    return found


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(project root, app url) with Streamlit and a worker running on it (the browser tests)."""
    import os
    import subprocess

    from bench.app_server import serve, stop
    from bench.fixture_store import write_toy_csv

    root = tmp_path_factory.mktemp("lab")
    write_toy_csv(root)
    env = {**os.environ, "SLMREC_ROOT": str(root), "PYTHONUNBUFFERED": "1"}
    logs = root / "logs"
    logs.mkdir()
    worker = subprocess.Popen([sys.executable, "-m", "core.cli", "--root", str(root), "worker", "--device", "cpu"],
                              cwd=REPO, env=env, stdout=open(logs / "worker.log", "w"), stderr=subprocess.STDOUT)
    try:
        with serve(root, log=logs / "app.log") as (_, url):
            yield root, url
    finally:
        stop(worker)
