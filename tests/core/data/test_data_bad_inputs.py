"""Bad input gives a DataError naming the file, the column and what was expected; drops are counted."""

from __future__ import annotations

import gzip
import json
import random
import re

import pytest

from core.config import DataConfig
from core.data.errors import DataError
from core.data.prepare import prepare
from core.data.sources import read_interactions

CFG = DataConfig()
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def _error(path, cfg=CFG) -> str:
    with pytest.raises(DataError) as caught:
        read_interactions(path, cfg)
    assert str(path) in str(caught.value)
    return str(caught.value)


def test_missing_columns_are_named_with_those_found(put):
    message = _error(put("t/t.csv", "user,when,item_name\nu,1,i\n"))
    assert "missing column(s) 'item', 'timestamp'" in message
    assert "found column(s) 'user', 'when', 'item_name'" in message
    assert "data.time_column='timestamp'" in message


def test_wrong_delimiter_becomes_missing_columns(put):
    message = _error(put("t/t.csv", "user;item;timestamp\nu;i;1\n"))
    assert "missing column(s) 'user', 'item', 'timestamp'" in message
    assert "found column(s) 'user;item;timestamp'" in message and "','-separated" in message
    message = _error(put("r/r.inter", "user_id:token,item_id:token,timestamp:float\n1,2,3\n"))
    assert "missing column(s) 'user_id', 'item_id', 'timestamp'" in message and "tab-separated" in message
    message = _error(put("ml/u.data", "1,2,3,4\n"))
    assert "missing field(s) item, rating, timestamp" in message


def test_non_numeric_timestamp_names_column_value_and_line(put):
    message = _error(put("t/t.csv", "user,item,timestamp\nu,i,1\nu,j,yesterday\nu,k,later\n"))
    assert "column 'timestamp'" in message and "'yesterday'" in message and "line 3" in message
    assert "2 such value(s)" in message
    message = _error(put("r/r.inter", INTER_HEADER + "1\t2\t5\t100\n1\t3\t5\tnoon\n"))
    assert "column 'timestamp:float'" in message and "line 3" in message and "'noon'" in message


def test_non_numeric_timestamp_in_json_names_the_line(put):
    lines = [{"reviewerID": "a", "asin": "b", "unixReviewTime": 5, "overall": 1},
             {"reviewerID": "a", "asin": "c", "unixReviewTime": "05 3, 2014", "overall": 1}]
    path = put("a/a.json", "".join(json.dumps(x) + "\n" for x in lines))
    message = _error(path)
    assert "column 'unixReviewTime'" in message and "line 2" in message and "'05 3, 2014'" in message


def test_negative_and_fractional_timestamps(put):
    message = _error(put("t/t.csv", "user,item,timestamp\nu,i,1\nu,j,-5\n"))
    assert "column 'timestamp'" in message and "-5 " in message and "line 3" in message and "negative" in message
    message = _error(put("t/t.tsv", "user\titem\ttimestamp\nu\ti\t1.5\n"))
    assert "line 2" in message and "whole number" in message


def test_non_numeric_rating(put):
    message = _error(put("t/t.csv", "user,item,timestamp,rating\nu,i,1,great\n"))
    assert "column 'rating'" in message and "'great'" in message and "line 2" in message


@pytest.mark.parametrize("name, content", [
    ("t/t.csv", ""), ("t/t.csv", "user,item,timestamp\n"), ("r/r.inter", INTER_HEADER),
    ("ml/u.data", ""), ("a/a.json", ""), ("a/b.json.gz", gzip.compress(b"")),
])
def test_empty_files(put, name, content):
    message = _error(put(name, content))
    assert "empty" in message


