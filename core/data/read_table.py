"""Reader for generic CSV, TSV and Parquet interaction tables.

Column names come from `DataConfig.user_column`, `item_column`, `time_column` and (optional)
`rating_column`. `.csv` is comma-separated and `.tsv` tab-separated, each with a header line; the
delimiter is not guessed, so a file with another delimiter is refused with a missing-columns
message that says only one column was found. Parquet timestamps may be integers, floats or
datetimes (turned into Unix seconds).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.config import DataConfig
from core.data.errors import DataError
from core.data.interactions import Interactions, Layout, finish
from core.data.tables import header_of, read_delimited, require


def _columns(cfg: DataConfig) -> dict[str, str]:
    return {"user": cfg.user_column, "item": cfg.item_column, "timestamp": cfg.time_column,
            "rating": cfg.rating_column}


def _hint(cfg: DataConfig) -> str:
    return (f"The column names come from the settings data.user_column={cfg.user_column!r}, "
            f"data.item_column={cfg.item_column!r}, data.time_column={cfg.time_column!r}")


def read_delimited_table(path: Path, cfg: DataConfig, sep: str) -> Interactions:
    """A CSV (sep ',') or TSV (sep '\\t') file with a header line."""
    columns = _columns(cfg)
    found = header_of(path, sep, "a header line naming the user, item and timestamp columns", quoted=True)
    require(path, found, [columns[c] for c in ("user", "item", "timestamp")], sep, _hint(cfg))
    wanted = {canon: name for canon, name in columns.items() if name in found}
    raw = read_delimited(path, sep, header=True, usecols=list(wanted.values()), quoted=True)
    raw = raw.rename(columns={name: canon for canon, name in wanted.items()})
    return finish(raw, path, Layout(names=wanted, unit="line", first=2))


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
    return finish(raw, path, Layout(names=wanted, unit="row", first=1))
