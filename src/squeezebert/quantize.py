"""Eval-only fast copies of a model for CPU inference: fp32, bf16 and int8.

:func:`optimize` copies a :class:`~squeezebert.model.SqueezeBert`, swaps its projections for
inference kernels and returns a module with the model's call signature. The model's own forward
(``model.py``) still runs the layer; only the projections change, so there is one forward pass to
read and the fp32 copy is the reference, bit for bit.

int8 is dynamic quantization: weights are symmetric int8 per output channel, fixed at
``optimize`` time; activations are quantized at every call from their observed range, so no
calibration data is needed. By default each token (row) gets its own asymmetric uint8 scale and
zero point: the int8 GEMM runs at unit scale and the per-row affine is applied to its fp32 output,
``y = s_n * (acc_n - z_n * colsum(W)) + b``. ``int8_activations="per-tensor"`` (one range per
call, the plain path) is kept as an opt-out. Why per token: quantizing one projection type or one
layer at a time on 2,000 SST-2 *training* sentences showed the error concentrated where a few
tokens carry outlier activations (FFN output and intermediate projections of the first layers);
one per-tensor range sized for them rounds every other token coarsely. Per-token ranges cut the
mean KL(fp32 || int8) of the fine-tuned minilm-l6 teacher 13x (1.75e-3 -> 1.4e-4) and raised its
SST-2 dev agreement with fp32 from 98.3% to 99.8% (docs/RESULTS.md), for the cost of a few
element-wise passes over each projection's output (10-19% at batch 1, 5-8% at batch 32 in one interleaved run).
Leaving every FFN projection in fp32 reached a similar KL (1.8e-4) with two thirds of the
teacher's encoder MACs back in fp32; only layer 0's FFN in fp32 helped far less (1.0e-3).

Every encoder projection is quantized, grouped and dense alike, through oneDNN with fp32 output:

* dense (``groups == 1``, the embedding projection): ``onednn::qlinear_pointwise``;
* grouped: ``onednn::qconv_pointwise`` as a grouped 1x1 convolution fed a ``(1, C, N, 1)``
  channels-last *view* of the ``(N, C)`` activations, so no transpose is ever copied.

Measured on the shared 2-core EPYC (AVX-512 VNNI; noisy, ratios within one interleaved run): the
grouped int8 convolution ran 1.4-3x faster than the fp32 grouped ``baddbmm``, dense int8 3-4x
faster than fp32 ``F.linear``. Rejected: one int8 GEMM against the block-diagonal weight pays the
G-fold MACs and only ties fp32; fbgemm's ``quantized::conv1d_dynamic`` requantizes its *output* to
uint8 with the input's scale, clipping every output larger than the input (31% error on a random
layer); ``quantize_dynamic`` and fbgemm's ``linear_dynamic`` (as fast as oneDNN for dense) need the
quantized dtypes that torch 2.13 deprecates. Where oneDNN's ops are missing or misbehave (checked
once per process) projections fall back to ``torch._int_mm``, per-token int8: correct, and for
grouped projections (block-diagonal) no faster than fp32.

Each layer's query, key and value quantize their shared input once (:func:`fuse_qkv`; a few
percent faster in int8, docs/RESULTS.md).

The word-embedding table is stored int8 per row (:class:`Int8Embedding`): it is most of a small
model's bytes, and a lookup costs nothing to dequantize. The pooler and classifier stay fp32:
they see one vector per sequence, cost nothing, and their error would land directly on the logits.

bf16 casts the whole copy to bfloat16 (weights and activations; LayerNorm and softmax accumulate in
fp32 inside their CPU kernels) and returns fp32 logits. It pays off on CPUs with native bf16
(AVX512-BF16 or AMX), where oneDNN runs the matmuls; elsewhere it works but is emulated and slow.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import logging
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from squeezebert.model import GroupedLinear, SqueezeBert
from squeezebert.runtime import PRECISIONS

log = logging.getLogger(__name__)

INT8_ACTIVATIONS = ("per-token", "per-tensor")


# --------------------------------------------------------------------------- int8
# Everything here passes plain uint8/int8 tensors: torch 2.13 deprecates the quantized dtypes
# (quint8/qint8) that fbgemm's dynamic ops and quantize_dynamic are built on.


def _quantize_weight(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric per-output-channel int8: ``weight (out, in) ≈ q * scale[:, None]``.

    The range is [-127, 127], not -128, so that the grid is symmetric about zero.
    """
    w = weight.detach().float()
    scale = w.abs().amax(1).clamp_min(1e-12) / 127  # (out,)
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)  # (out, in)
    return q, scale


