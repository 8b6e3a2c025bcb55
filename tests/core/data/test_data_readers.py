"""Every reader on tiny generated files: columns, types, file order and titles."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from core.config import DataConfig
from core.data.errors import DataError
from core.data.sources import detect_format, read_interactions, title_file

CFG = DataConfig()


def _rows(frame: pd.DataFrame) -> list[tuple]:
    return list(frame[["user", "item", "timestamp"]].itertuples(index=False, name=None))


def test_recbole_inter_with_item_titles(put):
    path = put("toy/toy.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                "1\t10\t5\t100\n2\t11\t3.5\t90.0\n")
    put("toy/toy.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\n10\tToy Story\t1995\n")
    data = read_interactions(path, CFG)
    assert _rows(data.frame) == [("1", "10", 100), ("2", "11", 90)]
    assert data.frame["timestamp"].dtype == np.int64
    assert data.frame["rating"].tolist() == [5.0, 3.5]
    assert data.titles == {"10": "Toy Story"}
    assert data.has_rating and data.dropped == {}
    assert title_file(path) == path.with_suffix(".item")


def test_recbole_without_rating_and_non_utf8_titles(put):
    path = put("toy/toy.inter", "item_id:token\tuser_id:token\ttimestamp:float\na\tu\t1\n")
    put("toy/toy.item", b"item_id:token\ttitle:token_seq\na\tCaf\xe9 \xff\n")
    data = read_interactions(path, CFG)
    assert _rows(data.frame) == [("u", "a", 1)]
    assert np.isnan(data.frame["rating"].iloc[0]) and not data.has_rating
    assert data.titles == {"a": "Caf\ufffd \ufffd"}  # replacement characters, no crash


def test_movielens_u_data_and_latin1_u_item(put):
    path = put("ml/u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    put("ml/u.item", b"242|Kolya (1996)|24-Jan-1997||http://x|0|0\n302|L\xe9on (1994)|01-Jan-1994||x|0|0\n")
    data = read_interactions(path, CFG)
    assert detect_format(path) == "movielens-100k"
    assert _rows(data.frame) == [("196", "242", 881250949), ("186", "302", 891717742)]
    assert data.titles == {"242": "Kolya (1996)", "302": "L\xe9on (1994)"}


def test_movielens_ratings_dat_and_movies_dat(put):
    path = put("ml1m/ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    put("ml1m/movies.dat", "1193::Star Wars: Episode IV (1977)::Action\n661::James::Animation\n")
    data = read_interactions(path, CFG)
    assert _rows(data.frame) == [("1", "1193", 978300760), ("1", "661", 978302109)]
    assert data.frame["rating"].tolist() == [5.0, 3.0]
    assert data.titles["1193"] == "Star Wars: Episode IV (1977)"


REVIEWS = [
    {"reviewerID": "A1", "asin": "B01", "unixReviewTime": 1400000000, "overall": 5.0, "style": {"x": 1}},
    {"reviewerID": "A2", "asin": "B02", "unixReviewTime": 1400000100, "overall": 2.0, "image": ["u"]},
]
META = [{"asin": "B01", "title": "Socks", "price": "$1"}, {"asin": "B02"}]


def _json_lines(records: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def test_amazon_json_with_meta(put):
    path = put("cloth/Clothing_5.json", _json_lines(REVIEWS))
    put("cloth/meta_Clothing.json", _json_lines(META))
    data = read_interactions(path, CFG)
    assert _rows(data.frame) == [("A1", "B01", 1400000000), ("A2", "B02", 1400000100)]
    assert data.frame["rating"].tolist() == [5.0, 2.0]
    assert data.titles == {"B01": "Socks"}


def test_amazon_json_gz_and_slow_path(put):
    # A numeric reviewerID makes pyarrow refuse the chunk; the line-by-line path still reads it.
    records = REVIEWS + [{"reviewerID": 7, "asin": "B03", "unixReviewTime": 1400000200, "overall": 1}]
    path = put("sport/Sports_5.json.gz", gzip.compress(b"\n" + _json_lines(records)))
    put("sport/meta_Sports.json.gz", gzip.compress(_json_lines(META)))
    data = read_interactions(path, CFG)
    assert _rows(data.frame)[-1] == ("7", "B03", 1400000200)
    assert data.titles == {"B01": "Socks"}
    assert title_file(path).name == "meta_Sports.json.gz"


def test_csv_with_configured_columns_keeps_id_text(put):
    path = put("t/t.csv", "uid,iid,when,stars,extra\n007,0042,10,4,x\n007,43,11,,y\n")
    cfg = DataConfig(user_column="uid", item_column="iid", time_column="when", rating_column="stars")
    frame = read_interactions(path, cfg).frame
    assert _rows(frame) == [("007", "0042", 10), ("007", "43", 11)]
    assert frame["rating"].iloc[0] == 4.0 and np.isnan(frame["rating"].iloc[1])


def test_tsv_without_rating(put):
    data = read_interactions(put("t/t.tsv", "user\titem\ttimestamp\nu\ti\t5\n"), CFG)
    assert _rows(data.frame) == [("u", "i", 5)] and not data.has_rating


def test_parquet_with_int_ids_and_datetimes(put, data_root):
    path = data_root / "raw" / "p" / "p.parquet"
    path.parent.mkdir(parents=True)
    when = pd.to_datetime(["1970-01-01 00:00:10", "1970-01-01 00:01:00"])
    pd.DataFrame({"user": [1, 2], "item": [3, 4], "timestamp": when}).to_parquet(path)
    assert _rows(read_interactions(path, CFG).frame) == [("1", "3", 10), ("2", "4", 60)]


def test_unknown_format_is_refused(put):
    with pytest.raises(DataError, match=r"not a recognised interaction file.*\.csv"):
        read_interactions(put("x/x.xlsx", "nope"), CFG)


def test_csv_with_quotes_and_byte_order_mark(put):
    path = put("t/t.csv", b'\xef\xbb\xbf"user","item","timestamp"\n"a, b","x",3\n')
    assert _rows(read_interactions(path, CFG).frame) == [("a, b", "x", 3)]
