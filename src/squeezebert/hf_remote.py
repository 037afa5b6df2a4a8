"""Our model as transformers classes: the last part of the modeling file of a checkpoint directory.

:mod:`squeezebert.remote_code` writes ``modeling_squeezebert_toolkit.py`` into every checkpoint
directory from the sources of :mod:`squeezebert.config`, :mod:`squeezebert.model` and this module,
with the imports of our own package taken out, so that::

    AutoModelForSequenceClassification.from_pretrained(directory, trust_remote_code=True)

builds :class:`~squeezebert.model.SqueezeBert` itself, at its own size, and loads
``model.safetensors`` as it is (same keys, nothing multiplied out). The classes only translate:
config fields in and out (the field list comes from the dataclass), HF output objects out.

This module imports transformers; nothing in the package imports it (the generator reads its text).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput

from squeezebert.config import ModelConfig
from squeezebert.model import SqueezeBert

# ModelConfig fields that transformers' config class keeps itself (num_labels is derived from id2label).
_HF_OWNED = ("id2label", "num_labels", "problem_type")


class SqueezeBertToolkitConfig(PretrainedConfig):
    """transformers' view of :class:`ModelConfig`: every ModelConfig field is an attribute, read
    back by :meth:`to_model_config` (the field list comes from the dataclass, not from here)."""

    model_type = "squeezebert-toolkit"

    def __init__(self, **kwargs: Any) -> None:
        names = [f.name for f in dataclasses.fields(ModelConfig) if f.name not in _HF_OWNED]
        ours = {name: kwargs.pop(name) for name in names if name in kwargs}
        if kwargs.get("id2label") is None and kwargs.get("num_labels") is None:
            kwargs["id2label"] = {}  # ModelConfig's default: a headless encoder
        super().__init__(**kwargs)
        for name, value in ours.items():
            setattr(self, name, value)

    def to_model_config(self) -> ModelConfig:
        """The validated :class:`ModelConfig` these attributes describe."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(ModelConfig) if hasattr(self, f.name)}
        d["id2label"] = dict(self.id2label or {})
        d["num_labels"] = len(d["id2label"])
        if d["num_labels"] == 0 or (self.problem_type or "") not in ("regression", "single_label_classification"):
            d["problem_type"] = None
        return ModelConfig.from_dict(d, source="config.json")


class SqueezeBertToolkitPreTrainedModel(PreTrainedModel):
    """Holds :class:`SqueezeBert` as ``model``; checkpoints store its keys without that prefix."""

    config_class = SqueezeBertToolkitConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"

    def __init__(self, config: SqueezeBertToolkitConfig) -> None:
        super().__init__(config)
        self.model = SqueezeBert(config.to_model_config())
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        # Only what the checkpoint lacks (a new head) is initialized, as SqueezeBert does.
        if hasattr(self, "model"):
            self.model._init_weights(module)

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.model.embeddings.word_embeddings

    def set_input_embeddings(self, value: torch.nn.Module) -> None:
        self.model.embeddings.word_embeddings = value


class SqueezeBertToolkitModel(SqueezeBertToolkitPreTrainedModel):
    """The encoder: last hidden state (B, T, H) and the pooled [CLS] state (B, H)."""

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPooling:
        out = self.model.encode(
            input_ids, attention_mask, token_type_ids, bool(output_hidden_states), bool(output_attentions)
        )
        pooled = self.model.pooler(out.last_hidden_state[:, 0])  # (B, H)
        return BaseModelOutputWithPooling(
            last_hidden_state=out.last_hidden_state,
            pooler_output=pooled,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )


class SqueezeBertToolkitForSequenceClassification(SqueezeBertToolkitPreTrainedModel):
    """Logits (B, num_labels); with ``labels``, the loss our training uses (cross-entropy, or
    mean squared error for regression)."""

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        out = self.model.encode(
            input_ids, attention_mask, token_type_ids, bool(output_hidden_states), bool(output_attentions)
        )
        logits = self.model.classify(out.last_hidden_state)  # (B, num_labels)
        loss = None
        if labels is not None:
            if self.model.config.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1), labels.float())
            else:
                loss = F.cross_entropy(logits, labels)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions
        )
