"""Bad input in the app: a huge named file, a run folder without state.json."""

import pytest

from app import datasets
from core.data.errors import DataError
from core.store.paths import Paths


def _sparse_file(path, size):
    """A file of `size` bytes that takes no disk space (nothing is written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def test_a_2gb_named_file_is_refused_with_the_limit(tmp_path):
    big = _sparse_file(tmp_path / "data" / "raw" / "big" / "big.csv", 2 * 1024**3)
    with pytest.raises(DataError) as caught:
        datasets.locate_named(Paths(tmp_path), "raw/big/big.csv")
    assert str(caught.value) == (f"{big}: 2,048 MB is over the limit of 1024 MB for a file named here; move it into "
                                 "a dataset folder data/raw/<name>/ and pick that name instead")
    small = _sparse_file(tmp_path / "data" / "raw" / "small" / "small.csv", 10)
    assert datasets.locate_named(Paths(tmp_path), "raw/small/small.csv") == small
    with pytest.raises(DataError, match="refused, the path leads outside the data folder"):
        datasets.locate_named(Paths(tmp_path), "/etc/passwd")


def test_data_page_names_the_limit(tmp_path, monkeypatch, open_page):
    monkeypatch.setenv("SLMREC_ROOT", str(tmp_path))
    _sparse_file(tmp_path / "data" / "raw" / "big" / "big.csv", 2 * 1024**3)
    app = open_page("data")
    app.text_input(key="data_path_text").input("raw/big/big.csv")
    app.button[1].click().run()  # the second form's submit: "Use this file"
    assert any("over the limit of 1024 MB for a file named here" in e.value for e in app.error)
    app.text_input(key="data_path_text").input("../../etc/passwd")
    app.button[1].click().run()
    assert any("outside the data folder" in e.value for e in app.error)


def test_runs_page_shows_a_run_without_state_as_unknown(fresh, open_page):
    root, ids = fresh
    state = root / "data" / "runs" / ids["teacher"] / "state.json"
    state.unlink()
    app = open_page("runs")
    assert not app.exception
    assert any(w.value == f"1 run folder(s) cannot be read and show as unknown, e.g. {ids['teacher']}: "
               f"unreadable run: {state}: missing" for w in app.warning), [w.value for w in app.warning]
