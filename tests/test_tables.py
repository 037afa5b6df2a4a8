"""tables.read_texts: the one reader of "texts from a file" (bench, loadtest, squeeze, export)."""

from __future__ import annotations

from pathlib import Path

import pytest

from squeezebert.tables import DataError, read_texts


def _texts(examples) -> list:
    return [e.text if e.text_pair is None else (e.text, e.text_pair) for e in examples]


def test_plain_text_skips_blank_lines_and_keeps_the_rest_as_written(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_bytes(b"\xef\xbb\xbfgood film \r\n\n   \nbad film\rlast")
    examples = read_texts(f)
    assert _texts(examples) == ["good film ", "bad film", "last"]
    assert [e.line for e in examples] == [1, 4, 5]
    assert all(e.label is None for e in examples)


def test_columns_of_csv_tsv_and_jsonl_and_pairs(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text('label,text,other\n1,"a, b",x\n0,c,y\n')
    assert _texts(read_texts(csv)) == ["a, b", "c"]
    tsv = tmp_path / "dev.tsv"
    tsv.write_text("sentence\tlabel\nit 's charming . \t1\n\nbleak \t0\n")
    assert _texts(read_texts(tsv, "sentence")) == ["it 's charming . ", "bleak "]
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"premise": "p1", "hypothesis": "h1", "label": 2}\n\n{"premise": "p2", "hypothesis": "h2"}\n')
    examples = read_texts(jsonl, "premise", "hypothesis")
    assert _texts(examples) == [("p1", "h1"), ("p2", "h2")]
    assert all(e.label is None for e in examples)  # labels are not read
    with pytest.raises(DataError, match=r"t\.csv:1: no column 'sentence'"):
        read_texts(csv, "sentence")
    with pytest.raises(DataError, match=r"t\.jsonl:1: missing field 'text'"):
        read_texts(jsonl)


def test_pairs_need_columns(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_text("a\n")
    with pytest.raises(DataError, match=r"t\.txt: a plain text file holds one text per line.*'hypothesis'"):
        read_texts(f, text_pair_column="hypothesis")


def test_empty_files_are_errors_unless_rows_are_optional(tmp_path: Path) -> None:
    for name, message in [("e.txt", r"e\.txt:1: empty file"), ("e.jsonl", r"e\.jsonl:1: empty file")]:
        (tmp_path / name).write_text("\n  \n")
        with pytest.raises(DataError, match=message):
            read_texts(tmp_path / name)
        assert read_texts(tmp_path / name, require_rows=False) == []
    header_only = tmp_path / "h.csv"
    header_only.write_text("text,label\n")
    with pytest.raises(DataError, match=r"h\.csv:2: no data rows after the header"):
        read_texts(header_only)
    assert read_texts(header_only, require_rows=False) == []


def test_bytes_that_are_not_utf8_name_the_line(tmp_path: Path) -> None:
    f = tmp_path / "latin1.txt"
    f.write_bytes("fine\ncaf\u00e9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.txt:2: bytes .* are not valid utf-8"):
        read_texts(f)


def test_missing_files_and_unknown_extensions(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.txt: no such file"):
        read_texts(tmp_path / "nope.txt")
    with pytest.raises(IsADirectoryError, match="expected a file of request texts"):
        read_texts(tmp_path, what="a file of request texts")
    f = tmp_path / "texts.dat"
    f.write_text("one\ntwo\n")
    with pytest.raises(DataError, match=r"texts\.dat: cannot tell the format"):
        read_texts(f)
    assert _texts(read_texts(f, plain_if_unknown=True)) == ["one", "two"]
    assert _texts(read_texts(f, fmt="text")) == ["one", "two"]
