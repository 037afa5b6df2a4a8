"""squeezebert: fast, small NLP models on ordinary CPUs."""

from squeezebert.config import PRESETS, ModelConfig, preset
from squeezebert.model import SqueezeBert

__version__ = "0.1.0"


def from_pretrained(path_or_alias: str, **kwargs: object) -> SqueezeBert:
    """Load a model from a checkpoint directory, a Hugging Face directory, an alias
    (``minilm-l6``, a preset name) or a Hub id. See :func:`squeezebert.checkpoint.from_pretrained`."""
    from squeezebert.checkpoint import from_pretrained as _from_pretrained

    return _from_pretrained(path_or_alias, **kwargs)


__all__ = ["ModelConfig", "PRESETS", "SqueezeBert", "from_pretrained", "preset", "__version__"]
