"""Reader for generic CSV, TSV and Parquet interaction tables.

Column names come from `DataConfig.user_column`, `item_column`, `time_column` and (optional)
`rating_column`. `.csv` is comma-separated and `.tsv` tab-separated, each with a header line; the
delimiter is not guessed, so a file with another delimiter is refused with a missing-columns
message that says only one column was found. Parquet timestamps may be integers, floats or
datetimes (turned into Unix seconds).

Titles: a sibling `<stem>.items.parquet` or `<stem>.items.csv` (comma-separated, with a header),
holding the item column (named as in the interactions) and a `title` column, gives item titles;
`x.parquet` reads `x.items.parquet`. Items missing from it have no title. The synthetic generator
writes one (synthetic.py).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.config import DataConfig
from core.data.errors import DataError
from core.data.interactions import Interactions, Layout, finish, id_strings as _ids
from core.data.tables import header_of, read_delimited, require

TITLE_SUFFIXES = (".items.parquet", ".items.csv")


def _columns(cfg: DataConfig) -> dict[str, str]:
    return {"user": cfg.user_column, "item": cfg.item_column, "timestamp": cfg.time_column,
            "rating": cfg.rating_column}


def _hint(cfg: DataConfig) -> str:
    return (f"The column names come from the settings data.user_column={cfg.user_column!r}, "
            f"data.item_column={cfg.item_column!r}, data.time_column={cfg.time_column!r}")


def table_titles_file(path: Path) -> Path | None:
    """The titles file beside a CSV/TSV/Parquet interaction file, if there is one."""
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    for suffix in TITLE_SUFFIXES:
        found = path.with_name(stem + suffix)
        if found.is_file():
            return found
    return None


def _titles(path: Path, cfg: DataConfig) -> dict[str, str]:
    """Original item id -> title from the titles file beside `path` (empty when there is none)."""
    found = table_titles_file(path)
    if found is None:
        return {}
    columns = [cfg.item_column, "title"]
    if found.name.endswith(".csv"):
        require(found, header_of(found, ",", "a header line naming the item and title columns", quoted=True),
                columns, ",", "A titles file holds the item column and a 'title' column")
        table = read_delimited(found, ",", header=True, usecols=columns, quoted=True)
    else:
        try:
            require(found, pq.read_schema(found).names, columns, None,
                    "A titles file holds the item column and a 'title' column")
            table = pq.read_table(found, columns=columns).to_pandas()
        except (pa.ArrowException, OSError) as error:
            raise DataError(f"{found}: not a readable Parquet file ({error})") from None
    table = table.dropna()
    return dict(zip(_ids(table[cfg.item_column]).tolist(), table["title"].astype(str).tolist()))


def read_delimited_table(path: Path, cfg: DataConfig, sep: str) -> Interactions:
    """A CSV (sep ',') or TSV (sep '\\t') file with a header line."""
    columns = _columns(cfg)
    found = header_of(path, sep, "a header line naming the user, item and timestamp columns", quoted=True)
    require(path, found, [columns[c] for c in ("user", "item", "timestamp")], sep, _hint(cfg))
    wanted = {canon: name for canon, name in columns.items() if name in found}
    raw = read_delimited(path, sep, header=True, usecols=list(wanted.values()), quoted=True)
    raw = raw.rename(columns={name: canon for canon, name in wanted.items()})
    return finish(raw, path, Layout(names=wanted, unit="line", first=2), titles=_titles(path, cfg))


def read_parquet_table(path: Path, cfg: DataConfig) -> Interactions:
    """A Parquet file; only the configured columns are read."""
    columns = _columns(cfg)
    try:
        found = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{path}: not a readable Parquet file ({error})") from None
    require(path, found, [columns[c] for c in ("user", "item", "timestamp")], None, _hint(cfg))
    wanted = {canon: name for canon, name in columns.items() if name in found}
    try:
        table = pq.read_table(path, columns=list(wanted.values()))
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{path}: cannot read the Parquet data ({error})") from None
    raw = table.to_pandas().rename(columns={name: canon for canon, name in wanted.items()})
    return finish(raw, path, Layout(names=wanted, unit="row", first=1), titles=_titles(path, cfg))
