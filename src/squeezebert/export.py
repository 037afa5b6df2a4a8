"""ONNX export and its verification: a self-contained directory ONNX Runtime can serve.

``export`` writes ``model.onnx``, ``config.json`` (with the labels) and ``tokenizer.json`` into a
directory, each under a temporary name first and renamed into place, ``config.json`` last. The
graph takes ``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64, dynamic batch and
sequence axes) and returns ``logits`` (or ``last_hidden_state`` for a headless model).

Every export is checked before it is written: ``onnx.checker``, then ONNX Runtime against PyTorch
at two input shapes (fp32 must agree within 1e-4, else :class:`ExportError`). int8 exports also
report how often their predictions agree with PyTorch's fp32 ones on a sample.

Choices, measured with torch 2.13 and onnxruntime 1.32 on the shared 2-core EPYC (noisy; ratios
within one interleaved run):

* The TorchScript exporter (``dynamo=False``). It exports the tiny model in 0.5 s against 3-5 s
  for the dynamo exporter, and it folds each grouped weight's reshape/transpose into a constant
  ``(G, in/G, out/G)`` initializer; the dynamo graph recomputes them from the parameter at run
  time, which ran 1.2x slower in ONNX Runtime and hides the weights from the quantizer.
* Grouped projections export through the model's own traced path: one batched ``MatMul`` of
  ``(G, N, in/G)`` activations against that initializer (no Conv, so no ConvInteger after
  quantization). The block-diagonal alternative is one 2-D MatMul with G-fold MACs (2.8x slower
  in fp32); one MatMul per group runs as fast in fp32 but 1.35x slower in int8.
* Attention exports as ONNX Runtime's fused ``com.microsoft.MultiHeadAttention`` (one node per
  layer, key padding mask from ``attention_mask``; see :func:`_fused_attention`), so the export
  is for ONNX Runtime, as its int8 graph already was. The traced ``scaled_dot_product_attention``
  was ~20 nodes per layer; the fused op took 0.80-0.93x its time (docs/RESULTS.md).
* int8, default (``int8_activations="per-token"``): every projection MatMul becomes ONNX
  Runtime's fused ``DynamicQuantizeMatMul`` (int8 weights per output column and group) on
  activations whose rows were first mapped onto [0, 1] by their own range, so that each token is
  quantized on its own grid, and mapped back after (see :func:`_quantize_matmuls_per_token`).
  Measured on SST-2 dev: >= 99% agreement with fp32; 1.1-1.8x faster than the first per-token
  graph, whose ~20 unfused element-wise nodes per projection cost more than the int8 product
  saved (interleaved runs, docs/RESULTS.md).
* int8, ``int8_activations="per-tensor"`` (the plain opt-out): ONNX Runtime's
  ``quantize_dynamic`` (per channel, int8 weights, dynamic uint8 activations) for the dense
  projections. Its per-channel mode mishandles 3-D weights — it
  shares one scale per output column across all groups and emits a zero-point shape its own
  MatMulInteger kernel then rejects at run time — so the grouped MatMuls are quantized here,
  per group and output column, into the same node pattern (DynamicQuantizeLinear ->
  MatMulInteger -> Cast -> Mul), which ONNX Runtime fuses into one kernel as it does its own.
  Pooler and classifier stay fp32, as in :func:`squeezebert.optimize`.
* int8 also stores the word-embedding table as int8 rows with a scale each (Gather -> Cast ->
  Mul), as :func:`squeezebert.optimize` does: the table is most of the file (94 of
  SqueezeBERT-base's 204 MB in fp32).
* ``standard_ops=True`` (``export --standard-ops``) writes the same model in the standard
  ``ai.onnx`` domain only, for any ONNX consumer (plain ONNX Runtime, Optimum, other runtimes):
  attention stays the traced ``scaled_dot_product_attention`` nodes, and each int8 projection's
  ``DynamicQuantizeMatMul`` becomes the standard ``DynamicQuantizeLinear -> MatMulInteger -> Cast
  -> Mul`` it stands for (the same numbers; ONNX Runtime fuses the pattern back when it loads the
  graph). The directory then also carries the transformers modeling file and ``auto_map`` of a
  checkpoint directory, so ``AutoConfig(..., trust_remote_code=True)`` reads its ``config.json``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import types
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from squeezebert.config import ModelConfig

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
EXPORT_PRECISIONS = ("fp32", "int8")
DEFAULT_OPSET = 17
FP32_TOLERANCE = 1e-4
#: Operator domains of standard ONNX ("" and its alias "ai.onnx"); anything else is a runtime's own.
STANDARD_DOMAINS = ("", "ai.onnx")
# Shapes (batch, sequence) that the fp32 export is checked at: two, so that a shape baked into
# the graph by tracing shows up as a mismatch or an error.
CHECK_SHAPES = ((1, 7), (3, 19))


class ExportError(ValueError):
    """The exported graph is invalid or does not compute what the PyTorch model computes."""


@dataclass
class ExportReport:
    """What :func:`export` wrote and how it checked out.

    ``max_abs_diff``: ONNX Runtime fp32 vs PyTorch, per checked shape (``"BxT"``).
    ``int8_agreement``: for int8 classifiers, the fraction of sample predictions (argmax) equal to
    PyTorch fp32's; ``int8_max_abs_diff``: the largest output difference on that sample.
    ``op_types``: node counts of the written graph; ``standard_ops``: the graph uses standard ONNX
    operators only (no ONNX Runtime contrib domain).
    """

    path: Path
    precision: str
    opset: int
    max_abs_diff: dict[str, float]
    op_types: dict[str, int]
    int8_agreement: float | None = None
    int8_max_abs_diff: float | None = None
    sample_size: int = 0
    files: list[str] = field(default_factory=list)
    standard_ops: bool = False

    def summary(self) -> str:
        """A few human-readable lines."""
        diffs = ", ".join(f"{shape}: {d:.1e}" for shape, d in self.max_abs_diff.items())
        lines = [
            f"wrote {self.path} ({', '.join(self.files)}); {self.precision}, opset {self.opset}"
            + (", standard ONNX operators only" if self.standard_ops else ""),
            f"fp32 ONNX Runtime vs PyTorch max abs diff: {diffs} (limit {FP32_TOLERANCE:g})",
        ]
        if self.precision == "int8":
            agree = "" if self.int8_agreement is None else f"predictions agree on {self.int8_agreement:.1%}, "
            lines.append(
                f"int8 vs PyTorch fp32 on {self.sample_size} samples: {agree}max abs diff {self.int8_max_abs_diff:.3g}"
            )
        matmuls = {k: v for k, v in sorted(self.op_types.items()) if "MatMul" in k or "Conv" in k or k == "Gemm"}
        lines.append("projection ops: " + ", ".join(f"{k} x{v}" for k, v in matmuls.items()))
        return "\n".join(lines)


def _require_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ImportError(
            f"ONNX export needs onnx and onnxruntime ({e.name} is missing): pip install 'squeezebert[onnx]'"
        ) from None
    return onnx, onnxruntime


# --------------------------------------------------------------------------- inputs
def sample_inputs(config: ModelConfig, batch: int, seq: int, seed: int = 0, pad_step: int = 3) -> dict[str, np.ndarray]:
    """Random token ids ``(batch, seq)`` with a second segment and, from row 1 on, padding (each
    row ``pad_step`` tokens shorter than the one before), so a check exercises masks and token
    types. ``seq`` is capped at the model's positions."""
    seq = min(seq, config.max_position_embeddings)
    rng = np.random.default_rng(seed)
    low = min(1000, config.vocab_size // 2)  # past the special tokens of a BERT vocabulary
    ids = rng.integers(low, config.vocab_size, (batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), dtype=np.int64)
    for i in range(1, batch):
        mask[i, max(2, seq - pad_step * i) :] = 0
    types = np.zeros_like(ids)
    types[:, seq // 2 :] = 1
    ids = np.where(mask == 1, ids, config.pad_token_id)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types * mask}


# --------------------------------------------------------------------------- export
@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    import torch

    with warnings.catch_warnings():
        # Chosen knowingly (see the module docstring); the sequence-length check in
        # SqueezeBert.encode is a Python comparison the tracer rightly treats as a constant.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx\.")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


@functools.cache
def _ort_attention() -> Any:
    """An autograd Function that runs attention in PyTorch (so the tracer sees its output) and
    exports as ONNX Runtime's fused ``com.microsoft.MultiHeadAttention``: one kernel in place of
    the ~20 nodes (head reshapes and transposes, two MatMuls, mask, Softmax) the traced
    ``scaled_dot_product_attention`` becomes. Built on first use: this module imports no torch."""
    import torch

    from squeezebert.model import attend

    class OrtMultiHeadAttention(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, q: Any, k: Any, v: Any, mask: Any, num_heads: int) -> Any:
            return attend(q, k, v, mask, num_heads)

        @staticmethod
        def symbolic(g: Any, q: Any, k: Any, v: Any, mask: Any, num_heads: int) -> Any:
            # mask (B, 1, 1, T) bool -> key padding mask (B, T) int32, 1 = attend
            flat = g.op("Constant", value_t=torch.tensor([0, -1], dtype=torch.int64))
            key_padding = g.op("Cast", g.op("Reshape", mask, flat), to_i=6)  # 6: INT32
            # The op takes the Q/K/V bias as its fourth input; the projections added theirs already,
            # so it is left out (an optional input, written as an empty name).
            no_bias = g.op("prim::Constant")
            no_bias.setType(torch._C.OptionalType.ofTensor())
            out = g.op("com.microsoft::MultiHeadAttention", q, k, v, no_bias, key_padding, num_heads_i=num_heads)
            out.setType(q.type())
            return out

    return OrtMultiHeadAttention


@contextlib.contextmanager
def _fused_attention(model: Any) -> Iterator[None]:
    """While exporting, every :class:`~squeezebert.model.SelfAttention` of ``model`` computes its
    projections as usual, then attention through :func:`_ort_attention`."""
    from squeezebert.model import SelfAttention

    function = _ort_attention()

    def forward(self: Any, x: Any, mask: Any, return_probs: bool = False) -> tuple[Any, None]:
        if mask is None:
            raise ExportError("the ONNX export needs an attention mask")  # the exporter always passes one
        return function.apply(*self.project(x), mask, self.num_heads), None

    modules = [m for m in model.modules() if isinstance(m, SelfAttention)]
    for m in modules:
        m.forward = types.MethodType(forward, m)
    try:
        yield
    finally:
        for m in modules:
            del m.forward


def _torch_export(model: Any, path: Path, opset: int, fused_attention: bool = True) -> None:
    """Trace ``model`` to ``path``; attention as ONNX Runtime's fused op, or (``fused_attention=
    False``) as the standard nodes the traced ``scaled_dot_product_attention`` becomes."""
    import torch

    output = "logits" if model.config.num_labels > 0 else "last_hidden_state"
    example = {k: torch.from_numpy(v) for k, v in sample_inputs(model.config, 2, 8).items()}
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    axes[output] = {0: "batch"} if output == "logits" else {0: "batch", 1: "sequence"}
    with _quiet_export(), _fused_attention(model) if fused_attention else contextlib.nullcontext():
        torch.onnx.export(
            model,
            tuple(example[k] for k in INPUT_NAMES),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(INPUT_NAMES),
            output_names=[output],
            dynamic_axes=axes,
            do_constant_folding=True,
        )


def _session(path: Path, num_threads: int | None = None) -> Any:
    _, ort = _require_onnx()
    options = ort.SessionOptions()
    if num_threads:
        options.intra_op_num_threads = num_threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def torch_outputs(model: Any, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """PyTorch's outputs for numpy inputs, under inference mode."""
    import torch

    with torch.inference_mode():
        return model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).float().numpy()


# --------------------------------------------------------------------------- int8
def _swap_nodes(model: Any, new_nodes: list[Any]) -> None:
    """Make ``new_nodes`` the graph's nodes, drop the initializers (the fp32 weights) that no node
    reads any more, and check the result."""
    onnx, _ = _require_onnx()
    graph = model.graph
    del graph.node[:]
    graph.node.extend(new_nodes)
    used = {name for n in graph.node for name in n.input}
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    onnx.checker.check_model(model)


def _symmetric_int8(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 with one scale per slice along ``axis`` (reduced, kept as size 1):
    ``w ≈ q * scale``, grid [-127, 127] — the grid of :func:`squeezebert.quantize._quantize_weight`."""
    scale = np.maximum(np.abs(w).max(axis=axis, keepdims=True), 1e-12) / 127
    return np.clip(np.round(w / scale), -127, 127).astype(np.int8), scale


def _quantize_grouped_matmuls(model: Any) -> int:
    """Replace every MatMul against a constant 3-D ``(G, in/G, out/G)`` weight by int8 nodes,
    weights symmetric per (group, output column). Returns how many were replaced."""
    onnx, _ = _require_onnx()
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    replaced, new_nodes = 0, []
    for node in graph.node:
        weight = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if weight is None or len(weight.dims) != 3:
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(weight).astype(np.float32)  # (G, in/G, out/G)
        q, scale = _symmetric_int8(w, axis=1)  # scale (G, 1, out/G)
        base = f"{node.name or node.output[0]}_int8"
        graph.initializer.extend(
            [
                numpy_helper.from_array(q, f"{base}_weight"),
                numpy_helper.from_array(scale.astype(np.float32), f"{base}_weight_scale"),
                # Per-column zero points must be shaped (G, 1, out/G) for ORT's MatMulInteger.
                numpy_helper.from_array(np.zeros_like(q[:, :1]), f"{base}_weight_zero_point"),
            ]
        )
        x = node.input[0]
        new_nodes += [
            helper.make_node(
                "DynamicQuantizeLinear", [x], [f"{base}_x", f"{base}_x_scale", f"{base}_x_zero_point"], f"{base}_quant"
            ),
            helper.make_node(
                "MatMulInteger",
                [f"{base}_x", f"{base}_weight", f"{base}_x_zero_point", f"{base}_weight_zero_point"],
                [f"{base}_int32"],
                f"{base}_matmul",
            ),
            helper.make_node("Cast", [f"{base}_int32"], [f"{base}_float"], f"{base}_cast", to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"{base}_x_scale", f"{base}_weight_scale"], [f"{base}_scale"], f"{base}_scale"),
            helper.make_node("Mul", [f"{base}_float", f"{base}_scale"], [node.output[0]], f"{base}_dequant"),
        ]
        replaced += 1
    _swap_nodes(model, new_nodes)
    return replaced


def _quantize_matmuls_per_token(model: Any, standard_ops: bool = False) -> int:
    """Replace every MatMul against a constant weight, dense ``(in, out)`` or grouped ``(G, in/G,
    out/G)``, by int8 nodes with activations quantized per token. Returns how many were replaced.

    Weights: symmetric int8 per output column (and group). Activations: each token's row is first
    mapped onto [0, 1] by its own minimum ``lo`` and range ``r`` (``u = (x - lo) / r``), which
    puts every row on the same range; ONNX Runtime's fused ``DynamicQuantizeMatMul`` then
    quantizes the whole tensor with one dynamic range (now right for every row: 256 levels over
    each token's ``[lo, lo + r]``) and multiplies in integers; the result is mapped back,
    ``y = DQMM(u) * r + lo * colsum(W)``, the last term an outer product of the per-token ``lo``
    and the weight's column sums. One fused kernel and nine row-wise nodes per projection, where
    quantizing per token in plain ONNX took ~20 element-wise nodes (1.37x slower at batch 32,
    docs/RESULTS.md).

    Chosen by measurement (mean KL of the class distributions against fp32 on 2,000 SST-2
    training sentences): this asymmetric grid erred least, below a symmetric one (``x / max|x|``,
    two passes fewer and 5-12% faster) with or without a one-sided grid after the FFN activation.
    A grouped MatMul sees its input as ``(G, N, in/G)``, so a token's row is reduced over axes 0
    and 2. The grid is close to, not the same as, :func:`squeezebert.optimize`'s int8 (whose zero
    point is rounded to an integer), so the two agree to the int8 error, not to float rounding.

    ``standard_ops``: in place of the contrib ``DynamicQuantizeMatMul``, the standard nodes it
    fuses (``DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul`` by the product of the two
    scales, weight zero points 0), which compute the same numbers.
    """
    onnx, _ = _require_onnx()
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    graph.initializer.append(numpy_helper.from_array(np.array(1e-12, np.float32), "int8pt_tiny"))
    replaced, new_nodes = 0, []
    for node in graph.node:
        weight = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if weight is None or len(weight.dims) not in (2, 3):
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(weight).astype(np.float32)  # (in, out) or (G, in/G, out/G)
        in_axis = w.ndim - 2
        q, scale = _symmetric_int8(w, axis=in_axis)  # scale (1, out) / (G, 1, out/G)
        colsum = (q.astype(np.float32) * scale).sum(axis=in_axis, keepdims=True)  # as scale
        if w.ndim == 2:  # per column: 1-D for a 2-D weight
            scale, colsum = scale[0], colsum[0]
        b = f"{node.name or node.output[0]}_int8pt"
        graph.initializer.extend(
            [
                numpy_helper.from_array(q, f"{b}_weight"),
                numpy_helper.from_array(scale.astype(np.float32), f"{b}_weight_scale"),
                numpy_helper.from_array(colsum.astype(np.float32), f"{b}_weight_colsum"),
            ]
        )
        axes = [-1] if w.ndim == 2 else [0, 2]
        x = node.input[0]

        def op(kind: str, inputs: list[str], name: str, b: str = b, **attrs: Any) -> str:
            new_nodes.append(helper.make_node(kind, inputs, [f"{b}_{name}"], f"{b}_{name}", **attrs))
            return f"{b}_{name}"

        # Q, K and V read one input and so repeat these nodes; ONNX Runtime's common-subexpression
        # elimination merges them when it loads the graph (checked: 36 ReduceMin in the minilm-l6
        # file, 24 after its optimizer), and sharing them here measured no faster.
        lo = op("ReduceMin", [x], "row_min", axes=axes, keepdims=1)
        hi = op("ReduceMax", [x], "row_max", axes=axes, keepdims=1)
        r = op("Max", [op("Sub", [hi, lo], "row_span"), "int8pt_tiny"], "row_range")
        u = op("Div", [op("Sub", [x, lo], "shifted"), r], "u")
        if standard_ops:
            # zero points as ONNX Runtime's own quantizer writes them: per column (and group)
            zero = np.zeros(q.shape[-1], np.int8) if w.ndim == 2 else np.zeros_like(q[:, :1])
            graph.initializer.append(numpy_helper.from_array(zero, f"{b}_weight_zero_point"))
            quant = [f"{b}_u_int8", f"{b}_u_scale", f"{b}_u_zero_point"]
            new_nodes.append(helper.make_node("DynamicQuantizeLinear", [u], quant, f"{b}_quant"))
            product = op("MatMulInteger", [quant[0], f"{b}_weight", quant[2], f"{b}_weight_zero_point"], "int32")
            scale = op("Mul", [quant[1], f"{b}_weight_scale"], "scale")
            y = op("Mul", [op("Cast", [product], "float", to=TensorProto.FLOAT), scale], "int8")
        else:
            y = op("DynamicQuantizeMatMul", [u, f"{b}_weight", f"{b}_weight_scale", ""], "int8", domain="com.microsoft")
        offset = op("Mul", [lo, f"{b}_weight_colsum"], "offset")
        new_nodes.append(helper.make_node("Add", [op("Mul", [y, r], "y_range"), offset], [node.output[0]], f"{b}_y"))
        replaced += 1
    if not standard_ops and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    _swap_nodes(model, new_nodes)
    return replaced


def nonstandard_ops(model: Any) -> dict[str, int]:
    """Node counts, by ``domain::op_type``, of the operators outside standard ONNX (empty for a
    graph any ONNX runtime can run)."""
    counts = Counter(f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in STANDARD_DOMAINS)
    return dict(counts)


def _drop_unused_domains(model: Any) -> None:
    """Remove opset imports of domains no node uses (ONNX Runtime's quantizer declares its contrib
    domain whether or not it used it)."""
    used = {n.domain for n in model.graph.node}
    keep = [o for o in model.opset_import if o.domain in STANDARD_DOMAINS or o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)


WORD_EMBEDDINGS_WEIGHT = "embeddings.word_embeddings.weight"


def _quantize_word_embeddings(model: Any) -> int:
    """Store the word-embedding table int8 with a symmetric scale per row (the grid of
    :class:`squeezebert.quantize.Int8Embedding`): its ``Gather`` becomes ``Gather`` of int8 rows
    -> ``Cast`` -> ``Mul`` by the gathered row scales. Returns how many tables were replaced."""
    onnx, _ = _require_onnx()
    from onnx import TensorProto, helper, numpy_helper

    inits = {init.name: init for init in model.graph.initializer}
    replaced, new_nodes = 0, []
    for node in model.graph.node:
        if node.op_type != "Gather" or node.input[0] != WORD_EMBEDDINGS_WEIGHT or WORD_EMBEDDINGS_WEIGHT not in inits:
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[WORD_EMBEDDINGS_WEIGHT]).astype(np.float32)  # (V, E)
        q, scale = _symmetric_int8(w, axis=1)  # one scale per row: (V, 1)
        b = "word_embeddings_int8"
        model.graph.initializer.extend(
            [numpy_helper.from_array(q, f"{b}_rows"), numpy_helper.from_array(scale.astype(np.float32), f"{b}_scale")]
        )
        ids = node.input[1]
        new_nodes += [
            helper.make_node("Gather", [f"{b}_rows", ids], [f"{b}_q"], f"{b}_gather"),
            helper.make_node("Gather", [f"{b}_scale", ids], [f"{b}_s"], f"{b}_gather_scale"),
            helper.make_node("Cast", [f"{b}_q"], [f"{b}_f"], f"{b}_cast", to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"{b}_f", f"{b}_s"], [node.output[0]], f"{b}_dequant"),
        ]
        replaced += 1
    _swap_nodes(model, new_nodes)
    return replaced


def _quantize_int8(fp32_path: Path, out_path: Path, activations: str = "per-token", standard_ops: bool = False) -> None:
    onnx, _ = _require_onnx()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def embeddings(model: Any) -> None:
        if _quantize_word_embeddings(model) != 1:
            raise ExportError("found no word-embedding lookup to quantize; the graph changed shape")

    model = onnx.load(str(fp32_path))
    inits = {init.name: len(init.dims) for init in model.graph.initializer}
    if activations == "per-token":
        projections = [n for n in model.graph.node if n.op_type == "MatMul" and inits.get(n.input[1]) in (2, 3)]
        replaced = _quantize_matmuls_per_token(model, standard_ops)
        if replaced != len(projections):
            raise ExportError(f"quantized {replaced} of {len(projections)} projections; the graph changed shape")
        embeddings(model)
        if standard_ops:
            _drop_unused_domains(model)
        onnx.save(model, str(out_path))
        return
    grouped = [n.name for n in model.graph.node if n.op_type == "MatMul" and inits.get(n.input[1]) == 3]
    # The quantizer turns Gemm into MatMul (renamed "<name>_MatMul") before it filters by op
    # type, so the pooler and classifier are excluded by both names to keep them fp32.
    gemms = [n.name for n in model.graph.node if n.op_type == "Gemm"]
    # The quantizer logs a hint about its pre-processing step on the root logger; the graph is
    # already shape-annotated by the exporter.
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        quantize_dynamic(
            fp32_path,
            out_path,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=grouped + gemms + [f"{name}_MatMul" for name in gemms],
        )
    finally:
        root.setLevel(level)
    model = onnx.load(str(out_path))
    replaced = _quantize_grouped_matmuls(model)
    if replaced != len(grouped):
        raise ExportError(f"quantized {replaced} of {len(grouped)} grouped MatMuls; the graph changed shape")
    embeddings(model)
    if standard_ops:
        _drop_unused_domains(model)
    onnx.save(model, str(out_path))


# --------------------------------------------------------------------------- checks
def check_fp32(model: Any, run: Any, runtime: str = "ONNX Runtime") -> dict[str, float]:
    """Compare ``run(inputs) -> outputs`` (an exported graph) with PyTorch at :data:`CHECK_SHAPES`;
    :class:`ExportError` beyond :data:`FP32_TOLERANCE`. Returns the max abs difference per shape."""
    diffs = {}
    for i, (batch, seq) in enumerate(CHECK_SHAPES):
        inputs = sample_inputs(model.config, batch, seq, seed=i)
        expected = torch_outputs(model, inputs)
        got = run(inputs)
        if got.shape != expected.shape:
            raise ExportError(
                f"{runtime} output shape {got.shape} != PyTorch {expected.shape} at batch {batch} x {seq}"
            )
        if model.config.num_labels == 0:  # outputs at padding positions carry no meaning
            keep = inputs["attention_mask"].astype(bool)
            got, expected = got[keep], expected[keep]
        diff = float(np.abs(got - expected).max())
        diffs[f"{batch}x{seq}"] = diff
        if not diff <= FP32_TOLERANCE:
            raise ExportError(
                f"{runtime} differs from PyTorch by {diff:.3g} (> {FP32_TOLERANCE:g}) at batch {batch} x "
                f"sequence {seq}; the export is wrong, nothing was written"
            )
    return diffs


def _check_int8(model: Any, session: Any, samples: int, seq: int = 32) -> tuple[float | None, float]:
    batch = 16
    agree, total, max_diff = 0, 0, 0.0
    for start in range(0, samples, batch):
        inputs = sample_inputs(model.config, min(batch, samples - start), seq, seed=100 + start, pad_step=1)
        expected = torch_outputs(model, inputs)
        got = session.run(None, inputs)[0]
        if model.config.num_labels == 0:
            keep = inputs["attention_mask"].astype(bool)
            got, expected = got[keep], expected[keep]
        max_diff = max(max_diff, float(np.abs(got - expected).max()))
        if model.config.num_labels > 1:
            agree += int((got.argmax(-1) == expected.argmax(-1)).sum())
            total += len(got)
    return (agree / total if total else None), max_diff


# --------------------------------------------------------------------------- public API
def export_model(
    model: Any,
    out: str | os.PathLike[str],
    tokenizer: Any | None = None,
    precision: str = "fp32",
    opset: int = DEFAULT_OPSET,
    int8_samples: int = 64,
    int8_activations: str = "per-token",
    standard_ops: bool = False,
) -> ExportReport:
    """Export a :class:`~squeezebert.model.SqueezeBert` (and its tokenizer) to ``out``.

    ``precision``: ``fp32`` or ``int8`` (dynamic quantization of every encoder projection, see
    the module docstring). The fp32 graph is always checked against PyTorch at two shapes and
    :class:`ExportError` raised beyond 1e-4; an int8 graph is additionally compared with PyTorch
    fp32 on ``int8_samples`` random sequences and the agreement reported, not enforced.
    ``int8_activations``: ``per-token`` (default; as :func:`squeezebert.optimize`) or
    ``per-tensor`` (ONNX Runtime's own dynamic quantization: fewer nodes, less accurate).
    ``standard_ops``: standard ONNX operators only, for any ONNX consumer (see the module
    docstring); off, the graph uses ONNX Runtime's fused contrib operators.
    Nothing is written to ``out`` unless the checks pass.
    """
    import copy

    from squeezebert.files import atomic_write, atomic_write_text
    from squeezebert.model import SqueezeBert

    onnx, _ = _require_onnx()
    if not isinstance(model, SqueezeBert):
        raise TypeError(f"export_model takes a SqueezeBert model (not an optimized copy), got {type(model).__name__}")
    if precision not in EXPORT_PRECISIONS:
        raise ValueError(f"precision must be one of {EXPORT_PRECISIONS} for ONNX, got {precision!r}")
    if int8_activations not in ("per-token", "per-tensor"):
        raise ValueError(f"int8_activations must be 'per-token' or 'per-tensor', got {int8_activations!r}")
    if opset < 14:
        raise ValueError(f"opset must be at least 14 (scaled_dot_product_attention), got {opset}")
    model = copy.deepcopy(model).float().eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    def write_model(tmp: Path) -> None:
        # Everything happens under the temporary name; the rename makes it visible.
        fp32_tmp = tmp.with_name(tmp.name + ".fp32")
        try:
            _torch_export(model, fp32_tmp, opset, fused_attention=not standard_ops)
            onnx.checker.check_model(str(fp32_tmp))
            session = _session(fp32_tmp)
            report.max_abs_diff = check_fp32(model, lambda inputs: session.run(None, inputs)[0])
            if precision == "fp32":
                os.replace(fp32_tmp, tmp)
            else:
                _quantize_int8(fp32_tmp, tmp, int8_activations, standard_ops)
                onnx.checker.check_model(str(tmp))
                report.int8_agreement, report.int8_max_abs_diff = _check_int8(model, _session(tmp), int8_samples)
                report.sample_size = int8_samples
        finally:
            fp32_tmp.unlink(missing_ok=True)
        written = onnx.load(str(tmp))
        report.op_types = dict(Counter(n.op_type for n in written.graph.node))
        if standard_ops and nonstandard_ops(written):
            raise ExportError(f"the standard-ops graph still has non-standard operators {nonstandard_ops(written)}")

    report = ExportReport(out, precision, opset, {}, {}, standard_ops=standard_ops)
    atomic_write(out / MODEL_FILE, write_model)
    if precision == "int8":
        from squeezebert.quantize import native_int8

        if not native_int8():  # the graph is right; this CPU's check of it is not (tests/test_export.py)
            log.warning(
                "%s: this CPU has no VNNI, where ONNX Runtime's uint8 x int8 kernels add pairs of products in "
                "16 bits, which can saturate: the int8 check here (predictions agree on %.1f%%) measures this "
                "CPU's kernels, not the graph, which passes the exactness tests on a CPU with VNNI; on this one "
                "deploy fp32",
                out, 100 * (report.int8_agreement or 0.0),
            )  # fmt: skip
    report.files.append(MODEL_FILE)
    if tokenizer is not None:
        atomic_write(out / "tokenizer.json", lambda p: tokenizer.backend.save(str(p)))
        report.files.append("tokenizer.json")
        # so that AutoTokenizer on the export gives our ids and token_type_ids
        for name, text in tokenizer.hf_sidecars(model.config.max_position_embeddings).items():
            atomic_write_text(out / name, text)
            report.files.append(name)
    else:
        log.warning("%s: no tokenizer given; the export cannot classify text on its own", out)
    config = model.config.to_dict()
    config["onnx"] = {"precision": precision, "opset": opset, "inputs": list(INPUT_NAMES)}
    if precision == "int8":
        config["onnx"]["int8_activations"] = int8_activations
    if standard_ops:
        from squeezebert.remote_code import MODELING_FILE, auto_map_fields, modeling_source

        # A directory for the Hugging Face tools too: AutoConfig (Optimum reads the config through
        # it) finds our config class through auto_map, as in a checkpoint directory.
        config["onnx"]["standard_ops"] = True
        config.update(auto_map_fields(model.config))
        atomic_write_text(out / MODELING_FILE, modeling_source())
        report.files.append(MODELING_FILE)
    atomic_write_text(out / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    report.files.append("config.json")
    return report


def export(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    precision: str = "fp32",
    opset: int = DEFAULT_OPSET,
    int8_activations: str = "per-token",
    standard_ops: bool = False,
) -> ExportReport:
    """Load a checkpoint (directory, alias or preset, as :func:`squeezebert.checkpoint.load`) and
    export it with :func:`export_model`."""
    from squeezebert.checkpoint import load

    ckpt = load(src)
    return export_model(
        ckpt.model,
        out,
        ckpt.tokenizer,
        precision=precision,
        opset=opset,
        int8_activations=int8_activations,
        standard_ops=standard_ops,
    )
