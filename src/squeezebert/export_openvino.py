"""OpenVINO export and its verification: a self-contained directory OpenVINO's CPU plugin serves.

``export`` writes ``model.xml`` + ``model.bin`` (OpenVINO IR), ``config.json`` (with the labels, the
export's precision and the numbers of its checks), ``tokenizer.json`` and the Hugging Face
tokenizer sidecars (``tokenizer_config.json``, ``special_tokens_map.json``) into a directory. The
graph takes ``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64, dynamic batch and
sequence axes) and returns ``logits`` (or ``last_hidden_state`` for a headless model).

Why OpenVINO: it compiles the whole graph for the CPU, fusing what eager PyTorch and ONNX Runtime
run one operator at a time — int8 GEMMs with their bias/GELU epilogues, LayerNorm, attention —
and its post-training int8 (NNCF) is static, so no activation is quantized at run time.
Measured on this 2-core EPYC (docs/RESULTS.md): the same SqueezeBERT-base weights ran 2.2x (batch
1) / 1.7x (batch 32) faster than ONNX Runtime's dynamic int8 BERT-base, the best peer before it.

Precisions:

* ``fp32``: the converted graph, fp32 weights, run with ``INFERENCE_PRECISION_HINT=f32``. Checked
  against PyTorch at two input shapes: more than 1e-4 apart is an :class:`ExportError`.
* ``bf16``: the same graph with fp16-stored weights (half the file; upcast at load), run with the
  bf16 inference hint. Only where the CPU runs bf16 natively (AVX512-BF16 or AMX).
* ``int8``: NNCF post-training quantization (``nncf.quantize``, transformer preset with
  SmoothQuant) **calibrated on real text**: the training texts the checkpoint records
  (``train_args.json``) or a file the caller gives. Random token ids give the wrong activation
  ranges, so an int8 export without real text is refused (:class:`CalibrationError`). The word
  embeddings are then stored int8 per row (``nncf.compress_weights``), which is most of the file.

Every int8/bf16 export is compared with PyTorch fp32 on real texts: prediction agreement on a
sample of held-out texts and, when the checkpoint knows its dev set, agreement and accuracy there.
An agreement below ``min_agreement`` (default 0.99) is an :class:`ExportError`. The numbers are
printed and stored in ``config.json`` under ``"openvino"``; nothing is written unless the checks
pass.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from squeezebert.backends import (
    OPENVINO_MODEL_FILE,
    Batch,
    OpenVinoForward,
    TextInput,
    import_openvino,
    openvino_has_bf16,
)
from squeezebert.export import FP32_TOLERANCE, INPUT_NAMES, ExportError, check_fp32, sample_inputs, torch_outputs
from squeezebert.runtime import PRECISIONS

log = logging.getLogger(__name__)

MODEL_FILE = OPENVINO_MODEL_FILE
WEIGHTS_FILE = "model.bin"
#: Texts NNCF collects static int8's activation statistics on, where the source has enough for the
#: held-out check as well (:func:`_split_calibration`; down to :data:`MIN_CALIBRATION_SIZE`). 1,000
#: rather than NNCF's default 300: the static recipe deploys 1.2-1.5x faster than the dynamic one
#: it falls back to, and on 300 texts 11 of 16 minilm-l6 models (6 fine-tuned teachers, 10 pruned
#: students) missed its 99% agreement bar; on 1,000, 7 did: four more passed (two students, the
#: SST-2 and 10k-text teachers) and none that passed on 300 failed (same held-out and dev texts;
#: scripts/openvino_int8_variants.py --variants static,static-1000,weights-dyn, docs/RESULTS.md
#: "Session 14"). Its cost was not timed apart: the SST-2 teacher's whole export, checks included,
#: took 39.8 s inside its squeeze.
CALIBRATION_SIZE = 1000
MIN_CALIBRATION_SIZE = 300
#: Held-out texts the int8/bf16 export is compared with PyTorch fp32 on. 1,000 rather than 256:
#: the 99% bar on 256 texts allows two changed labels, and a binomial count that small refused
#: good exports by chance. Measured (scripts/openvino_check_size.py, CoLA): a 3-layer student's
#: static int8 changed 3 of the first 256 held-out labels (98.83%: refused, so it deployed on
#: run-time scales at 1.9x the latency) but 8 of the first 1,000 (99.2%) and 17 of 2,000 other
#: training texts (99.15%); the teacher (4 of 256, 12 of 1,000, 33 of 2,000) is refused either
#: way. Comparing 1,000 texts one at a time costs a 6-layer teacher about 10 s per recipe.
CHECK_SIZE = 1000
MIN_AGREEMENT = 0.99
#: How an int8 model is made (see :func:`quantize_int8`).
INT8_RECIPES = ("static", "dynamic")
#: ``int8_recipe="auto"`` tries these in order and writes the first that passes the agreement
#: checks: fastest first. Measured on the SST-2 minilm-l6 teacher (2 threads, dev texts, ms per
#: text at batch 1 / 32): static 3.07 / 1.38, dynamic 4.25 / 2.03 (bf16 4.08 / 3.16, fp32 5.92 /
#: 3.69); static agreed with fp32 on 98.74% of SST-2 dev, dynamic on 99.89%
#: (scripts/openvino_int8_variants.py, docs/RESULTS.md). Static with the FFN output projections
#: left in float (99.31%, 4.27 / 2.25) was slower than dynamic and less accurate, so it is no rung.
INT8_LADDER = ("static", "dynamic")


class CalibrationError(ValueError):
    """int8 was asked for without real text to calibrate on."""


@dataclass
class OpenVinoExportReport:
    """What :func:`export_model` wrote and how it checked out.

    ``max_abs_diff``: fp32 OpenVINO vs PyTorch per checked shape (``"BxT"``), random token ids.
    ``agreement``: int8/bf16 vs PyTorch fp32, argmax agreement on ``sample_size`` held-out texts;
    ``dev``: the same on the dev set plus both accuracies, when known.
    ``op_types``: node counts of the IR; ``runtime_op_types``: of the compiled execution graph.
    ``max_length``: tokens per text the model was trained at (evaluate and predict default to it).
    """

    path: Path
    precision: str
    inference_precision: str
    max_abs_diff: dict[str, float]
    max_length: int = 128
    agreement: float | None = None
    max_logit_diff: float | None = None
    sample_size: int = 0
    sample_source: str = ""
    dev: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    int8_recipe: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    op_types: dict[str, int] = field(default_factory=dict)
    runtime_op_types: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The ``"openvino"`` section of the export's ``config.json``."""
        out = asdict(self)
        out.pop("path")
        out.pop("files")
        out["inputs"] = list(INPUT_NAMES)
        return out

    def summary(self) -> str:
        """A few human-readable lines."""
        diffs = ", ".join(f"{shape}: {d:.1e}" for shape, d in self.max_abs_diff.items())
        lines = [
            f"wrote {self.path} ({', '.join(self.files)}); OpenVINO {self.precision} "
            f"(non-int8 operations in {self.inference_precision}) in {self.seconds:.1f} s",
            f"fp32 OpenVINO vs PyTorch max abs diff: {diffs} (limit {FP32_TOLERANCE:g})",
        ]
        for attempt in self.attempts:
            where, agreement = next((k, v) for k, v in attempt.items() if k != "recipe")
            lines.append(f"int8 recipe {attempt['recipe']} refused: agreement {agreement:.2%} on the {where} set")
        if self.int8_recipe == "static" and self.calibration:
            c = self.calibration
            lines.append(f"int8 (static) calibrated on {c['texts']} texts from {c['source']}")
        elif self.int8_recipe == "dynamic":
            lines.append("int8 (dynamic): int8 weights, activations quantized at run time per token and 32 channels")
        if self.agreement is not None:
            lines.append(
                f"{self.precision} vs PyTorch fp32 on {self.sample_size} held-out texts ({self.sample_source}): "
                f"predictions agree on {self.agreement:.2%}, max logit diff {self.max_logit_diff:.3g}"
            )
        if self.dev:
            d = self.dev
            line = (
                f"dev set ({d['source']}, {d['examples']} examples): agreement {d.get('agreement', float('nan')):.2%}"
            )
            if d.get("accuracy_fp32") is not None:
                line += f", accuracy {d['accuracy_export']:.2%} vs PyTorch fp32 {d['accuracy_fp32']:.2%}"
            lines.append(line)
        top = ", ".join(f"{k} x{v}" for k, v in Counter(self.runtime_op_types).most_common(6))
        lines.append(f"compiled graph: {sum(self.runtime_op_types.values())} nodes ({top}, ...)")
        return "\n".join(lines)


