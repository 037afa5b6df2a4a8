"""Inference as one :class:`Classifier`: preprocess -> forward -> postprocess.

preprocess tokenizes, sorts the texts by length and cuts them into batches, each padded only to
its own longest sequence (so short texts never pay for a long neighbour); forward maps a padded
batch to logits; postprocess turns logits into :class:`Prediction` objects in input order. The
backends differ only in their forward (one small class each, in :mod:`squeezebert.backends`):

* ``torch``: the model made by :func:`squeezebert.optimize` (fp32, bf16 or int8);
* ``onnx``: an ONNX Runtime session over an export directory (fp32 or int8, see
  :mod:`squeezebert.export`);
* ``openvino``: an OpenVINO compiled model over an export directory (fp32, bf16 or int8, see
  :mod:`squeezebert.export_openvino`).

This module imports no torch at import time, and the ONNX and OpenVINO paths never do: such a
deployment needs only its runtime, tokenizers and numpy. The three stages are public so that a benchmark can
time them apart.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

# The forwards and runtime loaders live in backends (the exporters use them without the
# classifier); the `X as X` names are re-exported: infer is where callers have always found them.
from squeezebert.backends import (
    ONNX_MODEL_FILE,
    OPENVINO_MODEL_FILE,
    Batch,
    OnnxForward,
    OpenVinoForward,
    TextInput,
    TorchForward,
)
from squeezebert.backends import OPENVINO_INFERENCE_PRECISIONS as OPENVINO_INFERENCE_PRECISIONS
from squeezebert.backends import OPENVINO_TELEMETRY_ENV as OPENVINO_TELEMETRY_ENV
from squeezebert.backends import import_openvino as import_openvino
from squeezebert.backends import openvino_has_bf16 as openvino_has_bf16
from squeezebert.config import ModelConfig
from squeezebert.files import read_json_object
from squeezebert.runtime import BACKENDS as BACKENDS  # re-exported: the names live in runtime
from squeezebert.runtime import DEFAULT_MAX_LENGTH, RuntimeOptions, recorded_max_length
from squeezebert.runtime import PRECISIONS as PRECISIONS
from squeezebert.tokenizer import Tokenizer

log = logging.getLogger(__name__)

#: Where ``squeezebert squeeze`` keeps the student's export (= squeezebert.squeeze.DEPLOY_DIR).
DEPLOY_DIR = "deploy"


@dataclass(frozen=True)
class Prediction:
    """One result. Classification: ``label`` (from the checkpoint's id2label), ``score`` (its
    probability) and ``probabilities`` (label -> probability). Regression: ``value``."""

    label: str | None = None
    score: float | None = None
    probabilities: dict[str, float] | None = None
    value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set, for JSON."""
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def top(self, k: int) -> list[dict[str, Any]]:
        """The ``k`` most probable labels, best first, as ``{"label": ..., "score": ...}`` dicts
        (the shape of transformers' pipeline with ``top_k``)."""
        if self.probabilities is None:
            raise ValueError("top_k is for classification: a regression model predicts one value")
        ranked = sorted(self.probabilities.items(), key=lambda item: item[1], reverse=True)
        return [{"label": label, "score": score} for label, score in ranked[:k]]


# --------------------------------------------------------------------------- the default backend
#: For a checkpoint loaded without a backend: per precision, the first of these runtimes that is
#: installed. Measured on the SST-2 minilm-l6 teacher, SST-2 dev end to end, 2 threads
#: (docs/RESULTS.md, session 6): OpenVINO's fp32 graph was no faster than eager PyTorch fp32
#: (2.36x vs 2.58x transformers' pipeline at batch 1, 2.29x vs 2.24x at batch 32, each against the
#: pipeline in its own run), so fp32 stays on torch (exact, nothing to convert); OpenVINO int8 ran
#: at 4.68x / 4.11x the pipeline, ahead of every int8 path before it, and its bf16 graph ran 1.45x
#: its fp32 one, so int8 and bf16 go to OpenVINO first.
DEFAULT_BACKENDS = {"fp32": ("torch",), "bf16": ("openvino", "torch"), "int8": ("openvino", "onnx", "torch")}
_NEEDS = {"openvino": ("openvino", "torch"), "onnx": ("onnx", "onnxruntime", "torch"), "torch": ("torch",)}


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here, without importing it (a blocked import is not)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # sys.modules[module] is None: import blocked
        return False


