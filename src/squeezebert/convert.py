"""Lossless interop between Hugging Face layouts and ours: configs and state dicts, both ways.

Conversion is a key map plus assertions: every HF key is either mapped, known to be ignorable
(pretraining heads, the legacy ``position_ids`` buffer) or reported by name. Nothing here is lossy;
lossy steps (dense -> grouped, truncated rank, dropped layers) live in :mod:`squeezebert.surgery`
and report their error.

Our keys mirror HF SqueezeBERT without its ``transformer.`` prefix; grouped weights are stored as
``(out, in // groups)`` where HF's Conv1d stores ``(out, in // groups, 1)``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import torch
from torch import Tensor

from squeezebert.config import PROJECTIONS, ModelConfig
from squeezebert.model import LowRankLinear

log = logging.getLogger(__name__)

# HF config fields that carry over to ours unchanged.
_SHARED_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "initializer_range",
    "layer_norm_eps",
    "pad_token_id",
    "problem_type",
    "classifier_dropout",
)

# BERT's per-layer module path -> ours (same tensors, new names).
_BERT_LAYER_MAP = {
    "attention.self.query": "attention.query",
    "attention.self.key": "attention.key",
    "attention.self.value": "attention.value",
    "attention.output.dense": "post_attention.conv1d",
    "attention.output.LayerNorm": "post_attention.layernorm",
    "intermediate.dense": "intermediate.conv1d",
    "output.dense": "output.conv1d",
    "output.LayerNorm": "output.layernorm",
}

# Keys that belong to heads we do not model (MLM / NSP pretraining heads) or to buffers that
# transformers itself no longer saves. Dropped with a log line, never silently kept.
_IGNORABLE = re.compile(r"^(cls\.|lm_head\.|.*embeddings\.position_ids$|.*\.masked_bias$)")


class ConversionError(ValueError):
    """A state dict does not fit the layout it claims to have."""


def hf_model_type(hf_config: dict[str, Any]) -> str:
    """``"squeezebert"`` or ``"bert"`` (BERT-family: BERT, MiniLM, bge, ...), else ConversionError."""
    model_type = hf_config.get("model_type", "")
    if model_type == "squeezebert":
        return "squeezebert"
    if model_type in ("bert", "roberta") or any("Bert" in a for a in hf_config.get("architectures") or []):
        if model_type == "roberta":
            raise ConversionError("RoBERTa checkpoints are not supported (different embeddings and tokenizer)")
        return "bert"
    raise ConversionError(
        f"unsupported Hugging Face model_type {model_type!r}: expected 'squeezebert' or a BERT-family 'bert'"
    )


def config_from_hf(hf_config: dict[str, Any], num_labels: int | None = None) -> ModelConfig:
    """Our config from an HF ``config.json`` dict (SqueezeBERT or BERT)."""
    kind = hf_model_type(hf_config)
    kwargs: dict[str, Any] = {k: hf_config[k] for k in _SHARED_FIELDS if k in hf_config}
    if hf_config.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError(
            f"position_embedding_type={hf_config['position_embedding_type']!r} is not supported (only 'absolute')"
        )
    if kind == "squeezebert":
        for field in ModelConfig.group_fields():
            kwargs[field] = hf_config.get(field, 1)
        kwargs["embedding_size"] = hf_config.get("embedding_size", hf_config.get("hidden_size"))
    id2label = hf_config.get("id2label") or {}
    if num_labels is None:
        archs = hf_config.get("architectures") or []
        is_classifier = any(a.endswith("ForSequenceClassification") for a in archs)
        num_labels = int(hf_config.get("num_labels", len(id2label) or 2)) if is_classifier else 0
    if num_labels:
        if len(id2label) == num_labels:
            kwargs["id2label"] = {int(k): v for k, v in id2label.items()}
        else:
            kwargs["id2label"] = {i: f"LABEL_{i}" for i in range(num_labels)}
    else:
        kwargs.pop("problem_type", None)
    kwargs["num_labels"] = num_labels
    if kwargs.get("problem_type") not in (None, "single_label_classification", "regression"):
        raise ConversionError(f"problem_type={kwargs['problem_type']!r} is not supported")
    return ModelConfig(**kwargs)


def _strip_prefix(sd: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Remove ``prefix`` from the keys that have it; keys outside the base model keep their name."""
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in sd.items()}


