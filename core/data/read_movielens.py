"""Readers for RecBole atomic files and the original MovieLens files.

- RecBole `.inter`: tab-separated with a typed header (`user_id:token<TAB>item_id:token<TAB>
  rating:float<TAB>timestamp:float`); an optional sibling `.item` with the same stem gives titles
  (`item_id:token<TAB>movie_title:token_seq<TAB>...`, the first field whose name contains "title").
  This is how MovieLens-100K ships inside the recbole package. Every row ends with a newline: a
  file that does not was cut inside its last row (a broken copy) and is refused, as is a first line
  that is no header (a message shows a short escaped excerpt of it, never the raw bytes).
- MovieLens-100K `u.data` (tab, no header: user item rating timestamp) with optional `u.item`
  (pipe-separated, latin-1: id|title|...).
- MovieLens-1M/10M `ratings.dat` (`user::item::rating::timestamp`) with optional `movies.dat`
  (`id::title::genres`, UTF-8 or latin-1).
Titles that are not valid UTF-8 are decoded with replacement characters instead of failing.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.data.errors import DataError
from core.data.interactions import Interactions, Layout, finish
from core.data.tables import header_of, read_delimited, require

RECBOLE_FIELDS = {"user": "user_id", "item": "item_id", "timestamp": "timestamp", "rating": "rating"}
RECBOLE_HINT = ("RecBole .inter files are tab-separated with a header such as "
                "user_id:token<TAB>item_id:token<TAB>rating:float<TAB>timestamp:float")


RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")
EXCERPT_CHARS = 60  # of a bad line shown in a message
HEADER_MAX_CHARS = 300  # a longer first line is no header of field names
HEADER_MAX_BYTES, TAIL_BYTES = 64 * 1024, 4096  # read to check the first line; the last row


def _field_name(column: str) -> str:
    """'user_id:token' -> 'user_id' (RecBole appends the field type after a colon)."""
    name, _, kind = column.strip().partition(":")
    return name if kind in RECBOLE_TYPES else column.strip()


def read_recbole(path: Path) -> Interactions:
    """A RecBole `.inter` file, with titles from its sibling `.item` file when there is one."""
    _check_header_line(path)
    header = header_of(path, "\t", RECBOLE_HINT)
    found = [_field_name(c) for c in header]
    required = [RECBOLE_FIELDS[c] for c in ("user", "item", "timestamp")]
    require(path, found, required, "\t", RECBOLE_HINT)
    position = {canon: found.index(name) for canon, name in RECBOLE_FIELDS.items() if name in found}
    table = read_delimited(path, "\t", header=True, usecols=sorted(position.values()), what=RECBOLE_HINT)
    if len(table):
        _refuse_cut_last_row(path, last_line=len(table) + 1)  # blank lines are rows too (skip_blank_lines=False)
    raw = pd.DataFrame({canon: table[header[i]] for canon, i in position.items()})
    names = {canon: header[i] for canon, i in position.items()}
    item_file = recbole_titles_file(path)
    titles = read_recbole_titles(item_file) if item_file else {}
    return finish(raw, path, Layout(names=names, unit="line", first=2), titles)


def _excerpt(data: bytes, limit: int = EXCERPT_CHARS) -> str:
    """The start of some raw bytes as an escaped Python string literal, so binary shows as \\x00."""
    text = repr(data[:limit].decode("utf-8", errors="backslashreplace"))
    return text + (f" (the first {limit} of {len(data)} bytes)" if len(data) > limit else "")


def _check_header_line(path: Path) -> None:
    """Refuse a first line that is not a short line of printable field names (a binary or a wrong
    file), showing an escaped excerpt of it instead of the whole line."""
    try:
        with open(path, "rb") as f:
            line = f.readline(HEADER_MAX_BYTES).removeprefix(b"\xef\xbb\xbf").rstrip(b"\r\n")
    except OSError as error:
        raise DataError(f"{path}: cannot read the file: {error.strerror or error}") from None
    text = line.decode("utf-8", errors="replace")
    if len(line) <= HEADER_MAX_CHARS and all(c.isprintable() or c == "\t" for c in text) and "\ufffd" not in text:
        return  # text: `require` names what is missing among the fields found
    found = {name for name in (_field_name(c) for c in text.split("\t")) if name in RECBOLE_FIELDS.values()}
    missing = [RECBOLE_FIELDS[c] for c in ("user", "item", "timestamp") if RECBOLE_FIELDS[c] not in found]
    raise DataError(f"{path}: line 1 is not a RecBole header: it reads {_excerpt(line)}"
                    + (f"; missing column(s) {', '.join(repr(m) for m in missing)}" if missing else "")
                    + f". {RECBOLE_HINT}")


def _refuse_cut_last_row(path: Path, last_line: int) -> None:
    """A file whose last byte is not a newline was cut in the middle of its last row (a broken copy,
    whose cut timestamp would otherwise be read as a smaller number), so refuse it by name."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - TAIL_BYTES))
        tail = f.read()
    if tail.endswith(b"\n"):
        return
    row = tail.rsplit(b"\n", 1)[-1]
    raise DataError(f"{path}: line {last_line} ends without a newline: the file was cut in the middle of "
                    f"that row, which reads {_excerpt(row)}; expected every row to end with a newline. A cut "
                    "file is a broken copy: copy or download it again (if that row is whole, end the file "
                    "with a newline)")


