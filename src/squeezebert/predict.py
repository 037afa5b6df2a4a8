"""Classify a text, CSV, TSV or JSONL file (or stdin) into JSONL, streamed in chunks.

:func:`predict_file` reads ``chunk_size`` rows, classifies them with one
:class:`~squeezebert.infer.Classifier` (the same one ``serve`` and ``bench`` use), writes their
results and moves on, so memory stays flat on a multi-gigabyte input. Each output line is one
JSON object per input row, in input order::

    {"line": 7, "id": "a17", "label": "positive", "score": 0.98, "probabilities": {...}}

``line`` is the input line the row starts on (1-based, header included), ``id`` is copied from the
id column when there is one (``--id-column``, or a column named ``id`` when present), and the rest
is :meth:`~squeezebert.infer.Prediction.to_dict` (``value`` instead of label/score for a
regression model).

Input is read by :mod:`squeezebert.tables`, the readers :func:`squeezebert.data.read_table` uses
too: CSV with standard quoting and TSV with quoting off, both with a header row; JSONL with one
object per line; plain text one text per line; blank lines skipped; every problem raises
:class:`~squeezebert.tables.DataError` reading ``"{path}:{line}: {what}"``. An output file is
written under a temporary name in its own directory and renamed at the end, so a bad row leaves no
partial output behind; on stdout, the rows before the bad one have already gone out.

This module imports no torch (nor does :mod:`squeezebert.tables`): with ``backend="onnx"`` and an
export directory, predict runs where torch is not installed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from squeezebert import tables
from squeezebert.files import atomic_write, check_writable_file, require_file
from squeezebert.infer import Classifier, Prediction, TextInput
from squeezebert.runtime import RuntimeOptions
from squeezebert.tables import DataError

FORMATS = tables.FORMATS
STDIO = "-"
DEFAULT_ID_COLUMN = "id"


# Bad input rows and files raise this: ``"{path}:{line}: {what}"``. One class with
# ``squeezebert.data.DataError``; the old name stays for callers that catch it.
InputError = DataError


class SupportsPredict(Protocol):
    """What predict needs from a classifier: :meth:`Classifier.predict`."""

    def predict(self, inputs: list[TextInput], batch_size: int = 32) -> list[Prediction]: ...


@dataclass(frozen=True)
class Row:
    """One input row: the line it starts on, its id (or None) and its text or text pair."""

    line: int
    id: Any
    text: TextInput


@dataclass
class PredictReport:
    """What :func:`predict_file` did."""

    input: str
    output: str
    format: str
    rows: int
    seconds: float
    texts_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- reading (streamed)
def detect_format(path: str, fmt: str | None) -> str:
    """``fmt`` if given, else the format its extension names; stdin defaults to plain text."""
    if fmt is None and path == STDIO:
        return "text"
    return tables.detect_format(path, fmt)


def read_rows(
    stream: IO[bytes],
    fmt: str,
    name: str = "<input>",
    text_column: str = "text",
    text_pair_column: str | None = None,
    id_column: str | None = None,
) -> Iterator[Row]:
    """Stream :class:`Row` objects from a binary stream, one at a time.

    ``fmt`` is one of :data:`FORMATS`; ``name`` is the file name errors report. ``id_column``
    None picks up a column named ``id`` where there is one; a named one must exist.
    """
    return _rows(tables.Lines(stream, name), fmt, text_column, text_pair_column, id_column)


def _rows(
    lines: tables.Lines, fmt: str, text_column: str, text_pair_column: str | None, id_column: str | None
) -> Iterator[Row]:
    if fmt == "text" and id_column is not None:
        raise ValueError("plain text has no columns; --id-column needs a CSV, TSV or JSONL input")
    examples = tables.iter_examples(
        lines, fmt, text_column, text_pair_column, id_column=id_column, default_id_column=DEFAULT_ID_COLUMN
    )
    return (Row(ex.line, ex.id, ex.text if ex.text_pair is None else (ex.text, ex.text_pair)) for ex in examples)


# --------------------------------------------------------------------------- writing
def _record(row: Row, prediction: Prediction) -> dict[str, Any]:
    record: dict[str, Any] = {"line": row.line}
    if row.id is not None:
        record["id"] = row.id
    record.update(prediction.to_dict())
    return record


def _chunks(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _progress(total_bytes: int | None, enabled: bool | None) -> Any:
    """A tqdm bar over input bytes on a terminal; None when off or tqdm is missing."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None  # the bar is a nicety; predicting works without it
    return tqdm(total=total_bytes, unit="B", unit_scale=True, desc="predict", file=sys.stderr, dynamic_ncols=True)


