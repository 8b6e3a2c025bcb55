"""Datasets for the Data page: list, add (upload), locate, and describe them with DuckDB.

A dataset is a folder data/raw/<name>/ holding one interaction file, or a file path inside data/
(core.data.sources decides, and refuses paths that leave data/; that module imports no torch).
Statistics come from DuckDB: from the prepared Parquet under data/prepared/<key>/ when a run has
prepared the dataset (exact: after filtering, with item titles), else straight from the raw file.
The DuckDB connection may read only inside data/.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import duckdb
import pandas as pd

from core.data.errors import DataError
from core.data import stats as data_stats
from core.data.sources import FORMATS, detect_format, resolve_source
from core.store.atomic import write_bytes_atomic
from core.store.paths import Paths

MAX_UPLOAD_MB = 200
MAX_NAMED_MB = 1024  # a file path typed on the Data page; larger files go in a data/raw/<name>/ folder
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


VERSION_HELP = ("A run prepares the raw file with its data settings (k-core filter, minimum rating, maximum users, "
                "sampled negatives, seed): it filters, numbers users and items, splits each sequence into train, "
                "validation and test, and draws the sampled protocol's negatives. Each distinct set of those "
                "settings is one prepared version, cached under data/prepared/<key>/ (key: a hash of the "
                "settings), so runs with the same data settings share it.")


def short_lists_note(stats: dict) -> str | None:
    """What short sampled candidate lists mean, and the Launch form field that avoids them (None: none are short)."""
    candidates = stats.get("candidates", {})
    short = candidates.get("short_negative_lists", {})
    if not any(short.values()):
        return None
    return data_stats.short_lists_note(candidates["n_negatives"], stats.get("items"), max(short.values()),
                                       setting="Set **Sampled negatives per user** on the Launch form")


def list_datasets(paths: Paths) -> list[str]:
    """Folder names under data/raw/ that hold at least one recognised interaction file."""
    if not paths.raw.is_dir():
        return []
    return sorted(p.name for p in paths.raw.iterdir()
                  if p.is_dir() and not p.name.startswith(".")
                  and any(f.is_file() and detect_format(f) for f in p.iterdir()))


def locate(paths: Paths, dataset: str) -> Path:
    """The interaction file of a dataset setting; DataError (with core's message) if there is none."""
    return resolve_source(dataset, paths.data_root)


def locate_named(paths: Paths, path: str) -> Path:
    """A file path typed on the Data page: inside data/ (see `locate`) and at most MAX_NAMED_MB."""
    source = locate(paths, path)
    size = source.stat().st_size
    if size > MAX_NAMED_MB << 20:
        raise DataError(f"{source}: {size / 2**20:,.0f} MB is over the limit of {MAX_NAMED_MB} MB for a file named "
                        f"here; move it into a dataset folder data/raw/<name>/ and pick that name instead")
    return source


def save_upload(paths: Paths, name: str, filename: str, content: bytes) -> Path:
    """Store an uploaded interaction file as data/raw/<name>/<filename>; DataError if refused."""
    if len(content) > MAX_UPLOAD_MB << 20:
        raise DataError(f"{filename}: {len(content) / 2**20:.0f} MB is over the upload limit of {MAX_UPLOAD_MB} MB; "
                        f"copy large files into data/raw/<name>/ instead")
    if not _NAME.fullmatch(name) or ".." in name:
        raise DataError(f"dataset name {name!r}: use letters, digits, '-', '_' or '.' (at most 64)")
    filename = Path(filename).name
    if detect_format(Path(filename)) is None:
        raise DataError(f"{filename}: not a recognised interaction file; expected one of: "
                        f"{'; '.join(FORMATS.values())}")
    folder = paths.raw / name
    if folder.exists() and any(folder.iterdir()):
        raise DataError(f"data/raw/{name}/ already exists; choose another name")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / filename
    write_bytes_atomic(target, content)
    return target


def prepared_versions(paths: Paths, source: Path) -> list[dict]:
    """Prepared caches of this source file: [{"key", "folder", "settings", "stats"}], newest first."""
    if not paths.prepared.is_dir():
        return []
    relative = os.path.relpath(source, paths.data_root)
    found = []
    for folder in paths.prepared.iterdir():
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, ValueError):
            continue
        if meta.get("source") == relative:
            found.append({"key": meta.get("key", folder.name), "folder": folder, "settings": meta.get("settings", {}),
                          "stats": meta.get("stats", {}), "mtime": folder.stat().st_mtime})
    return sorted(found, key=lambda m: -m["mtime"])


def _connect(paths: Paths) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute(f"SET allowed_directories = ['{str(paths.data_root.resolve()).replace(chr(39), chr(39) * 2)}/']")
    con.execute("SET enable_external_access = false")
    return con


