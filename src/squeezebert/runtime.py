"""How a model runs: :class:`RuntimeOptions` (one frozen object, validated once) and :func:`threads`.

The choices that decide how a :class:`~squeezebert.infer.Classifier` runs (backend, precision,
max length, threads, text normalization, the runtimes' spin policy) are made once, by the caller
(the CLI, a script), and travel whole to ``Classifier.from_pretrained``, ``predict_file``,
``classify_file``, ``serve.run`` and the workload benchmark. The names of the backends and
precisions live here too, so that the CLI's ``choices`` and every check read one list.

Torch-free: the ONNX and OpenVINO deployment paths import this module; :func:`threads` imports
torch only when torch is already loaded (no torch, no torch threads to set).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from squeezebert.files import read_json_object

F = TypeVar("F", bound=Callable[..., Any])

#: The inference backends: PyTorch (squeezebert.optimize), ONNX Runtime, OpenVINO.
BACKENDS = ("torch", "onnx", "openvino")
#: The precisions a model runs in (not every backend has every one: ONNX has no bf16).
PRECISIONS = ("fp32", "bf16", "int8")
#: The run arguments a training run saves beside its checkpoint (squeezebert.train.ARGS_FILE is this).
TRAIN_ARGS_FILE = "train_args.json"
#: Tokens per text when neither the caller nor the checkpoint (its ``train_args.json``) says.
DEFAULT_MAX_LENGTH = 128


@dataclass(frozen=True)
class RuntimeOptions:
    """How a classifier runs; every field validated when the object is made.

    ``backend``: one of :data:`BACKENDS`, or None to pick by the files (an export directory's own
    runtime; for a checkpoint the first installed of :data:`squeezebert.infer.DEFAULT_BACKENDS`).
    ``precision``: one of :data:`PRECISIONS`, or None (an export's own precision, else fp32).
    ``max_length``: tokens per text after truncation; None: the length the checkpoint was trained
    at (its ``train_args.json``, or an export's record of it), else :data:`DEFAULT_MAX_LENGTH`.
    ``num_threads``: intra-op threads; None: the backend's choice.
    ``normalize``: apply :func:`squeezebert.normalize.normalize_text` (NFKC, zero-width removal,
    Latin look-alikes) before tokenizing, as training does (on by default everywhere).
    ``busy_wait``: let ONNX Runtime's / OpenVINO's worker threads spin and pin to cores between
    operators (faster for a batch job); None: the caller's policy (on for predict, batch and bench,
    off for ``serve``, whose request threads need the cores between calls).
    ``static_shapes``: openvino, how many single-text lengths get their own static compiled model
    (see :class:`squeezebert.backends.OpenVinoForward`); None: its default; 0: none.
    """

    backend: str | None = None
    precision: str | None = None
    max_length: int | None = None
    num_threads: int | None = None
    normalize: bool = True
    busy_wait: bool | None = None
    static_shapes: int | None = None

    def __post_init__(self) -> None:
        if self.backend is not None and self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("max_length", "num_threads"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"max_length must be at least 2 ([CLS] and [SEP]), got {self.max_length}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {self.num_threads}")
        if not isinstance(self.normalize, bool):
            raise ValueError(f"normalize must be True or False, got {self.normalize!r}")
        if self.static_shapes is not None:
            check_static_shapes(self.static_shapes)
        if self.busy_wait is not None and not isinstance(self.busy_wait, bool):
            raise ValueError(f"busy_wait must be True, False or None, got {self.busy_wait!r}")

    def spins(self, default: bool) -> bool:
        """``busy_wait``, or the caller's ``default`` policy where it is None."""
        return default if self.busy_wait is None else self.busy_wait


def check_static_shapes(value: Any) -> int:
    """``value`` if it is a whole number >= 0 (a count of static OpenVINO shapes), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"static_shapes must be a whole number >= 0, got {value!r}")
    return value


def recorded_max_length(directory: str | os.PathLike[str] | None) -> int | None:
    """The max length a checkpoint directory was trained at (its ``train_args.json``), or None
    where it records none. A file that is there but broken raises ValueError naming it."""
    if directory is None:
        return None
    args_file = Path(directory) / TRAIN_ARGS_FILE
    if not args_file.is_file():
        return None
    value = read_json_object(args_file).get("max_length")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ValueError(f"{args_file}: max_length must be an integer >= 2, got {value!r}")
    return value


@contextlib.contextmanager
def threads(num_threads: int | None) -> Iterator[None]:
    """Run the block with torch's intra-op thread count at ``num_threads``; restore it after.

    torch's thread count is process-wide, so library functions never set it for good: an entry
    point (a CLI command, a benchmark) wraps its work in this. None, or a process without torch
    loaded, changes nothing (ONNX Runtime and OpenVINO take their thread count per session).
    """
    torch = sys.modules.get("torch")
    if num_threads is None or torch is None:
        yield
        return
    previous = torch.get_num_threads()
    if previous == num_threads:
        yield
        return
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def with_threads(param: str = "threads") -> Callable[[F], F]:
    """Decorate a function whose argument ``param`` is a thread count: the call runs under
    :func:`threads` with that count, so the caller's setting is back when it returns."""

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            with threads(bound.arguments[param]):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


__all__ = [
    "BACKENDS",
    "DEFAULT_MAX_LENGTH",
    "PRECISIONS",
    "RuntimeOptions",
    "recorded_max_length",
    "threads",
    "with_threads",
]