def _require_openvino() -> Any:
    return import_openvino()  # without its network telemetry


def _require_nncf() -> Any:
    import_openvino()  # nncf imports openvino: it must find no telemetry either
    try:
        import nncf
    except ImportError:
        raise ImportError("int8 OpenVINO export needs nncf: pip install 'squeezebert[openvino]'") from None
    return nncf


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """NNCF logs a table and progress bars on INFO; the export prints its own summary."""
    loggers = [logging.getLogger(name) for name in ("nncf", "openvino")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(open(os.devnull, "w")) as sink:  # noqa: SIM115 - closed below
            try:
                yield
            finally:
                sink.close()
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


# --------------------------------------------------------------------------- conversion
def convert(model: Any) -> Any:
    """Trace a :class:`~squeezebert.model.SqueezeBert` into an ``openvino.Model`` with dynamic
    batch and sequence axes and named inputs/outputs."""
    import warnings

    import torch

    ov = _require_openvino()
    model = copy.deepcopy(model).float().eval()
    example = {k: torch.from_numpy(v) for k, v in sample_inputs(model.config, 2, 8).items()}
    inputs = [(name, ov.PartialShape([-1, -1]), ov.Type.i64) for name in INPUT_NAMES]
    with warnings.catch_warnings(), torch.no_grad():
        # The sequence-length check in SqueezeBert.encode is a Python comparison the tracer rightly
        # treats as a constant.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # OpenVINO's converter traces with torch.jit, which torch now marks deprecated.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit\.")
        ov_model = ov.convert_model(model, example_input=tuple(example[k] for k in INPUT_NAMES), input=inputs)
    output = "logits" if model.config.num_labels > 0 else "last_hidden_state"
    ov_model.outputs[0].get_tensor().set_names({output})
    return ov_model


def _compile(
    ov_model: Any, inference_precision: str, num_threads: int | None = None, dynamic_int8: bool = False
) -> OpenVinoForward:
    """An :class:`OpenVinoForward` over an in-memory model, by way of a temporary IR (the class
    reads files so that the deployed path and the checked path are the same code)."""
    ov = _require_openvino()
    with tempfile.TemporaryDirectory(prefix="squeezebert-ov-check-") as tmp:
        path = Path(tmp) / MODEL_FILE
        ov.save_model(ov_model, str(path), compress_to_fp16=False)
        return OpenVinoForward(path, num_threads, inference_precision, dynamic_int8=dynamic_int8)


# --------------------------------------------------------------------------- real text
@dataclass
class TextSample:
    """Texts (or pairs) from one source, with labels where the source has them."""

    inputs: list[TextInput]
    source: str
    labels: list[Any] | None = None


def _split_inputs(inputs: Sequence[TextInput]) -> tuple[list[str], list[str] | None]:
    if inputs and isinstance(inputs[0], tuple):
        return [x[0] for x in inputs], [x[1] for x in inputs]  # type: ignore[index]
    return list(inputs), None  # type: ignore[arg-type]


def _encode_each(tokenizer: Any, inputs: Sequence[TextInput], max_length: int) -> list[Batch]:
    """One unpadded batch of one text per input: NNCF's statistics then never see padding."""
    texts, pairs = _split_inputs(inputs)
    return [tokenizer.pad([item]) for item in tokenizer.tokenize(texts, pairs, max_length)]


def _batches(tokenizer: Any, inputs: Sequence[TextInput], max_length: int, size: int = 32) -> Iterator[Batch]:
    """Padded batches in input order."""
    texts, pairs = _split_inputs(inputs)
    items = tokenizer.tokenize(texts, pairs, max_length)
    for start in range(0, len(items), size):
        yield tokenizer.pad(items[start : start + size])


def _compare(model: Any, forward: OpenVinoForward, tokenizer: Any, sample: TextSample, max_length: int) -> dict:
    """Agreement of ``forward`` with PyTorch fp32 (and accuracy where labels are known).

    Classification: argmax agreement. Regression (one output): the Pearson correlation of the
    two sets of outputs, held to the same bar (a score that moved enough to drop it below 0.99
    has changed the ranking of pairs the task is judged on)."""
    ref, got = [], []
    for batch in _batches(tokenizer, sample.inputs, max_length):
        ref.append(torch_outputs(model, batch))
        got.append(forward(batch))
    expected, actual = np.concatenate(ref), np.concatenate(got)
    result: dict[str, Any] = {
        "source": sample.source,
        "examples": len(expected),
        "max_logit_diff": float(np.abs(actual - expected).max()),
    }
    if model.config.num_labels == 1:
        a, e = actual.reshape(-1), expected.reshape(-1)
        # Identical outputs (a constant model included) agree perfectly; otherwise correlation.
        same = bool(np.allclose(a, e, rtol=0.0, atol=1e-6))
        result["agreement"] = 1.0 if same or len(a) < 2 else float(np.nan_to_num(np.corrcoef(a, e)[0, 1]))
    if model.config.num_labels > 1:
        result["agreement"] = float((actual.argmax(-1) == expected.argmax(-1)).mean())
        if sample.labels is not None:
            label2id = model.config.label2id
            gold = np.array([label2id.get(str(label), -1) for label in sample.labels])
            result["accuracy_fp32"] = float((expected.argmax(-1) == gold).mean())
            result["accuracy_export"] = float((actual.argmax(-1) == gold).mean())
    return result


def examples_sample(examples: Sequence[Any], source: str, labels: bool) -> TextSample:
    """A :class:`TextSample` of :class:`~squeezebert.tables.Example` objects (labels if asked)."""
    inputs: list[TextInput] = [e.text if e.text_pair is None else (e.text, e.text_pair) for e in examples]
    return TextSample(inputs, source, [e.label for e in examples] if labels else None)


def read_calibration_file(
    path: str | os.PathLike[str], text_column: str = "text", text_pair_column: str | None = None
) -> TextSample:
    """Texts from a text (one per line), CSV, TSV or JSONL file (:func:`squeezebert.tables.read_texts`,
    with the project's errors); one with no texts is a :class:`CalibrationError`."""
    from squeezebert import tables

    what = "a text, CSV, TSV or JSONL file of texts to calibrate on"
    examples = tables.read_texts(path, text_column, text_pair_column, what=what, require_rows=False)
    if not examples:
        raise CalibrationError(f"{path}: holds no texts to calibrate on")
    return examples_sample(examples, str(path), labels=False)


def recorded_data(ckpt_path: Path | None) -> tuple[TextSample | None, TextSample | None]:
    """The training texts and the labelled dev set a checkpoint's ``train_args.json`` records
    (fine-tuned or squeezed by this project), or ``(None, None)``. A squeezed student that names
    only its teacher is followed to the teacher's record."""
    from squeezebert.data import TaskSource, load_task_data
    from squeezebert.train import read_train_args

    seen = 0
    while ckpt_path is not None and seen < 4:
        seen += 1
        args = read_train_args(ckpt_path)
        if args is None:
            return None, None
        source = TaskSource.recorded(args)
        if source is None:
            if not args.get("teacher"):
                return None, None
            teacher = Path(str(args["teacher"]))
            ckpt_path = teacher if teacher.is_dir() else None
            continue
        data = load_task_data(source)
        train = examples_sample(data.train, data.train_source, labels=False)
        dev = examples_sample(data.dev, data.dev_source, labels=data.labels is not None) if data.dev else None
        return train, dev
    return None, None


def _split_calibration(sample: TextSample, size: int, check: int, seed: int = 0) -> tuple[TextSample, TextSample]:
    """Disjoint random subsets: up to ``size`` texts to calibrate on and ``check`` held-out texts
    to compare on. A source too small for both calibrates on fewer texts, down to
    :data:`MIN_CALIBRATION_SIZE`, so that the check keeps its size; below that the check set is
    what is left (when nothing is, it reuses calibration texts)."""
    size = min(size, max(MIN_CALIBRATION_SIZE, len(sample.inputs) - check))
    order = list(range(len(sample.inputs)))
    random.Random(seed).shuffle(order)
    calib = [sample.inputs[i] for i in order[:size]]
    rest = order[size : size + check] or order[:check]
    return (
        TextSample(calib, sample.source),
        TextSample([sample.inputs[i] for i in rest], sample.source + (" (held out)" if order[size:] else "")),
    )


# --------------------------------------------------------------------------- int8
def quantize_int8(ov_model: Any, calibration: Sequence[Batch], recipe: str = "static") -> Any:
    """An int8 copy of ``ov_model`` by ``recipe`` (see :data:`INT8_RECIPES`).

    ``static``: NNCF static int8 of every projection (transformer preset: SmoothQuant, attention
    and LayerNorm kept in float) calibrated on ``calibration`` (model inputs from real text), then
    int8 per-row storage of the remaining float weights (the word embeddings).
    ``dynamic``: int8 weights only (asymmetric, per output channel); the CPU plugin quantizes each
    activation at run time in groups of 32 channels (``backends.DYNAMIC_INT8_GROUP``), so every
    token gets its own scales: no calibration, the error of per-token int8.
    """
    nncf = _require_nncf()
    if recipe not in INT8_RECIPES:
        raise ValueError(f"int8 recipe must be one of {INT8_RECIPES}, got {recipe!r}")
    with _quiet():
        if recipe == "dynamic":
            return nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_ASYM)
        quantized = nncf.quantize(
            ov_model,
            nncf.Dataset(list(calibration)),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(calibration),
        )
        return nncf.compress_weights(quantized, mode=nncf.CompressWeightsMode.INT8_SYM)


