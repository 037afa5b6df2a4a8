"""Model configuration: one validated dataclass with Hugging Face field names.

A single config describes BERT, MiniLM and SqueezeBERT alike: every position-wise projection has
its own group count (1 = an ordinary dense layer), and optionally a rank (two thin projections
instead of one). Serialized as ``config.json`` inside a checkpoint directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from squeezebert.files import read_json_object

#: The six position-wise projections of a layer, in forward order, with their input and output
#: widths expressed through the config (see :meth:`ModelConfig.projection_shape`).
PROJECTIONS = ("query", "key", "value", "post_attention", "intermediate", "output")

ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")
PROBLEM_TYPES = ("single_label_classification", "regression")
#: the named student constructions of :meth:`squeezebert.surgery.StudentSpec.from_construction`, default first
CONSTRUCTIONS = ("lowrank", "grouped", "grouped-lowrank", "pruned")


@dataclass
class ModelConfig:
    """Architecture and label map of a model.

    Field names follow Hugging Face (``hidden_size``, ``q_groups``, ...). Extensions:

    * ``embedding_size < hidden_size`` factorizes the word embeddings into a ``(vocab, E)`` table
      and an ``E -> hidden`` projection (position and token-type embeddings stay at full width, so
      a truncated SVD of a pretrained table maps onto this exactly).
    * ``ranks`` maps a projection name (``"query"``: every layer) or ``"<layer>.<name>"``
      (``"3.intermediate"``: one layer) to a rank per group; such a projection becomes two thin
      grouped projections ``in -> groups*rank -> out``.
    * ``layer_heads`` / ``layer_intermediate_sizes``: per-layer attention heads and FFN widths of
      a structurally pruned model (empty: every layer has ``num_attention_heads`` heads and
      ``intermediate_size`` neurons). A head keeps the width ``hidden_size // num_attention_heads``,
      so a layer with h heads projects ``hidden -> h * head_size`` for Q, K and V and back for
      the attention output. A count of 0 removes the layer's whole attention (or FFN) block: what
      is left of it is a constant added before its LayerNorm (the block's mean output), see
      :class:`squeezebert.model.RemovedBlock`.
    * ``num_labels == 0`` is a headless encoder (returns hidden states); ``1`` is regression.
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    embedding_size: int | None = None  # None: same as hidden_size
    q_groups: int = 1
    k_groups: int = 1
    v_groups: int = 1
    post_attention_groups: int = 1
    intermediate_groups: int = 1
    output_groups: int = 1
    ranks: dict[str, int] = field(default_factory=dict)
    layer_heads: list[int] = field(default_factory=list)
    layer_intermediate_sizes: list[int] = field(default_factory=list)
    num_labels: int = 0
    id2label: dict[int, str] = field(default_factory=dict)
    problem_type: str | None = None
    classifier_dropout: float | None = None

    def __post_init__(self) -> None:
        if self.embedding_size is None:
            self.embedding_size = self.hidden_size
        # JSON turns int keys into strings; accept both.
        self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
        if self.id2label and self.num_labels == 0:
            self.num_labels = len(self.id2label)
        if self.num_labels > 0 and not self.id2label:
            self.id2label = {i: f"LABEL_{i}" for i in range(self.num_labels)}
        if self.problem_type is None and self.num_labels > 0:
            self.problem_type = "regression" if self.num_labels == 1 else "single_label_classification"
        self.ranks = {str(k): int(v) for k, v in self.ranks.items()}
        self.layer_heads = list(self.layer_heads)
        self.layer_intermediate_sizes = list(self.layer_intermediate_sizes)
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ``ValueError`` naming the field to change when the combination is impossible."""

        def positive(name: str) -> None:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

        for name in (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
            "embedding_size",
        ):
            positive(name)
        for name in self.group_fields():
            positive(name)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} must divide "
                f"hidden_size={self.hidden_size}; change one of them"
            )
        if self.embedding_size > self.hidden_size:
            raise ValueError(f"embedding_size={self.embedding_size} must not exceed hidden_size={self.hidden_size}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act={self.hidden_act!r} is not one of {ACTIVATIONS}")
        if not 0.0 <= self.hidden_dropout_prob < 1.0 or not 0.0 <= self.attention_probs_dropout_prob < 1.0:
            raise ValueError("dropout probabilities must lie in [0, 1)")
        if self.num_labels < 0:
            raise ValueError(f"num_labels must be >= 0, got {self.num_labels}")
        if self.num_labels and len(self.id2label) != self.num_labels:
            raise ValueError(f"id2label has {len(self.id2label)} entries but num_labels={self.num_labels}")
        if self.id2label and sorted(self.id2label) != list(range(len(self.id2label))):
            raise ValueError(f"id2label keys must be 0..{len(self.id2label) - 1}, got {sorted(self.id2label)}")
        if len(set(self.id2label.values())) != len(self.id2label):
            raise ValueError(f"id2label has duplicate label names: {self.id2label}")
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type={self.problem_type!r} is not one of {PROBLEM_TYPES}")
        if self.problem_type == "regression" and self.num_labels != 1:
            raise ValueError("problem_type='regression' needs num_labels=1")
        for name in ("layer_heads", "layer_intermediate_sizes"):
            values = getattr(self, name)
            if values and len(values) != self.num_hidden_layers:
                raise ValueError(
                    f"{name} has {len(values)} entries but num_hidden_layers={self.num_hidden_layers}; "
                    "give one per layer (or none for a uniform model)"
                )
            for i, v in enumerate(values):
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    raise ValueError(f"{name}[{i}] must be a non-negative integer (0: block removed), got {v!r}")
        for layer in range(self.num_hidden_layers) if self.is_pruned else (None,):
            where = "" if layer is None else f" in layer {layer}"
            for proj in PROJECTIONS:
                cin, cout = self.projection_shape(proj, layer)
                groups = self.groups(proj)
                if not cin or not cout:
                    continue  # a removed block: no projection
                if cin % groups or cout % groups:
                    raise ValueError(
                        f"{self.group_field(proj)}={groups} must divide both the input ({cin}) and "
                        f"output ({cout}) channels of the {proj} projection{where}"
                    )
        for key, rank in self.ranks.items():
            layer, proj = self._parse_rank_key(key)
            if rank < 1:
                raise ValueError(f"ranks[{key!r}]={rank} must be >= 1")
            for li in [layer] if layer is not None else range(self.num_hidden_layers):
                cin, cout = self.projection_shape(proj, li)
                if not cin or not cout:
                    if layer is None:
                        continue  # a uniform rank does not apply to a removed block
                    raise ValueError(f"ranks[{key!r}]: layer {li} has no {proj} projection (its block is removed)")
                groups = self.groups(proj)
                full = min(cin, cout) // groups
                if rank > full:
                    raise ValueError(
                        f"ranks[{key!r}]={rank} is larger than the full rank {full} of each of the "
                        f"{groups} groups of {proj} ({cout}x{cin}) in layer {li}; use at most {full}"
                    )

    def _parse_rank_key(self, key: str) -> tuple[int | None, str]:
        layer_str, _, proj = key.rpartition(".")
        if proj not in PROJECTIONS:
            raise ValueError(f"ranks key {key!r}: projection must be one of {PROJECTIONS}")
        if not layer_str:
            return None, proj
        if not layer_str.isdigit() or int(layer_str) >= self.num_hidden_layers:
            raise ValueError(
                f"ranks key {key!r}: layer must be an index below num_hidden_layers={self.num_hidden_layers}"
            )
        return int(layer_str), proj

    # ------------------------------------------------------------------ derived values
    @staticmethod
    def group_fields() -> tuple[str, ...]:
        return tuple(ModelConfig.group_field(p) for p in PROJECTIONS)

    @staticmethod
    def group_field(proj: str) -> str:
        """The config field holding the group count of a projection (``query`` -> ``q_groups``)."""
        return {"query": "q_groups", "key": "k_groups", "value": "v_groups"}.get(proj, f"{proj}_groups")

    def groups(self, proj: str) -> int:
        return getattr(self, self.group_field(proj))

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def is_pruned(self) -> bool:
        """True when some layer has its own head count or FFN width."""
        return bool(self.layer_heads or self.layer_intermediate_sizes)

    @property
    def removed_blocks(self) -> list[tuple[int, str]]:
        """(layer, "attention" or "ffn") of every removed block, in layer order."""
        out = []
        for i in range(self.num_hidden_layers) if self.is_pruned else ():
            out += [(i, "attention")] if self.heads(i) == 0 else []
            out += [(i, "ffn")] if self.ffn_width(i) == 0 else []
        return out

    def heads(self, layer: int | None = None) -> int:
        """Attention heads of ``layer`` (None: the uniform count)."""
        return self.layer_heads[layer] if layer is not None and self.layer_heads else self.num_attention_heads

    def ffn_width(self, layer: int | None = None) -> int:
        """FFN (intermediate) neurons of ``layer`` (None: the uniform width)."""
        if layer is not None and self.layer_intermediate_sizes:
            return self.layer_intermediate_sizes[layer]
        return self.intermediate_size

    def projection_shape(self, proj: str, layer: int | None = None) -> tuple[int, int]:
        """(input channels, output channels) of a projection in ``layer`` (None: the uniform
        shape, as in an unpruned model)."""
        attention = self.heads(layer) * self.head_size
        if proj == "intermediate":
            return self.hidden_size, self.ffn_width(layer)
        if proj == "output":
            return self.ffn_width(layer), self.hidden_size
        if proj == "post_attention":
            return attention, self.hidden_size
        return self.hidden_size, attention

    def rank(self, layer: int, proj: str) -> int | None:
        """Rank per group of ``proj`` in ``layer``, or None for a full-rank projection."""
        return self.ranks.get(f"{layer}.{proj}", self.ranks.get(proj))

    @property
    def labels(self) -> list[str]:
        return [self.id2label[i] for i in range(len(self.id2label))]

    @property
    def label2id(self) -> dict[str, int]:
        return {v: k for k, v in self.id2label.items()}

    def keep_layers(self, layers: list[int]) -> ModelConfig:
        """This config with only ``layers`` (indices, in the new order): per-layer heads, FFN
        widths and per-layer ranks follow their layers."""
        if not layers or any(not 0 <= i < self.num_hidden_layers for i in layers):
            raise ValueError(f"layers must be indices in 0..{self.num_hidden_layers - 1}, got {layers}")
        ranks = {}
        for key, rank in self.ranks.items():
            layer, proj = self._parse_rank_key(key)
            if layer is None:
                ranks[key] = rank
            elif layer in layers:
                ranks[f"{layers.index(layer)}.{proj}"] = rank
        return self.replace(
            num_hidden_layers=len(layers),
            layer_heads=[self.layer_heads[i] for i in layers] if self.layer_heads else [],
            layer_intermediate_sizes=(
                [self.layer_intermediate_sizes[i] for i in layers] if self.layer_intermediate_sizes else []
            ),
            ranks=ranks,
        )

    def replace(self, **changes: Any) -> ModelConfig:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ (de)serialization
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["id2label"] = {str(k): v for k, v in self.id2label.items()}
        d["label2id"] = self.label2id
        d["model_type"] = "squeezebert-toolkit"
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> ModelConfig:
        """Build from a dict, ignoring keys that are not fields (e.g. HF bookkeeping)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{source}: {e}") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelConfig:
        return cls.from_dict(read_json_object(path, missing="no config.json found"), source=str(path))


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A named architecture: ``squeezebert-uncased``, ``bert-base`` or ``tiny``."""
    squeeze_groups = dict(
        q_groups=4, k_groups=4, v_groups=4, post_attention_groups=1, intermediate_groups=4, output_groups=4
    )
    presets: dict[str, dict[str, Any]] = {
        # Iandola et al. 2020, as released on the Hub (vocab padded to 30528).
        "squeezebert-uncased": dict(vocab_size=30528, **squeeze_groups),
        "bert-base": dict(vocab_size=30522),
        # For tests and smoke runs: real uncased vocabulary, tiny encoder.
        "tiny": dict(
            vocab_size=30522,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=256,
            max_position_embeddings=512,
            **squeeze_groups,
        ),
    }
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
    return ModelConfig(**{**presets[name], **overrides})


PRESETS = ("squeezebert-uncased", "bert-base", "tiny")
