"""Side-by-side CPU benchmark: our model against transformers' SqueezeBERT and BERT, one run.

Everything compared is measured in the same process, with the same thread count, interleaved:
candidates run round-robin (one call of each, then the next round) so that machine drift — other
processes, frequency changes — hits all of them alike; in the grid, each round in a fresh order,
so that no candidate always runs right after the same neighbour (whose worker threads may still
be winding down). Numbers from different runs are not comparable; ratios within one run are.

Two modes:

* :func:`run_bench` — a grid of batch size x sequence length on random token ids (latency does not
  depend on the ids; random weights are fine). Per candidate and cell: latency p50/p90/p99,
  throughput, achieved GOP/s and its fraction of the matmul peak of its own precision and of the
  int8 peak, both timed in the same run, energy per 1,000 texts; per candidate: parameters, FLOPs,
  file size, memory; per cell (``summary``): our fastest candidate against the best peer — the
  fastest of all the others — and against the int8 floor.

  The candidates (:data:`CANDIDATES`): our model through torch, ONNX Runtime and OpenVINO, and
  the paths a user of transformers' SqueezeBERT and BERT would pick: eager torch (fp32, dynamic
  int8), ONNX Runtime (fp32, ``quantize_dynamic`` int8), OpenVINO (fp32, the bf16 hint, NNCF int8
  with either hint) and, for BERT, CTranslate2 int8. Every candidate of one runtime gets the same
  settings (threads, streams, precision hint), set explicitly.
* :func:`run_workload` — a real text file, texts -> labels end to end (tokenization included):
  our :class:`~squeezebert.infer.Classifier` against ``transformers.pipeline`` on the same
  weights, with the agreement of their labels.

How memory is measured (said in every report, ``memory_method``): ``rss_load_mb`` is the growth
of the process's resident set from before a candidate is built to after its first call on 8
tokens: weights (transformers memory-maps them, so they count only once touched), packed copies,
an ONNX Runtime session; freed heap is returned to the OS (``malloc_trim``) on both sides.
``rss_run_peak_mb`` is the peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``)
during the candidate's first call at the largest cell, above the resident set just before it:
activations and workspace. Both are per candidate inside one shared process, so they are
estimates; the process peak (``getrusage``) is reported beside them.

Energy: RAPL package counters (``/sys/class/powercap/intel-rapl:N/energy_uj``) when readable —
these count the whole package, other processes included — else an *estimate*: the process CPU time
of each call (all its threads) times a stated power per busy core.

The timing harness and the memory and energy probes are :mod:`squeezebert.timing`; the report's
tables and plot, :mod:`squeezebert.bench_report`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import io
import json
import logging
import os
import random
import statistics
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from squeezebert.bench_report import require_matplotlib, write_outputs
from squeezebert.files import read_json_object
from squeezebert.runtime import RuntimeOptions, with_threads
from squeezebert.timing import (
    RAPL_GLOB,
    SETTLE_S,
    EnergyMeter,
    Samples,
    Timing,
    busy_warning,
    environment,
    measure,
    process_peak_rss_bytes,
    random_batch,
    rss_bytes,
    time_interleaved,
    trim,
)

log = logging.getLogger(__name__)


MEMORY_METHOD = (
    "rss_load_mb: resident-set growth from before building the candidate to after its first call on 1 x 8 tokens "
    "(which pages in memory-mapped weights; malloc_trim before and after); "
    "rss_run_peak_mb: peak resident set (VmHWM, reset via /proc/self/clear_refs) during its first call at the "
    "largest cell, above the resident set just before that call; process_peak_rss_mb: getrusage ru_maxrss of "
    "the whole benchmark process. All candidates share one process, so per-candidate figures are estimates."
)


def matmul_peaks(size: int = 2048, warmup: int = 1, repeats: int = 5) -> dict[str, float | None]:
    """GOP/s of a ``size``³ matmul in fp32, bf16 and int8 (``torch._int_mm``), interleaved, at the
    current thread count: the ceiling each precision's achieved GOP/s is compared with. A
    precision this build cannot run maps to None."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(size, size, generator=g), torch.randn(size, size, generator=g)
    calls: dict[str, Callable[[], Any]] = {"fp32": lambda: torch.mm(a, b)}
    a16, b16 = a.bfloat16(), b.bfloat16()
    ai8 = torch.randint(-127, 128, (size, size), dtype=torch.int8, generator=g)
    bi8 = torch.randint(-127, 128, (size, size), dtype=torch.int8, generator=g)
    for name, fn in (("bf16", lambda: torch.mm(a16, b16)), ("int8", lambda: torch._int_mm(ai8, bi8))):
        try:
            fn()
            calls[name] = fn
        except (RuntimeError, AttributeError) as e:  # not every build has every kernel
            log.info("no %s matmul on this build (%s)", name, e)
    timings = time_interleaved(calls, warmup=warmup, repeats=repeats)
    ops = 2 * size**3
    return {p: (ops / (timings[p].p50 / 1e3) / 1e9 if p in timings else None) for p in ("fp32", "bf16", "int8")}


# --------------------------------------------------------------------------- candidates
@dataclass(frozen=True)
class CandidateSpec:
    """One benchmark candidate: which model family, runtime and precision.

    ``inference_precision`` (OpenVINO only): the precision its CPU plugin computes the operations
    that are not int8 in (``INFERENCE_PRECISION_HINT``), always set explicitly: left alone it
    defaults to bf16 on CPUs that have it."""

    family: str  # ours | squeezebert | bert
    backend: str  # torch | onnxruntime | openvino | ctranslate2
    precision: str  # fp32 | bf16 | int8: the weights' precision, and the matmul peak it is compared with
    how: str  # how it is made, for the report
    inference_precision: str | None = None  # openvino: fp32 | bf16


#: Random-id batches NNCF calibrates the OpenVINO int8 candidates on. Random ids give the wrong
#: activation ranges, which costs accuracy, not speed: the bench's models have random weights and
#: are timed, never scored. (``squeezebert export`` refuses to calibrate on random ids.)
CALIBRATION_BATCHES = 32
_RANDOM_CALIBRATION = f"calibrated on {CALIBRATION_BATCHES} random-id batches (timing only, not accuracy)"


def _openvino_peers(family: str) -> dict[str, CandidateSpec]:
    """transformers' model converted with ``openvino.convert_model``, as a user would: fp32, the
    bf16 hint, and NNCF int8 with either hint."""
    convert = "openvino.convert_model(transformers model)"
    nncf = f"{convert} + nncf.quantize(model_type=TRANSFORMER), {_RANDOM_CALIBRATION}"
    return {
        f"hf-{family}-openvino-fp32": CandidateSpec(family, "openvino", "fp32", f"{convert}, hint f32", "fp32"),
        f"hf-{family}-openvino-bf16": CandidateSpec(family, "openvino", "bf16", f"{convert}, hint bf16", "bf16"),
        f"hf-{family}-openvino-int8": CandidateSpec(family, "openvino", "int8", f"{nncf}, hint f32", "fp32"),
        f"hf-{family}-openvino-int8-bf16": CandidateSpec(family, "openvino", "int8", f"{nncf}, hint bf16", "bf16"),
    }