def recbole_titles_file(path: Path) -> Path | None:
    candidate = path.with_suffix(".item")
    return candidate if candidate.is_file() else None


def read_recbole_titles(path: Path) -> dict[str, str]:
    """item_id -> title from a RecBole `.item` file; {} when it has no title field."""
    hint = "RecBole .item files are tab-separated with a header such as item_id:token<TAB>movie_title:token_seq"
    header = header_of(path, "\t", hint)
    found = [_field_name(c) for c in header]
    require(path, found, ["item_id"], "\t", hint)
    title_fields = [name for name in found if "title" in name.lower()]
    if not title_fields:
        return {}
    raw = read_delimited(path, "\t", header=True, what=hint)
    raw.columns = found
    return _title_dict(raw["item_id"], raw[title_fields[0]])


def _title_dict(ids: pd.Series, titles: pd.Series) -> dict[str, str]:
    """Original id -> title; rows without an id or title are skipped, the first title wins."""
    frame = pd.DataFrame({"id": ids.astype("string").str.strip(), "title": titles.astype("string").str.strip()})
    frame = frame.dropna()
    frame = frame.loc[(frame["id"] != "") & (frame["title"] != "")].drop_duplicates("id")
    return dict(zip(frame["id"].tolist(), frame["title"].tolist()))


def read_u_data(path: Path) -> Interactions:
    """MovieLens-100K `u.data` (user item rating timestamp, tab, no header) and sibling `u.item`."""
    what = "4 tab-separated fields per line: user item rating timestamp"
    raw = read_delimited(path, "\t", header=False, what=what)
    _require_fields(path, raw, 4, what)
    raw = raw.iloc[:, :4].set_axis(["user", "item", "rating", "timestamp"], axis=1)
    item_file = path.with_name("u.item")
    titles = _read_pipe_titles(item_file) if item_file.is_file() else {}
    return finish(raw, path, _headerless_layout(), titles)


def read_ratings_dat(path: Path) -> Interactions:
    """MovieLens-1M/10M `ratings.dat` (user::item::rating::timestamp) and sibling `movies.dat`."""
    what = "user::item::rating::timestamp on each line"
    # A one-character separator keeps pandas' fast C parser; '::' then leaves empty fields between.
    raw = read_delimited(path, ":", header=False, what=what)
    _require_fields(path, raw, 7, what, shown=lambda n: (n + 1) // 2)
    raw = raw.iloc[:, [0, 2, 4, 6]].set_axis(["user", "item", "rating", "timestamp"], axis=1)
    item_file = path.with_name("movies.dat")
    titles = _read_dat_titles(item_file) if item_file.is_file() else {}
    return finish(raw, path, _headerless_layout(), titles)


def _headerless_layout() -> Layout:
    names = {"user": "field 1 (user)", "item": "field 2 (item)", "rating": "field 3 (rating)",
             "timestamp": "field 4 (timestamp)"}
    return Layout(names=names, unit="line", first=1)


def _require_fields(path: Path, raw: pd.DataFrame, expected: int, what: str, shown=lambda n: n) -> None:
    """A headerless file needs `expected` columns; fewer means a wrong delimiter or a wrong file."""
    if raw.shape[1] < expected:
        names = ["user", "item", "rating", "timestamp"]
        got = shown(raw.shape[1])
        raise DataError(f"{path}: missing field(s) {', '.join(names[got:])}: found {got} field(s) on "
                        f"line 1; expected {what}")


def _read_pipe_titles(path: Path) -> dict[str, str]:
    """MovieLens-100K `u.item`: id|title|release date|... in latin-1."""
    raw = read_delimited(path, "|", header=False, usecols=[0, 1], encoding="latin-1",
                         what="id|title|... on each line")
    return _title_dict(raw[0], raw[1])


def _read_dat_titles(path: Path) -> dict[str, str]:
    """`movies.dat`: id::title::genres; titles may contain ':' so split on the first two '::'."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read the file: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # MovieLens-1M's movies.dat is latin-1
    titles: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split("::", 2)
        if len(parts) >= 2 and parts[0].strip() and parts[1].strip():
            titles.setdefault(parts[0].strip(), parts[1].strip())
    return titles
