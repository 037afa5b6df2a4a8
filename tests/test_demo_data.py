"""Checks on the hand-written demo sentiment data shipped in squeezebert/demo_data."""

from __future__ import annotations

import csv
import io
from importlib.resources import files

import pytest

LABELS = {"positive", "negative"}
SIZES = {"train": (450, 520), "dev": (140, 180)}


def _norm(sentence: str) -> str:
    return " ".join(sentence.lower().split())


def _read(split: str) -> tuple[list[str], list[tuple[str, str]]]:
    resource = files("squeezebert") / "demo_data" / f"{split}.tsv"
    assert resource.is_file(), f"{split}.tsv not found through importlib.resources"
    text = resource.read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[0], [tuple(r) for r in rows[1:]]


@pytest.fixture(scope="module")
def splits() -> dict[str, list[tuple[str, str]]]:
    out = {}
    for split in SIZES:
        header, rows = _read(split)
        assert header == ["sentence", "label"], split
        out[split] = rows
    return out


@pytest.mark.parametrize("split", sorted(SIZES))
def test_rows_well_formed(splits, split):
    rows = splits[split]
    lo, hi = SIZES[split]
    assert lo <= len(rows) <= hi
    for row in rows:
        assert len(row) == 2, row
        sentence, label = row
        assert sentence.strip(), row
        assert label in LABELS, row


@pytest.mark.parametrize("split", sorted(SIZES))
def test_balanced(splits, split):
    rows = splits[split]
    n_pos = sum(label == "positive" for _, label in rows)
    assert abs(n_pos / len(rows) - 0.5) <= 0.02


@pytest.mark.parametrize("split", sorted(SIZES))
def test_no_duplicates_within_split(splits, split):
    normed = [_norm(s) for s, _ in splits[split]]
    assert len(normed) == len(set(normed))


def test_no_overlap_across_splits(splits):
    train = {_norm(s) for s, _ in splits["train"]}
    dev = {_norm(s) for s, _ in splits["dev"]}
    assert not train & dev