def _q(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _raw_relation(path: Path) -> str:
    """SQL yielding (u, i, t) from a raw interaction file (default column names of DataConfig)."""
    kind, p = detect_format(path), _q(path.resolve())
    if kind in ("csv", "tsv"):
        delim = "," if kind == "csv" else "\\t"
        return (f"SELECT \"user\" AS u, \"item\" AS i, \"timestamp\" AS t "
                f"FROM read_csv({p}, header = true, delim = '{delim}')")
    if kind == "parquet":
        return f"SELECT \"user\" AS u, \"item\" AS i, \"timestamp\" AS t FROM read_parquet({p})"
    if kind == "recbole":
        return (f"SELECT COLUMNS('^user_id') AS u, COLUMNS('^item_id') AS i, COLUMNS('^timestamp') AS t "
                f"FROM read_csv({p}, header = true, delim = '\\t', all_varchar = true)")
    if kind == "movielens-100k":
        return f"SELECT column0 AS u, column1 AS i, column3 AS t FROM read_csv({p}, header = false, delim = '\\t')"
    if kind == "movielens-dat":
        return f"SELECT column0 AS u, column1 AS i, column3 AS t FROM read_csv({p}, header = false, delim = '::')"
    if kind == "amazon":
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        compression = "gzip" if gz else "none"
        return (f"SELECT reviewerID AS u, asin AS i, unixReviewTime AS t FROM read_json({p}, "
                f"format = 'newline_delimited', compression = '{compression}', ignore_errors = true)")
    raise DataError(f"{path}: not a recognised interaction file")


def describe(paths: Paths, source: Path, prepared: dict | None, bins: int = 40, samples: int = 5,
             seed: int = 0) -> dict:
    """Stats, a sequence-length histogram and sample sequences (with titles when prepared).

    Returns {"stats": dict, "histogram": DataFrame(length, count), "samples": DataFrame}.
    """
    con = _connect(paths)
    try:
        if prepared:
            folder = prepared["folder"]
            relation = ("SELECT user AS u, item AS i, timestamp AS t "
                        f"FROM read_parquet({_q(folder / 'interactions.parquet')})")
        else:
            relation = _raw_relation(source)
        con.execute(f"CREATE TEMP TABLE inter AS SELECT *, row_number() OVER () AS o FROM ({relation})")
        stats = _stats(con)
        histogram = _histogram(con, bins)
        sample = _samples(con, prepared, samples, seed)
    except duckdb.Error as error:
        raise DataError(f"{source}: DuckDB could not read it ({str(error).splitlines()[0]})") from None
    finally:
        con.close()
    return {"stats": stats, "histogram": histogram, "samples": sample}


def _stats(con: duckdb.DuckDBPyConnection) -> dict:
    row = con.execute("""
        WITH lens AS (SELECT u, count(*) AS n FROM inter GROUP BY u)
        SELECT (SELECT count(*) FROM inter), (SELECT count(DISTINCT u) FROM inter),
               (SELECT count(DISTINCT i) FROM inter),
               min(n), median(n), avg(n), max(n) FROM lens""").fetchone()
    interactions, users, items, lo, med, mean, hi = row
    density = interactions / (users * items) if users and items else 0.0
    return {"interactions": interactions, "users": users, "items": items, "density": density,
            "seq_len_min": lo, "seq_len_median": med, "seq_len_mean": mean, "seq_len_max": hi}


def _histogram(con: duckdb.DuckDBPyConnection, bins: int) -> pd.DataFrame:
    return con.execute("""
        WITH lens AS (SELECT u, count(*) AS n FROM inter GROUP BY u),
             w AS (SELECT greatest(1, ceil(max(n) / $bins)::BIGINT) AS width FROM lens)
        SELECT (n // width) * width AS length, count(*) AS count FROM lens, w GROUP BY ALL ORDER BY length""",
                       {"bins": bins}).df()


def _samples(con: duckdb.DuckDBPyConnection, prepared: dict | None, samples: int, seed: int) -> pd.DataFrame:
    """A few users (fixed by seed) with their last 10 items in time order, titled when prepared."""
    picked = "SELECT u FROM (SELECT DISTINCT u FROM inter) ORDER BY hash(u::VARCHAR || $seed::VARCHAR) LIMIT $k"
    if prepared:
        folder = prepared["folder"]
        titles = (f"SELECT (file_row_number)::INTEGER AS i, title, item_id FROM "
                  f"read_parquet({_q(folder / 'items.parquet')}, file_row_number = true)")
        users = (f"SELECT (file_row_number)::INTEGER AS u, user_id FROM "
                 f"read_parquet({_q(folder / 'users.parquet')}, file_row_number = true)")
        sql = f"""
            WITH picked AS ({picked}),
                 seq AS (SELECT inter.u, inter.i, inter.t,
                                row_number() OVER (PARTITION BY inter.u ORDER BY inter.t DESC, inter.o DESC) AS back
                         FROM inter JOIN picked USING (u))
            SELECT users.user_id AS user, count(*) AS length,
                   string_agg(coalesce(nullif(titles.title, ''), titles.item_id), '  →  ' ORDER BY back DESC)
                       FILTER (WHERE back <= 10) AS last_items
            FROM seq JOIN ({titles}) titles USING (i) JOIN ({users}) users USING (u)
            GROUP BY users.user_id ORDER BY users.user_id"""
    else:
        sql = f"""
            WITH picked AS ({picked}),
                 seq AS (SELECT inter.u, inter.i,
                                row_number() OVER (PARTITION BY inter.u ORDER BY inter.t DESC, inter.o DESC) AS back
                         FROM inter JOIN picked USING (u))
            SELECT u::VARCHAR AS user, count(*) AS length,
                   string_agg(i::VARCHAR, '  →  ' ORDER BY back DESC) FILTER (WHERE back <= 10) AS last_items
            FROM seq GROUP BY u ORDER BY u"""
    return con.execute(sql, {"seed": seed, "k": samples}).df()