# --------------------------------------------------------------------------- public API
def export_model(
    model: Any,
    out: str | os.PathLike[str],
    tokenizer: Any | None = None,
    precision: str = "fp32",
    calibration: TextSample | Sequence[Batch] | None = None,
    check: TextSample | None = None,
    dev: TextSample | None = None,
    max_length: int = 128,
    inference_precision: str | None = None,
    min_agreement: float = MIN_AGREEMENT,
    num_threads: int | None = None,
    int8_recipe: str = "auto",
) -> OpenVinoExportReport:
    """Export a :class:`~squeezebert.model.SqueezeBert` (and its tokenizer) to OpenVINO in ``out``.

    ``precision``: ``fp32``, ``bf16`` or ``int8`` (see the module docstring). ``calibration``
    (int8): real texts (:class:`TextSample`, needs ``tokenizer``) or, for timing-only uses such as
    the benchmark, ready model inputs; ``check``: held-out texts the export is compared with
    PyTorch fp32 on (default: texts of the calibration sample not used to calibrate); ``dev``: a
    labelled dev set to compare on as well. ``inference_precision``: what the non-int8 operations
    run in (``fp32``/``bf16``; default fp32 for fp32 and int8, bf16 for bf16).
    ``min_agreement``: the agreement an int8/bf16 export must reach on ``check`` and ``dev``.
    ``int8_recipe``: ``static``, ``dynamic`` or ``auto`` (default: the fastest of
    :data:`INT8_LADDER` that passes the agreement checks; the refused ones are reported).
    """
    from squeezebert.model import SqueezeBert

    _require_openvino()
    started = time.perf_counter()
    if not isinstance(model, SqueezeBert):
        raise TypeError(f"export_model takes a SqueezeBert model (not an optimized copy), got {type(model).__name__}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS} for OpenVINO, got {precision!r}")
    if int8_recipe not in (*INT8_RECIPES, "auto"):
        raise ValueError(f"int8_recipe must be 'auto' or one of {INT8_RECIPES}, got {int8_recipe!r}")
    inference_precision = inference_precision or ("bf16" if precision == "bf16" else "fp32")
    if inference_precision == "bf16" and not openvino_has_bf16():
        raise ValueError("this CPU has no native bf16 (OpenVINO reports no BF16 capability); export fp32 or int8")
    if precision == "int8" and not calibration and int8_recipe != "dynamic":
        raise CalibrationError(
            "int8 needs real text to calibrate on: the checkpoint records no training data (train_args.json); "
            "pass --calibration FILE (text, CSV, TSV or JSONL)"
        )
    if isinstance(calibration, TextSample) or check is not None or dev is not None:
        if tokenizer is None:
            raise ValueError("calibrating or checking on texts needs the tokenizer")
    model = copy.deepcopy(model).float().eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cleanup_partial(out)
    report = OpenVinoExportReport(out, precision, inference_precision, {}, max_length)

    with _quiet():
        ov_model = convert(model)
    report.max_abs_diff = check_fp32(model, _compile(ov_model, "fp32", num_threads), "OpenVINO")

    inputs: list[Batch] = []
    if precision == "int8":
        if isinstance(calibration, TextSample):
            calib, held_out = _split_calibration(calibration, CALIBRATION_SIZE, CHECK_SIZE)
            inputs = _encode_each(tokenizer, calib.inputs, max_length)
            report.calibration = {"source": calib.source, "texts": len(calib.inputs), "max_length": max_length}
            check = check or held_out
        else:
            inputs = list(calibration)  # type: ignore[arg-type]
            report.calibration = {"source": "model inputs given by the caller", "texts": len(inputs)}
    recipes = (int8_recipe,) if int8_recipe != "auto" else INT8_LADDER
    if precision != "int8":
        recipes = (None,)  # type: ignore[assignment]
    failures = []
    for recipe in recipes:
        candidate = ov_model if recipe is None else quantize_int8(ov_model, inputs, recipe)
        report.int8_recipe = recipe
        failure = _stage_and_write(
            candidate, model, tokenizer, out, report, check, dev, max_length, min_agreement, num_threads
        )
        if failure is None:
            report.seconds = time.perf_counter() - started
            return report
        failures.append(failure)
        if recipe is not None and recipe != recipes[-1]:
            log.info("int8 recipe %s: %s; trying the next one", recipe, failure)
    raise ExportError("; ".join(failures) + "; nothing was written")