def default_backend(precision: str = "fp32") -> str:
    """The backend a checkpoint runs on when none is named (see :data:`DEFAULT_BACKENDS`):
    exporting a checkpoint needs torch, so a runtime is only chosen where torch is there too."""
    for backend in DEFAULT_BACKENDS.get(precision, ("torch",)):
        if all(installed(m) for m in _NEEDS[backend]):
            return backend
    return "torch"


# --------------------------------------------------------------------------- export directories
def export_backend(path: str | os.PathLike[str]) -> str | None:
    """The runtime an export directory is for, from its files (``model.xml``: ``openvino``,
    ``model.onnx``: ``onnx``), or None for anything else (a checkpoint, an alias)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        return None
    if (path / OPENVINO_MODEL_FILE).is_file():
        return "openvino"
    if (path / ONNX_MODEL_FILE).is_file():
        return "onnx"
    return None


def export_section(config_file: Path, backend: str) -> dict[str, Any]:
    """The ``config.json`` section an export of ``backend`` wrote about itself (precision, checks)."""
    section = read_json_object(config_file).get(backend, {})
    if not isinstance(section, dict):
        raise ValueError(f"{config_file}: {backend!r} must be an object")
    return section


def openvino_export_forward(
    path: str | os.PathLike[str],
    num_threads: int | None = None,
    busy_wait: bool = True,
    static_shapes: int | None = None,
    static_step: int | None = None,
    section: dict[str, Any] | None = None,
) -> OpenVinoForward:
    """The forward of an OpenVINO export directory as it was exported to run: the inference
    precision and int8 recipe its ``config.json`` records (``section``: that record, when the
    caller has read it already). A run-time-scales export run without its flag would decompress
    its int8 weights and multiply in float."""
    path = Path(path)
    if section is None:
        section = export_section(path / "config.json", "openvino")
    return OpenVinoForward(
        path / OPENVINO_MODEL_FILE,
        num_threads,
        section.get("inference_precision", "fp32"),
        busy_wait,
        section.get("int8_recipe") == "dynamic",
        static_shapes,
        static_step,
    )


# --------------------------------------------------------------------------- the classifier
def _is_single(inputs: Any) -> bool:
    """One input (a text, or a (text, text) pair as a tuple) rather than a sequence of them."""
    return isinstance(inputs, str) or (
        isinstance(inputs, tuple) and len(inputs) == 2 and all(isinstance(t, str) for t in inputs)
    )


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)  # stable: exp never overflows
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


class Classifier:
    """Text (pair) classification or regression with any backend.

    Build one with :meth:`from_pretrained`; call it like transformers' pipeline
    (``clf("text")``, ``clf(["a", "b"])``, ``clf("text", top_k=2)``) or use :meth:`predict`.
    ``forward`` maps a padded :data:`Batch` to float32 logits ``(B, num_labels)``. ``normalize``
    (default on, as in the CLI and in training): NFKC and look-alike letters before tokenizing.
    """

    def __init__(
        self,
        forward: Callable[[Batch], np.ndarray],
        tokenizer: Tokenizer,
        config: ModelConfig,
        max_length: int = 128,
        backend: str = "torch",
        precision: str = "fp32",
        normalize: bool = True,
        export_dir: Path | None = None,
    ) -> None:
        if config.num_labels < 1:
            raise ValueError("this model has no classification head (num_labels=0); fine-tune or load one with labels")
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2 ([CLS] and [SEP]), got {max_length}")
        if max_length > config.max_position_embeddings:
            log.info(
                "max_length %d exceeds the model's %d positions; using those",
                max_length,
                config.max_position_embeddings,
            )
            max_length = config.max_position_embeddings
        self._forward = forward
        self.tokenizer = tokenizer
        self.config = config
        self.max_length = max_length
        self.backend = backend
        self.precision = precision
        self.normalize = normalize
        self.labels = config.labels
        self.export_dir = export_dir  # the export this classifier runs (for save_pretrained)
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None  # an on-the-fly export lives here

    def compile_static_shapes(self) -> list[int]:
        """OpenVINO: compile now the static models single texts of up to ``max_length`` tokens run
        on (:meth:`squeezebert.backends.OpenVinoForward.compile_static`), so that no call pays for
        one later; returns their padded lengths. Other backends have none: ``[]``."""
        compile_static = getattr(self._forward, "compile_static", None)
        return compile_static(self.max_length) if compile_static is not None else []

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        options: RuntimeOptions | None = None,
        *,
        precision: str | None = None,
        backend: str | None = None,
        max_length: int | None = None,
        num_threads: int | None = None,
        normalize: bool | None = None,
        busy_wait: bool | None = None,
        static_shapes: int | None = None,
    ) -> Classifier:
        """Load a classifier.

        ``path``: a checkpoint directory (or alias / preset, as :func:`squeezebert.checkpoint.load`)
        or an export directory, recognized by its files: ``model.onnx`` (ONNX Runtime) or
        ``model.xml`` (OpenVINO), each beside ``config.json`` and ``tokenizer.json`` (see
        ``squeezebert export``). An export loads without torch. A squeeze output directory
        with a ``deploy/`` export loads that export unless a backend is named.

        ``options``: how it runs (:class:`~squeezebert.runtime.RuntimeOptions`); the keyword
        arguments, where given, replace its fields (``Classifier.from_pretrained(path,
        precision="int8")``). In short:

        ``backend``: None picks by the files: an export's own runtime, else for a checkpoint the
        first installed runtime of :data:`DEFAULT_BACKENDS` for the precision (fp32: torch;
        int8: OpenVINO, ONNX Runtime, torch; bf16: OpenVINO, torch). Given a
        checkpoint, ``onnx`` and ``openvino`` export it first into a temporary directory (that
        step uses torch; fp32 is checked to 1e-4 against PyTorch; OpenVINO int8 calibrates on the
        training texts the checkpoint records, or quantizes activations at run time when it
        records none, see :func:`squeezebert.export_openvino.export`).

        ``precision``: torch ``fp32`` / ``bf16`` / ``int8``; onnx ``fp32`` / ``int8``; openvino
        ``fp32`` / ``bf16`` / ``int8``. None means fp32, or for an export directory the precision
        it was exported with.
        ``max_length``: None means the length the model was trained at (the checkpoint's
        ``train_args.json`` or the export's record of it), else 128.
        ``num_threads``: intra-op threads (torch: set around each call and restored after it).
        ``normalize`` (default on, as in the CLI and in training): apply
        :func:`squeezebert.normalize.normalize_text` (NFKC and look-alike letters) before tokenizing.
        ``busy_wait``: onnx and openvino, see :class:`OnnxForward` and :class:`OpenVinoForward`
        (None: on; ``squeezebert serve`` turns it off).
        ``static_shapes``: openvino, how many single-text lengths get a static compiled model
        (None: :data:`squeezebert.backends.OPENVINO_STATIC_SHAPES`; 0: none), see
        :class:`OpenVinoForward`.
        """
        given = {
            "precision": precision,
            "backend": backend,
            "max_length": max_length,
            "num_threads": num_threads,
            "normalize": normalize,
            "busy_wait": busy_wait,
            "static_shapes": static_shapes,
        }
        options = replace(options or RuntimeOptions(), **{k: v for k, v in given.items() if v is not None})
        options = replace(options, busy_wait=options.spins(True))  # a library call's policy: spin
        path_ = Path(path).expanduser()
        exported = export_backend(path_)
        if exported is None and options.backend is None and export_backend(path_ / DEPLOY_DIR) is not None:
            # A squeeze output: serve the student's deployable export (its fastest path).
            log.info("%s: using its deployable export %s", path_, path_ / DEPLOY_DIR)
            path_ = path_ / DEPLOY_DIR
            exported = export_backend(path_)
        if exported is not None:
            if options.backend is not None and options.backend != exported:
                raise ValueError(
                    f"{path_}: is an {exported} export; load it with backend={exported!r} (or none), "
                    f"or export the checkpoint again for {options.backend}"
                )
            return cls._from_export(path_, exported, options)
        options = replace(
            options,
            backend=options.backend or default_backend(options.precision or "fp32"),
            precision=options.precision or "fp32",
        )
        if options.backend == "torch":
            return cls._from_checkpoint(path, options)
        return cls._export_and_load(path, options)

    @classmethod
    def _from_checkpoint(cls, path: str | os.PathLike[str], options: RuntimeOptions) -> Classifier:
        from squeezebert.checkpoint import load

        ckpt = load(path)
        if ckpt.tokenizer is None:
            raise ValueError(f"{path}: has no tokenizer (tokenizer.json or vocab.txt)")
        precision = options.precision or "fp32"
        forward = TorchForward(ckpt.model, precision, options.num_threads)
        max_length = options.max_length or recorded_max_length(ckpt.path) or DEFAULT_MAX_LENGTH
        return cls(forward, ckpt.tokenizer, ckpt.model.config, max_length, "torch", precision, options.normalize)

    @classmethod
    def _from_export(cls, path: Path, backend: str, options: RuntimeOptions) -> Classifier:
        config_file = path / "config.json"
        config = ModelConfig.load(config_file)
        section = export_section(config_file, backend)
        exported = section.get("precision", "fp32")
        if options.precision is not None and options.precision != exported:
            raise ValueError(
                f"{path}: holds a {exported} export (for {backend}) but precision={options.precision!r} was asked "
                f"for; pass precision={exported!r} or export again with --precision {options.precision}"
            )
        tokenizer = Tokenizer.from_dir(path)
        tokenizer.check_fits(config.vocab_size, str(path))
        busy_wait = options.spins(True)
        forward: Callable[[Batch], np.ndarray]
        if backend == "onnx":
            forward = OnnxForward(path / ONNX_MODEL_FILE, options.num_threads, busy_wait)
        else:
            forward = openvino_export_forward(
                path, options.num_threads, busy_wait, options.static_shapes, section=section
            )
        recorded = section.get("max_length") or recorded_max_length(path)
        max_length = options.max_length or recorded or DEFAULT_MAX_LENGTH
        return cls(forward, tokenizer, config, max_length, backend, exported, options.normalize, path)

    @classmethod
    def _export_and_load(cls, src: str | os.PathLike[str], options: RuntimeOptions) -> Classifier:
        # The exporters sit above this module (they check what they write through backends'
        # forwards and never import infer), so this one lazy import makes no cycle.
        from squeezebert.export_openvino import export_for_runtime

        backend, precision = options.backend, options.precision or "fp32"
        tmpdir = tempfile.TemporaryDirectory(prefix=f"squeezebert-{backend}-")
        try:
            export_for_runtime(src, tmpdir.name, backend, precision)  # type: ignore[arg-type]
            if options.max_length is None and Path(src).expanduser().is_dir():
                # The export may not record the trained length (ONNX's does not): the source does.
                options = replace(options, max_length=recorded_max_length(Path(src).expanduser()))
            clf = cls._from_export(Path(tmpdir.name), backend, options)  # type: ignore[arg-type]
        except BaseException:
            tmpdir.cleanup()
            raise
        clf._tmpdir = tmpdir  # removed with the classifier (the runtime has read the files by now)
        return clf

    # ------------------------------------------------------------------ the three stages
    def encode(self, inputs: Sequence[TextInput]) -> list[tuple[list[int], list[int]]]:
        """Unpadded ``(input_ids, token_type_ids)`` per input, truncated to ``max_length``."""
        inputs = [inputs] if _is_single(inputs) else list(inputs)
        if not inputs:
            return []
        if all(isinstance(x, str) for x in inputs):
            texts, pairs = inputs, None
        elif all(isinstance(x, (tuple, list)) and len(x) == 2 and all(isinstance(t, str) for t in x) for x in inputs):
            texts, pairs = [x[0] for x in inputs], [x[1] for x in inputs]
        else:
            for i, x in enumerate(inputs):
                pair = isinstance(x, (tuple, list)) and len(x) == 2 and all(isinstance(t, str) for t in x)
                if not (isinstance(x, str) or pair):
                    raise TypeError(f"input {i} is {x!r:.60}: expected a text or a (text, text) pair")
            raise TypeError("inputs must be all texts or all (text, text) pairs, not a mix")
        if self.normalize:
            from squeezebert.normalize import normalize_text

            texts = [normalize_text(t) for t in texts]
            pairs = None if pairs is None else [normalize_text(t) for t in pairs]
        return self.tokenizer.tokenize(texts, pairs, max_length=self.max_length)

    def preprocess(self, inputs: Sequence[TextInput], batch_size: int = 32) -> Iterator[tuple[list[int], Batch]]:
        """Yield ``(positions, batch)``: batches of similar length, each padded to its own longest
        sequence; ``positions`` are the inputs' indices in the batch's row order."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        items = self.encode(inputs)
        # Longest first: a too-large batch fails at once, not at the end of a long job.
        order = sorted(range(len(items)), key=lambda i: len(items[i][0]), reverse=True)
        for start in range(0, len(order), batch_size):
            positions = order[start : start + batch_size]
            yield positions, self.tokenizer.pad([items[i] for i in positions])

    def forward(self, batch: Batch) -> np.ndarray:
        """Logits ``(B, num_labels)``, float32, for one padded batch."""
        return np.asarray(self._forward(batch), dtype=np.float32)

    def postprocess(self, logits: np.ndarray) -> list[Prediction]:
        """Predictions for logits ``(B, num_labels)``, one per row."""
        if self.config.num_labels == 1:
            return [Prediction(value=float(v)) for v in logits[:, 0]]
        probs = _softmax(logits.astype(np.float64))
        best = probs.argmax(-1)
        return [
            Prediction(
                label=self.labels[k],
                score=float(row[k]),
                probabilities={label: float(p) for label, p in zip(self.labels, row)},
            )
            for k, row in zip(best, probs)
        ]

    def predict(self, inputs: TextInput | Sequence[TextInput], batch_size: int = 32) -> list[Prediction]:
        """Classify texts or (text, text) pairs (or a single one); results come back in input order."""
        if _is_single(inputs):
            inputs = [inputs]  # type: ignore[list-item]
        results: list[Prediction | None] = [None] * len(inputs)
        for positions, batch in self.preprocess(inputs, batch_size):
            for i, prediction in zip(positions, self.postprocess(self.forward(batch))):
                results[i] = prediction
        return results  # type: ignore[return-value]  # every slot is filled above

    def __call__(self, inputs: TextInput | Sequence[TextInput], top_k: int | None = None, batch_size: int = 32) -> Any:
        """Pipeline-style: a text or (text, text) pair gives one result, a list gives a list.

        ``top_k`` None: each result is a :class:`Prediction` (the best label, its score and every
        label's probability; ``value`` for regression). An int: each result is the ``top_k`` most
        probable labels as ``{"label", "score"}`` dicts, best first.
        """
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be None or an integer >= 1, got {top_k!r}")
        if top_k is not None and self.config.num_labels == 1:
            raise ValueError("top_k is for classification: a regression model predicts one value")
        single = _is_single(inputs)
        predictions = self.predict(inputs, batch_size)
        results: list[Any] = predictions if top_k is None else [p.top(top_k) for p in predictions]
        return results[0] if single else results

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        """Write what this classifier runs into a new directory ``path``, which
        :meth:`from_pretrained` loads back as it was.

        An ONNX Runtime or OpenVINO classifier copies its export directory (one exported on the
        fly included): the optimized model, int8 or bf16, is saved as it runs. A torch fp32
        classifier writes a checkpoint directory. A torch int8 or bf16 copy is made at load time and
        has no lossless file form: that raises ValueError pointing to ``squeezebert export``. The
        directory is written under a temporary name beside ``path`` and renamed at the end.
        """
        out = Path(path).expanduser()
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ValueError(f"{out}: exists and is not empty; save into a new directory")
        write: Callable[[Path], Any]
        if self.export_dir is not None:
            export_dir = self.export_dir
            write = lambda tmp: shutil.copytree(export_dir, tmp)  # noqa: E731
        elif self.backend == "torch" and self.precision == "fp32":
            model = getattr(getattr(self._forward, "model", None), "model", None)  # TorchForward's copy
            if model is None:
                raise ValueError("this classifier's forward holds no model to save")
            from squeezebert.checkpoint import save_checkpoint

            write = lambda tmp: save_checkpoint(model, tmp, self.tokenizer)  # noqa: E731
        else:
            raise ValueError(
                f"a torch {self.precision} model is made from the fp32 weights at load time and cannot be saved "
                f"losslessly; for a deployable {self.precision} model use `squeezebert export --format openvino "
                f"--precision {self.precision}` (or --format onnx for int8), or load the checkpoint with "
                f"backend='openvino' and save that"
            )
        from squeezebert.files import temp_prefix

        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f"{temp_prefix(out)}{secrets.token_hex(4)}.tmp")
        try:
            write(tmp)
            if out.exists():
                out.rmdir()  # empty, checked above
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out

    def __repr__(self) -> str:
        return (
            f"Classifier(backend={self.backend!r}, precision={self.precision!r}, labels={self.labels}, "
            f"max_length={self.max_length})"
        )
