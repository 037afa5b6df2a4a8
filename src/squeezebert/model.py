"""SqueezeBERT (Iandola et al., 2020), top to bottom, in one file.

One model covers BERT, MiniLM and SqueezeBERT: every position-wise projection of a layer (query,
key, value, attention output, FFN intermediate, FFN output) is a *grouped* projection with its own
group count, and groups = 1 everywhere is exactly BERT. A projection may also be *low rank*: two
thin grouped projections ``in -> groups*rank -> out`` in place of one.

Tensor layout: hidden states are ``(B, T, C)`` (batch, tokens, channels) everywhere. Hugging Face's
SqueezeBERT computes in ``(B, C, T)`` with ``Conv1d(kernel_size=1)``; a 1x1 convolution over
positions is the same linear map as a position-wise projection over channels, so the weights are
the same numbers. We store a grouped weight as ``(out, in // groups)`` (HF: ``(out, in // groups,
1)``) and keep HF's module names (``attention.query``, ``post_attention.conv1d``,
``intermediate.conv1d``, ``output.conv1d``, ``...layernorm``) so checkpoints convert by a key map.

The layer is post-LayerNorm, as in BERT:

    x = LN(x + Wo · MHA(Wq x, Wk x, Wv x))        # post_attention
    x = LN(x + W2 · gelu(W1 x))                   # intermediate, output
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from squeezebert.config import PROJECTIONS, ModelConfig


# --------------------------------------------------------------------------- projections
def _autocast() -> bool:
    return torch.is_autocast_enabled("cpu")


class GroupedLinear(nn.Module):
    """``y = x Wᵀ + b`` where W is block-diagonal with ``groups`` blocks.

    Group g maps input channels ``[g*in/G, (g+1)*in/G)`` to output channels
    ``[g*out/G, (g+1)*out/G)``, exactly like ``Conv1d(in, out, 1, groups=G)`` in ``(B, C, T)``.
    ``weight`` is ``(out, in // groups)``: row block g holds group g's ``(out/G, in/G)`` matrix.
    """

    def __init__(self, in_features: int, out_features: int, groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        if in_features % groups or out_features % groups:
            raise ValueError(f"groups={groups} must divide in_features={in_features} and out_features={out_features}")
        self.in_features, self.out_features, self.groups = in_features, out_features, groups
        self.weight = nn.Parameter(torch.empty(out_features, in_features // groups))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:  # x: (..., in) -> (..., out)
        if self.groups == 1:
            return F.linear(x, self.weight, self.bias)
        # One batched matmul over groups, bias fused (baddbmm): measured fastest of Conv1d,
        # einsum, block-diagonal GEMM and a per-group loop on this CPU (docs/RESULTS.md).
        g = self.groups
        lead = x.shape[:-1]
        xg = x.reshape(-1, g, self.in_features // g).transpose(0, 1)  # (G, N, in/G), a view
        wg = self.weight.view(g, self.out_features // g, -1).transpose(1, 2)  # (G, in/G, out/G)
        if self.bias is None:
            return torch.bmm(xg, wg).transpose(0, 1).reshape(*lead, self.out_features)
        bias = self.bias.view(g, 1, -1)  # (G, 1, out/G)
        # (out= bypasses autocast: a teacher run in bf16 autocast while distilling takes this path)
        if torch.is_grad_enabled() or torch.jit.is_tracing() or torch.compiler.is_compiling() or _autocast():
            y = torch.baddbmm(bias, xg, wg)  # (G, N, out/G)
            return y.transpose(0, 1).reshape(*lead, self.out_features)  # (..., out)
        # Inference: write straight into the (N, G, out/G) result through a transposed view,
        # saving the copy back (1.2x at batch 32; out= has no autograd, hence the branch).
        y = torch.empty(xg.shape[1], g, self.out_features // g, dtype=x.dtype, device=x.device)  # (N, G, out/G)
        torch.baddbmm(bias, xg, wg, out=y.transpose(0, 1))
        return y.view(*lead, self.out_features)  # (..., out)

    def dense_weight(self) -> Tensor:
        """The equivalent ``(out, in)`` dense weight (zeros off the diagonal blocks)."""
        blocks = self.weight.view(self.groups, self.out_features // self.groups, -1)
        return torch.block_diag(*blocks.unbind(0))

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, groups={self.groups}, bias={self.bias is not None}"


class LowRankLinear(nn.Module):
    """Two thin grouped projections, ``in -> groups*rank -> out``, per group a rank-``rank`` map.

    ``down`` (no bias) and ``up`` share the group structure, so group g of the product is the
    rank-r matrix ``up_g @ down_g`` of shape ``(out/G, in/G)``.
    """

    def __init__(self, in_features: int, out_features: int, groups: int, rank: int) -> None:
        super().__init__()
        self.in_features, self.out_features, self.groups, self.rank = in_features, out_features, groups, rank
        self.down = GroupedLinear(in_features, groups * rank, groups, bias=False)
        self.up = GroupedLinear(groups * rank, out_features, groups, bias=True)

    def forward(self, x: Tensor) -> Tensor:  # (..., in) -> (..., G*r) -> (..., out)
        return self.up(self.down(x))

    def dense_weight(self) -> Tensor:
        g, r = self.groups, self.rank
        up = self.up.weight.view(g, self.out_features // g, r)  # (G, out/G, r)
        down = self.down.weight.view(g, r, self.in_features // g)  # (G, r, in/G)
        return torch.block_diag(*torch.bmm(up, down).unbind(0))

    @property
    def bias(self) -> Tensor:
        return self.up.bias


def make_projection(config: ModelConfig, layer: int, proj: str) -> GroupedLinear | LowRankLinear:
    """The projection ``proj`` of ``layer`` as the config describes it (grouped, maybe low rank)."""
    cin, cout = config.projection_shape(proj, layer)
    groups, rank = config.groups(proj), config.rank(layer, proj)
    if rank is None:
        return GroupedLinear(cin, cout, groups)
    return LowRankLinear(cin, cout, groups, rank)


def activation(name: str) -> nn.Module:
    if name == "gelu":
        return nn.GELU()  # exact (erf) GELU, as BERT and SqueezeBERT use
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return nn.GELU(approximate="tanh")
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {name!r}")


# --------------------------------------------------------------------------- embeddings
class Embeddings(nn.Module):
    """word + position + token type, then LayerNorm and dropout.

    With ``embedding_size < hidden_size`` the word table is ``(vocab, E)`` followed by a bias-free
    ``E -> hidden`` projection (a factorized embedding matrix); position and token-type tables
    stay at full width. LayerNorm is applied after the sum, at full width, so a truncated SVD of a
    pretrained ``(vocab, hidden)`` table is represented exactly.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.projection = (
            nn.Linear(config.embedding_size, config.hidden_size, bias=False)
            if config.embedding_size != config.hidden_size
            else None
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)  # HF's key name
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:  # (B, T) -> (B, T, H)
        words = self.word_embeddings(input_ids)  # (B, T, E)
        if self.projection is not None:
            words = self.projection(words)  # (B, T, H)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # (T,)
        x = words + self.position_embeddings(positions) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


# --------------------------------------------------------------------------- encoder layer
class SelfAttention(nn.Module):
    """Multi-head self-attention with grouped Q, K, V projections (no output projection here:
    that is the layer's ``post_attention``, as in HF SqueezeBERT)."""

    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        self.num_heads = config.heads(layer)  # fewer than num_attention_heads in a pruned layer
        self.head_size = config.head_size
        self.query = make_projection(config, layer, "query")
        self.key = make_projection(config, layer, "key")
        self.value = make_projection(config, layer, "value")
        # Set by squeezebert.quantize.optimize: one module computing (q, k, v) from their shared
        # input in one pass, in place of the three projections above (which it then removes).
        self.qkv: nn.Module | None = None
        self.dropout_p = config.attention_probs_dropout_prob

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Query, key and value of ``x`` (B, T, H), each (B, T, H)."""
        if self.qkv is not None:
            return self.qkv(x)
        return self.query(x), self.key(x), self.value(x)

    def forward(self, x: Tensor, mask: Tensor | None, return_probs: bool = False) -> tuple[Tensor, Tensor | None]:
        """x: (B, T, H); mask: (B, 1, 1, T) bool, True = attend. Returns context (B, T, H)."""
        q, k, v = self.project(x)
        dropout_p = self.dropout_p if self.training else 0.0
        if not return_probs:
            return attend(q, k, v, mask, self.num_heads, dropout_p), None
        # explicit path: distillation needs the attention distribution itself
        b, t, _ = x.shape
        q, k, v = (split_heads(y, self.num_heads) for y in (q, k, v))  # each (B, nh, T, hd)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_size)  # (B, nh, T, T)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        probs = scores.softmax(-1)
        ctx = F.dropout(probs, dropout_p, self.training) @ v  # (B, nh, T, hd)
        return ctx.transpose(1, 2).reshape(b, t, -1), probs  # (B, T, nh*hd): H unless pruned


def split_heads(y: Tensor, num_heads: int) -> Tensor:
    """(B, T, A) -> (B, heads, T, A/heads), a view (A = heads * head size: H unless pruned)."""
    b, t, h = y.shape
    return y.view(b, t, num_heads, h // num_heads).transpose(1, 2)


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, num_heads: int, dropout_p: float = 0.0) -> Tensor:
    """Multi-head scaled dot-product attention on (B, T, A) queries, keys and values; mask
    (B, 1, 1, T) bool, True = attend. Returns the context (B, T, A)."""
    b, t, h = q.shape
    heads = (split_heads(y, num_heads) for y in (q, k, v))
    ctx = F.scaled_dot_product_attention(*heads, attn_mask=mask, dropout_p=dropout_p)  # (B, nh, T, hd)
    return ctx.transpose(1, 2).reshape(b, t, h)


class RemovedBlock(nn.Module):
    """What is left of an attention or FFN block that structured pruning removed whole: the
    constant it added before its LayerNorm (its mean output on calibration tokens), kept under
    its output projection's name (``post_attention.conv1d.bias``, ``output.conv1d.bias``)."""

    def __init__(self, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = 0, out_features
        self.bias = nn.Parameter(torch.zeros(out_features))

    def extra_repr(self) -> str:
        return f"removed, adds a constant of width {self.out_features}"


class ProjectionDropoutLayerNorm(nn.Module):
    """projection -> dropout -> + residual -> LayerNorm (HF: ``ConvDropoutLayerNorm``); for a
    removed block (no input channels) only the constant is added: ``LN(residual + c)``."""

    def __init__(self, config: ModelConfig, layer: int, proj: str) -> None:
        super().__init__()
        cin, cout = config.projection_shape(proj, layer)
        # HF's key name, kept for checkpoints
        self.conv1d = make_projection(config, layer, proj) if cin else RemovedBlock(cout)
        self.layernorm = nn.LayerNorm(self.conv1d.out_features, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: Tensor | None, residual: Tensor) -> Tensor:
        if x is None:  # the block feeding this one was removed
            return self.layernorm(residual + self.conv1d.bias)
        return self.layernorm(self.dropout(self.conv1d(x)) + residual)


class ProjectionActivation(nn.Module):
    """projection -> activation (HF: ``ConvActivation``)."""

    def __init__(self, config: ModelConfig, layer: int, proj: str) -> None:
        super().__init__()
        self.conv1d = make_projection(config, layer, proj)
        self.act = activation(config.hidden_act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv1d(x))


class Layer(nn.Module):
    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        # None where structured pruning removed the whole block (0 heads / 0 FFN neurons)
        self.attention = SelfAttention(config, layer) if config.heads(layer) else None
        self.post_attention = ProjectionDropoutLayerNorm(config, layer, "post_attention")
        self.intermediate = ProjectionActivation(config, layer, "intermediate") if config.ffn_width(layer) else None
        self.output = ProjectionDropoutLayerNorm(config, layer, "output")

    def forward(self, x: Tensor, mask: Tensor | None, return_probs: bool = False) -> tuple[Tensor, Tensor | None]:
        """x (B, T, H) -> (B, T, H); probs (B, heads, T, T) when asked (None without attention)."""
        ctx, probs = None, None
        if self.attention is not None:
            ctx, probs = self.attention(x, mask, return_probs)  # (B, T, A), A = heads * head size
        x = self.post_attention(ctx, x)  # (B, T, H)
        act = self.intermediate(x) if self.intermediate is not None else None  # (B, T, I), I = FFN width
        x = self.output(act, x)  # (B, T, H)
        return x, probs


class Encoder(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Layer(config, i) for i in range(config.num_hidden_layers))


@dataclass
class EncoderOutput:
    """What :meth:`SqueezeBert.encode` returns.

    ``hidden_states`` (when asked): the embedding output, then each layer's output, each (B, T, H).
    ``attentions`` (when asked): each layer's attention probabilities, (B, heads, T, T), or None
    for a layer whose attention block was removed.
    """

    last_hidden_state: Tensor
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


# --------------------------------------------------------------------------- the model
class SqueezeBert(nn.Module):
    """Encoder with pooler and, when ``config.num_labels > 0``, a sequence-classification head.

    ``model(input_ids, attention_mask, token_type_ids)`` returns logits ``(B, num_labels)`` for a
    classification (or regression, ``num_labels == 1``) model and the last hidden states
    ``(B, T, H)`` for a headless one.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.pooler = nn.Sequential()
        self.pooler.add_module("dense", nn.Linear(config.hidden_size, config.hidden_size))
        self.pooler.add_module("activation", nn.Tanh())
        if config.num_labels > 0:
            p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
            self.dropout = nn.Dropout(p)
            self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, GroupedLinear)):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def encode(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> EncoderOutput:
        """Run embeddings and encoder. input_ids, attention_mask (1 = token, 0 = padding),
        token_type_ids: (B, T)."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, seq_len), got shape {tuple(input_ids.shape)}")
        if input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(
                f"sequence length {input_ids.shape[1]} exceeds max_position_embeddings="
                f"{self.config.max_position_embeddings}"
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        mask = None
        if attention_mask is not None:
            mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T), broadcast over heads, queries
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, H)
        hidden = [x] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for layer in self.encoder.layers:
            x, probs = layer(x, mask, output_attentions)
            if hidden is not None:
                hidden.append(x)
            if attentions is not None:
                attentions.append(probs)
        return EncoderOutput(
            x,
            tuple(hidden) if hidden is not None else None,
            tuple(attentions) if attentions is not None else None,
        )

    def classify(self, last_hidden_state: Tensor) -> Tensor:
        """Pooler ([CLS] -> dense -> tanh) and classifier: (B, T, H) -> (B, num_labels)."""
        if self.config.num_labels == 0:
            raise ValueError("this model is headless (num_labels=0); load it with num_labels=... for a head")
        pooled = self.pooler(last_hidden_state[:, 0])  # (B, H)
        return self.classifier(self.dropout(pooled))  # (B, num_labels)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        x = self.encode(input_ids, attention_mask, token_type_ids).last_hidden_state  # (B, T, H)
        return self.classify(x) if self.config.num_labels > 0 else x

    # ------------------------------------------------------------------ bookkeeping
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops(self, seq_len: int = 128, batch_size: int = 1) -> int:
        """Forward FLOPs (2 per multiply-add) of matmuls and projections; element-wise ops ignored."""
        return batch_size * encoder_flops(self.config, seq_len)


def encoder_flops(config: ModelConfig, seq_len: int) -> int:
    """FLOPs of one sequence of ``seq_len`` tokens through the model (projections, attention
    matmuls, embedding projection, pooler and classifier)."""
    t, h = seq_len, config.hidden_size
    total = 0
    for layer in range(config.num_hidden_layers):
        for proj in PROJECTIONS:
            cin, cout = config.projection_shape(proj, layer)
            if not cin or not cout:
                continue  # a removed block
            g, r = config.groups(proj), config.rank(layer, proj)
            macs = cin * cout // g if r is None else (cin * r + r * cout)  # per token
            total += 2 * t * macs
        total += 2 * 2 * t * t * config.heads(layer) * config.head_size  # QKᵀ and probs·V, all heads
    if config.embedding_size != h:
        total += 2 * t * config.embedding_size * h
    total += 2 * h * h + 2 * h * config.num_labels
    return total
