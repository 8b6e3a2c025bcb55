"""Shared fixtures for the results-store tests: a fresh project root per test."""

from pathlib import Path

import pytest

from core.store.paths import Paths


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths(tmp_path)
    p.runs.mkdir(parents=True)
    return p
