"""Small helpers shared by the readers: delimited text through pandas, and column checks.

`read_delimited` wraps `pandas.read_csv` so that a parser failure, an empty file or an unreadable
file becomes a `DataError` naming the file. Everything is read as text (ids keep leading zeros,
and numbers are converted later by `interactions.finish`, which can then name a bad value's line).
`require` raises the missing-columns message that also catches a wrong delimiter.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from core.data.errors import DataError


def read_delimited(path: Path, sep: str, *, header: bool, usecols: list | None = None,
                   names: list[str] | None = None, encoding: str = "utf-8-sig", nrows: int | None = None,
                   what: str = "", quoted: bool = False) -> pd.DataFrame:
    """Read a delimited text file as strings; any parser failure becomes a DataError naming it.

    quoted: honour CSV double quotes (generic CSV/TSV); RecBole and MovieLens files use none, and
    their titles may contain a bare '"'. The default encoding also drops a UTF-8 byte-order mark.
    """
    try:
        return pd.read_csv(
            path, sep=sep, header=0 if header else None, names=names, usecols=usecols, dtype=str,
            keep_default_na=False, na_values=[""], quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE,
            encoding=encoding,
            encoding_errors="replace", skip_blank_lines=False, nrows=nrows, engine="c")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; expected {what or 'a header and data rows'}") from None
    except (pd.errors.ParserError, ValueError) as error:
        raise DataError(f"{path}: cannot parse as {sep!r}-separated text ({what}): {error}") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read the file: {error.strerror or error}") from None


def header_of(path: Path, sep: str, what: str, quoted: bool = False) -> list[str]:
    """The column names of a delimited file with a header line."""
    return [str(c) for c in read_delimited(path, sep, header=True, nrows=0, what=what, quoted=quoted).columns]


def require(path: Path, found: list[str], required: list[str], sep: str | None, hint: str = "") -> None:
    """Raise DataError naming the missing columns and the ones found.

    A file read with the wrong delimiter shows up here as a single column, so say so.
    """
    missing = [name for name in required if name not in found]
    if not missing:
        return
    message = (f"{path}: missing column(s) {', '.join(repr(m) for m in missing)}; "
               f"found column(s) {', '.join(repr(f) for f in found) or 'none'}")
    if sep is not None and len(found) == 1:
        message += f" (only one column was found: is the file really {sep!r}-separated?)"
    if hint:
        message += f". {hint}"
    raise DataError(message)
