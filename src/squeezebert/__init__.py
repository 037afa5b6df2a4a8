"""squeezebert: fast, small NLP models on ordinary CPUs.

``import squeezebert`` stays light: the torch model, the optimizer and the classifier are loaded
on first use (PEP 562), so an ONNX deployment that uses only :class:`Classifier` with
``backend="onnx"`` never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from squeezebert.config import PRESETS, ModelConfig, preset

if TYPE_CHECKING:
    from squeezebert.infer import Classifier, Prediction
    from squeezebert.model import SqueezeBert
    from squeezebert.quantize import optimize

__version__ = "0.1.0"

# Public name -> module that defines it, imported when the name is first used.
_LAZY = {
    "SqueezeBert": "squeezebert.model",
    "optimize": "squeezebert.quantize",
    "Classifier": "squeezebert.infer",
    "Prediction": "squeezebert.infer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'squeezebert' has no attribute {name!r}")


def from_pretrained(path_or_alias: str, **kwargs: object) -> SqueezeBert:
    """Load a model from a checkpoint directory, a Hugging Face directory, an alias
    (``minilm-l6``, a preset name) or a Hub id. See :func:`squeezebert.checkpoint.from_pretrained`."""
    from squeezebert.checkpoint import from_pretrained as _from_pretrained

    return _from_pretrained(path_or_alias, **kwargs)


__all__ = [
    "Classifier",
    "ModelConfig",
    "PRESETS",
    "Prediction",
    "SqueezeBert",
    "from_pretrained",
    "optimize",
    "preset",
    "__version__",
]