CANDIDATES: dict[str, CandidateSpec] = {
    "ours-torch-fp32": CandidateSpec("ours", "torch", "fp32", "squeezebert.optimize(model, 'fp32')"),
    "ours-torch-bf16": CandidateSpec("ours", "torch", "bf16", "squeezebert.optimize(model, 'bf16')"),
    "ours-torch-int8": CandidateSpec(
        "ours", "torch", "int8", "squeezebert.optimize(model, 'int8') (oneDNN, per-token activations)"
    ),
    "ours-onnx-fp32": CandidateSpec("ours", "onnxruntime", "fp32", "squeezebert.export_model(precision='fp32')"),
    "ours-onnx-int8": CandidateSpec(
        "ours", "onnxruntime", "int8", "squeezebert.export_model(precision='int8') (per-token activations)"
    ),
    "ours-openvino-fp32": CandidateSpec(
        "ours", "openvino", "fp32", "squeezebert.export_openvino.export_model(precision='fp32'), hint f32", "fp32"
    ),
    "ours-openvino-bf16": CandidateSpec(
        "ours", "openvino", "bf16", "squeezebert.export_openvino.export_model(precision='bf16'), hint bf16", "bf16"
    ),
    "ours-openvino-int8": CandidateSpec(
        "ours",
        "openvino",
        "int8",
        f"squeezebert.export_openvino.export_model(precision='int8'), NNCF {_RANDOM_CALIBRATION}, hint f32",
        "fp32",
    ),
    "ours-openvino-int8-bf16": CandidateSpec(
        "ours",
        "openvino",
        "int8",
        f"squeezebert.export_openvino.export_model(precision='int8'), NNCF {_RANDOM_CALIBRATION}, hint bf16",
        "bf16",
    ),
    "hf-squeezebert-torch-fp32": CandidateSpec("squeezebert", "torch", "fp32", "transformers SqueezeBERT"),
    "hf-squeezebert-onnx-fp32": CandidateSpec("squeezebert", "onnxruntime", "fp32", "torch.onnx.export, opset 17"),
    "hf-squeezebert-onnx-int8": CandidateSpec(
        "squeezebert", "onnxruntime", "int8", "onnxruntime.quantization.quantize_dynamic, defaults"
    ),
    **_openvino_peers("squeezebert"),
    "hf-bert-torch-fp32": CandidateSpec("bert", "torch", "fp32", "transformers BERT"),
    "hf-bert-torch-int8": CandidateSpec(
        "bert", "torch", "int8", "torch.ao.quantization.quantize_dynamic({nn.Linear}, qint8)"
    ),
    "hf-bert-onnx-fp32": CandidateSpec("bert", "onnxruntime", "fp32", "torch.onnx.export, opset 17"),
    "hf-bert-onnx-int8": CandidateSpec(
        "bert", "onnxruntime", "int8", "onnxruntime.quantization.quantize_dynamic, defaults"
    ),
    **_openvino_peers("bert"),
    "hf-bert-ctranslate2-int8": CandidateSpec(
        "bert",
        "ctranslate2",
        "int8",
        "ctranslate2 TransformersConverter(quantization='int8'), Encoder(compute_type='int8'): BertModel's "
        "pooled output, the classifier head in numpy (CTranslate2 has no sequence-classification head)",
    ),
}
#: Measured unless ``candidates`` says otherwise (BERT's fp32 ONNX graph is on request only).
DEFAULT_CANDIDATES = tuple(name for name in CANDIDATES if name != "hf-bert-onnx-fp32")
#: The candidate speedups are stated against, when measured.
DEFAULT_BASELINE = "hf-bert-torch-fp32"

_FIELDS_PER_CANDIDATE = (
    "name",
    "family",
    "backend",
    "precision",
    "inference_precision",
    "how",
    "model",
    "status",
    "note",
    "parameters",
    "flops_per_text",
    "file",
    "file_bytes",
    "rss_load_mb",
    "rss_run_peak_mb",
    "accuracy",
    "cells",
)


def select_candidates(patterns: Sequence[str] | None) -> list[str]:
    """Candidate names matching ``patterns`` (exact names or shell patterns, ``ours-*``), in
    the canonical order; None means :data:`DEFAULT_CANDIDATES`."""
    if patterns is None:
        return list(DEFAULT_CANDIDATES)
    chosen: set[str] = set()
    for pattern in patterns:
        pattern = pattern.strip()
        if not pattern:
            continue
        hits = fnmatch.filter(CANDIDATES, pattern)
        if not hits:
            raise ValueError(f"unknown candidate {pattern!r}; choose from {', '.join(CANDIDATES)} (or a pattern)")
        chosen.update(hits)
    if not chosen:
        raise ValueError("no candidates selected")
    return [name for name in CANDIDATES if name in chosen]


def _describe(config: Any) -> str:
    from squeezebert.config import PROJECTIONS

    groups = "/".join(str(config.groups(p)) for p in PROJECTIONS)
    rank = ", low-rank" if config.ranks else ""
    return f"{config.num_hidden_layers}x{config.hidden_size}, groups {groups}{rank}"


def _peer_config(family: str, quick: bool) -> Any:
    """The architecture a transformers peer is built with: SqueezeBERT-uncased and BERT-base, or
    the tiny preset (grouped / dense) for ``quick``."""
    from squeezebert.config import preset

    dense = dict(q_groups=1, k_groups=1, v_groups=1, intermediate_groups=1, output_groups=1)
    if family == "squeezebert":
        return preset("tiny" if quick else "squeezebert-uncased", num_labels=2)
    return preset("tiny", num_labels=2, **dense) if quick else preset("bert-base", num_labels=2)


