"""Batch inference over a file with Ray Data: one :class:`~squeezebert.infer.Classifier` per actor.

:func:`classify_file` reads a CSV, TSV, JSONL or Parquet file, cuts it into blocks, and sends them
through ``Dataset.map_batches`` on a pool of Ray actors; each actor loads the model once and
classifies whole blocks with ``Classifier.predict`` (which sorts a block by length and pads each
batch only to its own longest text). Results stream back to this process in input order and are
written as JSONL or Parquet (by the output's extension) under a temporary name, then renamed: a
failed job never leaves a half-written output.

Each output row carries the input's id (``id_column``, or ``row``: the 0-based data row number)
and the fields of :meth:`~squeezebert.infer.Prediction.to_dict`: ``label``, ``score`` and
``probabilities`` for a classifier, ``value`` for a regression model. The job checks that every
input row came back exactly once.

With no address a local Ray instance is started (and stopped afterwards) with ``num_cpus`` CPUs;
with ``ray_address`` (``"auto"``, ``"ray://head:10001"``, ...) the job runs on that cluster, and
the model path and this package must then exist on every node. Ray is the ``ray`` extra:
``pip install 'squeezebert[ray]'``.

The driver reads the input file itself: one file is one read task in Ray too, and reading it here
lets the job number the rows and check the text columns before anything is scheduled.

With ``backend="onnx"`` and an export directory, neither the driver nor an actor imports torch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from squeezebert.files import atomic_write, check_writable_file, require_file
from squeezebert.runtime import RuntimeOptions

log = logging.getLogger(__name__)

ROW_COLUMN = "row"
INPUT_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


class BatchError(ValueError):
    """Bad input or settings for a batch job: one line naming the file, row or option."""


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401  (the [data] part of the extra)
    except ImportError as e:
        raise ImportError(f"batch inference with Ray needs {e.name}: pip install 'squeezebert[ray]'") from None
    return ray


@dataclass
class BatchReport:
    """What a batch job did: rows written, wall time (Ray start-up included) and the pool size."""

    input: str
    output: str
    rows: int
    seconds: float
    texts_per_s: float
    workers: int
    threads_per_worker: int
    ray_address: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- input
def read_input(
    path: str | os.PathLike[str],
    text_column: str = "text",
    text_pair_column: str | None = None,
    id_column: str | None = None,
) -> Any:
    """The input as a ``pyarrow.Table`` of the id column (``id_column``, else ``row`` = 0, 1, ...)
    and the text column(s) as strings, in file order. Raises :class:`BatchError` for a missing
    column or an empty (null) text, naming the file and the row."""
    _ray()  # pyarrow comes with ray[data]
    import pyarrow as pa

    path = Path(path)
    fmt = INPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BatchError(f"{path}: cannot tell the format from {path.suffix!r}; use .csv, .tsv, .jsonl or .parquet")
    require_file(path, "an input file")
    texts = [c for c in (text_column, text_pair_column) if c is not None]
    if id_column is not None and id_column in texts:
        raise BatchError(f"the id column {id_column!r} is also a text column")
    try:
        table = _read_table(path, fmt, texts + ([id_column] if id_column is not None else []))
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, UnicodeDecodeError) as e:
        raise BatchError(f"{path}: cannot read as {fmt} ({' '.join(str(e).split())})") from None
    wanted = texts + ([id_column] if id_column is not None else [])
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise BatchError(f"{path}: no column {', '.join(map(repr, missing))}; columns are {table.column_names}")
    if table.num_rows == 0:
        raise BatchError(f"{path}: no rows")
    for column in texts:
        values = table[column]
        if values.null_count:
            first = values.is_null().to_pylist().index(True)
            raise BatchError(f"{path}: data row {first + 1}: column {column!r} is empty")
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            raise BatchError(f"{path}: column {column!r} holds {values.type}, not text")
    ids = table[id_column] if id_column is not None else pa.array(range(table.num_rows), pa.int64())
    columns = {id_column or ROW_COLUMN: ids}
    columns.update({c: table[c].cast(pa.string()) for c in texts})
    return pa.table(columns)


def _read_table(path: Path, fmt: str, as_text: list[str]) -> Any:
    import pyarrow as pa

    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path)
    if fmt == "jsonl":
        import pyarrow.json as pj

        return pj.read_json(path)  # a JSON number where text belongs is reported, not converted
    import pyarrow.csv as pc

    # Texts and ids stay text ("1", "true", "" are texts; an id "007" stays "007", as `predict`
    # writes it); TSV has quoting off, as GLUE-style files need.
    convert = pc.ConvertOptions(column_types={c: pa.string() for c in as_text})
    parse = pc.ParseOptions(delimiter="\t", quote_char=False) if fmt == "tsv" else pc.ParseOptions()
    return pc.read_csv(path, parse_options=parse, convert_options=convert)


def _ray_errors(ray: Any) -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ray.exceptions.RayError]
    data_errors = getattr(ray.data, "exceptions", None)
    for name in ("UserCodeException", "SystemException"):
        if data_errors is not None and isinstance(getattr(data_errors, name, None), type):
            errors.append(getattr(data_errors, name))
    return tuple(errors)


def _root_cause(e: BaseException) -> str:
    """The last ``SomeError: message`` line of a Ray error (the actor's own exception), else its first line."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"^[\w.]*(Error|Exception)\b[^:]*:", line)]
    return raised[-1] if raised else (lines[0] if lines else type(e).__name__)


# --------------------------------------------------------------------------- the actor
class _Predictor:
    """One model per actor; called with a ``pyarrow.Table`` block, returns the block's predictions."""

    def __init__(
        self,
        model: str,
        id_column: str,
        text_column: str,
        text_pair_column: str | None,
        batch_size: int,
        options: RuntimeOptions,
    ) -> None:
        from squeezebert.infer import Classifier

        self.classifier = Classifier.from_pretrained(model, options)
        self.id_column, self.text_column, self.text_pair_column = id_column, text_column, text_pair_column
        self.batch_size = batch_size

    def __call__(self, block: Any) -> Any:
        texts = block[self.text_column].to_pylist()
        if self.text_pair_column is not None:
            texts = list(zip(texts, block[self.text_pair_column].to_pylist()))
        predictions = self.classifier.predict(texts, self.batch_size)
        return predictions_table(block[self.id_column], self.id_column, predictions, self.classifier.labels)


def predictions_table(ids: Any, id_column: str, predictions: list[Any], labels: tuple[str, ...]) -> Any:
    """``pyarrow.Table``: the ids, then :meth:`Prediction.to_dict`'s fields as columns
    (``probabilities`` as a struct with one float per label, in the model's label order)."""
    import pyarrow as pa

    if predictions and predictions[0].value is not None:  # regression
        return pa.table({id_column: ids, "value": pa.array([p.value for p in predictions], pa.float64())})
    struct = pa.struct([(label, pa.float64()) for label in labels])
    return pa.table(
        {
            id_column: ids,
            "label": pa.array([p.label for p in predictions], pa.string()),
            "score": pa.array([p.score for p in predictions], pa.float64()),
            "probabilities": pa.array([p.probabilities for p in predictions], struct),
        }
    )


# --------------------------------------------------------------------------- output
def _write_output(path: Path, fmt: str, blocks: Iterator[Any]) -> int:
    """Write the result blocks to ``path`` (JSONL or Parquet); return the number of rows."""
    rows = 0
    if fmt == "parquet":
        import pyarrow.parquet as pq

        writer = None
        try:
            for block in blocks:
                if writer is None:
                    writer = pq.ParquetWriter(path, block.schema)
                writer.write_table(block)
                rows += block.num_rows
        finally:
            if writer is not None:
                writer.close()
        return rows
    with path.open("w", encoding="utf-8") as f:
        for block in blocks:
            for record in block.to_pylist():
                f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            rows += block.num_rows
    return rows


def _in_input_order(blocks: Iterator[Any], ids: Any) -> Iterator[Any]:
    """Pass the result blocks through, checking that their ids are the input's, row for row:
    a row lost, duplicated or out of place stops the job before the output is renamed into place."""
    done = 0
    for block in blocks:
        name = block.column_names[0]
        expected = ids.slice(done, block.num_rows)
        if block.num_rows > len(expected) or not block[name].equals(expected):
            raise RuntimeError(
                f"result rows {done}..{done + block.num_rows - 1} do not carry the input's ids in order: "
                "rows lost, duplicated or reordered; nothing written"
            )
        done += block.num_rows
        yield block


# --------------------------------------------------------------------------- the job
def classify_file(
    model: str | os.PathLike[str],
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    text_column: str = "text",
    text_pair_column: str | None = None,
    id_column: str | None = None,
    batch_size: int = 64,
    num_workers: int | None = None,
    threads_per_worker: int = 1,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    options: RuntimeOptions | None = None,
    rows_per_block: int | None = None,
) -> BatchReport:
    """Classify every row of ``input_path`` with ``model`` on Ray actors; write ``output_path``.

    ``num_workers`` actors (default: the Ray instance's CPUs // ``threads_per_worker``) each load
    the model once (:meth:`Classifier.from_pretrained` with ``options``, default
    :class:`~squeezebert.runtime.RuntimeOptions` as in ``predict``, its ``num_threads`` being
    ``threads_per_worker``) and run forward
    batches of ``batch_size`` texts. ``rows_per_block`` (default: about four blocks per actor,
    at least ``batch_size``) is the unit Ray schedules. With ``ray_address`` None a local Ray
    instance with ``num_cpus`` CPUs (default: all) is started and stopped; if this process is
    already connected to Ray, that instance is used as it is.
    """
    for name, value in (("batch_size", batch_size), ("threads_per_worker", threads_per_worker)):
        if value < 1:
            raise BatchError(f"{name} must be >= 1, got {value}")
    for name, value in (("num_workers", num_workers), ("num_cpus", num_cpus), ("rows_per_block", rows_per_block)):
        if value is not None and value < 1:
            raise BatchError(f"{name} must be >= 1, got {value}")
    output = Path(output_path)
    out_fmt = OUTPUT_FORMATS.get(output.suffix.lower())
    if out_fmt is None:
        raise BatchError(f"{output}: write .jsonl or .parquet (the extension picks the format)")
    check_writable_file(output, "--output")  # before Ray starts and the model loads
    model_src = str(model)
    if Path(model_src).expanduser().exists():  # actors may start in another working directory
        model_src = str(Path(model_src).expanduser().resolve())
    ray = _ray()
    id_name = id_column or ROW_COLUMN
    table = read_input(input_path, text_column, text_pair_column, id_column)
    n = table.num_rows
    options = replace(options or RuntimeOptions(), num_threads=threads_per_worker)
    # Load the model here once first: a bad path or a headless model then fails in one line before
    # any actor starts (Ray would retry failing actors and print every traceback).
    from squeezebert.infer import Classifier

    Classifier.from_pretrained(model_src, options)

    t0 = time.perf_counter()
    started = False
    if not ray.is_initialized():
        # Actors' logs reach this terminal with -v only; their errors come back as exceptions.
        init: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": log.isEnabledFor(logging.DEBUG)}
        if ray_address is not None:
            init["address"] = ray_address
        else:
            init.update(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False)
        ray.init(**init)
        started = True
    elif ray_address is not None:
        log.warning("already connected to Ray; ignoring ray_address=%r", ray_address)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = num_workers or max(1, cpus // threads_per_worker)
        block_rows = rows_per_block or max(batch_size, math.ceil(n / (4 * workers)))
        blocks = [table.slice(start, block_rows) for start in range(0, n, block_rows)]
        context = ray.data.DataContext.get_current()
        saved = (context.execution_options.preserve_order, context.enable_progress_bars)
        context.execution_options.preserve_order = True  # results in input order
        context.enable_progress_bars = saved[1] and sys.stderr.isatty()
        data_log = logging.getLogger("ray.data")
        data_level = data_log.level
        if not log.isEnabledFor(logging.DEBUG):  # our one-line error says what Ray Data would log at length
            data_log.setLevel(logging.CRITICAL)
        try:
            results = ray.data.from_arrow(blocks).map_batches(
                _Predictor,
                fn_constructor_kwargs={
                    "model": model_src,
                    "id_column": id_name,
                    "text_column": text_column,
                    "text_pair_column": text_pair_column,
                    "batch_size": batch_size,
                    "options": options,
                },
                batch_size=block_rows,
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=threads_per_worker,
            )
            stream = results.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=2)

            def write(tmp: Path) -> None:
                written = _write_output(tmp, out_fmt, _in_input_order(stream, table[id_name]))
                if written != n:  # a broken pipeline, never a silent gap in the output
                    raise RuntimeError(f"{n} rows in, {written} out: rows lost; nothing written")

            try:
                atomic_write(output, write)
            except _ray_errors(ray) as e:
                raise BatchError(f"the Ray job failed: {_root_cause(e)}") from e
        finally:
            context.execution_options.preserve_order, context.enable_progress_bars = saved
            data_log.setLevel(data_level)
    finally:
        if started:
            ray.shutdown()
    seconds = time.perf_counter() - t0
    return BatchReport(
        input=str(input_path),
        output=str(output),
        rows=n,
        seconds=round(seconds, 3),
        texts_per_s=round(n / seconds, 1),
        workers=workers,
        threads_per_worker=threads_per_worker,
        ray_address=ray_address,
    )


__all__ = ["BatchError", "BatchReport", "classify_file", "predictions_table", "read_input"]