def _quantize_activation(x: Tensor) -> tuple[Tensor, float, int]:
    """Per-tensor asymmetric uint8 from the tensor's own range (dynamic quantization).

    The range always includes 0 so that zero (padding, ReLU output) is represented exactly.
    """
    lo, hi = torch.aminmax(x)
    lo, hi = min(lo.item(), 0.0), max(hi.item(), 0.0)
    scale = max(hi - lo, 1e-12) / 255
    zero = round(-lo / scale)
    # Computed as int8 q - 128, then flipped to uint8 by toggling the top bit in place: torch's
    # float -> uint8 cast is scalar code, 5-7x slower than float -> int8 (measured, 512x3072).
    # The clamp catches the half step that rounding the zero point can add at the top.
    q = torch.add(torch.tensor(zero - 128.0), x, alpha=1 / scale).round_().clamp_(-128, 127).to(torch.int8)
    return q.view(torch.uint8).bitwise_xor_(128), scale, zero


def _quantize_activation_per_token(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Asymmetric uint8 with a scale and zero point per row of ``x (N, C)``, each row's range
    including 0. Returns ``(q (N, C) uint8, scale (N,), zero (N,) float)``."""
    # amax/amin, not aminmax(dim=1): the latter measured 20x slower (128 x 1536, torch 2.13).
    hi, lo = x.amax(1).clamp_min_(0.0), x.amin(1).clamp_max_(0.0)  # (N,), (N,)
    scale = (hi - lo).clamp_min_(1e-12).div_(255)  # (N,)
    zero = (-lo / scale).round_()  # (N,)
    # Multiply by the reciprocal: a broadcast div (and addcdiv) measured 4x slower than mul here.
    # The ONNX export computes the same Reciprocal -> Mul, so both round alike.
    q = (x * scale.reciprocal()[:, None]).add_(zero[:, None] - 128.0).round_().clamp_(-128, 127).to(torch.int8)
    return q.view(torch.uint8).bitwise_xor_(128), scale, zero


# Tokens in a call (batch x sequence) from which the grouped kernel uses its "long" weight layout.
_LONG_TOKENS = 64


class Int8Projection(nn.Module):
    """A grouped (or dense, ``groups == 1``) projection in int8 through oneDNN, fp32 in and out.

    Weights are int8 per output channel; activations are quantized per tensor at each call.
    Dense: ``onednn::qlinear_pointwise``. Grouped: ``onednn::qconv_pointwise`` as a grouped 1x1
    convolution over a ``(1, in, N, 1)`` channels-last *view* of the ``(N, in)`` activations, so
    no transpose is copied on the way in or out.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None, groups: int = 1, per_token: bool = False) -> None:
        super().__init__()
        self.out_features = weight.shape[0]
        self.in_features = weight.shape[1] * groups
        self.groups = groups
        self.per_token = per_token
        q, scale = _quantize_weight(weight)  # (out, in/G)
        self._w_scale = scale
        # Row sums of the dequantized weight, for the per-token zero-point correction: (out,)
        self._w_colsum = q.float().sum(1) * scale
        self._w_zero = torch.zeros(self.out_features, dtype=torch.long)
        self._bias = None if bias is None else bias.detach().float().contiguous()
        # oneDNN picks its kernel, and with it the weight layout, from the input shape given at
        # prepack; a call whose shape wants another layout reorders the weights on every call.
        if groups == 1:
            # One layout measured best from 24 to 1024 tokens.
            self._packed_long = self._packed_short = torch.ops.onednn.qlinear_prepack(q, [128, self.in_features])
        else:
            # Crossover between 48 and 96 tokens, 1.5x either way: keep both layouts (int8, so
            # together half the bytes of the fp32 weight) and choose per call. The x_scale and
            # x_zero_point given here do not matter; the real ones come with each call.
            w = q.view(self.out_features, -1, 1, 1)  # (out, in/G, 1, 1)
            self._packed_short, self._packed_long = (
                torch.ops.onednn.qconv_prepack(w, scale, 1.0, 0, [1, 1], [0, 0], [1, 1], groups, shape)
                for shape in (None, [1, self.in_features, 2 * _LONG_TOKENS, 1])
            )

    def forward(self, x: Tensor) -> Tensor:  # (..., in) -> (..., out)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)  # (N, in)
        return self.project(*self.quantize(x2)).view(*lead, self.out_features)

    def quantize(self, x2: Tensor) -> tuple[Tensor, Tensor | float, Tensor | int]:
        """``(N, in)`` fp32 -> ``(N, in)`` uint8 with its scale and zero point (per token: ``(N,)``
        each; per tensor: numbers)."""
        return _quantize_activation_per_token(x2) if self.per_token else _quantize_activation(x2)

    def project(self, xq: Tensor, x_scale: Tensor | float, x_zero: Tensor | int) -> Tensor:
        """The projection of an input quantized by :meth:`quantize`: ``(N, in)`` -> ``(N, out)``."""
        if not self.per_token:
            return self._matmul(xq, x_scale, x_zero, self._bias)
        # Per token: y = scale_n * (sum_k q_nk w_k - zero_n * sum_k w_k) + b, with the int8 GEMM
        # run at unit scale and zero point, and the per-row affine applied to its fp32 output.
        y = self._matmul(xq, 1.0, 0, None)  # (N, out)
        y.addr_(x_zero, self._w_colsum, alpha=-1).mul_(x_scale[:, None])
        if self._bias is not None:
            y.add_(self._bias)
        return y

    def _matmul(self, xq: Tensor, x_scale: float, x_zero: int, bias: Tensor | None) -> Tensor:
        """(N, in) uint8 -> (N, out) fp32 through oneDNN."""
        packed = self._packed_long if xq.shape[0] >= _LONG_TOKENS else self._packed_short
        if self.groups == 1:
            return torch.ops.onednn.qlinear_pointwise(
                xq, x_scale, x_zero, packed, self._w_scale, self._w_zero, bias,
                1.0, 0, torch.float32, "none", [], "",
            )  # fmt: skip
        # (N, in) row-major is exactly a channels-last (1, in, N, 1) image.
        image = xq.view(1, -1, 1, self.in_features).permute(0, 3, 1, 2)  # (1, in, N, 1)
        y = torch.ops.onednn.qconv_pointwise(
            image, x_scale, x_zero, packed, self._w_scale, self._w_zero, bias,
            [1, 1], [0, 0], [1, 1], self.groups, 1.0, 0, torch.float32, "none", [], "",
        )  # fmt: skip  # (1, out, N, 1), channels-last
        return y.permute(0, 2, 3, 1).reshape(-1, self.out_features)  # a view: (N, out)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, groups={self.groups}, int8 (oneDNN)"