def _load_ours(src: str) -> Any:
    """A checkpoint with a classification head: presets and headless encoders get a fresh
    2-label head (random weights: latency does not depend on them)."""
    from squeezebert.checkpoint import load, resolve

    if isinstance(resolve(src), str):  # a preset
        return load(src, num_labels=2)
    ckpt = load(src)
    if ckpt.model.config.num_labels == 0:
        ckpt = load(src, num_labels=2)
    return ckpt


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence exporter/quantizer chatter: deprecation warnings of the paths benchmarked on
    purpose, transformers' progress bars and load reports (CTranslate2's converter loads a
    classifier as BertModel), onnxruntime's pre-processing hint on the root logger, NNCF's log and
    its progress bars (printed to stdout)."""
    root, nncf_log = logging.getLogger(), logging.getLogger("nncf")
    level, nncf_level = root.level, nncf_log.level
    root.setLevel(max(level, logging.ERROR))
    nncf_log.setLevel(logging.ERROR)
    bar_was_on = verbosity = None
    try:
        from transformers.utils import logging as hf_logging

        bar_was_on, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
        nncf_log.setLevel(nncf_level)
        if verbosity is not None:
            hf_logging.set_verbosity(verbosity)
        if bar_was_on:
            hf_logging.enable_progress_bar()


def _missing(spec: CandidateSpec) -> str | None:
    """Why a candidate cannot run here (a package is missing), or None."""
    from squeezebert.infer import installed

    need = []
    if spec.family != "ours":
        need.append(("transformers", "pip install transformers"))
    if spec.backend == "onnxruntime":
        need += [("onnxruntime", "pip install 'squeezebert[onnx]'"), ("onnx", "pip install 'squeezebert[onnx]'")]
    if spec.backend == "openvino":
        need.append(("openvino", "pip install 'squeezebert[openvino]'"))
        if spec.precision == "int8":
            need.append(("nncf", "pip install 'squeezebert[openvino]'"))
    if spec.backend == "ctranslate2":
        need.append(("ctranslate2", "pip install ctranslate2"))
    for module, how in need:
        if not installed(module):
            return f"skipped: {module} is not installed ({how})"
    return None


@functools.cache
def _openvino_bf16() -> bool:
    from squeezebert.backends import openvino_has_bf16

    return openvino_has_bf16()


def _hf_model(path: Path) -> Any:
    from transformers import AutoModelForSequenceClassification

    with _quiet():
        return AutoModelForSequenceClassification.from_pretrained(str(path), dtype=torch.float32).eval()


class _HFLogits(torch.nn.Module):
    """Positional inputs -> logits, the signature ``torch.onnx.export`` traces."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> Any:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits


def _export_hf_onnx(hf_dir: Path, out: Path) -> float:
    """Export a transformers classifier to ONNX; return the max |difference| from PyTorch on a
    padded check batch (the graph would be benchmarked, so it had better compute the same)."""
    import numpy as np

    from squeezebert.convert import config_from_hf
    from squeezebert.export import INPUT_NAMES, sample_inputs

    model = _HFLogits(_hf_model(hf_dir)).eval()
    config = config_from_hf(json.loads((hf_dir / "config.json").read_text()))
    example = {k: torch.from_numpy(v) for k, v in sample_inputs(config, 2, 8).items()}
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES} | {"logits": {0: "batch"}}
    with _quiet():
        torch.onnx.export(
            model,
            tuple(example[k] for k in INPUT_NAMES),
            str(out),
            dynamo=False,
            opset_version=17,
            input_names=list(INPUT_NAMES),
            output_names=["logits"],
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    import onnxruntime as ort

    check = sample_inputs(config, 3, 16, seed=1)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, check)[0]
    with torch.inference_mode():
        expected = model(*(torch.from_numpy(check[k]) for k in INPUT_NAMES)).numpy()
    return float(np.abs(got - expected).max())


def _ort_quantize_default(src: Path, out: Path) -> None:
    from onnxruntime.quantization import quantize_dynamic

    with _quiet():
        quantize_dynamic(str(src), str(out))  # ORT's defaults: QInt8 weights, per tensor


def _calibration(config: Any, seq_len: int) -> list[dict[str, Any]]:
    """Model inputs NNCF calibrates on: :data:`CALIBRATION_BATCHES` random-id batches of one text
    (second segment and padding as :func:`~squeezebert.export.sample_inputs` makes them)."""
    from squeezebert.export import sample_inputs

    return [sample_inputs(config, 1, seq_len, seed=i) for i in range(CALIBRATION_BATCHES)]


def _export_hf_openvino(hf_dir: Path, out: Path) -> float:
    """Convert a transformers classifier with ``openvino.convert_model`` (dynamic batch and
    sequence axes) and save its fp32 IR as ``out/model.xml``; return the max |difference| from
    PyTorch on a padded check batch, run through the same :class:`OpenVinoForward` as the bench."""
    import numpy as np

    from squeezebert.backends import import_openvino

    ov = import_openvino()  # without its network telemetry

    from squeezebert.backends import OpenVinoForward
    from squeezebert.convert import config_from_hf
    from squeezebert.export import INPUT_NAMES, sample_inputs

    model = _HFLogits(_hf_model(hf_dir)).eval()
    config = config_from_hf(json.loads((hf_dir / "config.json").read_text()))
    example = {k: torch.from_numpy(v) for k, v in sample_inputs(config, 2, 8).items()}
    inputs = [(name, ov.PartialShape([-1, -1]), ov.Type.i64) for name in INPUT_NAMES]
    with _quiet(), torch.no_grad():
        ov_model = ov.convert_model(model, example_input=tuple(example[k] for k in INPUT_NAMES), input=inputs)
    ov_model.outputs[0].get_tensor().set_names({"logits"})
    out.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov_model, str(out / "model.xml"), compress_to_fp16=False)
    check = sample_inputs(config, 3, 16, seed=1)
    got = OpenVinoForward(out / "model.xml", num_threads=1, inference_precision="fp32")(check)
    with torch.inference_mode():
        expected = model(*(torch.from_numpy(check[k]) for k in INPUT_NAMES)).numpy()
    return float(np.abs(got - expected).max())


def _nncf_int8(src: Path, out: Path, calibration: list[dict[str, Any]]) -> None:
    """``nncf.quantize`` with the transformer preset and its defaults otherwise, on the IR in
    ``src``; the result is saved as ``out/model.xml`` (fp32 weights where not int8)."""
    from squeezebert.backends import import_openvino

    ov = import_openvino()  # without its network telemetry, before nncf imports it
    import nncf

    with _quiet():
        quantized = nncf.quantize(
            ov.Core().read_model(str(src)),
            nncf.Dataset(calibration),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(calibration),
        )
    out.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(out / "model.xml"), compress_to_fp16=False)


def _convert_ctranslate2(hf_dir: Path, out: Path) -> None:
    """CTranslate2's own converter on the transformers directory, int8 weights."""
    from ctranslate2.converters import TransformersConverter

    # Its BERT loader asserts config.position_embedding_type == "absolute", an attribute
    # transformers 5's BertConfig no longer defines: it exists only when config.json names it.
    # save_hf writes it; a directory without it gets it here (the bench's own temporary copy).
    config_file = hf_dir / "config.json"
    config = json.loads(config_file.read_text())
    if "position_embedding_type" not in config:
        config_file.write_text(json.dumps(config | {"position_embedding_type": "absolute"}, indent=2))
    with _quiet():
        TransformersConverter(str(hf_dir)).convert(str(out), quantization="int8", force=True)


