"""Task specs, GLUE readers, tokenization and length-grouped batching.

The torch-free part (custom CSV/TSV/JSONL readers, :class:`DataError`, :class:`Example`, label
spaces) lives in :mod:`squeezebert.tables` and is re-exported here.

Reading is strict: a bad row raises :class:`DataError` with one line of the form
``"{path}:{line}: {what}"`` naming the field and what was expected, never a bare traceback and
never a silently dropped row.

GLUE tasks
----------

Files live under ``DATA_DIR/<directory>/<split>.tsv`` in the layout written by the GLUE download
script. The label order is the class-id order of every model trained here:

=====  =========  ======================  ============  ==================================  ====================
task   directory  text / pair columns     label column  labels, in class-id order           metrics
=====  =========  ======================  ============  ==================================  ====================
cola   CoLA       sentence (no header)    label         0, 1                                matthews_correlation
sst2   SST-2      sentence                label         0, 1                                accuracy
mrpc   MRPC       #1 String / #2 String   Quality       0, 1                                f1, accuracy
stsb   STS-B      sentence1 / sentence2   score         none: regression, 0..5              pearson, spearman
qqp    QQP        question1 / question2   is_duplicate  0, 1                                f1, accuracy
mnli   MNLI       sentence1 / sentence2   gold_label    contradiction, entailment, neutral  accuracy
qnli   QNLI       question / sentence     label         entailment, not_entailment          accuracy
rte    RTE        sentence1 / sentence2   label         entailment, not_entailment          accuracy
wnli   WNLI       sentence1 / sentence2   label         0, 1                                accuracy
=====  =========  ======================  ============  ==================================  ====================

The MNLI order is the one of BERT's original ``run_classifier.py`` GLUE processor (and of
transformers' ``MnliProcessor``). Hugging Face ``datasets`` numbers MNLI differently
(entailment, neutral, contradiction = 0, 1, 2), and a checkpoint evaluated with a reader whose
order differs from its own silently scores about 7% accuracy: the well-known MNLI label-order trap.
Two things here make that impossible to hit silently: every checkpoint stores its explicit
``id2label``, so labels are encoded through the checkpoint's own mapping, and the Hub loader maps
``datasets`` labels to ours by *name*, never by index.

Splits are ``train``, ``dev`` and ``test`` (test files carry no labels: ``Example.label`` is None).
For MNLI ``dev`` means ``dev_matched`` and ``test`` means ``test_matched``; ``dev_mismatched`` and
``test_mismatched`` are named explicitly.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from squeezebert.normalize import normalize_text
from squeezebert.tables import (
    DataError,
    Example,
    Lines,
    delimited_rows,
    encode_labels,
    examples_digest,
    label_space,
    read_table,
)
from squeezebert.tokenizer import pad_batch

__all__ = [
    "CLASSIFICATION_METRICS",
    "CUSTOM",
    "DataError",
    "EncodedDataset",
    "Example",
    "GLUE_TASKS",
    "REGRESSION_METRICS",
    "TaskData",
    "TaskSource",
    "TaskSpec",
    "check_learnable",
    "collate",
    "encode",
    "encode_labels",
    "examples_digest",
    "glue_task",
    "label_space",
    "length_grouped_batches",
    "load_glue",
    "load_task_data",
    "read_glue",
    "read_table",
    "subsample",
]

# Metrics for user data. The mse of a regression task is reported but never averaged into a score.
CLASSIFICATION_METRICS: tuple[str, ...] = ("accuracy", "macro_f1")
REGRESSION_METRICS: tuple[str, ...] = ("pearson", "spearman", "mse")

HUB_DATASET = "nyu-mll/glue"

# Examples tokenized per call: bounds the memory held in `tokenizers` Encoding objects (QQP and
# MNLI train have ~400k pairs) while keeping the Rust side's batch parallelism.
_TOKENIZE_CHUNK = 8192


@dataclass(frozen=True)
class TaskSpec:
    """What a task's data looks like and how it is scored.

    ``text_column``, ``text_pair_column`` and ``label_column`` name columns of the source files.
    ``labels`` is the class order (index = class id), or None for regression. The GLUE-only fields
    say where the files are and how to parse them, and how to read the task from the Hub.
    """

    name: str
    text_column: str
    text_pair_column: str | None
    label_column: str | None
    labels: tuple[str, ...] | None
    metrics: tuple[str, ...]
    main_metric: str
    # --- GLUE only
    dir_name: str | None = None
    # (split, file name) pairs; the first names are the canonical split names.
    split_files: tuple[tuple[str, str], ...] = ()
    # (alias, canonical split), e.g. MNLI's ("dev", "dev_matched").
    split_aliases: tuple[tuple[str, str], ...] = ()
    # Column names for files without a header row (CoLA); empty when the files have a header.
    headerless_columns: tuple[str, ...] = ()
    hub_config: str | None = None
    hub_text_columns: tuple[str, str | None] | None = None
    # (Hub ClassLabel name, our label): labels are mapped by name, never by index (see module doc).
    hub_label_names: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError(f"task {self.name}: duplicate labels in {self.labels}")
        if self.main_metric not in self.metrics:
            raise ValueError(f"task {self.name}: main_metric {self.main_metric!r} is not in {self.metrics}")

    @classmethod
    def custom(
        cls,
        name: str,
        text_column: str,
        text_pair_column: str | None,
        label_column: str | None,
        labels: Sequence[str] | None,
    ) -> TaskSpec:
        """A spec for user data: classification when ``labels`` is given, else regression."""
        metrics = REGRESSION_METRICS if labels is None else CLASSIFICATION_METRICS
        return cls(
            name=name,
            text_column=text_column,
            text_pair_column=text_pair_column,
            label_column=label_column,
            labels=None if labels is None else tuple(labels),
            metrics=metrics,
            main_metric=metrics[0],
        )

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        """Width of the classifier head: 1 for regression."""
        return 1 if self.labels is None else len(self.labels)

    @property
    def splits(self) -> tuple[str, ...]:
        """Canonical split names (aliases such as MNLI's ``dev`` are accepted too)."""
        return tuple(s for s, _ in self.split_files)

    def resolve_split(self, split: str) -> str:
        """The canonical name of ``split``; ValueError listing the valid names if unknown."""
        aliases = dict(self.split_aliases)
        canonical = aliases.get(split, split)
        if canonical not in self.splits:
            valid = ", ".join([*self.splits, *aliases])
            raise ValueError(f"task {self.name} has no split {split!r}; valid splits: {valid}")
        return canonical

    def split_file(self, split: str) -> str:
        """File name of ``split`` inside the task directory, e.g. ``dev_matched.tsv``."""
        return dict(self.split_files)[self.resolve_split(split)]


def _glue(
    name: str,
    dir_name: str,
    columns: tuple[str, str | None, str],
    labels: tuple[str, ...] | None,
    metrics: tuple[str, ...],
    hub_columns: tuple[str, str | None],
    hub_label_names: tuple[tuple[str, str], ...] = (),
    headerless_columns: tuple[str, ...] = (),
) -> TaskSpec:
    text, pair, label = columns
    if name == "mnli":
        split_files = tuple((s, f"{s}.tsv") for s in ("train", "dev_matched", "dev_mismatched"))
        split_files += (("test_matched", "test_matched.tsv"), ("test_mismatched", "test_mismatched.tsv"))
        aliases = (("dev", "dev_matched"), ("test", "test_matched"))
    else:
        split_files = (("train", "train.tsv"), ("dev", "dev.tsv"), ("test", "test.tsv"))
        aliases = ()
    return TaskSpec(
        name=name,
        text_column=text,
        text_pair_column=pair,
        label_column=label,
        labels=labels,
        metrics=metrics,
        main_metric=metrics[0],
        dir_name=dir_name,
        split_files=split_files,
        split_aliases=aliases,
        headerless_columns=headerless_columns,
        hub_config=name,
        hub_text_columns=hub_columns,
        hub_label_names=hub_label_names,
    )


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")

GLUE_TASKS: dict[str, TaskSpec] = {
    "cola": _glue(
        "cola",
        "CoLA",
        ("sentence", None, "label"),
        _BINARY,
        ("matthews_correlation",),
        ("sentence", None),
        (("unacceptable", "0"), ("acceptable", "1")),
        # CoLA train/dev have no header; the test file has one ("index", "sentence").
        headerless_columns=("source", "label", "original_mark", "sentence"),
    ),
    "sst2": _glue(
        "sst2",
        "SST-2",
        ("sentence", None, "label"),
        _BINARY,
        ("accuracy",),
        ("sentence", None),
        (("negative", "0"), ("positive", "1")),
    ),
    "mrpc": _glue(
        "mrpc",
        "MRPC",
        ("#1 String", "#2 String", "Quality"),
        _BINARY,
        ("f1", "accuracy"),
        ("sentence1", "sentence2"),
        (("not_equivalent", "0"), ("equivalent", "1")),
    ),
    "stsb": _glue(
        "stsb",
        "STS-B",
        ("sentence1", "sentence2", "score"),
        None,
        ("pearson", "spearman"),
        ("sentence1", "sentence2"),
    ),
    "qqp": _glue(
        "qqp",
        "QQP",
        ("question1", "question2", "is_duplicate"),
        _BINARY,
        ("f1", "accuracy"),
        ("question1", "question2"),
        (("not_duplicate", "0"), ("duplicate", "1")),
    ),
    "mnli": _glue(
        "mnli",
        "MNLI",
        ("sentence1", "sentence2", "gold_label"),
        ("contradiction", "entailment", "neutral"),
        ("accuracy",),
        ("premise", "hypothesis"),
        (("contradiction", "contradiction"), ("entailment", "entailment"), ("neutral", "neutral")),
    ),
    "qnli": _glue(
        "qnli",
        "QNLI",
        ("question", "sentence", "label"),
        _NLI2,
        ("accuracy",),
        ("question", "sentence"),
        (("entailment", "entailment"), ("not_entailment", "not_entailment")),
    ),
    "rte": _glue(
        "rte",
        "RTE",
        ("sentence1", "sentence2", "label"),
        _NLI2,
        ("accuracy",),
        ("sentence1", "sentence2"),
        (("entailment", "entailment"), ("not_entailment", "not_entailment")),
    ),
    "wnli": _glue(
        "wnli",
        "WNLI",
        ("sentence1", "sentence2", "label"),
        _BINARY,
        ("accuracy",),
        ("sentence1", "sentence2"),
        # GLUE's WNLI: 1 = the hypothesis is entailed.
        (("not_entailment", "0"), ("entailment", "1")),
    ),
}

# MNLI's two evaluation sets are often reported as separate "tasks".
_GLUE_ALIASES = {"mnli-m": "mnli", "mnli-mm": "mnli", "mnli_matched": "mnli", "mnli_mismatched": "mnli"}


def glue_task(name: str) -> TaskSpec:
    """The GLUE task called ``name``: ``sst2``, the directory name ``SST-2``, or ``mnli-mm``."""
    key = name.strip().lower()
    key = _GLUE_ALIASES.get(key, key)
    if key not in GLUE_TASKS:
        key = key.replace("-", "")
    if key not in GLUE_TASKS:
        valid = ", ".join(f"{k} ({s.dir_name})" for k, s in GLUE_TASKS.items())
        raise ValueError(f"unknown GLUE task {name!r}; valid names: {valid}")
    return GLUE_TASKS[key]


# ---------------------------------------------------------------------------------------- reading
def _found_glue_files(data_dir: Path) -> str:
    found = []
    for spec in GLUE_TASKS.values():
        assert spec.dir_name is not None
        present = [s for s, f in spec.split_files if (data_dir / spec.dir_name / f).is_file()]
        if present:
            found.append(f"{spec.dir_name} ({', '.join(present)})")
    return ", ".join(found) if found else "no GLUE task files"


def _parse_score(path: Path, line: int, column: str, value: str) -> float:
    try:
        score = float(value)
    except ValueError:
        score = math.nan
    if not math.isfinite(score):
        raise DataError(f"{path}:{line}: column {column!r} holds {value!r}; expected a finite number")
    return score


def read_glue(data_dir: str | os.PathLike[str], task: str, split: str) -> list[Example]:
    """Read ``DATA_DIR/<task dir>/<split>.tsv`` in the GLUE format.

    Tab-separated with quoting off (GLUE text has unbalanced quotes), utf-8, columns read by header
    name. Empty texts are kept: they are part of the benchmark as released. Test splits have no
    labels (``label=None``); STS-B labels are floats, all others the strings in ``TaskSpec.labels``.
    """
    spec = glue_task(task)
    assert spec.dir_name is not None
    data_dir = Path(data_dir)
    path = data_dir / spec.dir_name / spec.split_file(split)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory; expected the GLUE file {spec.split_file(split)}")
    if not path.is_file():
        where = _found_glue_files(data_dir) if data_dir.is_dir() else "nothing (the directory does not exist)"
        raise FileNotFoundError(f"{path}: no such file; found under {data_dir}: {where}")
    is_test = spec.resolve_split(split).startswith("test")

    with open(path, "rb") as f:
        return _read_glue_rows(spec, path, delimited_rows(Lines(f, str(path)), "\t"), is_test)


def _read_glue_rows(spec: TaskSpec, path: Path, rows: Iterator[tuple[int, list[str]]], is_test: bool) -> list[Example]:
    first = next(rows, None)
    if first is None:
        raise DataError(f"{path}:1: empty file")
    if spec.headerless_columns and first[1][0].strip() != "index":
        header, header_line, data_rows = list(spec.headerless_columns), 0, _chain(first, rows)
    else:
        header, header_line, data_rows = [h.strip() for h in first[1]], first[0], rows

    def where(column: str | None) -> int | None:
        if column is None:
            return None
        if column not in header:
            raise DataError(
                f"{path}:{max(header_line, 1)}: no column {column!r} for task {spec.name} "
                f"(columns: {', '.join(header)})"
            )
        return header.index(column)

    text_i = where(spec.text_column)
    pair_i = where(spec.text_pair_column)
    # GLUE test files have no label column; a labelled test file is read with its labels.
    label_i = None if is_test and spec.label_column not in header else where(spec.label_column)
    shape = "header" if header_line else f"{spec.dir_name} format ({', '.join(header)})"

    examples = []
    for line, fields in data_rows:
        if len(fields) != len(header):
            raise DataError(
                f"{path}:{line}: row has {len(fields)} tab-separated fields but the {shape} has "
                f"{len(header)} (quoting is off in GLUE files, so a tab inside a text splits it)"
            )
        label: str | float | None = None
        if label_i is not None:
            value = fields[label_i].strip()
            if spec.labels is None:
                label = _parse_score(path, line, header[label_i], value)
            elif value in spec.labels:
                label = value
            else:
                raise DataError(
                    f"{path}:{line}: column {header[label_i]!r} holds {value!r}; "
                    f"expected one of {', '.join(spec.labels)} for task {spec.name}"
                )
        assert text_i is not None
        pair = None if pair_i is None else fields[pair_i]
        examples.append(Example(fields[text_i], pair, label, line))
    if not examples:
        raise DataError(f"{path}:{header_line + 1}: no data rows")
    return examples


def _chain(first: tuple[int, list[str]], rest: Iterator[tuple[int, list[str]]]) -> Iterator[tuple[int, list[str]]]:
    yield first
    yield from rest


def load_glue(task: str, split: str, data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    """GLUE examples from ``data_dir`` (see :func:`read_glue`), else from the Hugging Face Hub.

    The Hub path needs the ``datasets`` package (``squeezebert[datasets]``) and network access.
    Its labels are mapped to ours by name; ``Example.line`` is then the 1-based row number.
    """
    if data_dir is not None:
        return read_glue(data_dir, task, split)
    spec = glue_task(task)
    canonical = spec.resolve_split(split)
    hub_split = canonical.replace("dev", "validation")
    source = f"hf://{HUB_DATASET}/{spec.hub_config}/{hub_split}"
    try:
        import datasets

        dataset = datasets.load_dataset(HUB_DATASET, spec.hub_config, split=hub_split)
    except Exception as e:  # ImportError, connection errors, missing cache: all mean "no Hub here"
        dirs = " ".join(f"{s.dir_name}/" for s in GLUE_TASKS.values())
        raise DataError(
            f"cannot load GLUE {spec.name}/{canonical} from the Hugging Face Hub ({type(e).__name__}: {e}). "
            f"Pass --data-dir DIR pointing at a directory with the standard GLUE layout "
            f"(subdirectories {dirs}), or install squeezebert[datasets] with network access."
        ) from e
    return _hub_examples(spec, dataset, source)


def _hub_examples(spec: TaskSpec, dataset: Any, source: str) -> list[Example]:
    assert spec.hub_text_columns is not None
    text_col, pair_col = spec.hub_text_columns
    to_ours: dict[int, str] = {}
    if spec.labels is not None:
        names = list(dataset.features["label"].names)
        by_name = dict(spec.hub_label_names)
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise DataError(
                f"{source}: Hub label names {names} include {unknown}, which map to none of "
                f"{', '.join(spec.labels)}; refusing to map labels by position"
            )
        to_ours = {i: by_name[n] for i, n in enumerate(names)}
    examples = []
    for row_number, row in enumerate(dataset, start=1):
        raw = row["label"]
        label: str | float | None
        if raw is None or raw == -1:  # the Hub marks unlabelled test rows with -1
            label = None
        elif spec.labels is None:
            label = float(raw)
        else:
            label = to_ours[int(raw)]
        examples.append(Example(row[text_col], None if pair_col is None else row[pair_col], label, row_number))
    return examples


# ------------------------------------------------------------------------------ tokens and batches
# --------------------------------------------------------------------------- task data
CUSTOM = "custom"


@dataclass(frozen=True)
class TaskSource:
    """Where a task's examples come from: a GLUE ``task`` (files under ``data_dir``, else the
    Hub) or ``task="custom"`` with ``train_file`` / ``dev_file`` (CSV, TSV or JSONL) read through
    the three column names. The one value squeeze, finetune, evaluate and the CLI pass around."""

    task: str = CUSTOM
    data_dir: str | os.PathLike[str] | None = None
    train_file: str | os.PathLike[str] | None = None
    dev_file: str | os.PathLike[str] | None = None
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"

    @property
    def columns(self) -> tuple[str, str | None, str]:
        """``(text, text pair, label)`` column names, as :func:`read_table` takes them."""
        return self.text_column, self.text_pair_column, self.label_column

    @classmethod
    def recorded(cls, args: Mapping[str, Any]) -> TaskSource | None:
        """The source a run's ``train_args.json`` (``args``) records its data from: custom files,
        or a GLUE task read from a local ``data_dir``; None where it records neither."""
        task = args.get("task")
        if task == CUSTOM and args.get("train_file"):
            return cls(
                CUSTOM,
                train_file=args["train_file"],
                dev_file=args.get("dev_file"),
                text_column=args.get("text_column") or "text",
                text_pair_column=args.get("text_pair_column"),
                label_column=args.get("label_column") or "label",
            )
        if task and task != CUSTOM and args.get("data_dir"):
            return cls(task, args["data_dir"])
        return None


@dataclass
class TaskData:
    """A task's examples and how to score them: ``kind`` is the GLUE task or
    ``classification``/``regression``; ``labels`` the class order (None: regression)."""

    task: str
    kind: str
    labels: tuple[str, ...] | None
    train: list[Example]
    dev: list[Example] | None
    train_source: str
    dev_source: str


def load_task_data(source: TaskSource) -> TaskData:
    """Train and dev examples of a GLUE task (from ``source.data_dir``, else the Hub) or of custom
    files (``task="custom"``; the dev file is optional).

    For custom data the label set comes from the training file: regression when its labels are
    non-integral numbers, else classification over the distinct labels (:func:`label_space`).
    A training file with a single class (or a single regression value) raises :class:`DataError`.
    """
    train_file, dev_file = source.train_file, source.dev_file
    if source.task == CUSTOM:
        if train_file is None:
            raise ValueError("custom data needs --train FILE (and usually --dev FILE)")
        train = read_table(train_file, *source.columns)
        dev = read_table(dev_file, *source.columns) if dev_file is not None else None
        labels = label_space(train, train_file)
        check_learnable(train, labels, train_file, source.label_column)
        kind = "classification" if labels is not None else "regression"
        return TaskData(CUSTOM, kind, labels, train, dev, str(train_file), str(dev_file))
    if train_file is not None or dev_file is not None:
        raise ValueError(f"--train/--dev are for custom data; task {source.task!r} reads its files from --data-dir")
    spec = glue_task(source.task)
    train = load_glue(spec.name, "train", source.data_dir)
    dev = load_glue(spec.name, "dev", source.data_dir)
    return TaskData(
        spec.name,
        spec.name,
        spec.labels,
        train,
        dev,
        glue_source(spec, "train", source.data_dir),
        glue_source(spec, "dev", source.data_dir),
    )


def glue_source(spec: TaskSpec, split: str, data_dir: str | os.PathLike[str] | None) -> str:
    """Where a GLUE split is read from, as messages and run arguments name it: the file under
    ``data_dir``, else ``hf://<task>/<file>`` for the Hub."""
    where = Path(data_dir) / (spec.dir_name or "") if data_dir is not None else Path(f"hf://{spec.name}")
    return str(where / spec.split_file(split))


def check_learnable(
    train: Sequence[Example], labels: tuple[str, ...] | None, source: str | os.PathLike[str], label_column: str
) -> None:
    """Refuse training labels that leave nothing to learn: one class (a 1-label head would
    silently become a regression model) or one regression value."""
    if labels is not None and len(labels) < 2:
        raise DataError(
            f"{source}: every label in {label_column!r} is {labels[0]!r}; classification needs at least two classes "
            "(numbers with decimals are read as regression scores)"
        )
    if labels is None:
        values = {float(ex.label) for ex in train if ex.label is not None}
        if len(values) == 1:
            raise DataError(f"{source}: every label in {label_column!r} is {values.pop():g}; nothing to learn")


def subsample(examples: list[Example], n: int | None, seed: int) -> list[Example]:
    """A seeded random subset of ``n`` examples kept in file order (files may be sorted by label)."""
    if n is None or n >= len(examples):
        return examples
    keep = np.sort(np.random.default_rng(seed).choice(len(examples), size=n, replace=False))
    return [examples[i] for i in keep]


@dataclass
class EncodedDataset:
    """Tokenized examples, unpadded. ``labels`` is None for unlabelled data (e.g. a test split)."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    labels: list[int] | list[float] | None
    lengths: list[int]
    is_regression: bool = False
    lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(
    tokenizer: Any,
    examples: Sequence[Example],
    max_length: int,
    label2id: Mapping[str, int] | None,
    source: str | os.PathLike[str] = "<examples>",
    normalize: bool = True,
) -> EncodedDataset:
    """Tokenize ``examples`` (truncated to ``max_length``) and encode their labels.

    ``normalize``: apply :func:`squeezebert.normalize.normalize_text` (NFKC, zero-width removal,
    Latin look-alikes) first, as :class:`squeezebert.infer.Classifier` and the CLI do by default,
    so that a model is trained and evaluated on the text it will be served.

    ``label2id`` maps labels to class ids; pass None for regression. When no example has a label
    (a test split) the dataset's labels are None whatever ``label2id`` is.
    """
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2 ([CLS] and [SEP]), got {max_length}")
    has_pair = [ex.text_pair is not None for ex in examples]
    if any(has_pair) and not all(has_pair):
        ex = examples[has_pair.index(not has_pair[0])]
        raise DataError(f"{source}:{ex.line}: some examples have a second text and some do not")
    labelled = [ex.label is not None for ex in examples]
    labels = encode_labels(examples, label2id, source) if any(labelled) else None

    input_ids: list[list[int]] = []
    token_type_ids: list[list[int]] = []
    for start in range(0, len(examples), _TOKENIZE_CHUNK):
        chunk = examples[start : start + _TOKENIZE_CHUNK]
        texts = [ex.text for ex in chunk]
        pairs = [ex.text_pair for ex in chunk] if has_pair and has_pair[0] else None
        if normalize:
            texts = [normalize_text(t) for t in texts]
            pairs = None if pairs is None else [normalize_text(t) for t in pairs]  # type: ignore[arg-type]
        for ids, types in tokenizer.tokenize(texts, pairs, max_length=max_length):
            input_ids.append(list(ids))
            token_type_ids.append(list(types))
    return EncodedDataset(
        input_ids=input_ids,
        token_type_ids=token_type_ids,
        labels=labels,
        lengths=[len(ids) for ids in input_ids],
        is_regression=labels is not None and label2id is None,
        lines=[ex.line for ex in examples],
    )


# Batches are sorted by length inside chunks of this many batches: enough to make padding small,
# few enough that a batch's examples still come from a random slice of the data.
_MEGA_BATCHES = 50


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, shuffle: bool = True
) -> list[list[int]]:
    """Batches of example indices with similar lengths, deterministic for ``(seed, epoch)``.

    Training (``shuffle=True``): a random permutation, cut into chunks of 50 batches, each chunk
    sorted by length (longest first) and split into batches, then the batch order shuffled. A run
    resumed mid-epoch recomputes this list and skips the batches already done. Evaluation
    (``shuffle=False``): all examples sorted by length; callers restore the order by index.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be non-negative, got seed={seed}, epoch={epoch}")
    lens = np.asarray(lengths, dtype=np.int64)
    if not shuffle:
        # A stable sort keeps equal-length examples in file order, so evaluation is reproducible.
        order = np.argsort(-lens, kind="stable")
        return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    # numpy's Generator is specified bit-for-bit across platforms and versions for a given seed
    # sequence, which resuming relies on; torch's CPU/GPU generators are not interchangeable.
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(len(lens))
    chunk = _MEGA_BATCHES * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(perm), chunk):
        part = perm[start : start + chunk]
        part = part[np.argsort(-lens[part], kind="stable")]
        batches.extend(part[i : i + batch_size].tolist() for i in range(0, len(part), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def collate(
    pad: int | Any | Callable[[Sequence[tuple[Sequence[int], Sequence[int]]]], Mapping[str, np.ndarray]],
    dataset: EncodedDataset,
    indices: Sequence[int],
) -> dict[str, torch.Tensor]:
    """A padded batch of ``dataset[indices]`` as int64 tensors ``(B, T)``, T = longest in the batch.

    ``pad`` is a :class:`~squeezebert.tokenizer.Tokenizer`, its ``pad`` method or just the pad
    token id (:func:`~squeezebert.tokenizer.pad_batch`). ``labels`` is
    added when the dataset has labels: int64 class ids, or float32 scores for regression.
    """
    if len(indices) == 0:
        raise ValueError("cannot collate an empty batch")
    if isinstance(pad, int):
        pad_fn = functools.partial(pad_batch, pad_token_id=pad)
    else:
        pad_fn = pad.pad if hasattr(pad, "pad") else pad
    arrays = pad_fn([(dataset.input_ids[i], dataset.token_type_ids[i]) for i in indices])
    batch = {
        key: torch.from_numpy(np.ascontiguousarray(arrays[key], dtype=np.int64))
        for key in ("input_ids", "attention_mask", "token_type_ids")
    }
    if dataset.labels is not None:
        labels = [dataset.labels[i] for i in indices]
        batch["labels"] = torch.tensor(labels, dtype=torch.float32 if dataset.is_regression else torch.int64)
    return batch