def _classify(
    classifier: SupportsPredict,
    rows: Iterator[Row],
    out: IO[str],
    lines: tables.Lines,
    batch_size: int,
    chunk_size: int,
    bar: Any,
) -> int:
    count = 0
    for chunk in _chunks(rows, chunk_size):
        predictions = classifier.predict([r.text for r in chunk], batch_size=batch_size)
        if len(predictions) != len(chunk):
            raise RuntimeError(f"the classifier returned {len(predictions)} results for {len(chunk)} inputs")
        out.write("".join(json.dumps(_record(r, p), ensure_ascii=False) + "\n" for r, p in zip(chunk, predictions)))
        count += len(chunk)
        if bar is not None:
            bar.set_postfix(rows=count, refresh=False)
            bar.update(lines.bytes_read - bar.n)
    return count


def predict_file(
    model: str | os.PathLike[str] | SupportsPredict,
    input: str | os.PathLike[str] = STDIO,
    output: str | os.PathLike[str] = STDIO,
    *,
    fmt: str | None = None,
    text_column: str = "text",
    text_pair_column: str | None = None,
    id_column: str | None = None,
    batch_size: int = 32,
    chunk_size: int = 1024,
    options: RuntimeOptions | None = None,
    progress: bool | None = None,
) -> PredictReport:
    """Classify every row of ``input`` and write one JSON object per row to ``output``.

    ``model``: a loaded classifier (anything with ``predict(inputs, batch_size)``), or a path or
    alias for :meth:`Classifier.from_pretrained` with ``options`` (how it runs; default
    :class:`~squeezebert.runtime.RuntimeOptions`: normalized text, the trained max length). ``input`` and
    ``output`` are paths or ``"-"`` for stdin/stdout. ``fmt`` (text, csv, tsv, jsonl) overrides
    the input's extension. Rows are read, classified and written ``chunk_size`` at a time.
    ``progress``: a progress bar on stderr (None: when stderr is a terminal).

    Raises :class:`~squeezebert.tables.DataError` naming the file and line of a bad row; an output
    file is then left untouched (it is written under a temporary name and renamed at the end).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    in_name, out_name = os.fspath(input), os.fspath(output)
    in_path = None if in_name == STDIO else require_file(in_name, "an input file")
    kind = detect_format(in_name, fmt)
    out_path = None if out_name == STDIO else Path(out_name)
    if in_path is not None:
        if out_path is not None and out_path.exists() and out_path.resolve() == in_path.resolve():
            raise ValueError(f"{out_name}: is the input file; write the predictions somewhere else")
    if out_path is not None:  # before the model loads: a bad output path fails at once
        check_writable_file(out_path, "--output")

    with _open_input(in_name) as stream:
        lines = tables.Lines(stream, "<stdin>" if in_name == STDIO else in_name)
        rows = _rows(lines, kind, text_column, text_pair_column, id_column)
        # Read the header and first row before loading the model: a wrong column name or a bad
        # file fails in milliseconds, not after the model has loaded.
        first = next(rows, None)
        if first is not None:
            rows = itertools.chain([first], rows)
        classifier = model if not isinstance(model, (str, os.PathLike)) else Classifier.from_pretrained(model, options)
        start = time.perf_counter()  # classification only, not the model's loading
        bar = _progress(None if in_name == STDIO else Path(in_name).stat().st_size, progress)
        try:
            if out_path is None:
                count = _classify(classifier, rows, sys.stdout, lines, batch_size, chunk_size, bar)
                sys.stdout.flush()
            else:
                count = _write_atomic(
                    out_path, lambda f: _classify(classifier, rows, f, lines, batch_size, chunk_size, bar)
                )
        finally:
            if bar is not None:
                bar.close()
    seconds = time.perf_counter() - start
    return PredictReport(
        input=in_name,
        output=out_name,
        format=kind,
        rows=count,
        seconds=seconds,
        texts_per_s=count / seconds if seconds > 0 else 0.0,
    )


def _open_input(name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
    if name == STDIO:
        return contextlib.nullcontext(sys.stdin.buffer)  # not ours to close
    return open(name, "rb")


def _write_atomic(path: Path, write: Callable[[IO[str]], int]) -> int:
    """``write(text_file)`` into a new file beside ``path``, renamed onto it only on success;
    returns what ``write`` returned."""
    counts: list[int] = []

    def write_file(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            counts.append(write(f))

    atomic_write(path, write_file)
    return counts[0]
