"""Reader for Amazon Review 2018 (and 2014) JSON lines, plain or gzipped, with meta titles.

Review lines hold reviewerID, asin, unixReviewTime and overall (the rating); other fields are
ignored. Titles come from a sibling meta file `meta_<Category>.json(.gz)` (asin, title), found by
the review file's stem (`Clothing_Shoes_and_Jewelry_5.json.gz` -> `meta_Clothing_Shoes_and_Jewelry
.json.gz`) or, failing that, as the only `meta_*` file beside it.

Lines are parsed by pyarrow a chunk at a time (fast); a chunk pyarrow refuses (a string where a
number was expected, bad UTF-8, broken JSON) is re-parsed line by line with the json module, so a
bad line is reported by number. A truncated or corrupt gzip stream is reported with the number of
lines read before it broke.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

from core.data.errors import DataError
from core.data.interactions import Interactions, Layout, finish

REVIEW_FIELDS = {"user": "reviewerID", "item": "asin", "timestamp": "unixReviewTime", "rating": "overall"}
CHUNK_BYTES = 32 << 20
BLOCK_BYTES = 1 << 20
SUFFIXES = (".json.gz", ".jsonl.gz", ".json", ".jsonl")


def _open(path: Path) -> io.BufferedIOBase:
    """The file's bytes, gunzipped when it starts with the gzip magic number (whatever its name)."""
    try:
        with open(path, "rb") as probe:
            gzipped = probe.read(2) == b"\x1f\x8b"
        return gzip.open(path, "rb") if gzipped else open(path, "rb")
    except OSError as error:
        raise DataError(f"{path}: cannot read the file: {error.strerror or error}") from None


def _chunks(path: Path) -> Iterator[tuple[bytes, int]]:
    """(complete lines as one blob, number of lines before it) in blobs of about CHUNK_BYTES."""
    done, pending, size, tail = 0, [], 0, b""
    with _open(path) as stream:
        while True:
            try:
                block = stream.read1(BLOCK_BYTES)  # read1: keep what came before a failure
            except (EOFError, gzip.BadGzipFile, zlib.error) as error:
                complete = done + sum(p.count(b"\n") for p in pending) + tail.count(b"\n")
                raise DataError(
                    f"{path}: the gzip data is truncated or corrupt ({error}); {complete} complete line(s) "
                    "were read before it broke. Download the file again.") from None
            if not block:
                break
            data = tail + block
            cut = data.rfind(b"\n") + 1
            pending.append(data[:cut])
            size, tail = size + cut, data[cut:]
            if size >= CHUNK_BYTES:
                blob = b"".join(pending)
                yield blob, done
                done, pending, size = done + blob.count(b"\n"), [], 0
    blob = b"".join(pending) + tail
    if blob:
        yield blob, done


def _split_lines(blob: bytes) -> list[bytes]:
    lines = blob.split(b"\n")
    return lines[:-1] if lines and lines[-1] == b"" else lines


def _parse_slow(path: Path, lines: list[bytes], first_line: int, fields: list[str]) -> pd.DataFrame:
    """Line-by-line parsing, used when pyarrow refuses a chunk: reports the first bad line."""
    rows, numbers = [], []
    for offset, line in enumerate(lines):
        if not line.strip():
            continue
        number = first_line + offset
        try:
            record = json.loads(line.decode("utf-8", errors="replace"))
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: line {number} is not valid JSON ({error.msg}); expected one JSON "
                            f"object per line with fields {', '.join(fields)}") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {number} is a JSON {type(record).__name__}; expected an object "
                            f"with fields {', '.join(fields)}")
        rows.append([record.get(name) for name in fields])
        numbers.append(number)
    frame = pd.DataFrame(rows, columns=fields, dtype=object)
    frame["line"] = numbers
    return frame


def read_records(path: Path, schema: pa.Schema) -> pd.DataFrame:
    """The schema's fields of every JSON line (null when absent) plus a 1-based `line` column."""
    options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    frames = []
    for blob, before in _chunks(path):
        lines = _split_lines(blob)
        numbers = [before + i + 1 for i, line in enumerate(lines) if line.strip()]
        try:
            table = pa_json.read_json(io.BytesIO(blob), parse_options=options)
        except pa.ArrowException:
            table = None
        if table is None or table.num_rows != len(numbers):  # refused, or rows not one per line
            frames.append(_parse_slow(path, lines, before + 1, schema.names))
            continue
        frame = table.to_pandas()
        frame["line"] = numbers
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=[*schema.names, "line"])
    return pd.concat(frames, ignore_index=True)


def _first_fields(path: Path) -> list[str]:
    """Field names of the first non-blank line, for the missing-fields message."""
    for blob, _ in _chunks(path):
        for line in _split_lines(blob):
            if line.strip():
                try:
                    record = json.loads(line.decode("utf-8", errors="replace"))
                except json.JSONDecodeError:
                    return []
                return sorted(record) if isinstance(record, dict) else []
    return []


def read_amazon(path: Path) -> Interactions:
    """Amazon review JSON lines, with titles from the sibling meta file when there is one."""
    schema = pa.schema([(REVIEW_FIELDS["user"], pa.string()), (REVIEW_FIELDS["item"], pa.string()),
                        (REVIEW_FIELDS["timestamp"], pa.float64()), (REVIEW_FIELDS["rating"], pa.float64())])
    raw = read_records(path, schema)
    if len(raw) == 0:
        raise DataError(f"{path}: no reviews found; the file is empty (expected JSON lines with fields "
                        f"{', '.join(REVIEW_FIELDS.values())})")
    absent = [name for canon, name in REVIEW_FIELDS.items() if canon != "rating" and raw[name].isna().all()]
    if absent:
        found = _first_fields(path)
        raise DataError(f"{path}: missing field(s) {', '.join(repr(a) for a in absent)}; line 1 has field(s) "
                        f"{', '.join(repr(f) for f in found) or 'none'} (expected Amazon review JSON lines)")
    raw = raw.rename(columns={name: canon for canon, name in REVIEW_FIELDS.items()})
    if raw["rating"].isna().all():
        raw = raw.drop(columns="rating")
    meta = amazon_meta_file(path)
    titles = read_amazon_titles(meta) if meta else {}
    return finish(raw, path, Layout(names=dict(REVIEW_FIELDS), unit="line"), titles)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name[:-2] if name.endswith("_5") else name


def amazon_meta_file(path: Path) -> Path | None:
    """The meta file beside a review file: meta_<stem>.json(.gz), else the only meta_* there."""
    for suffix in SUFFIXES:
        candidate = path.with_name(f"meta_{_stem(path)}{suffix}")
        if candidate.is_file():
            return candidate
    others = sorted(p for p in path.parent.glob("meta_*") if p.is_file() and p.name.endswith(SUFFIXES))
    return others[0] if len(others) == 1 else None


def read_amazon_titles(path: Path) -> dict[str, str]:
    """asin -> title from a meta file (first title per asin; lines without one are skipped)."""
    raw = read_records(path, pa.schema([("asin", pa.string()), ("title", pa.string())]))
    raw = raw.dropna(subset=["asin", "title"])
    ids = raw["asin"].astype(str).str.strip()
    titles = raw["title"].astype(str).str.strip()
    keep = (ids != "") & (titles != "")
    frame = pd.DataFrame({"id": ids[keep], "title": titles[keep]}).drop_duplicates("id")
    return dict(zip(frame["id"].tolist(), frame["title"].tolist()))
