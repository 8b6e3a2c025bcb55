"""Dataset names and paths: one file per folder, clear messages, no escape from the data folder."""

from __future__ import annotations

import pytest

from core.data.errors import DataError
from core.data.sources import resolve_source

CSV = "user,item,timestamp\nu,i,1\n"


def test_name_resolves_to_the_single_interaction_file(put, data_root):
    path = put("ml-100k/ml-100k.inter", "user_id:token\titem_id:token\ttimestamp:float\n")
    put("ml-100k/ml-100k.item", "item_id:token\n")
    put("ml-100k/README", "x")
    assert resolve_source("ml-100k", data_root) == path


def test_movielens_folder_ignores_split_files(put, data_root):
    path = put("ml/u.data", "")
    for name in ("u.item", "u1.base", "u1.test", "u.user"):
        put(f"ml/{name}", "")
    assert resolve_source("ml", data_root) == path


def test_missing_ml_100k_says_how_to_get_it(data_root):
    with pytest.raises(DataError) as caught:
        resolve_source("ml-100k", data_root)
    message = str(caught.value)
    assert str(data_root / "raw" / "ml-100k") in message
    assert "slmrec fetch" in message and "ml-100k.inter" in message and "data/raw/ml-100k/" in message


def test_missing_dataset_lists_the_known_ones(put, data_root):
    put("books/books.csv", CSV)
    with pytest.raises(DataError, match=r"dataset 'movies' not found.*Datasets found: books"):
        resolve_source("movies", data_root)


def test_folder_with_several_or_no_files(put, data_root):
    put("two/a.csv", CSV)
    put("two/b.parquet", "")
    with pytest.raises(DataError, match=r"several interaction files \(a\.csv, b\.parquet\)"):
        resolve_source("two", data_root)
    put("none/notes.txt", "")
    with pytest.raises(DataError, match=r"no interaction file found \(files: notes\.txt\)"):
        resolve_source("none", data_root)


def test_paths_inside_the_data_root(put, data_root):
    path = put("x/x.csv", CSV)
    assert resolve_source("raw/x/x.csv", data_root) == path
    assert resolve_source("data/raw/x/x.csv", data_root) == path  # as typed from the project root
    assert resolve_source(str(path), data_root) == path
    assert resolve_source("raw/x/../x/x.csv", data_root) == path


@pytest.mark.parametrize("dataset", ["../outside.csv", "raw/../../outside.csv", "..", "/etc/passwd"])
def test_paths_leaving_the_data_root_are_refused(data_root, dataset):
    (data_root.parent / "outside.csv").write_text(CSV)
    with pytest.raises(DataError, match="refused, the path leads outside the data folder"):
        resolve_source(dataset, data_root)


def test_missing_file_and_unknown_format(put, data_root):
    with pytest.raises(DataError, match=r"no such file; looked for .*raw/nope\.csv"):
        resolve_source("raw/nope.csv", data_root)
    put("x/x.txt", "")
    with pytest.raises(DataError, match="not a recognised interaction file"):
        resolve_source("raw/x/x.txt", data_root)
    with pytest.raises(DataError, match="empty name"):
        resolve_source("  ", data_root)
