"""Where a dataset's interactions live, which format they are in, and reading them.

A dataset setting is either a NAME, meaning the folder `<data_root>/raw/<name>/` holding exactly one
recognised interaction file, or a PATH to such a file, which must lie inside `data_root`
(relative paths are taken from `data_root`, or from its parent when they start with its name, as
in `data/raw/x.csv`). The check is on the normalised path, so `../` escapes and absolute paths
elsewhere are refused; a symlink placed inside data/ by the machine's owner is followed.

The format is told by the file name; gzip is told by content. See FORMATS for the list. Sidecar
files beside an interaction file are never taken for one: `<stem>.items.parquet` / `.items.csv`
(titles of a CSV/TSV/Parquet source, read_table.py) and `<stem>.synth.json` (the rule and oracle
of a generated dataset, synthetic.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from core.config import DataConfig
from core.data.errors import DataError
from core.data.interactions import Interactions
from core.data.read_amazon import SUFFIXES as JSON_SUFFIXES
from core.data.read_amazon import amazon_meta_file, read_amazon
from core.data.read_movielens import read_ratings_dat, read_recbole, read_u_data, recbole_titles_file
from core.data.read_table import TITLE_SUFFIXES, read_delimited_table, read_parquet_table, table_titles_file

FORMATS = {
    "recbole": "RecBole atomic *.inter (titles from a sibling *.item)",
    "movielens-100k": "MovieLens u.data (titles from u.item)",
    "movielens-dat": "MovieLens ratings.dat (titles from movies.dat)",
    "amazon": "Amazon review JSON lines *.json, *.jsonl, optionally .gz (titles from meta_*.json)",
    "csv": "*.csv with a header (comma-separated; titles from a sibling <stem>.items.parquet or .items.csv)",
    "tsv": "*.tsv with a header (tab-separated; titles as for CSV)",
    "parquet": "*.parquet (titles as for CSV)",
}
SIDECAR_SUFFIXES = (*TITLE_SUFFIXES, ".synth.json")


def detect_format(path: Path) -> str | None:
    """The format of an interaction file by its name, or None when it is not one."""
    name = path.name.lower()
    if name.startswith(".") or name.startswith("meta_") or name.endswith(SIDECAR_SUFFIXES):
        return None
    if name.endswith(".inter"):
        return "recbole"
    if name == "u.data":
        return "movielens-100k"
    if name == "ratings.dat":
        return "movielens-dat"
    if name.endswith(JSON_SUFFIXES):
        return "amazon"
    for suffix, kind in ((".csv", "csv"), (".tsv", "tsv"), (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(suffix):
            return kind
    return None


def _formats_text() -> str:
    return "; ".join(FORMATS.values())


def read_interactions(path: Path, cfg: DataConfig) -> Interactions:
    """Read one interaction file (see `interactions.Interactions` for the result's form)."""
    kind = detect_format(path)
    if kind is None:
        raise DataError(f"{path}: not a recognised interaction file; expected one of: {_formats_text()}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if kind == "recbole":
        return read_recbole(path)
    if kind == "movielens-100k":
        return read_u_data(path)
    if kind == "movielens-dat":
        return read_ratings_dat(path)
    if kind == "amazon":
        return read_amazon(path)
    if kind == "parquet":
        return read_parquet_table(path, cfg)
    return read_delimited_table(path, cfg, "," if kind == "csv" else "\t")


def title_file(path: Path) -> Path | None:
    """The sibling file a reader takes titles from, if any (part of the cache key)."""
    kind = detect_format(path)
    candidates = {
        "recbole": lambda: recbole_titles_file(path),
        "movielens-100k": lambda: path.with_name("u.item"),
        "movielens-dat": lambda: path.with_name("movies.dat"),
        "amazon": lambda: amazon_meta_file(path),
        **dict.fromkeys(("csv", "tsv", "parquet"), lambda: table_titles_file(path)),
    }
    found = candidates[kind]() if kind in candidates else None
    return found if found is not None and found.is_file() else None


def synthetic_file(path: Path) -> Path | None:
    """The sidecar `<stem>.synth.json` of a generated dataset, if there is one."""
    found = path.with_name(f"{_stem(path)}.synth.json")
    return found if found.is_file() else None


def _stem(path: Path) -> str:
    return path.name[: -len(path.suffix)] if path.suffix else path.name


def _looks_like_path(dataset: str) -> bool:
    return ("/" in dataset or "\\" in dataset or dataset.startswith(".") or os.path.isabs(dataset)
            or detect_format(Path(dataset)) is not None)


def _inside(path: Path, root: Path) -> bool:
    return os.path.commonpath([path, root]) == str(root)


def _resolve_file(dataset: str, data_root: Path) -> Path:
    """A file path that must stay inside data_root after normalisation."""
    root = Path(os.path.normpath(data_root.absolute()))
    given = Path(dataset)
    tries = [given] if given.is_absolute() else [root / given, root.parent / given]
    tries = [Path(os.path.normpath(p)) for p in tries]
    inside = [p for p in tries if _inside(p, root)]
    if not inside:
        raise DataError(f"dataset {dataset!r}: refused, the path leads outside the data folder {root}; "
                        "put the file under data/ and name it relative to it")
    for path in inside:
        if path.is_file():
            if detect_format(path) is None:
                raise DataError(f"{path}: not a recognised interaction file; expected one of: {_formats_text()}")
            return path
    raise DataError(f"dataset {dataset!r}: no such file; looked for {', '.join(str(p) for p in inside)}")


def _missing_dataset(name: str, folder: Path, raw: Path) -> DataError:
    known = sorted(p.name for p in raw.iterdir() if p.is_dir()) if raw.is_dir() else []
    message = f"dataset {name!r} not found: looked for the folder {folder}"
    if name == "ml-100k":
        message += (". Run `slmrec fetch` to download it, or put ml-100k.inter and ml-100k.item "
                    "(RecBole format) in data/raw/ml-100k/")
    else:
        message += (f". Put one interaction file in data/raw/{name}/ ({_formats_text()}), or give a "
                    "file path inside data/")
    if known:
        message += f". Datasets found: {', '.join(known)}"
    return DataError(message)


def resolve_source(dataset: str, data_root: Path) -> Path:
    """The interaction file a dataset setting names (see the module docstring)."""
    dataset = dataset.strip()
    if not dataset:
        raise DataError("dataset: empty name; expected a folder name under data/raw/ or a file path inside data/")
    if _looks_like_path(dataset):
        return _resolve_file(dataset, data_root)
    raw = Path(data_root) / "raw"
    folder = raw / dataset
    if not folder.is_dir():
        raise _missing_dataset(dataset, folder, raw)
    files = sorted(p for p in folder.iterdir() if p.is_file() and detect_format(p) is not None)
    if len(files) == 1:
        return files[0]
    if not files:
        present = sorted(p.name for p in folder.iterdir())
        raise DataError(f"{folder}: no interaction file found (files: {', '.join(present) or 'none'}); "
                        f"expected one of: {_formats_text()}")
    raise DataError(f"{folder}: several interaction files ({', '.join(p.name for p in files)}); keep one, "
                    "or give the file's path (e.g. raw/<name>/<file>) as the dataset")