def _file_bytes(path: Path) -> int:
    """Bytes on disk of what a candidate loads: a file, an OpenVINO IR (``.xml`` + ``.bin``) or a
    model directory (CTranslate2)."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    size = path.stat().st_size
    if path.suffix == ".xml" and path.with_suffix(".bin").is_file():
        size += path.with_suffix(".bin").stat().st_size
    return size


@dataclass
class _Built:
    """A loaded candidate: ``make(batch)`` returns the zero-argument call for one input batch."""

    make: Callable[[dict[str, torch.Tensor]], Callable[[], Any]]
    parameters: int
    config: Any
    file: Path
    note: str = ""


def _torch_call(model: Any, hf: bool) -> Callable[[dict[str, torch.Tensor]], Callable[[], Any]]:
    def make(batch: dict[str, torch.Tensor]) -> Callable[[], Any]:
        ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        if hf:

            def run() -> Any:
                with torch.inference_mode():
                    return model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits

            return run
        return lambda: model(ids, mask, types)  # an InferenceModel: inference mode inside

    return make


def _onnx_call(path: Path, threads: int) -> Callable[[dict[str, torch.Tensor]], Callable[[], Any]]:
    # Same session options for every ONNX candidate, ours and the peers': backends.OnnxForward.
    from squeezebert.backends import OnnxForward

    forward = OnnxForward(path, num_threads=threads)

    def make(batch: dict[str, torch.Tensor]) -> Callable[[], Any]:
        arrays = {k: v.numpy() for k, v in batch.items()}
        return lambda: forward(arrays)

    return make


def _openvino_call(
    path: Path, threads: int, inference_precision: str
) -> Callable[[dict[str, torch.Tensor]], Callable[[], Any]]:
    # Same compile settings for every OpenVINO candidate, ours and the peers': backends.OpenVinoForward
    # (explicit threads and precision hint, one stream, latency hint).
    from squeezebert.backends import OpenVinoForward

    forward = OpenVinoForward(path, num_threads=threads, inference_precision=inference_precision)

    def make(batch: dict[str, torch.Tensor]) -> Callable[[], Any]:
        arrays = {k: v.numpy() for k, v in batch.items()}
        return lambda: forward(arrays)

    return make


def _ctranslate2_call(
    model_dir: Path, hf_dir: Path, threads: int
) -> Callable[[dict[str, torch.Tensor]], Callable[[], Any]]:
    """CTranslate2 runs BertModel only: its pooled output goes through the classifier's weights
    (read from the transformers checkpoint) in numpy, inside the timed call."""
    import ctranslate2
    import numpy as np
    from safetensors import safe_open

    encoder = ctranslate2.Encoder(
        str(model_dir), device="cpu", compute_type="int8", intra_threads=threads, inter_threads=1
    )
    with safe_open(str(hf_dir / "model.safetensors"), framework="np") as f:
        weight_t = np.ascontiguousarray(f.get_tensor("classifier.weight").T.astype(np.float32))
        bias = f.get_tensor("classifier.bias").astype(np.float32)

    def make(batch: dict[str, torch.Tensor]) -> Callable[[], Any]:
        # Dense int32 ids and lengths (the fastest input form it takes) and token types as lists
        # (the only form it takes), made once per cell, outside the timed call.
        ids = np.ascontiguousarray(batch["input_ids"].numpy().astype(np.int32))
        lengths = batch["attention_mask"].sum(1).numpy().astype(np.int32)
        ids_view, lengths_view = ctranslate2.StorageView.from_array(ids), ctranslate2.StorageView.from_array(lengths)
        types = batch["token_type_ids"].tolist()

        def run(_keep: Any = (ids, lengths)) -> Any:  # the views do not own the arrays: keep them alive
            pooled = np.asarray(encoder.forward_batch(ids_view, lengths_view, types).pooler_output)
            return pooled @ weight_t + bias

        return run

    return make


# --------------------------------------------------------------------------- the grid benchmark
def _quick_or(value: Any, quick_value: Any, full_value: Any, quick: bool) -> Any:
    if value is not None:
        return value
    return quick_value if quick else full_value


def _read_metrics(metrics: str | os.PathLike[str] | Mapping[str, Any] | None) -> dict[str, float]:
    """Per-candidate accuracy: ``{"ours-torch-int8": 0.91, ...}`` or ``{name: {"accuracy": x}}``."""
    if metrics is None:
        return {}
    source = "metrics"
    if not isinstance(metrics, Mapping):
        source = str(metrics)
        metrics = read_json_object(
            metrics, missing="metrics file not found", expected="a JSON object mapping candidate names to accuracies"
        )
    out = {}
    for name, value in metrics.items():
        if isinstance(value, Mapping):
            value = value.get("accuracy")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"{source}: {name!r}: expected a number or an object with 'accuracy', got {value!r}")
        out[str(name)] = float(value)
    return out


@with_threads()
def run_bench(
    model: str | None = None,
    candidates: Sequence[str] | None = None,
    threads: int = 2,
    batch_sizes: Sequence[int] | None = None,
    seq_lens: Sequence[int] | None = None,
    warmup: int | None = None,
    repeats: int | None = None,
    max_seconds: float | None = None,
    quick: bool = False,
    matmul_size: int | None = None,
    watts_per_core: float = 10.0,
    metrics: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    baseline: str | None = None,
    json_path: str | os.PathLike[str] | None = None,
    markdown_path: str | os.PathLike[str] | None = None,
    plot_path: str | os.PathLike[str] | None = None,
    rapl_glob: str = RAPL_GLOB,
) -> dict[str, Any]:
    """Measure every candidate on a grid of batch size x sequence length in one interleaved run.

    ``model``: our checkpoint (directory, alias or preset; default ``squeezebert-uncased`` with
    random weights, ``tiny`` with ``quick``). ``candidates``: names or patterns from
    :data:`CANDIDATES` (default :data:`DEFAULT_CANDIDATES`); candidates whose package is missing
    (and OpenVINO bf16 candidates on a CPU without native bf16) are reported as skipped with a
    note. The transformers peers are SqueezeBERT-uncased and BERT-base with random weights (tiny
    versions with ``quick``). The OpenVINO int8 candidates, ours and the peers', are calibrated on
    :data:`CALIBRATION_BATCHES` random-id batches at the longest sequence length: right for timing
    random-weight models, not for accuracy.

    ``quick``: the tiny configuration tests use (batch 1, 2 x sequence 8, 1 warm-up, 2 repeats,
    256³ matmul peak); explicit arguments override it. Full defaults: batch 1, 8, 32 x sequence
    32, 128, 2 warm-up rounds, 20 repeats, at most 30 s per cell, a 2048³ matmul peak.

    ``metrics``: per-candidate accuracy (a JSON file or mapping) for the accuracy-vs-latency plot.
    ``baseline``: the candidate speedups are given against (default hf-bert-torch-fp32 when
    measured, else the first one measured). Writes JSON / markdown / PNG where paths are given
    and returns the report (see :func:`format_report` for a terminal table).
    """
    from squeezebert.checkpoint import save_checkpoint, save_hf
    from squeezebert.model import SqueezeBert, encoder_flops

    names = select_candidates(candidates)
    batch_sizes = list(_quick_or(batch_sizes, (1, 2), (1, 8, 32), quick))
    seq_lens = list(_quick_or(seq_lens, (8,), (32, 128), quick))
    warmup = int(_quick_or(warmup, 1, 2, quick))
    repeats = int(_quick_or(repeats, 2, 20, quick))
    max_seconds = _quick_or(max_seconds, None, 30.0, quick)
    matmul_size = int(_quick_or(matmul_size, 256, 2048, quick))
    model = model or ("tiny" if quick else "squeezebert-uncased")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if not batch_sizes or not seq_lens or min(batch_sizes) < 1 or min(seq_lens) < 2:
        raise ValueError("batch sizes must be >= 1 and sequence lengths >= 2")
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    if baseline is not None and baseline not in names:
        raise ValueError(f"baseline {baseline!r} is not among the candidates: {', '.join(names)}")
    accuracies = _read_metrics(metrics)
    if plot_path is not None:
        require_matplotlib()  # fail before minutes of measuring, not after
    meter = EnergyMeter(watts_per_core, rapl_glob)
    env = environment(threads)

    ckpt = _load_ours(model)
    ours_config = ckpt.model.config
    positions = ours_config.max_position_embeddings
    if any(CANDIDATES[n].family != "ours" for n in names):
        positions = min(positions, _peer_config("bert", quick).max_position_embeddings)
    if max(seq_lens) > positions:
        raise ValueError(f"sequence length {max(seq_lens)} exceeds the {positions} positions of the models compared")

    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        spec = CANDIDATES[name]
        rows[name] = {key: None for key in _FIELDS_PER_CANDIDATE} | {
            "name": name,
            "family": spec.family,
            "backend": spec.backend,
            "precision": spec.precision,
            "inference_precision": spec.inference_precision,
            "how": spec.how,
            "status": "ok",
            "note": "",
            "accuracy": accuracies.get(name),
            "cells": [],
        }
        missing = _missing(spec)
        if missing:
            rows[name].update(status="skipped", note=missing)
        elif "bf16" in (spec.precision, spec.inference_precision) and spec.backend == "openvino":
            if not _openvino_bf16():
                rows[name].update(status="skipped", note="skipped: OpenVINO reports no native bf16 on this CPU")
    for unknown in sorted(set(accuracies) - set(rows)):
        log.warning("metrics: %r is not a candidate of this run; ignored", unknown)

    built: dict[str, _Built] = {}
    with tempfile.TemporaryDirectory(prefix="squeezebert-bench-") as tmp:
        work = Path(tmp)

        def skip(name: str, why: str) -> None:
            log.warning("%s: %s", name, why)
            rows[name].update(status="skipped", note=why)

        active = [n for n in names if rows[n]["status"] == "ok"]
        # ---- 1. files: our checkpoint, exports, the peers' HF directories (not timed, not in RSS)
        ours_dir = save_checkpoint(ckpt.model, work / "ours", ckpt.tokenizer)
        # NNCF calibration inputs at the longest length measured (random ids: timing only)
        calib_len = max(seq_lens)
        ours_files: dict[str, tuple[Path, str]] = {}
        for name in [n for n in active if CANDIDATES[n].family == "ours" and CANDIDATES[n].backend != "torch"]:
            spec = CANDIDATES[name]
            try:
                if spec.backend == "openvino":
                    with _quiet():
                        ours_files[name] = _export_ours_openvino(ckpt.model, spec, work / name, calib_len)
                    continue
                from squeezebert.export import export_model

                with _quiet():
                    report = export_model(ckpt.model, work / name, None, precision=spec.precision)
                diff = max(report.max_abs_diff.values())
                note = f"ONNX fp32 vs torch max abs diff {diff:.1e}"
                if report.int8_agreement is not None:
                    note += f"; int8 agrees with fp32 on {report.int8_agreement:.0%} of {report.sample_size} samples"
                ours_files[name] = (work / name / "model.onnx", note)
            except Exception as e:  # a failed export is reported, the rest of the run goes on
                skip(name, f"skipped: export failed ({type(e).__name__}: {e})")
        peer_dirs: dict[str, tuple[Path, Any]] = {}
        peer_files: dict[str, tuple[Path, str]] = {}
        for family in ("squeezebert", "bert"):
            wanted = [n for n in active if CANDIDATES[n].family == family and rows[n]["status"] == "ok"]
            if not wanted:
                continue
            config = _peer_config(family, quick)
            torch.manual_seed(0)
            hf_dir = save_hf(SqueezeBert(config), work / f"hf-{family}", None, arch=family)
            peer_dirs[family] = (hf_dir, config)
            onnx_wanted = [n for n in wanted if CANDIDATES[n].backend == "onnxruntime"]
            if onnx_wanted:
                fp32_path = work / f"hf-{family}.onnx"
                try:
                    diff = _export_hf_onnx(hf_dir, fp32_path)
                except Exception as e:
                    for n in onnx_wanted:
                        skip(n, f"skipped: ONNX export failed ({type(e).__name__}: {e})")
                    continue
                for n in onnx_wanted:
                    if CANDIDATES[n].precision == "fp32":
                        peer_files[n] = (fp32_path, f"ONNX fp32 vs torch max abs diff {diff:.1e}")
                        continue
                    path = work / f"{n}.onnx"
                    try:
                        _ort_quantize_default(fp32_path, path)
                        peer_files[n] = (path, "")
                    except Exception as e:
                        skip(n, f"skipped: quantize_dynamic failed ({type(e).__name__}: {e})")
            ov_wanted = [n for n in wanted if CANDIDATES[n].backend == "openvino"]
            if ov_wanted:
                # One fp32 IR and (when asked for) one NNCF int8 IR per family; the bf16 candidates
                # load the same files with the bf16 hint.
                fp32_ir = work / f"hf-{family}-openvino" / "model.xml"
                try:
                    diff = _export_hf_openvino(hf_dir, fp32_ir.parent)
                except Exception as e:
                    for n in ov_wanted:
                        skip(n, f"skipped: openvino.convert_model failed ({type(e).__name__}: {e})")
                    continue
                int8_ir = work / f"hf-{family}-openvino-int8" / "model.xml"
                int8_wanted = [n for n in ov_wanted if CANDIDATES[n].precision == "int8"]
                if int8_wanted:
                    try:
                        _nncf_int8(fp32_ir, int8_ir.parent, _calibration(config, calib_len))
                    except Exception as e:
                        for n in int8_wanted:
                            skip(n, f"skipped: nncf.quantize failed ({type(e).__name__}: {e})")
                for n in ov_wanted:
                    if CANDIDATES[n].precision == "int8":
                        if rows[n]["status"] == "ok":
                            peer_files[n] = (int8_ir, "")
                    else:
                        peer_files[n] = (fp32_ir, f"OpenVINO fp32 vs torch max abs diff {diff:.1e}")
            for n in [n for n in wanted if CANDIDATES[n].backend == "ctranslate2"]:
                try:
                    _convert_ctranslate2(hf_dir, work / n)
                    peer_files[n] = (work / n, "")
                except Exception as e:
                    skip(n, f"skipped: CTranslate2's converter failed ({type(e).__name__}: {e})")

        # ---- 2. load each candidate, measuring the resident-set growth up to a first tiny call:
        # transformers memory-maps safetensors, so its weights become resident only when used.
        vocab = min([ours_config.vocab_size] + [cfg.vocab_size for _, cfg in peer_dirs.values()])
        tiny_batch = random_batch(vocab, 1, min(8, positions))
        for name in [n for n in names if rows[n]["status"] == "ok"]:
            spec = CANDIDATES[name]
            trim()
            before = rss_bytes()
            try:
                built[name] = _build(spec, name, ckpt, ours_dir, ours_files, peer_dirs, peer_files, threads)
                built[name].make(tiny_batch)()
            except Exception as e:
                skip(name, f"skipped: could not be built ({type(e).__name__}: {e})")
                continue
            trim()
            row, b = rows[name], built[name]
            row["rss_load_mb"] = round((rss_bytes() - before) / 2**20, 1)
            row["parameters"] = b.parameters
            row["model"] = _describe(b.config)
            row["file"] = b.file.name
            row["file_bytes"] = _file_bytes(b.file)
            row["flops_per_text"] = {str(s): encoder_flops(b.config, s) for s in seq_lens}
            row["note"] = b.note
        del ckpt
        trim()

        # ---- 3. the ceiling, then the grid (largest cell first: its warm-up measures memory)
        peaks = matmul_peaks(matmul_size)
        cells = sorted(((b, s) for b in batch_sizes for s in seq_lens), key=lambda c: (-c[0] * c[1], c))
        measured: dict[tuple[int, int], dict[str, Samples]] = {}
        for i, (batch_size, seq_len) in enumerate(cells):
            batch = random_batch(vocab, batch_size, seq_len)
            calls = {name: b.make(batch) for name, b in built.items()}
            log.info("bench: batch %d x seq %d, %d candidates", batch_size, seq_len, len(calls))
            measured[(batch_size, seq_len)] = measure(
                calls,
                warmup,
                repeats,
                max_seconds,
                meter,
                track_memory=(i == 0 and warmup > 0),
                shuffle=random.Random(i),
            )

    # ---- 4. the report
    for name in built:
        first = measured[cells[0]][name].run_peak_bytes
        rows[name]["rss_run_peak_mb"] = None if first is None else round(first / 2**20, 1)
    if baseline is not None and baseline not in built:
        log.warning("baseline %s was skipped; speedups are given against the default", baseline)
        baseline = None
    base = baseline or (DEFAULT_BASELINE if DEFAULT_BASELINE in built else next(iter(built), None))
    for batch_size, seq_len in sorted(measured):
        samples = measured[(batch_size, seq_len)]
        base_p50 = statistics.median(samples[base].times_ms) if base else None
        for name, s in samples.items():
            t = Timing.of(s.times_ms)
            spec, row = CANDIDATES[name], rows[name]
            seconds = t.p50 / 1e3
            gops = row["flops_per_text"][str(seq_len)] * batch_size / seconds / 1e9
            peak, int8_peak = peaks.get(spec.precision), peaks.get("int8")
            joules = statistics.median(s.energy_j) if s.energy_j else None
            row["cells"].append(
                {
                    "batch_size": batch_size,
                    "seq_len": seq_len,
                    "latency_ms": {k: round(v, 3) if isinstance(v, float) else v for k, v in t.to_dict().items()},
                    "throughput_texts_per_s": round(batch_size / seconds, 2),
                    "gops": round(gops, 3),
                    "peak_gops": None if peak is None else round(peak, 1),
                    "peak_fraction": None if not peak else round(gops / peak, 4),
                    "int8_peak_fraction": None if not int8_peak else round(gops / int8_peak, 4),
                    "cpu_s_per_call": round(statistics.median(s.cpu_s), 5),
                    "energy_j_per_1000_texts": None if joules is None else round(joules / batch_size * 1000, 3),
                    "energy_source": meter.source,
                    "speedup_vs_baseline": None if base_p50 is None else round(base_p50 / t.p50, 3),
                }
            )
    env["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    env["warnings"] = busy_warning(env)
    report = {
        "kind": "grid",
        "environment": env,
        "settings": {
            "model": model,
            "candidates": names,
            "threads": threads,
            "batch_sizes": batch_sizes,
            "seq_lens": seq_lens,
            "warmup": warmup,
            "repeats": repeats,
            "max_seconds_per_cell": max_seconds,
            "quick": quick,
            "matmul_size": matmul_size,
            "watts_per_core": watts_per_core,
            "inputs": "random token ids, full length (no padding)",
            "order": f"a fresh (seeded) order each timed round, a {SETTLE_S * 1e3:g} ms pause before each call",
        },
        "baseline": base,
        # four significant digits, not one decimal: an int8 peak measured at ~8.5 GOP/s (AVX2 without
        # VNNI) lost 1% to rounding, more than the fractions computed from it carry
        "matmul_peak_gops": {k: None if v is None else float(f"{v:.4g}") for k, v in peaks.items()},
        "energy": {"source": meter.source, "note": meter.note},
        "memory_method": MEMORY_METHOD,
        "process_peak_rss_mb": round(process_peak_rss_bytes() / 2**20, 1),
        "candidates": [rows[n] for n in names],
        "summary": summarize(rows.values(), peaks.get("int8")),
    }
    write_outputs(report, json_path, markdown_path, plot_path)
    return report


def summarize(candidates: Iterable[Mapping[str, Any]], int8_peak: float | None) -> list[dict[str, Any]]:
    """Per cell: the fastest of our candidates against the best peer (the fastest of all the
    others), by p50. ``ratio`` = best peer p50 / best ours p50 (above 1: ours is faster);
    ``floor_ms`` = our model's FLOPs at that cell at the same run's int8 matmul peak, the time a
    perfect int8 kernel would take; ``floor_ratio`` = floor_ms / best ours p50 (1 would be that
    perfect kernel). A side with no measured candidate is None."""
    best: dict[tuple[int, int], dict[str, tuple[float, str, Mapping[str, Any]]]] = {}
    for c in candidates:
        side = "ours" if c["family"] == "ours" else "peer"
        for cell in c["cells"]:
            key, p50 = (cell["batch_size"], cell["seq_len"]), cell["latency_ms"]["p50"]
            if side not in best.setdefault(key, {}) or p50 < best[key][side][0]:
                best[key][side] = (p50, c["name"], c)
    out = []
    for (batch_size, seq_len), sides in sorted(best.items()):
        ours, peer = sides.get("ours"), sides.get("peer")
        floor_ms = None
        if ours is not None and int8_peak:
            floor_ms = ours[2]["flops_per_text"][str(seq_len)] * batch_size / (int8_peak * 1e9) * 1e3
        out.append(
            {
                "batch_size": batch_size,
                "seq_len": seq_len,
                "best_ours": None if ours is None else ours[1],
                "best_ours_p50_ms": None if ours is None else ours[0],
                "best_peer": None if peer is None else peer[1],
                "best_peer_p50_ms": None if peer is None else peer[0],
                "ratio": None if ours is None or peer is None else round(peer[0] / ours[0], 3),
                "floor_ms": None if floor_ms is None else float(f"{floor_ms:.4g}"),
                "floor_ratio": None if floor_ms is None or ours is None else float(f"{floor_ms / ours[0]:.4g}"),
            }
        )
    return out


def _build(
    spec: CandidateSpec,
    name: str,
    ckpt: Any,
    ours_dir: Path,
    ours_files: dict[str, tuple[Path, str]],
    peer_dirs: dict[str, tuple[Path, Any]],
    peer_files: dict[str, tuple[Path, str]],
    threads: int,
) -> _Built:
    if spec.family == "ours":
        params, config = ckpt.model.num_parameters(), ckpt.model.config
        if spec.backend == "torch":
            from squeezebert.quantize import optimize

            note = {"bf16": "weights cast to bf16 at load", "int8": "weights quantized at load"}.get(spec.precision, "")
            return _Built(
                _torch_call(optimize(ckpt.model, spec.precision), hf=False),
                params,
                config,
                ours_dir / "model.safetensors",
                note,
            )
        path, note = ours_files[name]
        return _Built(_runtime_call(spec, path, threads), params, config, path, note)
    hf_dir, config = peer_dirs[spec.family]
    params = _count_parameters(hf_dir / "model.safetensors")
    if spec.backend == "ctranslate2":
        path, note = peer_files[name]
        return _Built(_ctranslate2_call(path, hf_dir, threads), params, config, path, note)
    if spec.backend != "torch":
        path, note = peer_files[name]
        return _Built(_runtime_call(spec, path, threads), params, config, path, note)
    model = _hf_model(hf_dir)
    note = ""
    if spec.precision == "int8":
        with _quiet():
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        note = "weights quantized at load"
    return _Built(_torch_call(model, hf=True), params, config, hf_dir / "model.safetensors", note)


def _runtime_call(
    spec: CandidateSpec, path: Path, threads: int
) -> Callable[[dict[str, torch.Tensor]], Callable[[], Any]]:
    if spec.backend == "openvino":
        return _openvino_call(path, threads, spec.inference_precision or "fp32")
    return _onnx_call(path, threads)


def _export_ours_openvino(model: Any, spec: CandidateSpec, out: Path, calib_len: int) -> tuple[Path, str]:
    """Our model through :func:`squeezebert.export_openvino.export_model`, int8 calibrated on random
    ids (the export accepts ready model inputs for timing-only uses; with no texts it checks fp32
    parity only)."""
    from squeezebert.export_openvino import export_model

    calibration = _calibration(model.config, calib_len) if spec.precision == "int8" else None
    report = export_model(
        model,
        out,
        None,
        precision=spec.precision,
        calibration=calibration,
        inference_precision=spec.inference_precision,
    )
    diff = max(report.max_abs_diff.values())
    return out / "model.xml", f"OpenVINO fp32 vs torch max abs diff {diff:.1e}"


def _count_parameters(weights: Path) -> int:
    """Parameters in a safetensors file, from its header alone (nothing is loaded)."""
    import math

    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())


# --------------------------------------------------------------------------- real workload
def read_texts(path: str | os.PathLike[str], max_texts: int | None = None) -> list[str]:
    """Texts of a workload file: one per line, or the ``sentence`` column of a GLUE ``.tsv``
    (a file whose first line is tab-separated and names a ``sentence`` column). Read by
    :func:`squeezebert.tables.read_texts`, with its errors."""
    from squeezebert import tables
    from squeezebert.files import require_file

    path = require_file(path, "a workload file (one text per line, or a GLUE .tsv)")
    with open(path, "rb") as f:
        first = next(iter(tables.Lines(f, str(path))), "")
    header = [column.strip() for column in first.rstrip("\r\n").split("\t")]
    glue = path.suffix.lower() == ".tsv" or (len(header) > 1 and "sentence" in header)
    if glue and "sentence" not in header:
        raise ValueError(f"{path}: line 1: a .tsv workload needs a 'sentence' column, found {header}")
    texts = [e.text for e in tables.read_texts(path, "sentence", fmt="tsv" if glue else "text")]
    return texts[:max_texts] if max_texts else texts


@with_threads()
def run_workload(
    workload: str | os.PathLike[str],
    model: str,
    options: RuntimeOptions | None = None,
    threads: int = 2,
    batch_sizes: Sequence[int] = (1, 32),
    warmup: int = 1,
    repeats: int = 3,
    max_seconds: float | None = 120.0,
    max_texts: int | None = None,
    json_path: str | os.PathLike[str] | None = None,
    markdown_path: str | os.PathLike[str] | None = None,
    plot_path: str | os.PathLike[str] | None = None,
    teacher: str | None = None,
) -> dict[str, Any]:
    """Texts -> labels end to end (tokenization included) on a real text file: our
    :class:`~squeezebert.infer.Classifier` (``options``: backend, precision, max_length — 128
    where None —, normalize; its num_threads is ``threads``, which both sides run on) against
    ``transformers.pipeline("text-classification")`` over an HF export of the same weights
    (:func:`~squeezebert.checkpoint.save_hf`), same threads, interleaved, per batch size.
    Reports texts/s, our speedup and how often the two predict the same label.

    ``backend`` ``onnx`` / ``openvino``: ``model`` is exported first, as ``squeezebert export``
    does (OpenVINO int8 calibrates on the training texts the checkpoint records), and the export
    is what is timed. ``teacher``: a second checkpoint of ours (the model ``model`` was squeezed
    from) run the same way in the same rounds; its rows give the student's speedup over it and
    the two models' label agreement.

    A warm-up runs each side on the first 64 texts; then each timed call is one pass over the
    whole file. A preset ``model`` gets a random 2-label head (agreement is still meaningful:
    both sides hold the same weights).
    """
    try:
        import transformers
    except ImportError:
        raise ImportError("the workload comparison needs transformers: pip install transformers") from None
    from squeezebert.checkpoint import save_checkpoint, save_hf
    from squeezebert.infer import Classifier

    # The pipeline does not normalize its text: by default neither do we, for a like-for-like timing.
    options = replace(options or RuntimeOptions(normalize=False), num_threads=threads)
    backend, precision = options.backend or "torch", options.precision
    texts = read_texts(workload, max_texts)
    if plot_path is not None:
        require_matplotlib()
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError("batch sizes must be >= 1")
    env = environment(threads)
    ckpt = _load_ours(model)
    config = ckpt.model.config
    if config.num_labels < 2:
        raise ValueError(f"{model}: workload mode compares labels; it needs a classifier (num_labels >= 2)")
    if ckpt.tokenizer is None:
        raise ValueError(f"{model}: has no tokenizer (tokenizer.json or vocab.txt)")
    with tempfile.TemporaryDirectory(prefix="squeezebert-workload-") as tmp:
        ours_dir = save_checkpoint(ckpt.model, Path(tmp) / "ours", ckpt.tokenizer)
        hf_dir = save_hf(ckpt.model, Path(tmp) / "hf", ckpt.tokenizer)
        del ckpt

        def classifier(src: str, name: str, fallback: Path) -> Any:
            """Our classifier of ``src`` on the chosen backend; an export is made from the original
            source so that it finds the training texts the checkpoint records."""
            if backend == "torch":
                return Classifier.from_pretrained(fallback, options)
            target = Path(tmp) / f"{name}-{backend}"
            if not Path(src).is_dir():  # an alias or preset: the copy with its classification head
                src = str(fallback)
            with _quiet():
                if backend == "openvino":
                    from squeezebert.export_openvino import export as export_openvino

                    log.info("%s", export_openvino(src, target, precision=precision or "fp32").summary())
                else:
                    from squeezebert.export import export as export_onnx

                    export_onnx(src, target, precision=precision or "fp32")
            return Classifier.from_pretrained(target, options)

        clf = classifier(model, "ours", ours_dir)
        teacher_clf = None
        if teacher is not None:
            teacher_ckpt = _load_ours(teacher)
            if teacher_ckpt.model.config.labels != config.labels:
                theirs = teacher_ckpt.model.config.labels
                raise ValueError(f"{teacher}: its labels {theirs} differ from the model's {config.labels}")
            teacher_dir = save_checkpoint(teacher_ckpt.model, Path(tmp) / "teacher", teacher_ckpt.tokenizer)
            del teacher_ckpt
            teacher_clf = classifier(teacher, "teacher", teacher_dir)
        with _quiet():
            pipe = transformers.pipeline(
                "text-classification", model=str(hf_dir), tokenizer=str(hf_dir), device="cpu", dtype=torch.float32
            )
        max_length = clf.max_length  # capped at the model's positions; the pipeline truncates alike
        outputs: dict[str, list[str]] = {}

        def ours(bs: int, who: str = "ours", c: Any = clf) -> Callable[[], Any]:
            def run() -> None:
                outputs[f"{who} b{bs}"] = [p.label for p in c.predict(texts, batch_size=bs)]

            return run

        def theirs(bs: int) -> Callable[[], Any]:
            def run() -> None:
                result = pipe(texts, batch_size=bs, truncation=True, max_length=max_length)
                outputs[f"transformers b{bs}"] = [r["label"] for r in result]

            return run

        calls: dict[str, Callable[[], Any]] = {}
        for bs in batch_sizes:
            calls[f"ours b{bs}"], calls[f"transformers b{bs}"] = ours(bs), theirs(bs)
            if teacher_clf is not None:
                calls[f"teacher b{bs}"] = ours(bs, "teacher", teacher_clf)
        head = texts[:64]
        for _ in range(warmup):
            clf.predict(head, batch_size=max(batch_sizes))
            if teacher_clf is not None:
                teacher_clf.predict(head, batch_size=max(batch_sizes))
            with _quiet():
                pipe(head, batch_size=max(batch_sizes), truncation=True, max_length=max_length)
        samples = measure(calls, 0, repeats, max_seconds)
    rows = []
    for bs in batch_sizes:
        hf_t = Timing.of(samples[f"transformers b{bs}"].times_ms)
        ours_labels, hf_labels = outputs[f"ours b{bs}"], outputs[f"transformers b{bs}"]
        agreement = sum(a == b for a, b in zip(ours_labels, hf_labels)) / len(texts)
        who_rows = [("ours", Timing.of(samples[f"ours b{bs}"].times_ms)), ("transformers", hf_t)]
        if teacher_clf is not None:
            who_rows.insert(1, ("teacher", Timing.of(samples[f"teacher b{bs}"].times_ms)))
        for who, t in who_rows:
            row = {
                "implementation": who,
                "batch_size": bs,
                "seconds_per_pass": {k: round(v / 1e3, 4) if isinstance(v, float) else v for k, v in asdict(t).items()},
                "texts_per_s": round(len(texts) / (t.p50 / 1e3), 2),
                "speedup_vs_transformers": round(hf_t.p50 / t.p50, 3),
                "label_agreement": round(agreement, 4),
            }
            if who == "teacher":
                teacher_labels = outputs[f"teacher b{bs}"]
                row["label_agreement"] = round(sum(a == b for a, b in zip(teacher_labels, hf_labels)) / len(texts), 4)
                row["student_speedup"] = round(t.p50 / who_rows[0][1].p50, 3)
                row["student_agreement"] = round(
                    sum(a == b for a, b in zip(teacher_labels, ours_labels)) / len(texts), 4
                )
            rows.append(row)
    env["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    env["warnings"] = busy_warning(env)
    report = {
        "kind": "workload",
        "environment": env,
        "settings": {
            "workload": str(workload),
            "num_texts": len(texts),
            "model": model,
            "labels": config.labels,
            "ours": f"squeezebert Classifier, backend {backend}, precision {clf.precision}",
            "teacher": teacher,
            "transformers": f"transformers {transformers.__version__} pipeline('text-classification'), torch fp32, "
            "same weights via save_hf",
            "threads": threads,
            "batch_sizes": list(batch_sizes),
            "warmup": warmup,
            "repeats": repeats,
            "max_length": max_length,
            "timed": "one pass over every text per call: tokenize, batch, forward, labels",
        },
        "rows": rows,
        "process_peak_rss_mb": round(process_peak_rss_bytes() / 2**20, 1),
    }
    write_outputs(report, json_path, markdown_path, plot_path)
    return report
