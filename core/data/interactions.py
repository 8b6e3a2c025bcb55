"""The common result of every reader, and the checks every reader's output goes through.

A reader turns its file into a raw DataFrame with the columns user, item, timestamp and
(optionally) rating, in file order, then calls `finish`, which validates and normalises it:
ids become strings (a pandas Categorical of str: cheap at 10M rows, reads like str), timestamps
int64 Unix seconds, ratings float (NaN when absent). Rows with a missing id or timestamp and
exact duplicate (user, item, timestamp) rows are dropped and counted in `dropped`; anything else
that is wrong (a non-numeric or negative timestamp, an empty file) raises `DataError` naming the
file, the column as the file spells it, and the line or row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.data.errors import DataError

COLUMNS = ("user", "item", "timestamp", "rating")


@dataclass
class Interactions:
    """Interactions of one source file, in file order.

    frame: columns user and item (Categorical of str), timestamp (int64), rating (float64, NaN if absent).
    titles: original item id -> title (empty when the source has none).
    dropped: reason -> number of rows dropped while reading.
    """

    frame: pd.DataFrame
    titles: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    has_rating: bool = False


@dataclass(frozen=True)
class Layout:
    """How a file names the canonical columns, and how its rows are counted in messages.

    names: canonical column -> the name the file uses (for messages).
    unit: "line" (text files) or "row" (Parquet).
    first: the line or row number of the first data row (2 after a header line).
    """

    names: dict[str, str]
    unit: str = "line"
    first: int = 1


def _where(frame: pd.DataFrame, position: int, layout: Layout) -> str:
    """'line 12' for the row at `position`: the reader's own line numbers when it kept them."""
    if "line" in frame.columns:
        return f"{layout.unit} {int(frame['line'].iloc[position])}"
    return f"{layout.unit} {int(frame.index[position]) + layout.first}"


def _is_missing(column: pd.Series) -> pd.Series:
    missing = column.isna()
    if column.dtype == object or pd.api.types.is_string_dtype(column.dtype):
        missing |= column.astype("string").str.strip().fillna("").eq("")
    return missing


def _numeric(frame: pd.DataFrame, column: str, path: Path, layout: Layout, what: str) -> pd.Series:
    """The column as float64; a value that is present but not a number raises DataError."""
    values = frame[column]
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        # Parquet may store real datetimes: use Unix seconds (UTC).
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            values = values.dt.tz_convert(None)
        return pd.Series(values.astype("datetime64[s]").astype("int64"), index=frame.index, dtype="float64")
    if pd.api.types.is_bool_dtype(values.dtype):
        raise DataError(f"{path}: column '{layout.names[column]}' holds booleans; expected {what}")
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    bad = numbers.isna() & ~_is_missing(values)
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{path}: column '{layout.names[column]}' must hold {what}; {_where(frame, position, layout)} "
            f"has {str(values.iloc[position])!r} ({int(bad.sum())} such value(s) in all)")
    return numbers


def _number(value: float) -> str:
    return str(int(value)) if np.isfinite(value) and value == np.floor(value) else str(float(value))


def _timestamps(frame: pd.DataFrame, path: Path, layout: Layout) -> np.ndarray:
    """Whole, non-negative Unix seconds as int64, or DataError with an example and its line."""
    what = "numeric Unix timestamps (whole seconds)"
    numbers = _numeric(frame, "timestamp", path, layout, what).to_numpy()
    name = layout.names["timestamp"]
    for problem, bad in (
        ("is negative", numbers < 0),
        ("is not a whole number", numbers != np.floor(numbers)),
        ("is too large", numbers >= 2.0**62),
    ):
        if bad.any():
            position = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{path}: column '{name}' must hold {what}; the value {_number(numbers[position])} at "
                f"{_where(frame, position, layout)} {problem} ({int(bad.sum())} such value(s) in all)")
    return numbers.astype(np.int64)


def id_strings(values: pd.Series) -> pd.Series:
    """Ids as strings; a float column of whole numbers (Parquet ints with nulls) loses the '.0'."""
    if pd.api.types.is_float_dtype(values.dtype):
        whole = values.dropna()
        if (whole == np.floor(whole)).all():
            values = values.astype("Int64")
    return values.astype(str)


def _id_column(values: pd.Series) -> pd.Categorical:
    """Ids as a Categorical of strings; missing or blank ids are NaN.

    Only the distinct values are turned into strings (one factorize over the column), so 11M
    integer ids cost one hash pass instead of 11M Python strings. Two raw values that read the same
    as text (1 and "1") become one id.
    """
    codes, uniques = pd.factorize(values)
    text = id_strings(pd.Series(uniques)).reset_index(drop=True)
    text = text.where(text.str.strip() != "")  # a blank id is a missing one
    merged, categories = pd.factorize(text)  # NaN -> -1; equal strings -> one code
    codes = np.where(codes >= 0, merged[np.maximum(codes, 0)] if len(merged) else -1, -1)
    return pd.Categorical.from_codes(codes, categories=pd.Index(categories, dtype=object))


def finish(raw: pd.DataFrame, path: Path, layout: Layout, titles: dict[str, str] | None = None,
           dropped: dict[str, int] | None = None) -> Interactions:
    """Validate and normalise a reader's raw frame (see the module docstring)."""
    dropped = dict(dropped or {})
    if len(raw) == 0:
        raise DataError(f"{path}: no interactions found; the file is empty or holds only a header")
    raw = raw.reset_index(drop=True)
    user, item = _id_column(raw["user"]), _id_column(raw["item"])
    missing = (user.isna() | item.isna()) | _is_missing(raw["timestamp"]).to_numpy()
    if missing.any():
        dropped["missing values"] = dropped.get("missing values", 0) + int(missing.sum())
        raw, user, item = raw.loc[~missing], user[~missing], item[~missing]
        if len(raw) == 0:
            raise DataError(f"{path}: every row lacks a user, item or timestamp value "
                            f"(columns {', '.join(repr(layout.names[c]) for c in COLUMNS[:3])})")
    has_rating = "rating" in raw.columns
    rating = (_numeric(raw, "rating", path, layout, "numeric ratings").to_numpy()
              if has_rating else np.full(len(raw), np.nan))
    frame = pd.DataFrame({
        "user": user, "item": item,
        "timestamp": _timestamps(raw, path, layout),
        "rating": rating.astype(np.float64),
    })
    duplicate = frame.duplicated(["user", "item", "timestamp"], keep="first")
    if duplicate.any():
        dropped["duplicate rows"] = int(duplicate.sum())
        frame = frame.loc[~duplicate].reset_index(drop=True)
    return Interactions(frame=frame, titles=dict(titles or {}), dropped=dropped, has_rating=has_rating)