class Int8MatmulProjection(nn.Module):
    """Fallback where oneDNN's int8 ops are missing: ``torch._int_mm`` with activations quantized
    per token (symmetric int8). A grouped projection becomes one GEMM against its block-diagonal
    weight: G-fold MACs, so int8 but no faster than fp32."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        q, self._w_scale = _quantize_weight(weight)
        self._qweight_t = q.t().contiguous()  # (in, out)
        self._bias = None if bias is None else bias.detach().float()

    def forward(self, x: Tensor) -> Tensor:  # (..., in) -> (..., out)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)  # (N, in)
        scale = x2.abs().amax(1, keepdim=True).clamp_min(1e-12) / 127  # (N, 1)
        xq = torch.round(x2 / scale).clamp_(-127, 127).to(torch.int8)
        y = torch._int_mm(xq, self._qweight_t).float().mul_(scale * self._w_scale)  # (N, out)
        if self._bias is not None:
            y += self._bias
        return y.view(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, int8 (torch._int_mm)"


@functools.cache
def onednn_int8_ok() -> bool:
    """Whether oneDNN's int8 linear and grouped convolution exist with the expected signatures
    and give right answers on this build (checked once, on small random projections)."""
    ops = getattr(torch.ops, "onednn", None)
    if ops is None or not all(hasattr(ops, n) for n in ("qlinear_pointwise", "qconv_pointwise")):
        return False
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(3, 5, 32, generator=g)
        for groups in (1, 4):
            weight, bias = torch.randn(64, 32 // groups, generator=g), torch.randn(64, generator=g)
            ref = GroupedLinear(32, 64, groups)
            with torch.no_grad():
                ref.weight.copy_(weight)
                ref.bias.copy_(bias)
                y, expected = Int8Projection(weight, bias, groups)(x), ref(x)
            if not (y - expected).norm() < 0.05 * expected.norm():
                log.warning("oneDNN int8 kernels give wrong results on this build; using torch._int_mm")
                return False
        return True
    except (RuntimeError, TypeError, AttributeError) as e:  # op schema differs in this torch
        log.debug("oneDNN int8 kernels unavailable (%s); using torch._int_mm", e)
        return False


def int8_projection(module: nn.Module, per_token: bool = False) -> nn.Module:
    """The int8 replacement of a ``GroupedLinear`` or ``nn.Linear`` (activation scales per
    tensor, or per token with ``per_token``)."""
    if not isinstance(module, (nn.Linear, GroupedLinear)):
        raise TypeError(f"cannot quantize {type(module).__name__}")
    groups = getattr(module, "groups", 1)
    if onednn_int8_ok():
        return Int8Projection(module.weight, module.bias, groups, per_token)
    weight = module.dense_weight() if groups > 1 else module.weight
    return Int8MatmulProjection(weight, module.bias)


class Int8Embedding(nn.Module):
    """A word-embedding table stored as int8 rows, each with its own symmetric scale: a quarter
    of the fp32 bytes (the table is most of a small model's weights: 94 of SqueezeBERT-base's
    204 MB). A lookup dequantizes only the rows it reads. Same grid as the ONNX int8 export."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = weight.shape
        q, scale = _quantize_weight(weight)  # one scale per row (token)
        self.register_buffer("qweight", q, persistent=False)
        self.register_buffer("scale", scale[:, None].contiguous(), persistent=False)  # (V, 1)

    def forward(self, input_ids: Tensor) -> Tensor:  # (...) -> (..., E)
        return torch.nn.functional.embedding(input_ids, self.qweight).float().mul_(self.scale[input_ids])

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8 per row"