def test_truncated_gzip_names_file_and_lines_read(put):
    rng = random.Random(0)  # incompressible ids, so the cut lands well inside the stream
    lines = b"".join(json.dumps({"reviewerID": f"{rng.random()}", "asin": f"{rng.random()}",
                                 "unixReviewTime": i}).encode() + b"\n" for i in range(20000))
    data = gzip.compress(lines)
    message = _error(put("a/Cut_5.json.gz", data[: len(data) // 2]))
    assert "truncated or corrupt" in message
    read = int(re.search(r"(\d+) complete line\(s\) were read", message).group(1))
    assert 1000 < read < 10000


def test_invalid_json_line_is_named(put):
    message = _error(put("a/a.jsonl", '{"reviewerID": "a", "asin": "b", "unixReviewTime": 1}\n{"reviewerID": \n'))
    assert "line 2 is not valid JSON" in message


def test_missing_json_fields_list_the_fields_found(put):
    message = _error(put("a/a.json", '{"user": "a", "asin": "b", "time": 1}\n'))
    assert "missing field(s) 'reviewerID', 'unixReviewTime'" in message and "'time'" in message


def test_not_a_parquet_file(put):
    message = _error(put("p/p.parquet", "user,item,timestamp\n"))
    assert "not a readable Parquet file" in message


def test_duplicates_and_missing_values_are_dropped_and_counted(put):
    path = put("t/t.csv", "user,item,timestamp\nu,i,1\nu,i,1\nu,i,2\n,j,3\nv,k,\nu,i,1\n")
    data = read_interactions(path, CFG)
    assert list(data.frame["timestamp"]) == [1, 2]
    assert data.dropped == {"duplicate rows": 2, "missing values": 2}


def test_one_interaction_user_is_dropped_and_counted(put, data_root):
    put("t/t.csv", "user,item,timestamp\na,1,1\na,2,2\na,3,3\nb,1,4\nc,4,1\nc,5,1\nc,6,1\n")
    prepared = prepare(DataConfig(dataset="t", kcore=0, n_negatives=1), data_root)
    assert prepared.user_ids == ["a", "c"]
    assert prepared.stats["drops"]["short sequences (< 3 interactions)"] == 1
    assert prepared.stats["drops"]["users with < 3 interactions"] == 1


def test_min_rating_without_ratings_is_refused(put, data_root):
    put("t/t.csv", "user,item,timestamp\na,1,1\n")
    with pytest.raises(DataError, match="min_rating=4.0 is set but the file has no rating column"):
        prepare(DataConfig(dataset="t", min_rating=4.0), data_root)


def test_nothing_left_after_filtering(put, data_root):
    put("t/t.csv", "user,item,timestamp\na,1,1\na,2,2\n")
    with pytest.raises(DataError, match="no interactions left after filtering"):
        prepare(DataConfig(dataset="t", kcore=0), data_root)


def test_inter_cut_in_its_last_row_is_refused_with_its_line(put):
    whole = INTER_HEADER + "1\t2\t5\t881250949\n1\t3\t5\t881250950\n"
    assert len(read_interactions(put("r/r.inter", whole), CFG).frame) == 2
    for cut in (whole[:-4], whole[:-12]):  # inside the timestamp; inside the row's fields
        message = _error(put("r/r.inter", cut))
        assert "line 3" in message and "newline" in message and "cut" in message
        assert repr(cut.rsplit("\n", 1)[-1]) in message  # the cut row, escaped
        assert "copy" in message  # what to do: copy it again


def test_inter_with_a_binary_header_shows_a_short_escaped_excerpt(put):
    garbage = bytes(b for b in range(256) if b not in b"\t\n\r") * 4 + b"\n1\t2\t5\t100\n"  # 1 KB, one line
    message = _error(put("r/r.inter", garbage))
    assert len(message) < 500 and message.isprintable()
    assert "line 1" in message and r"'\x00\x01\x02" in message and "user_id:token" in message
    long_text = "the quick brown fox " * 50 + "\n1\t2\t5\t100\n"  # a text file, not an .inter
    message = _error(put("r/r.inter", long_text))
    assert len(message) < 500 and "missing column(s) 'user_id', 'item_id', 'timestamp'" in message