def state_dict_from_hf(sd: dict[str, Tensor], kind: str) -> tuple[dict[str, Tensor], list[str]]:
    """Rename an HF state dict to our keys. Returns (state dict, dropped ignorable keys).

    Tensors are upcast to fp32 (SqueezeBERT's Hub weights are stored in fp16) and Conv1d kernels
    lose their trailing size-1 dimension. Unknown keys pass through unchanged so that loading
    reports them by name.
    """
    out: dict[str, Tensor] = {}
    dropped: list[str] = []
    sd = _strip_prefix(sd, "transformer." if kind == "squeezebert" else "bert.")
    for key, value in sd.items():
        if _IGNORABLE.match(key):
            dropped.append(key)
            continue
        if value.is_floating_point():
            value = value.float()
        new = key
        if kind == "bert":
            m = re.match(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$", key)
            if m and m.group(2) in _BERT_LAYER_MAP:
                new = f"encoder.layers.{m.group(1)}.{_BERT_LAYER_MAP[m.group(2)]}.{m.group(3)}"
        elif value.dim() == 3 and value.shape[-1] == 1 and key.startswith("encoder.layers."):
            value = value.squeeze(-1)  # Conv1d (out, in/g, 1) -> (out, in/g)
        out[new] = value
    return out, dropped


def state_dict_to_hf(model_sd: dict[str, Tensor], config: ModelConfig, kind: str) -> dict[str, Tensor]:
    """Our state dict (full rank, unfactorized embeddings) -> HF ``*ForSequenceClassification`` or
    headless ``*Model`` keys, for ``kind`` in {"squeezebert", "bert"}."""
    if config.is_pruned:
        raise ConversionError(
            "a structurally pruned model (its own head count or FFN width per layer"
            + (f", {len(config.removed_blocks)} attention/FFN blocks removed" if config.removed_blocks else "")
            + ") has no stock Hugging Face "
            "class (transformers no longer supports pruned heads); its squeezebert checkpoint directory loads in "
            "transformers as it is, with AutoModelForSequenceClassification.from_pretrained(dir, "
            "trust_remote_code=True)"
        )
    if config.ranks or config.embedding_size != config.hidden_size:
        raise ConversionError("materialize low-rank projections and factorized embeddings first (dense_config)")
    if kind == "bert" and any(config.groups(p) != 1 for p in PROJECTIONS):
        raise ConversionError("a grouped model can only be exported as HF SqueezeBERT, not BERT")
    head = config.num_labels > 0
    base = ("transformer." if kind == "squeezebert" else "bert.") if head else ""
    inverse = {v: k for k, v in _BERT_LAYER_MAP.items()}
    out: dict[str, Tensor] = {}
    for key, value in model_sd.items():
        value = value.detach().clone().contiguous()
        if key.startswith("classifier."):
            out[key] = value
            continue
        new = key
        m = re.match(r"^encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$", key)
        if m:
            if kind == "bert":
                new = f"encoder.layer.{m.group(1)}.{inverse[m.group(2)]}.{m.group(3)}"
            elif m.group(3) == "weight" and value.dim() == 2 and "layernorm" not in m.group(2):
                value = value.unsqueeze(-1)  # (out, in/g) -> Conv1d (out, in/g, 1)
        out[base + new] = value
    return out


def hf_config_from_ours(config: ModelConfig, kind: str) -> dict[str, Any]:
    """An HF ``config.json`` dict for ``kind`` in {"squeezebert", "bert"}."""
    d: dict[str, Any] = {k: getattr(config, k) for k in _SHARED_FIELDS if getattr(config, k) is not None}
    head = config.num_labels > 0
    if kind == "squeezebert":
        d.update({f: getattr(config, f) for f in ModelConfig.group_fields()})
        d["embedding_size"] = config.hidden_size
        d["model_type"] = "squeezebert"
        d["architectures"] = ["SqueezeBertForSequenceClassification" if head else "SqueezeBertModel"]
    else:
        d["model_type"] = "bert"
        d["position_embedding_type"] = "absolute"
        d["architectures"] = ["BertForSequenceClassification" if head else "BertModel"]
    if head:
        d["num_labels"] = config.num_labels
        d["id2label"] = {str(k): v for k, v in config.id2label.items()}
        d["label2id"] = config.label2id
    else:
        d.pop("problem_type", None)
    return d


def dense_state_dict(model: torch.nn.Module) -> tuple[ModelConfig, dict[str, Tensor]]:
    """Multiply out low-rank projections and factorized embeddings into plain weights (exact up to
    float rounding), for formats that have no such modules. Groups are kept."""
    config: ModelConfig = model.config  # type: ignore[assignment]
    sd = {k: v for k, v in model.state_dict().items()}
    for name, module in model.named_modules():
        if isinstance(module, LowRankLinear):
            g, r = module.groups, module.rank
            out_g, in_g = module.out_features // g, module.in_features // g
            up = module.up.weight.view(g, out_g, r)  # (G, out/G, r)
            down = module.down.weight.view(g, r, in_g)  # (G, r, in/G)
            weight = torch.bmm(up, down).reshape(module.out_features, in_g)  # (out, in/G)
            for k in ("down.weight", "up.weight", "up.bias"):
                sd.pop(f"{name}.{k}")
            sd[f"{name}.weight"] = weight.detach()
            sd[f"{name}.bias"] = module.up.bias.detach()
    if config.embedding_size != config.hidden_size:
        proj = sd.pop("embeddings.projection.weight")  # (H, E)
        sd["embeddings.word_embeddings.weight"] = sd["embeddings.word_embeddings.weight"] @ proj.T  # (V, H)
    dense_cfg = config.replace(ranks={}, embedding_size=config.hidden_size)
    return dense_cfg, sd
