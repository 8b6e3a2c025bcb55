"""Fixtures for the data tests: a data root in tmp_path and a helper that writes raw files."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "raw").mkdir(parents=True)
    return root


@pytest.fixture
def put(data_root: Path):
    """put('toy/toy.inter', text_or_bytes) writes data_root/raw/toy/toy.inter and returns its path."""

    def write(relative: str, content: str | bytes) -> Path:
        path = data_root / "raw" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode("utf-8")
        path.write_bytes(content)
        return path

    return write
