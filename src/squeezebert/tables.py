"""Streamed, strict readers for user files (plain text, CSV, TSV, JSONL) and label handling.

Torch-free on purpose: ``predict`` with the ONNX backend reads its input through this module and
must run where torch is not installed. :mod:`squeezebert.data` (which needs torch for batches)
builds its readers on this one and re-exports its public names.

Reading is strict: a bad row raises :class:`DataError` with one line of the form
``"{file}:{line}: {what}"`` naming the field and what was expected, never a bare traceback and
never a silently dropped row. Rows are read from a binary stream one at a time, so a multi-GB
file is never held in memory.

Format rules: CSV uses standard quoting; TSV has quoting off (GLUE-style TSVs hold unbalanced
quotes); both need a header row. JSONL is one JSON object per line. Plain text is one text per
line. Blank lines are skipped everywhere. A leading byte-order mark is dropped. Lines may end in
``\n``, ``\r\n`` or a lone ``\r``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from squeezebert.files import require_file

__all__ = [
    "FORMATS",
    "DataError",
    "Example",
    "Lines",
    "delimited_rows",
    "detect_format",
    "encode_labels",
    "examples_digest",
    "invalid_text",
    "iter_examples",
    "label_space",
    "read_table",
    "read_texts",
]

FORMATS: tuple[str, ...] = ("text", "csv", "tsv", "jsonl")
_BY_EXTENSION = {
    ".txt": "text",
    ".text": "text",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


class DataError(ValueError):
    """Bad input data. Errors in a file read ``"{path}:{line}: {what}"``; a Hub failure says what to do."""


@dataclass(frozen=True, slots=True)
class Example:
    """One input: ``line`` is the 1-based line in the source file (row number for Hub data).

    ``id`` is the row's id where the reader was asked for one (``predict``), else None.
    """

    text: str
    text_pair: str | None
    label: str | float | None
    line: int
    id: Any = None


def detect_format(name: str, fmt: str | None, formats: Sequence[str] = FORMATS) -> str:
    """``fmt`` if given (one of ``formats``), else the format the extension of ``name`` names."""
    if fmt is not None:
        if fmt not in formats:
            raise ValueError(f"format must be one of {', '.join(formats)}; got {fmt!r}")
        return fmt
    ext = Path(name).suffix.lower()
    kind = _BY_EXTENSION.get(ext)
    if kind is None or kind not in formats:
        raise DataError(f"{name}: cannot tell the format from the extension {ext!r}; pass one of {', '.join(formats)}")
    return kind


class Lines:
    """Decoded lines of a binary stream, counting lines and bytes (for errors and progress bars).

    Decoding line by line (rather than through a TextIOWrapper) lets a bad byte be reported with
    its line number without reading the whole file first. Lines end at ``\n``, ``\r\n`` or ``\r``.
    """

    def __init__(self, stream: IO[bytes], name: str) -> None:
        self.stream = stream
        self.name = name
        self.bytes_read = 0
        self.line = 0

    def __iter__(self) -> Iterator[str]:
        for block in self.stream:
            # Iterating a binary stream splits at \n only: a file with old Mac (\r) line ends would be
            # one line. Split those here too, as text mode's universal newlines do.
            pieces = block.splitlines(keepends=True) if b"\r" in block[:-2] else (block,)
            yield from self._decode(pieces)

    def _decode(self, pieces: Sequence[bytes]) -> Iterator[str]:
        for raw in pieces:
            self.line += 1
            self.bytes_read += len(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{self.name}:{self.line}: bytes {raw[e.start : e.end]!r} are not valid utf-8 ({e.reason}); "
                    "save the file as utf-8"
                ) from None
            if self.line == 1:
                # A byte-order mark is not part of the first text (MRPC's GLUE files start with one).
                text = text.removeprefix("\ufeff")
            yield text


def delimited_rows(lines: Lines, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """``(first line of the record, fields)`` per non-blank record of a CSV (``","``) or TSV (``"\\t"``).

    CSV uses standard quoting, so a quoted field may span lines; TSV has quoting off.
    """
    quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
    reader = csv.reader(lines, delimiter=delimiter, quoting=quoting)
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataError(f"{lines.name}:{start}: cannot parse the row ({e})") from None
        line, start = start, lines.line + 1
        # Blank lines are skipped, as pandas does; a trailing newline run is common in hand-made files.
        if fields and not (len(fields) == 1 and not fields[0].strip()):
            yield line, fields


def iter_examples(
    lines: Lines,
    fmt: str,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    default_id_column: str | None = None,
    require_rows: bool = False,
) -> Iterator[Example]:
    """Stream :class:`Example` objects from ``lines`` in format ``fmt`` (one of :data:`FORMATS`).

    Labels come back as strings (JSON ``1`` and ``"1"`` are the same label). ``id_column`` names a
    column that must exist; ``default_id_column`` one that is used when present. ``require_rows``:
    a file with no data rows is a :class:`DataError` (training data) rather than empty output.
    """
    if fmt == "text":
        if text_pair_column is not None:
            raise ValueError("plain text holds one text per line; text pairs need a CSV, TSV or JSONL input")
        if label_column is not None or id_column is not None:
            raise ValueError("plain text has no columns; labels and ids need a CSV, TSV or JSONL input")
        return _text_examples(lines, require_rows)
    columns = (text_column, text_pair_column, label_column, id_column, default_id_column)
    if fmt == "jsonl":
        return _jsonl_examples(lines, *columns, require_rows)
    if fmt in ("csv", "tsv"):
        return _delimited_examples(lines, "," if fmt == "csv" else "\t", *columns, require_rows)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")


def read_table(
    path: str | os.PathLike[str],
    text_column: str,
    text_pair_column: str | None = None,
    label_column: str | None = None,
    fmt: str | None = None,
) -> list[Example]:
    """Read user data from ``.csv``, ``.tsv`` (header row required) or ``.jsonl`` (one object a line).

    ``fmt`` overrides the extension. :func:`label_space` decides between classification and
    regression. Every problem raises :class:`DataError` naming the file, line and field; a file
    without data rows is one.
    """
    path = require_file(path, "a data file (.csv, .tsv or .jsonl)")
    kind = detect_format(str(path), fmt, ("csv", "tsv", "jsonl"))
    with open(path, "rb") as f:
        lines = Lines(f, str(path))
        return list(iter_examples(lines, kind, text_column, text_pair_column, label_column, require_rows=True))


def read_texts(
    path: str | os.PathLike[str],
    text_column: str = "text",
    text_pair_column: str | None = None,
    fmt: str | None = None,
    what: str = "a text, CSV, TSV or JSONL file of texts",
    plain_if_unknown: bool = False,
    require_rows: bool = True,
) -> list[Example]:
    """Texts, or (text, pair) examples, from a user file: plain text (one per line; blank lines
    skipped, the rest kept as written), or the ``text_column`` (and ``text_pair_column``) of a
    CSV, TSV or JSONL file. Labels and other columns are not read (``label`` is None).

    ``fmt`` overrides the extension; ``plain_if_unknown``: a file whose extension names no format
    is plain text rather than an error. ``what`` says what the file should be, for a path that
    is missing or a directory. Every problem is a :class:`DataError` naming the file and line: a
    pair column on plain text, a missing column, a bad row, bytes that are not UTF-8, and (with
    ``require_rows``) a file with no texts.
    """
    path = require_file(path, what)
    if fmt is None and plain_if_unknown and Path(path).suffix.lower() not in _BY_EXTENSION:
        fmt = "text"
    kind = detect_format(str(path), fmt)
    if kind == "text" and text_pair_column is not None:
        raise DataError(
            f"{path}: a plain text file holds one text per line, not the text pairs asked for "
            f"(column {text_pair_column!r}); pairs need a CSV, TSV or JSONL file"
        )
    with open(path, "rb") as f:
        lines = Lines(f, str(path))
        if kind == "text":
            return list(iter_examples(lines, kind, require_rows=require_rows))
        return list(iter_examples(lines, kind, text_column, text_pair_column, require_rows=require_rows))


def _text_examples(lines: Lines, require_rows: bool) -> Iterator[Example]:
    seen = False
    for text in lines:
        text = text.rstrip("\r\n")
        if text.strip():
            seen = True
            yield Example(text, None, None, lines.line)
    if require_rows and not seen:
        raise DataError(f"{lines.name}:1: empty file; expected one text per line")


def _delimited_examples(
    lines: Lines,
    delimiter: str,
    text_column: str,
    text_pair_column: str | None,
    label_column: str | None,
    id_column: str | None,
    default_id_column: str | None,
    require_rows: bool,
) -> Iterator[Example]:
    name = lines.name
    rows = delimited_rows(lines, delimiter)
    first = next(rows, None)
    if first is None:
        raise DataError(f"{name}:1: empty file; expected a header row naming the columns")
    header_line, header = first[0], [h.strip() for h in first[1]]
    for i, column in enumerate(header):
        if column in header[:i]:
            raise DataError(f"{name}:{header_line}: column {column!r} appears twice in the header")

    def where(column: str | None) -> int | None:
        if column is None:
            return None
        if column not in header:
            raise DataError(f"{name}:{header_line}: no column {column!r} (columns: {', '.join(header)})")
        return header.index(column)

    text_i, pair_i, label_i, id_i = (where(c) for c in (text_column, text_pair_column, label_column, id_column))
    if id_i is None and default_id_column in header:
        id_i = header.index(default_id_column)
    assert text_i is not None
    sep = "comma" if delimiter == "," else "tab"
    seen = False
    for line, fields in rows:
        if len(fields) != len(header):
            raise DataError(
                f"{name}:{line}: row has {len(fields)} {sep}-separated fields but the header has {len(header)}"
            )
        text = _check_text(name, line, text_column, fields[text_i])
        pair = None if pair_i is None else _check_text(name, line, text_pair_column or "", fields[pair_i])
        label = None
        if label_i is not None:
            label = fields[label_i].strip()
            if not label:
                raise DataError(f"{name}:{line}: missing label in {label_column!r}")
        seen = True
        yield Example(text, pair, label, line, None if id_i is None else fields[id_i])
    if require_rows and not seen:
        raise DataError(f"{name}:{header_line + 1}: no data rows after the header")


def _jsonl_examples(
    lines: Lines,
    text_column: str,
    text_pair_column: str | None,
    label_column: str | None,
    id_column: str | None,
    default_id_column: str | None,
    require_rows: bool,
) -> Iterator[Example]:
    name = lines.name
    seen = False
    for raw in lines:
        line = lines.line
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise DataError(f"{name}:{line}: malformed JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{name}:{line}: expected a JSON object, got {_json_type(obj)}")
        for column in (text_column, text_pair_column, label_column, id_column):
            if column is not None and column not in obj:
                raise DataError(f"{name}:{line}: missing field {column!r} (fields: {', '.join(obj)})")
        text = _check_text(name, line, text_column, obj[text_column])
        pair = None if text_pair_column is None else _check_text(name, line, text_pair_column, obj[text_pair_column])
        label = None
        if label_column is not None:
            if obj[label_column] is None:
                raise DataError(f"{name}:{line}: missing label in {label_column!r}")
            label = _json_label(name, line, label_column, obj[label_column])
        id_key = id_column or default_id_column
        row_id = None if id_key is None else obj.get(id_key)
        if isinstance(row_id, float) and not math.isfinite(row_id):
            raise DataError(f"{name}:{line}: field {id_key!r} is {row_id}; not valid JSON out")
        seen = True
        yield Example(text, pair, label, line, row_id)
    if require_rows and not seen:
        raise DataError(f"{name}:1: empty file; expected one JSON object per line")


_SURROGATE = re.compile("[\ud800-\udfff]")


def invalid_text(text: str) -> str | None:
    """Why ``text`` is not text the tokenizer can take, or None when it is.

    A lone UTF-16 surrogate (U+D800..U+DFFF) is the one such case: no UTF-8 file holds one, but a
    JSON ``\\ud800`` escape decodes to it, and the tokenizer then raises on the whole batch.
    """
    found = _SURROGATE.search(text)
    if found is None:
        return None
    return (
        f"holds a lone surrogate U+{ord(found.group()):04X} at character {found.start()}; expected valid Unicode text"
    )


def _check_text(name: str, line: int, column: str, value: Any) -> str:
    if not isinstance(value, str):
        raise DataError(f"{name}:{line}: field {column!r} must be a string, got {_json_type(value)}")
    problem = invalid_text(value)
    if problem is not None:
        raise DataError(f"{name}:{line}: field {column!r} {problem}")
    if not value.strip():
        raise DataError(f"{name}:{line}: empty text in {column!r}; expected a non-blank string")
    return value


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _json_label(name: str, line: int, column: str, value: object) -> str:
    # bool is a subclass of int: check it first, or true would become the label "True".
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DataError(f"{name}:{line}: field {column!r} is {_json_type(value)}; labels must be strings or numbers")
    if isinstance(value, float) and not math.isfinite(value):
        raise DataError(f"{name}:{line}: field {column!r} is {value}; expected a finite number")
    label = str(value).strip()  # JSON 1 and "1" are the same label
    if not label:
        raise DataError(f"{name}:{line}: missing label in {column!r}")
    return label


def examples_digest(examples: Sequence[Example]) -> str:
    """sha256 (hex) of the examples' texts and labels in order: the same for the same data, whatever
    file (or Hub dataset) it was read from. A resumed run compares it with the saved one."""
    h = hashlib.sha256()
    for ex in examples:
        pair = "\x00" if ex.text_pair is None else ex.text_pair
        h.update(f"{ex.text}\x1f{pair}\x1f{ex.label}\x1e".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


# ----------------------------------------------------------------------------------------- labels
def _as_number(label: str | float) -> float | None:
    if isinstance(label, float):
        return label
    try:
        value = float(label)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def label_space(examples: Sequence[Example], source: str | os.PathLike[str]) -> tuple[str, ...] | None:
    """The label set of ``examples``, or None when they are a regression task.

    Regression when every label is a number and at least one is non-integral (``3.5``); then
    :func:`encode_labels` with ``label2id=None`` turns them into floats. Otherwise classification:
    the distinct labels as strings, sorted numerically if all are integers, else lexicographically.
    """
    labels: list[str | float] = []
    for ex in examples:
        if ex.label is None:
            raise DataError(f"{source}:{ex.line}: missing label")
        labels.append(ex.label)
    if not labels:
        raise DataError(f"{source}: no labelled examples to take the label set from")
    numbers = [_as_number(label) for label in labels]
    if all(n is not None for n in numbers):
        if any(not n.is_integer() for n in numbers if n is not None):
            return None
        distinct = sorted(set(map(str, labels)), key=lambda s: (float(s), s))  # ties: deterministic order
        # "1" and "1.0" (or "01") would otherwise become two classes that mean the same thing.
        seen: dict[float, str] = {}
        for label in distinct:
            value = float(label)
            if value in seen:
                raise DataError(f"{source}: labels {seen[value]!r} and {label!r} are the same number written two ways")
            seen[value] = label
        return tuple(distinct)
    return tuple(sorted(set(map(str, labels))))


def encode_labels(
    examples: Sequence[Example], label2id: Mapping[str, int] | None, source: str | os.PathLike[str]
) -> list[int] | list[float]:
    """Class ids through ``label2id``, or floats when ``label2id`` is None (regression).

    A label the model never saw raises :class:`DataError` naming the line and the known labels.
    """
    if label2id is None:
        scores: list[float] = []
        for ex in examples:
            if ex.label is None:
                raise DataError(f"{source}:{ex.line}: missing label")
            value = _as_number(ex.label)
            if value is None:
                raise DataError(f"{source}:{ex.line}: label {ex.label!r} is not a number; this is a regression task")
            scores.append(float(value))
        return scores
    ids: list[int] = []
    for ex in examples:
        if ex.label is None:
            raise DataError(f"{source}:{ex.line}: missing label")
        key = ex.label if isinstance(ex.label, str) else str(ex.label)
        if key not in label2id:
            known = ", ".join(sorted(label2id, key=label2id.__getitem__))
            raise DataError(f"{source}:{ex.line}: label {key!r} was never seen by the model; known labels: {known}")
        ids.append(label2id[key])
    return ids
