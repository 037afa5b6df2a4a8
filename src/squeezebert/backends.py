"""The forward passes, one small class per backend, and what loading a runtime needs.

Each forward maps a padded :data:`Batch` to logits: :class:`TorchForward` (the model made by
:func:`squeezebert.optimize`), :class:`OnnxForward` (an ONNX Runtime session on ``model.onnx``)
and :class:`OpenVinoForward` (an OpenVINO compiled model on ``model.xml``). They live apart from
:mod:`squeezebert.infer` so that the exporters, which compile and check what they write through
the same forward, need not import the classifier (and the classifier's on-the-fly export can
import the exporters without a cycle). This module imports no torch at import time.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

import numpy as np

from squeezebert.runtime import check_static_shapes, threads

log = logging.getLogger(__name__)

ONNX_MODEL_FILE = "model.onnx"  # = squeezebert.export.MODEL_FILE, repeated to keep this module light
OPENVINO_MODEL_FILE = "model.xml"  # = squeezebert.export_openvino.MODEL_FILE, likewise
#: OpenVINO's names for the precision its CPU plugin computes the non-quantized operations in.
OPENVINO_INFERENCE_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}

#: One input: a text, or a (text, text) pair for pair tasks (NLI, paraphrase).
TextInput = str | tuple[str, str]
#: A padded batch: int64 arrays ``(B, T)`` named input_ids, attention_mask, token_type_ids.
Batch = dict[str, np.ndarray]


class TorchForward:
    """Forward through :func:`squeezebert.optimize` (``precision`` fp32, bf16 or int8).

    ``num_threads``: torch's thread count is process-wide, so it is set around each call and
    restored after it (:func:`squeezebert.runtime.threads`), never left changed; an entry point
    that already runs at that count (``squeezebert serve``) pays nothing for it.
    """

    def __init__(self, model: Any, precision: str = "fp32", num_threads: int | None = None, **options: Any) -> None:
        """``options`` go to :func:`squeezebert.optimize` (e.g. ``int8_activations``)."""
        from squeezebert.quantize import optimize

        self.num_threads = num_threads
        with threads(num_threads):  # int8's weight packing runs on torch's threads too
            self.model = optimize(model, precision, **options)

    def __call__(self, batch: Batch) -> np.ndarray:
        import torch

        inputs = {k: torch.from_numpy(v) for k, v in batch.items()}
        with threads(self.num_threads):
            return self.model(**inputs).numpy()


class OnnxForward:
    """Forward through an ONNX Runtime session on ``model.onnx``; imports no torch."""

    def __init__(
        self, model_path: str | os.PathLike[str], num_threads: int | None = None, busy_wait: bool = True
    ) -> None:
        """``busy_wait``: let ONNX Runtime's worker threads spin between operators (its own default).
        Between a graph's many small operators a sleeping worker takes long to wake: turning it off
        made the int8 minilm-l6 teacher 1.09-1.36x slower on 2 threads (docs/RESULTS.md), but a
        spinning worker also holds its core between calls, which a server with its own request
        threads (``squeezebert serve``) needs back."""
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError("the onnx backend needs onnxruntime: pip install 'squeezebert[onnx]'") from None
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if busy_wait else "0")
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, batch: Batch) -> np.ndarray:
        return self.session.run(None, {name: batch[name] for name in self.input_names})[0]


#: Channels that share one run-time activation scale in the dynamic int8 recipe (per token). 128
#: was faster than 32 (``scripts/openvino_dynamic_groups.py``: 2-6% off a batch-1 call for MRPC's
#: 5-layer student, 12% for its minilm-l6 teacher, 20% for a random BERT-base-size model, 10-18%
#: at batch 32) but less exact: CoLA's minilm-l6 teacher agreed with fp32 on 98.75% of the dev set
#: at 128 against 99.23% at 32, so its int8 export was refused and it deployed in bf16, slower than
#: int8 at 32 (docs/RESULTS.md, "Session 11"). Kept at 32 until an export can try 128 first and
#: fall back to 32.
DYNAMIC_INT8_GROUP = 32

#: Static single-text shapes an :class:`OpenVinoForward` compiles at most, by default; with
#: :data:`STATIC_LENGTH_STEP` 16 that covers every length up to 128 tokens.
OPENVINO_STATIC_SHAPES = 8
#: Single texts are padded to a multiple of this many tokens to share a static shape. Measured
#: (``scripts/openvino_static_shapes.py``, 64 dev texts each of MRPC, SST-2 and RTE, one per call,
#: 2 threads, interleaved; docs/RESULTS.md, "Session 12"): 8 models at steps of 16 against the
#: earlier 4 at steps of 8 made two 3-layer students 1.02-1.24x faster (texts outside the four
#: buckets ran on the dynamic model, re-planned per call) and the minilm-l6 teacher 0.96-1.08x;
#: 16 models at steps of 8 (every length static, less padding) were 1-7% slower for the students
#: and up to 4% faster for the teacher.
STATIC_LENGTH_STEP = 16
#: Calls at one padded length before it gets its own static model: the second, so that the compile
#: lands in a benchmark's two warm-up rounds (at 3 it landed in the first timed round and every
#: OpenVINO candidate's p90 read 0.8-1.4 s).
STATIC_PROMOTE_AFTER = 2

#: Set to 1 to let openvino and nncf load their usage telemetry (see :func:`import_openvino`).
OPENVINO_TELEMETRY_ENV = "SQUEEZEBERT_OPENVINO_TELEMETRY"


def import_openvino() -> Any:
    """``import openvino``, without its usage telemetry unless ``$SQUEEZEBERT_OPENVINO_TELEMETRY=1``.

    The ``openvino_telemetry`` package (an openvino dependency, used by its model converter and by
    nncf) forks a process that posts usage events over the network. On a machine with no network
    that process blocks in DNS and the interpreter waits for it at exit: a test run here hung after
    its last test. squeezebert works offline, so openvino and nncf are made to see no telemetry
    package, and they fall back to the no-op stubs they ship for that case.
    """
    if os.environ.get(OPENVINO_TELEMETRY_ENV) != "1" and "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # import -> ImportError
    try:
        import openvino as ov
    except ImportError:
        raise ImportError("the openvino backend needs openvino: pip install 'squeezebert[openvino]'") from None
    return ov


def openvino_has_bf16(core: Any | None = None) -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 natively on this machine (AVX512-BF16 or AMX)."""
    if core is None:
        core = import_openvino().Core()
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoForward:
    """Forward through an OpenVINO compiled model on ``model.xml``; imports no torch.

    Every CPU-plugin setting that changes speed is set explicitly rather than left to the
    plugin's defaults, which differ by machine (on this EPYC, ``INFERENCE_PRECISION_HINT``
    defaults to bf16): ``inference_precision`` (``fp32`` or ``bf16``: the precision of the
    operations that are not int8), one stream with the latency hint (one request at a time,
    all threads on it), ``num_threads`` threads (None: the plugin's choice, all cores).
    ``busy_wait`` pins the plugin's threads to cores (its default); a server passes False so that
    its request threads are not locked out of a core between calls. ``dynamic_int8``: quantize
    activations at run time (per token, in groups of :data:`DYNAMIC_INT8_GROUP` channels) for a
    model whose weights are int8-compressed (the ``dynamic`` int8 recipe of
    :mod:`squeezebert.export_openvino`); off, such weights are decompressed and multiplied in float.

    ``static_shapes``: how many single-text lengths get a model compiled for that one shape (None:
    :data:`OPENVINO_STATIC_SHAPES`; 0: off); ``static_step``: the padding step (None:
    :data:`STATIC_LENGTH_STEP`). The CPU plugin re-plans every operator when the input shape
    changes, and at batch 1 texts change length on nearly every call: on 64 texts of 16-32 tokens
    that cost 0.27 ms a call for a 3-layer student (0.39 ms at one fixed length, 0.66 ms
    varying) and 0.36 ms for the 6-layer MiniLM teacher (1.93 vs 2.29 ms; docs/RESULTS.md,
    "Static shapes at batch 1"). So a single text is padded to its length rounded up to
    ``static_step``, and a length bucket seen :data:`STATIC_PROMOTE_AFTER` times gets its
    own static compiled model, until ``static_shapes`` of them exist; other lengths, and batches
    of more than one text, run on the dynamic model unpadded. Padded positions are masked, so the
    logits are those of the unpadded text to float rounding. Each static model holds its own copy
    of the weights as the plugin lays them out (measured 23-27 MB each for the int8 MiniLM teacher,
    57-60 MB for a 3-layer student whose embeddings the plugin keeps in float): ``static_shapes``
    bounds that. Compiling one takes 0.3-0.6 s, paid once by the call that promotes it.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        num_threads: int | None = None,
        inference_precision: str = "fp32",
        busy_wait: bool = True,
        dynamic_int8: bool = False,
        static_shapes: int | None = None,
        static_step: int | None = None,
    ) -> None:
        ov = import_openvino()
        if inference_precision not in OPENVINO_INFERENCE_PRECISIONS:
            raise ValueError(
                f"inference_precision must be one of {tuple(OPENVINO_INFERENCE_PRECISIONS)}, "
                f"got {inference_precision!r}"
            )
        core = ov.Core()
        if inference_precision == "bf16" and not openvino_has_bf16(core):
            log.warning("this CPU has no native bf16; OpenVINO runs the model in fp32 instead")
            inference_precision = "fp32"
        self.inference_precision = inference_precision
        properties: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": OPENVINO_INFERENCE_PRECISIONS[inference_precision],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "ENABLE_CPU_PINNING": bool(busy_wait),
            "DYNAMIC_QUANTIZATION_GROUP_SIZE": DYNAMIC_INT8_GROUP if dynamic_int8 else 0,
        }
        if num_threads:
            properties["INFERENCE_NUM_THREADS"] = int(num_threads)
        self.static_shapes = check_static_shapes(OPENVINO_STATIC_SHAPES if static_shapes is None else static_shapes)
        self.static_step = STATIC_LENGTH_STEP if static_step is None else int(static_step)
        if self.static_step < 1:
            raise ValueError(f"static_step must be a whole number >= 1, got {static_step!r}")
        self._core, self._properties = core, properties
        # Kept (the weights stay memory-mapped) so static copies can be compiled after the file
        # is gone: the exporters check through a temporary IR.
        self._model = core.read_model(str(model_path))
        self.compiled = core.compile_model(self._model, "CPU", properties)
        self.input_names = [i.get_any_name() for i in self.compiled.inputs]
        #: Static compiled models by padded length (batch 1), and how often each bucket was asked.
        self.static: dict[int, Any] = {}
        self._seen: dict[int, int] = {}
        self._lock = threading.Lock()
        # One infer request per calling thread and compiled model: a request is not safe to share
        # between threads.
        self._local = threading.local()

    def padded_length(self, length: int) -> int:
        """The static shape a single text of ``length`` tokens runs at: rounded up to ``static_step``."""
        return -(-length // self.static_step) * self.static_step

    def _static_for(self, length: int) -> tuple[int, Any] | None:
        """The padded length and static compiled model for a single text of ``length`` tokens,
        compiling one if this bucket has now been asked for often enough; None: run dynamic."""
        if not self.static_shapes:
            return None
        bucket = self.padded_length(length)
        compiled = self.static.get(bucket)
        if compiled is not None:
            return bucket, compiled
        if len(self.static) >= self.static_shapes:  # all compiled: nothing left to count or promote
            return None
        with self._lock:
            if bucket in self.static:
                return bucket, self.static[bucket]
            seen = self._seen[bucket] = self._seen.get(bucket, 0) + 1
            if seen < STATIC_PROMOTE_AFTER:
                return None
            compiled = self._compile_static(bucket)
            return None if compiled is None else (bucket, compiled)

    def _compile_static(self, bucket: int) -> Any:
        """Compile (under ``self._lock``) the static model for one text of ``bucket`` tokens, unless
        ``static_shapes`` of them exist or the graph cannot take a fixed shape; None then."""
        if len(self.static) >= self.static_shapes:
            return None
        try:
            model = self._model.clone()
            model.reshape({name: [1, bucket] for name in self.input_names})
            compiled = self._core.compile_model(model, "CPU", self._properties)
        except RuntimeError as e:  # a graph that cannot take a fixed shape keeps running dynamic
            log.warning("openvino: no static model for 1 x %d tokens (%s); running dynamic shapes", bucket, e)
            self.static_shapes = 0
            return None
        self.static[bucket] = compiled
        log.debug("openvino: static model for 1 x %d tokens (%d of %d)", bucket, len(self.static), self.static_shapes)
        return compiled

    def compile_static(self, max_length: int) -> list[int]:
        """Compile now the static models for single texts of up to ``max_length`` tokens, shortest
        buckets first, up to ``static_shapes`` in all, instead of in the calls that would promote
        them (0.3-0.6 s each for a small model: a server's first requests at each length paid it;
        ``squeezebert serve`` calls this while warming up). Returns the padded lengths compiled."""
        with self._lock:
            for bucket in range(self.static_step, max_length + self.static_step, self.static_step):
                if bucket not in self.static and self._compile_static(bucket) is None:
                    break
            return sorted(self.static)

    def _dynamic_request(self) -> Any:
        """This thread's request on the dynamic model."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def _static_request(self, bucket: int, compiled: Any) -> tuple[Any, list[tuple[str, np.ndarray]]]:
        """This thread's request on the static model for ``bucket`` tokens, its inputs bound once
        to zeroed arrays of that shape that each call writes the text into."""
        requests = getattr(self._local, "static", None)
        if requests is None:
            requests = self._local.static = {}
        entry = requests.get(bucket)
        if entry is None:
            ov = import_openvino()
            request = compiled.create_infer_request()
            buffers = []
            for port in compiled.inputs:
                name = port.get_any_name()
                buffer = np.zeros((1, bucket), dtype=port.get_element_type().to_dtype())
                request.set_tensor(name, ov.Tensor(buffer, shared_memory=True))
                buffers.append((name, buffer))
            entry = requests[bucket] = (request, buffers)
        return entry

    def __call__(self, batch: Batch) -> np.ndarray:
        rows, length = batch[self.input_names[0]].shape
        static = self._static_for(length) if rows == 1 else None
        if static is None:
            request = self._dynamic_request()
            # share_inputs: the int64 arrays are read in place, not copied into the request.
            result = request.infer({name: batch[name] for name in self.input_names}, share_inputs=True)
            return np.array(result[0])  # a copy: the request reuses its output buffer on the next call
        # One text on its static model: written into the request's own zero-padded input arrays
        # (padding is id 0 and mask 0, never attended to), so a call allocates nothing but the
        # logits' copy. Measured against padding with np.pad and passing a dict to infer()
        # (scripts/openvino_call_overhead.py): 0.14-0.19 ms less per call, 0.295 -> 0.158 ms for a
        # 1-layer student, 2.21 -> 2.02 ms for the minilm-l6 shape (docs/RESULTS.md, "Session 12").
        request, buffers = self._static_request(*static)
        for name, buffer in buffers:
            buffer[0, :length] = batch[name][0]
            buffer[0, length:] = 0
        request.infer()
        return request.get_output_tensor(0).data.copy()