# --------------------------------------------------------------------------- fused Q, K, V
class Int8SharedInput(nn.Module):
    """Several int8 projections of one input: the input is quantized once, then each projection
    runs its own kernel on it. For grouped Q/K/V this measured faster than one grouped convolution
    with 3G groups over a 3x repeated input (which needs no split, but its 3G-group kernel was
    slower at 4096 tokens) and than stacking the weights per group (q, k, v come out interleaved
    and un-interleaving them costs a pass)."""

    def __init__(self, projections: Sequence[Int8Projection]) -> None:
        super().__init__()
        if len({(p.in_features, p.per_token) for p in projections}) != 1:
            raise ValueError("projections sharing an input need one input width and one activation mode")
        self.projections = nn.ModuleList(projections)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:  # (..., in) -> each (..., out_i)
        lead = x.shape[:-1]
        first = self.projections[0]
        xq = first.quantize(x.reshape(-1, first.in_features))  # (N, in) uint8, scale, zero
        return tuple(p.project(*xq).view(*lead, p.out_features) for p in self.projections)


class FusedQKV(nn.Module):
    """Query, key and value of one attention layer from one pass over their shared input.

    ``proj`` either returns the three outputs itself (:class:`Int8SharedInput`) or maps
    ``(..., in)`` to them side by side, ``(..., wq + wk + wv)``, split here into three *views*
    (no copy). For low-rank layers ``proj`` is the three ``down`` factors in one, followed either
    by ``up`` (the three ``up`` factors as one grouped projection with 3 groups) or by ``ups``
    (one per factor, each on its own slice).
    """

    def __init__(
        self, proj: nn.Module, widths: Sequence[int], up: nn.Module | None = None, ups: Sequence[nn.Module] = ()
    ) -> None:
        super().__init__()
        self.proj, self.widths, self.up = proj, tuple(widths), up
        self.ups = nn.ModuleList(ups) if ups else None

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:  # (..., in) -> 3 x (..., H)
        y = self.proj(x)  # (..., sum(widths)), or already the three outputs
        if isinstance(y, tuple):
            return y
        if self.up is not None:
            y = self.up(y)  # (..., 3H)
            return y.split(y.shape[-1] // 3, -1)
        parts = y.split(self.widths, -1)
        if self.ups is not None:
            return tuple(up(p) for up, p in zip(self.ups, parts))
        return parts

    def extra_repr(self) -> str:
        return f"widths={self.widths}"


def _dense(weight: Tensor, bias: Tensor | None, groups: int = 1) -> GroupedLinear:
    """A ``GroupedLinear`` holding ``weight`` ``(out, in/groups)`` and ``bias``."""
    out, in_g = weight.shape
    lin = GroupedLinear(in_g * groups, out, groups, bias=bias is not None)
    with torch.no_grad():
        lin.weight.copy_(weight)
        if bias is not None:
            lin.bias.copy_(bias)
    return lin.requires_grad_(False)


def fuse_qkv(attention: nn.Module, int8: bool = False, per_token: bool = True) -> FusedQKV | None:
    """The fused replacement of ``attention``'s query, key and value, or None where this layer's
    shapes don't allow it (then the three stay separate).

    * plain projections with one group count G == 1: the weights are stacked into one GEMM.
    * G > 1: int8 only, the input is quantized once for three oneDNN grouped convolutions
      (:class:`Int8SharedInput`). fp32/bf16 stay separate: stacking the weights per group makes
      q, k, v come out interleaved per group, and un-interleaving them costs the copy the
      fusion would save.
    * low rank with G == 1: the three ``down`` factors become one GEMM; the ``up`` factors become
      one grouped projection with 3 groups in fp32/bf16 when the ranks are equal, else (and
      always in int8, where each ``up`` keeps its own per-token activation range, so results
      match the unfused path) they run one per slice.
    """
    from squeezebert.model import LowRankLinear

    projs = (attention.query, attention.key, attention.value)
    groups = {p.groups for p in projs}
    if len(groups) != 1:
        return None
    g = groups.pop()

    def project(weight: Tensor, bias: Tensor | None, groups: int = 1) -> nn.Module:
        if not int8:
            return _dense(weight, bias, groups)
        if onednn_int8_ok():
            return Int8Projection(weight, bias, groups, per_token)
        return Int8MatmulProjection(weight, bias)  # groups == 1 here

    if all(isinstance(p, GroupedLinear) for p in projs):
        widths = [p.out_features for p in projs]
        if g == 1:
            weight = torch.cat([p.weight.detach() for p in projs])  # (wq + wk + wv, in)
            bias = None if any(p.bias is None for p in projs) else torch.cat([p.bias.detach() for p in projs])
            return FusedQKV(project(weight, bias), widths)
        if int8 and onednn_int8_ok():
            shared = Int8SharedInput([project(p.weight.detach(), p.bias, g) for p in projs])
            return FusedQKV(shared, widths)
        return None
    if all(isinstance(p, LowRankLinear) for p in projs) and g == 1:
        down = project(torch.cat([p.down.weight.detach() for p in projs]), None)  # in -> rq + rk + rv
        ranks = [p.rank for p in projs]
        if not int8 and len(set(ranks)) == 1:
            up_weight = torch.cat([p.up.weight.detach() for p in projs])  # (3H, r)
            up = _dense(up_weight, torch.cat([p.up.bias.detach() for p in projs]), 3)
            return FusedQKV(down, ranks, up=up)
        ups = [project(p.up.weight.detach(), p.up.bias.detach()) if int8 else copy.deepcopy(p.up) for p in projs]
        return FusedQKV(down, ranks, ups=ups)
    return None


def fuse_attention_projections(
    model: SqueezeBert, int8: bool = False, keep: Sequence[str] = (), per_token: Sequence[str] = ("*",)
) -> int:
    """Replace, in place, each layer's query, key and value by one :class:`FusedQKV` where
    :func:`fuse_qkv` can (and, for int8, where no ``keep`` pattern names any of them and all
    three share one activation mode). Returns the number of layers fused."""
    fused = 0
    targets = int8_targets(model)
    for i, layer in enumerate(model.encoder.layers):
        attn = layer.attention
        if attn is None:  # a removed attention block
            continue
        prefix = f"encoder.layers.{i}.attention."
        names = [n for n in targets if n.startswith(prefix)]
        modes = {_matches(n, per_token) for n in names}
        if int8 and (any(_matches(n, keep) for n in names) or len(modes) != 1):
            continue
        module = fuse_qkv(attn, int8, modes.pop() if modes else True)
        if module is None:
            continue
        attn.qkv = module
        attn.query = attn.key = attn.value = None  # type: ignore[assignment]
        fused += 1
    return fused


# --------------------------------------------------------------------------- the module
class InferenceModel(nn.Module):
    """An eval-only copy of a model: ``model(input_ids, attention_mask, token_type_ids)`` returns
    fp32 logits ``(B, num_labels)`` (or hidden states for a headless model) without autograd."""

    def __init__(self, model: SqueezeBert, precision: str) -> None:
        super().__init__()
        self.model = model
        self.precision = precision
        self.config = model.config

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        with torch.inference_mode():
            return self.model(input_ids, attention_mask, token_type_ids).float()

    def train(self, mode: bool = True) -> InferenceModel:
        if mode:
            raise RuntimeError("an optimized model is for inference only; train the original model")
        return super().train(False)

    def extra_repr(self) -> str:
        return f"precision={self.precision}"


def native_bf16() -> bool:
    """Whether this CPU runs bf16 matmuls natively (AVX512-BF16 or AMX, through oneDNN)."""
    native = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    return bool(torch.backends.mkldnn.is_available() and native())


def native_int8(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU multiplies 8-bit integers natively (AVX512-VNNI, AVX-VNNI or AMX).

    Without it, x86 kernels that multiply uint8 activations by int8 weights (oneDNN's, ONNX
    Runtime's) add each pair of products in 16 bits, which saturates when both operands are near
    their range. Measured on an AVX2-only AMD EPYC (Zen 3, 2026-12-07): oneDNN's int8 projections
    fail :func:`onednn_int8_ok` (so torch int8 runs on ``torch._int_mm``, exact), and an ONNX
    Runtime int8 projection was off by up to 6.7 on outputs of ~10. Read from ``cpuinfo``'s flags;
    where that is missing, assumed native."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), None)
    except OSError:
        return True
    if flags is None:
        return True
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags))


WORD_EMBEDDINGS_MODULE = "embeddings.word_embeddings"


def int8_targets(model: SqueezeBert) -> list[str]:
    """Names of the modules that int8 quantizes: every grouped/dense encoder projection (both
    halves of a low-rank one), the factorized embedding projection, if any, and the word
    embedding table (int8 rows; keep it with ``int8_keep=["embeddings.word_embeddings"]``)."""
    targets = [name for name, m in model.named_modules() if isinstance(m, GroupedLinear)]
    if model.embeddings.projection is not None:
        targets.append("embeddings.projection")
    targets.append(WORD_EMBEDDINGS_MODULE)
    return targets


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def quantize_projections(model: nn.Module, keep: Sequence[str] = (), per_token: Sequence[str] = ("*",)) -> None:
    """Replace, in place, each projection of :func:`int8_targets` by its int8 version, except
    those whose name matches a ``keep`` pattern (fnmatch), which stay as they are; activations of
    the ones matching a ``per_token`` pattern are quantized per token, the rest per tensor."""
    for name in int8_targets(model):
        if _matches(name, keep):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        module = getattr(parent, child)
        if isinstance(module, nn.Embedding):
            setattr(parent, child, Int8Embedding(module.weight))
        else:
            setattr(parent, child, int8_projection(module, _matches(name, per_token)))


def optimize(
    model: SqueezeBert,
    precision: str = "fp32",
    *,
    int8_activations: str = "per-token",
    int8_keep: Sequence[str] = (),
    fuse_qkv: bool = True,
) -> InferenceModel:
    """An eval-only copy of ``model`` with fast CPU projections; the original is left untouched.

    ``precision``: ``fp32`` (the reference computation, frozen), ``bf16`` (the whole model in
    bfloat16, fp32 logits) or ``int8`` (every encoder projection dynamically quantized; see the
    module docstring). The result is called like the model and returns fp32.

    int8 options: ``int8_activations`` is ``per-token`` (the default: a scale and zero point per
    token, measured to cut the int8 error several-fold, see docs/RESULTS.md) or ``per-tensor``
    (one per call: the plain path, a little faster). ``int8_keep``: fnmatch patterns of
    projection names (e.g. ``encoder.layers.0.output.conv1d``) left in fp32. Where oneDNN's int8
    ops are missing, the ``torch._int_mm`` fallback is always per token (symmetric).

    ``fuse_qkv`` (int8): compute each layer's query, key and value from one quantization of
    their shared input, in one kernel where their shapes allow (:func:`fuse_qkv`); False keeps
    the three separate (for comparison).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if int8_activations not in INT8_ACTIVATIONS:
        raise ValueError(f"int8_activations must be one of {INT8_ACTIVATIONS}, got {int8_activations!r}")
    if not isinstance(model, SqueezeBert):
        raise TypeError(f"optimize expects a SqueezeBert model, got {type(model).__name__}")
    copy_ = copy.deepcopy(model).eval().requires_grad_(False)
    per_token = ("*",) if int8_activations == "per-token" else ()
    if fuse_qkv and precision == "int8":
        # fp32/bf16 fusion (fuse_attention_projections(copy_)) measured no faster at 1 thread
        # (0.95-1.02x on the low-rank student and bert-base, docs/RESULTS.md), so it is not used.
        fuse_attention_projections(copy_, True, tuple(int8_keep), per_token)
    if precision == "bf16":
        if not native_bf16():
            log.warning("this CPU has no native bf16 (AVX512-BF16/AMX): bf16 will be emulated and slow")
        copy_ = copy_.to(torch.bfloat16)
    elif precision == "int8":
        if not onednn_int8_ok():
            log.warning(
                "oneDNN's int8 kernels are missing or wrong on this CPU (as without VNNI): int8 runs on the "
                "torch._int_mm fallback, measured 10-40x slower than fp32 on an AVX2-only EPYC (docs/RESULTS.md, "
                "session 24); fp32, or the OpenVINO backend, is faster here"
            )
        quantize_projections(copy_, tuple(int8_keep), per_token)
    return InferenceModel(copy_, precision)