def _stage_and_write(
    ov_model: Any,
    model: Any,
    tokenizer: Any | None,
    out: Path,
    report: OpenVinoExportReport,
    check: TextSample | None,
    dev: TextSample | None,
    max_length: int,
    min_agreement: float,
    num_threads: int | None,
) -> str | None:
    """Save ``ov_model`` under a staging directory in ``out``, compare it with PyTorch fp32, and
    only if it agrees well enough move the files into ``out`` (``config.json`` last). Returns
    None when written, else why not."""
    ov = _require_openvino()
    precision = report.precision
    with tempfile.TemporaryDirectory(prefix=".squeezebert-ov-", dir=out) as tmp:
        staged = Path(tmp)
        ov.save_model(ov_model, str(staged / MODEL_FILE), compress_to_fp16=(precision == "bf16"))
        forward = OpenVinoForward(
            staged / MODEL_FILE, num_threads, report.inference_precision, dynamic_int8=report.int8_recipe == "dynamic"
        )
        report.op_types = dict(Counter(op.get_type_name() for op in ov_model.get_ordered_ops()))
        report.runtime_op_types = runtime_op_types(forward)
        report.agreement = report.max_logit_diff = report.dev = None
        if precision != "fp32":
            for sample, where in ((check, "sample"), (dev, "dev")):
                if sample is None or not sample.inputs:
                    continue
                result = _compare(model, forward, tokenizer, sample, max_length)
                if where == "sample":
                    report.agreement = result.get("agreement")
                    report.max_logit_diff = result["max_logit_diff"]
                    report.sample_size, report.sample_source = result["examples"], result["source"]
                else:
                    report.dev = result
                agreement = result.get("agreement")
                attempt = {"recipe": report.int8_recipe, where: agreement}
                if agreement is not None and agreement < min_agreement:
                    report.attempts.append(attempt)
                    what = precision if report.int8_recipe is None else f"int8 ({report.int8_recipe})"
                    return (
                        f"OpenVINO {what} agrees with PyTorch fp32 on {agreement:.2%} of {result['examples']} "
                        f"texts ({result['source']}), below the {min_agreement:.0%} required"
                    )
        del forward
        files = [MODEL_FILE, WEIGHTS_FILE]
        if tokenizer is not None:
            tokenizer.save(staged / "tokenizer.json")
            for name, text in tokenizer.hf_sidecars(model.config.max_position_embeddings).items():
                (staged / name).write_text(text, encoding="utf-8")
                files.append(name)
            files.append("tokenizer.json")
        else:
            log.warning("%s: no tokenizer given; the export cannot classify text on its own", out)
        config = model.config.to_dict()
        config["openvino"] = report.to_json()
        (staged / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        files.append("config.json")
        # config.json last: a reader that sees it sees a complete export.
        for name in sorted(files, key=lambda n: n == "config.json"):
            os.replace(staged / name, out / name)
        if (out / "model.onnx").exists():
            log.warning("%s also holds an ONNX export; the OpenVINO files take precedence when loading", out)
    report.files = files
    return None


def runtime_op_types(forward: OpenVinoForward) -> dict[str, int]:
    """Node counts of the compiled execution graph (what the CPU plugin actually runs)."""
    runtime = forward.compiled.get_runtime_model()
    return dict(Counter(op.get_rt_info()["layerType"].astype(str) for op in runtime.get_ordered_ops()))


def export(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    precision: str = "fp32",
    calibration: str | os.PathLike[str] | None = None,
    text_column: str = "text",
    text_pair_column: str | None = None,
    max_length: int | None = None,
    inference_precision: str | None = None,
    min_agreement: float = MIN_AGREEMENT,
    num_threads: int | None = None,
    int8_recipe: str = "auto",
) -> OpenVinoExportReport:
    """Load a checkpoint (directory, alias or preset, as :func:`squeezebert.checkpoint.load`) and
    export it with :func:`export_model`.

    int8 calibrates on ``calibration`` (a text/CSV/TSV/JSONL file; ``text_column`` /
    ``text_pair_column`` name its columns) or else on the training texts the checkpoint's
    ``train_args.json`` records; with neither, :class:`CalibrationError`. The dev set the
    checkpoint records is used for the agreement check whenever precision is not fp32.
    ``max_length``: tokens per calibration/check text (default: the length the checkpoint was
    trained at, else 128).
    """
    from squeezebert.checkpoint import load
    from squeezebert.train import trained_max_length

    ckpt = load(src)
    train, dev = (None, None)
    if precision != "fp32":
        train, dev = recorded_data(ckpt.path)
    sample = read_calibration_file(calibration, text_column, text_pair_column) if calibration is not None else train
    if max_length is None:
        max_length = trained_max_length(ckpt.path)
    max_length = min(max_length, ckpt.model.config.max_position_embeddings)
    if precision == "int8" and sample is None and int8_recipe != "dynamic":
        raise CalibrationError(
            f"{src}: int8 needs real text to calibrate on, and this checkpoint records no training data "
            "(train_args.json); pass --calibration FILE (text, CSV, TSV or JSONL)"
        )
    check = None
    if precision == "bf16" and sample is not None:
        check = _split_calibration(sample, 0, CHECK_SIZE)[1]
    return export_model(
        ckpt.model,
        out,
        ckpt.tokenizer,
        precision=precision,
        calibration=sample if precision == "int8" else None,
        check=check,
        dev=dev,
        max_length=max_length,
        inference_precision=inference_precision,
        min_agreement=min_agreement,
        num_threads=num_threads,
        int8_recipe=int8_recipe,
    )


def cleanup_partial(out: str | os.PathLike[str]) -> None:
    """Remove staging directories a killed export left in ``out``."""
    for stale in Path(out).glob(".squeezebert-ov-*"):
        shutil.rmtree(stale, ignore_errors=True)


def export_for_runtime(src: str | os.PathLike[str], out: str | os.PathLike[str], backend: str, precision: str) -> None:
    """Export a checkpoint into ``out`` for ``backend`` (``onnx`` or ``openvino``) with each
    exporter's defaults: what :meth:`squeezebert.infer.Classifier.from_pretrained` runs to load a
    checkpoint on a runtime. OpenVINO int8 with no recorded texts to calibrate static int8 on
    falls back to the dynamic recipe, which needs none."""
    if backend == "onnx":
        from squeezebert.export import export as export_onnx

        export_onnx(src, out, precision=precision)
        return
    try:
        export(src, out, precision=precision)
    except CalibrationError:
        if precision != "int8":
            raise
        log.info("%s: no training texts recorded; OpenVINO int8 with run-time activation scales", src)
        export(src, out, precision=precision, int8_recipe="dynamic")
