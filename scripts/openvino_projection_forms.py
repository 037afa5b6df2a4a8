"""Which form of the grouped projection does OpenVINO's CPU plugin run fastest (issue 14, item 3)?

The same SqueezeBERT weights are converted to OpenVINO once per form of ``GroupedLinear.forward``
(only while converting: the model itself is never changed), checked against PyTorch (max abs
diff <= 1e-4 at two shapes, else the script stops), quantized with the export's static NNCF int8
recipe, and timed, all compiled models interleaved in one process: every round runs each model
once in a fresh random order, with a 20 ms pause before each timed call
(:func:`squeezebert.timing.time_interleaved`).

Forms (``--forms``; projections with one group are a plain ``F.linear`` in all of them):

  bmm         the model's own traced path: one batched matmul over groups with the bias fused
              (``baddbmm``), transposes around it
  conv        transformers' formulation: transpose to (B, C, T), ``F.conv1d(k=1, groups=G)``,
              transpose back
  per-group   split the channels into G chunks, one ``F.linear`` per group, concatenate
  block-diag  one dense ``F.linear`` with the block-diagonal weight (G-fold the MACs)
  einsum      ``einsum("btgi,goi->btgo")`` plus the bias (not in the default list)

Precisions (``--precisions``): ``fp32``; ``int8`` (``quantize_int8(recipe="static")`` calibrated
on ``--calibration-batches`` random-token batches: right for timing, wrong for accuracy);
``bf16`` (the fp32 graph with the bf16 inference hint; skipped where the CPU lacks native bf16).

A second model, the same preset with every projection low rank (``--rank-fraction`` of each
group's full rank), is converted in each of ``--low-rank-forms`` and timed in the same rounds.
For its int8 graphs the script reports, separately for the ``down`` and ``up`` halves, how many
of their weighted nodes (MatMul, Convolution, GroupConvolution, Einsum) NNCF gave a FakeQuantize
input and int8 weights, and how many of the compiled GEMM nodes run in int8.

Printed: one markdown table per model (p50 ms per batch size, and in brackets the ratio to the
``bmm`` form of the same precision; node counts of the compiled execution graph; FakeQuantize
nodes of the IR; weighted nodes statically quantized in the IR; compiled GEMM nodes running
int8; ``.bin`` size), then the low-rank quantization table. ``--json`` writes every number.

    PYTHONPATH=src python scripts/openvino_projection_forms.py --model squeezebert-uncased \\
        --threads 2 --batch-sizes 1,32 --seq-len 128 --rounds 10 --json forms.json

Smoke run (a minute): ``--model tiny --rounds 2``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from squeezebert.checkpoint import load
from squeezebert.config import PROJECTIONS, preset
from squeezebert.export import ExportError, check_fp32, sample_inputs, torch_outputs
from squeezebert.export_openvino import _quiet, convert, quantize_int8, runtime_op_types
from squeezebert.files import atomic_write_text
from squeezebert.infer import OpenVinoForward, openvino_has_bf16
from squeezebert.model import GroupedLinear, SqueezeBert
from squeezebert.timing import environment, time_interleaved

FORMS = ("bmm", "conv", "per-group", "block-diag", "einsum")
#: IR node types that multiply by a weight.
WEIGHTED = ("MatMul", "Convolution", "GroupConvolution", "Einsum")
#: Compiled-graph node types that run a GEMM or convolution.
RUNTIME_GEMMS = ("FullyConnected", "MatMul", "Convolution")
#: Compiled-graph node types shown as table columns ("Subgraph/Eltwise" shares one column).
COLUMNS = ("FullyConnected", "Convolution", "MatMul", "Reorder", "Transpose", "Reshape")
#: IR nodes a weight or an activation passes through unchanged in meaning on its way to a
#: weighted node (layout changes, the per-group split, the dequantization Convert).
PASS_THROUGH = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Split", "VariadicSplit", "Convert")


# --------------------------------------------------------------------------- the forms
def form_forward(form: str, module: GroupedLinear) -> Callable[[Tensor], Tensor] | None:
    """``module``'s map written as ``form``, over copies of its weights (so the traced graph
    holds them as constants, like the parameters of the model's own path); None for ``bmm`` and
    for one-group projections, which keep the model's forward."""
    g = module.groups
    if form == "bmm" or g == 1:
        return None
    cin, cout = module.in_features, module.out_features
    weight = module.weight.detach().clone()  # (out, in/G)
    bias = None if module.bias is None else module.bias.detach().clone()  # (out,)
    if form == "conv":
        kernel = weight.view(cout, cin // g, 1)  # (out, in/G, 1)

        def conv(x: Tensor) -> Tensor:  # (B, T, in)
            y = F.conv1d(x.transpose(1, 2), kernel, bias, groups=g)  # (B, out, T)
            return y.transpose(1, 2)  # (B, T, out)

        return conv
    if form == "per-group":
        weights = weight.view(g, cout // g, cin // g).unbind(0)  # G x (out/G, in/G)
        biases = [None] * g if bias is None else bias.view(g, cout // g).unbind(0)  # G x (out/G,)

        def per_group(x: Tensor) -> Tensor:  # (B, T, in)
            chunks = x.chunk(g, dim=-1)  # G x (B, T, in/G)
            return torch.cat([F.linear(c, w, b) for c, w, b in zip(chunks, weights, biases)], dim=-1)  # (B, T, out)

        return per_group
    if form == "block-diag":
        dense = module.dense_weight().detach().clone()  # (out, in), zeros off the diagonal blocks

        def block_diag(x: Tensor) -> Tensor:  # (B, T, in) -> (B, T, out)
            return F.linear(x, dense, bias)

        return block_diag
    if form == "einsum":
        wg = weight.view(g, cout // g, cin // g)  # (G, out/G, in/G)

        def einsum(x: Tensor) -> Tensor:  # (B, T, in)
            xg = x.reshape(x.shape[0], x.shape[1], g, cin // g)  # (B, T, G, in/G)
            y = torch.einsum("btgi,goi->btgo", xg, wg).reshape(x.shape[0], x.shape[1], cout)  # (B, T, out)
            return y if bias is None else y + bias

        return einsum
    raise ValueError(f"unknown form {form!r}; choose from {FORMS}")


@contextlib.contextmanager
def projection_form(model: SqueezeBert, form: str) -> Iterator[None]:
    """While converting, every grouped ``GroupedLinear`` of ``model`` computes through ``form``.

    The replacement is a plain function stored on the instance: ``convert`` deep-copies the
    model, and a deep copy keeps a function object as it is, so the copy traces the same form."""
    patched = []
    for module in model.modules():
        if isinstance(module, GroupedLinear) and (forward := form_forward(form, module)) is not None:
            module.forward = forward
            patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


# --------------------------------------------------------------------------- graph inspection
def _trace(output: Any) -> str:
    """Where a weighted node's input comes from: ``"fq"`` (a FakeQuantize: statically quantized
    activations), ``"const:<type>"`` (a weight constant of that element type, seen through the
    dequantizing Convert/Multiply/Subtract) or ``"other"`` (an unquantized activation)."""
    node = output.get_node()
    kind = node.get_type_name()
    if kind == "FakeQuantize":
        source = _trace(node.input(0).get_source_output())
        return source if source.startswith("const") else "fq"
    if kind == "Constant":
        return f"const:{node.get_element_type().get_type_name()}"
    if kind in PASS_THROUGH:
        return _trace(node.input(0).get_source_output())
    if kind in ("Multiply", "Subtract", "Add"):
        sources = [_trace(i.get_source_output()) for i in node.inputs()]
        if all(s.startswith("const") for s in sources):
            # the dequantized weight: the int8 constant, not its scale
            return next((s for s in sources if s in ("const:i8", "const:u8")), sources[0])
        # an activation scaled by a constant (SmoothQuant): follow the activation
        return next(s for s in sources if not s.startswith("const"))
    return "other"


def module_of(name: str) -> str:
    """The model's module path in a traced node's name (``__module.encoder.layers.0.attention
    .query.down/aten::bmm/MatMul`` -> ``encoder.layers.0.attention.query.down``)."""
    return name.split("/")[0].removeprefix("__module.")


@dataclass
class WeightedNode:
    """One weighted node of an IR: its module, whether its activation comes through a
    FakeQuantize and whether its weight is stored int8."""

    module: str
    type: str
    fq_input: bool
    int8_weight: bool


def weighted_nodes(ov_model: Any) -> list[WeightedNode]:
    nodes = []
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() not in WEIGHTED:
            continue
        sources = [_trace(i.get_source_output()) for i in op.inputs()]
        weights = [s for s in sources if s.startswith("const")]
        if not weights:  # activation x activation (none in this model: attention is one node)
            continue
        nodes.append(
            WeightedNode(
                module_of(op.get_friendly_name()),
                op.get_type_name(),
                fq_input="fq" in sources,
                int8_weight=weights[0] in ("const:i8", "const:u8"),
            )
        )
    return nodes


def runtime_gemms(forward: OpenVinoForward) -> list[dict[str, str]]:
    """The compiled graph's GEMM/convolution nodes: type, run-time precision, kernel and the
    module of the IR node(s) fused into each (call after a first inference: kernels are chosen
    for the first input shape)."""
    rows = []
    for op in forward.compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind in RUNTIME_GEMMS:
            names = info["originalLayersNames"].astype(str).split(",")
            rows.append(
                {
                    "type": kind,
                    "precision": info["runtimePrecision"].astype(str),
                    "kernel": info["primitiveType"].astype(str),
                    "module": module_of(names[0]),
                }
            )
    return rows


def _is_int8(row: dict[str, str]) -> bool:
    return row["precision"] in ("i8", "u8")


# --------------------------------------------------------------------------- candidates
@dataclass
class Candidate:
    """One compiled model: a form of one model at one precision."""

    model: str  # "full" or "low-rank"
    form: str
    precision: str
    forward: OpenVinoForward
    file_mb: float
    build_s: float
    max_abs_diff: float  # fp32: the conversion check; int8/bf16: logits vs PyTorch fp32 (random ids)
    ir_op_types: dict[str, int]
    ir_weighted: list[WeightedNode]
    runtime_op_types: dict[str, int] = field(default_factory=dict)
    runtime_gemms: list[dict[str, str]] = field(default_factory=list)
    timings: dict[int, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.model}/{self.form}/{self.precision}"

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "form": self.form,
            "precision": self.precision,
            "file_mb": self.file_mb,
            "build_s": self.build_s,
            "max_abs_diff_vs_torch": self.max_abs_diff,
            "ir_op_types": self.ir_op_types,
            "ir_weighted_nodes": [vars(n) for n in self.ir_weighted],
            "runtime_op_types": self.runtime_op_types,
            "runtime_gemms": self.runtime_gemms,
            "p50_ms": {str(b): t.p50 for b, t in self.timings.items()},
            "timings": {str(b): t.to_dict() for b, t in self.timings.items()},
        }


def low_rank_ranks(name: str, fraction: float) -> dict[str, int]:
    """A rank for every projection: ``fraction`` of each group's full rank (at least 1)."""
    config = preset(name)
    ranks = {}
    for proj in PROJECTIONS:
        cin, cout = config.projection_shape(proj)
        full = min(cin, cout) // config.groups(proj)
        ranks[proj] = max(1, round(fraction * full))
    return ranks


def build(
    label: str,
    model: SqueezeBert,
    forms: list[str],
    precisions: list[str],
    calibration: list[dict[str, np.ndarray]],
    check: dict[str, np.ndarray],
    threads: int,
    tmp: Path,
) -> list[Candidate]:
    """Every form x precision of ``model``, checked, saved under ``tmp`` and compiled."""
    from squeezebert.infer import import_openvino

    ov = import_openvino()  # without its network telemetry

    expected = torch_outputs(model, check)
    out = []
    for form in forms:
        started = time.perf_counter()
        with _quiet(), projection_form(model, form):
            fp32 = convert(model)
        path = tmp / f"{label}-{form}-fp32.xml"
        ov.save_model(fp32, str(path), compress_to_fp16=False)
        forward = OpenVinoForward(path, threads, "fp32", busy_wait=True, dynamic_int8=False)
        try:
            diffs = check_fp32(model, forward, "OpenVINO")
        except ExportError as e:
            raise SystemExit(f"{label} model, form {form}: {e}") from None
        graphs = {"fp32": (fp32, path, forward, max(diffs.values()), time.perf_counter() - started)}
        if "bf16" in precisions:
            start = time.perf_counter()
            bf16 = OpenVinoForward(path, threads, "bf16", busy_wait=True, dynamic_int8=False)
            diff = float(np.abs(bf16(check) - expected).max())
            graphs["bf16"] = (fp32, path, bf16, diff, graphs["fp32"][4] + time.perf_counter() - start)
        if "int8" in precisions:
            start = time.perf_counter()
            int8 = quantize_int8(fp32, calibration, recipe="static")
            path8 = tmp / f"{label}-{form}-int8.xml"
            ov.save_model(int8, str(path8), compress_to_fp16=False)
            forward8 = OpenVinoForward(path8, threads, "fp32", busy_wait=True, dynamic_int8=False)
            diff = float(np.abs(forward8(check) - expected).max())
            graphs["int8"] = (int8, path8, forward8, diff, graphs["fp32"][4] + time.perf_counter() - start)
        for precision in precisions:
            ir, xml, fwd, diff, seconds = graphs[precision]
            out.append(
                Candidate(
                    label,
                    form,
                    precision,
                    fwd,
                    file_mb=xml.with_suffix(".bin").stat().st_size / 1e6,
                    build_s=seconds,
                    max_abs_diff=diff,
                    ir_op_types=dict(Counter(op.get_type_name() for op in ir.get_ordered_ops())),
                    ir_weighted=weighted_nodes(ir),
                )
            )
            print(
                f"built {out[-1].name}: {seconds:.1f} s, max |diff| vs PyTorch {diff:.2e}, {out[-1].file_mb:.1f} MB",
                flush=True,
            )
    return out


# --------------------------------------------------------------------------- report
def table(candidates: list[Candidate], batch_sizes: list[int], title: str) -> str:
    head = ["form", "precision", *(f"b{b} p50 ms" for b in batch_sizes), *COLUMNS]
    head += ["Subgraph/Eltwise", "total", "FQ (IR)", "static int8 GEMMs (IR)", "int8 GEMMs (run)", "MB"]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    reference = {c.precision: c for c in candidates if c.form == "bmm"}
    for c in candidates:
        ops = Counter(c.runtime_op_types)
        cells = [c.form, c.precision]
        for b in batch_sizes:
            p50 = c.timings[b].p50
            ref = reference.get(c.precision)
            cells.append(f"{p50:.2f}" + (f" ({ref.timings[b].p50 / p50:.2f}x)" if ref is not None else ""))
        cells += [str(ops[k]) for k in COLUMNS]
        cells += [
            f"{ops['Subgraph']}/{ops['Eltwise']}",
            str(sum(ops.values())),
            str(c.ir_op_types.get("FakeQuantize", 0)),
        ]
        static = sum(n.fq_input and n.int8_weight for n in c.ir_weighted)
        cells.append(f"{static}/{len(c.ir_weighted)}")
        cells.append(f"{sum(map(_is_int8, c.runtime_gemms))}/{len(c.runtime_gemms)}")
        cells.append(f"{c.file_mb:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "p50 in brackets: bmm's p50 of the same precision / this one's (above 1 = faster than bmm). "
        "Node counts: compiled execution graph. FQ: FakeQuantize nodes in the IR. Static int8 GEMMs: "
        "weighted IR nodes with a FakeQuantize input and int8 weights. int8 GEMMs (run): compiled "
        "FullyConnected/MatMul/Convolution nodes whose run-time precision is int8."
    )
    return "\n".join(lines)


def low_rank_quantization(c: Candidate) -> dict[str, dict[str, int]]:
    """Per half (``down``/``up``) of the low-rank projections: weighted IR nodes, how many have a
    FakeQuantize input, int8 weights, and compiled GEMM nodes running int8."""
    out = {}
    for half in ("down", "up"):
        ir = [n for n in c.ir_weighted if n.module.endswith(f".{half}")]
        run = [r for r in c.runtime_gemms if r["module"].endswith(f".{half}")]
        out[half] = {
            "ir_nodes": len(ir),
            "fq_input": sum(n.fq_input for n in ir),
            "int8_weight": sum(n.int8_weight for n in ir),
            "runtime_nodes": len(run),
            "runtime_int8": sum(map(_is_int8, run)),
        }
    return out


def low_rank_table(candidates: list[Candidate]) -> str:
    head = ["form"]
    for half in ("down", "up"):
        head += [f"{half}: FQ input", f"{half}: int8 weights", f"{half}: int8 at run time"]
    lines = ["### Low-rank projections in static int8", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in candidates:
        q = low_rank_quantization(c)
        cells = [c.form]
        for half in ("down", "up"):
            h = q[half]
            cells += [
                f"{h['fq_input']}/{h['ir_nodes']}",
                f"{h['int8_weight']}/{h['ir_nodes']}",
                f"{h['runtime_int8']}/{h['runtime_nodes']}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "IR counts are over weighted nodes (one per projection half, G per half for per-group); "
        "run-time counts over compiled GEMM nodes whose first fused IR node belongs to that half "
        "(einsum's are renamed when the plugin decomposes it, so they count under neither)."
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- main
def _names(value: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    names = [v for v in value.split(",") if v]
    bad = [v for v in names if v not in allowed]
    if bad:
        raise SystemExit(f"{flag}: unknown {', '.join(bad)}; choose from {', '.join(allowed)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="squeezebert-uncased", help="preset (random weights)")
    parser.add_argument("--forms", default="bmm,conv,per-group,block-diag", help=f"from {','.join(FORMS)}")
    parser.add_argument("--low-rank-forms", default="bmm,conv,per-group,block-diag", help="'' skips the low-rank model")
    parser.add_argument("--rank-fraction", type=float, default=0.25, help="low rank: share of each group's full rank")
    parser.add_argument("--precisions", default="fp32,int8", help="from fp32,int8,bf16")
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10, help="timed interleaved rounds per batch size")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds per batch size")
    parser.add_argument("--calibration-batches", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    args = parser.parse_args()

    forms = _names(args.forms, FORMS, "--forms")
    low_rank_forms = _names(args.low_rank_forms, FORMS, "--low-rank-forms")
    precisions = _names(args.precisions, ("fp32", "int8", "bf16"), "--precisions")
    if "fp32" not in precisions:
        precisions.insert(0, "fp32")  # every form is checked in fp32 before anything else
    if "bf16" in precisions and not openvino_has_bf16():
        print("this CPU has no native bf16: bf16 skipped")
        precisions.remove("bf16")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if not 0 < args.rank_fraction <= 1:
        raise SystemExit("--rank-fraction must lie in (0, 1]")

    torch.set_num_threads(args.threads)
    env = environment(args.threads)
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    full = load(args.model, num_labels=2).model.float().eval()
    config = full.config
    seq = min(args.seq_len, config.max_position_embeddings)
    calibration = [sample_inputs(config, 1, seq, seed=1000 + i) for i in range(args.calibration_batches)]
    check = sample_inputs(config, 4, seq, seed=7)  # rows 1-3 padded
    ranks = low_rank_ranks(args.model, args.rank_fraction)

    with tempfile.TemporaryDirectory(prefix="ov-forms-") as tmp:
        candidates = build("full", full, forms, precisions, calibration, check, args.threads, Path(tmp))
        if low_rank_forms:
            torch.manual_seed(args.seed)
            low = SqueezeBert(preset(args.model, num_labels=2, ranks=ranks)).eval()
            candidates += build(
                "low-rank", low, low_rank_forms, precisions, calibration, check, args.threads, Path(tmp)
            )
        built = time.perf_counter()

        rng = random.Random(args.seed)
        for b in batch_sizes:
            batch = sample_inputs(config, b, seq, pad_step=0)  # full rows: every token costs

            def call(c: Candidate, batch: dict[str, np.ndarray] = batch) -> Callable[[], Any]:
                return lambda: c.forward(batch)

            timings = time_interleaved(
                {c.name: call(c) for c in candidates}, warmup=args.warmup, repeats=args.rounds, shuffle=rng
            )
            for c in candidates:
                c.timings[b] = timings[c.name]
            print(f"timed batch {b} x {seq}: {args.rounds} rounds", flush=True)
        for c in candidates:
            c.runtime_op_types = runtime_op_types(c.forward)
            c.runtime_gemms = runtime_gemms(c.forward)
        env["load_average_end"] = environment(args.threads)["load_average"]
        timed = time.perf_counter()

        print()
        print(
            f"{args.model} (random weights), seq {seq}, {args.threads} threads, {args.rounds} rounds; "
            f"OpenVINO {env['versions'].get('openvino')}, NNCF {env['versions'].get('nncf')}; {env['cpu']}; "
            f"load average {env['load_average'][0]} -> {env['load_average_end'][0]}; "
            f"build {built - started:.0f} s, timing {timed - built:.0f} s"
        )
        print()
        print(table([c for c in candidates if c.model == "full"], batch_sizes, "Full-rank grouped projections"))
        low_candidates = [c for c in candidates if c.model == "low-rank"]
        if low_candidates:
            print()
            title = f"Low rank (ranks per group {ranks})"
            print(table(low_candidates, batch_sizes, title))
            int8 = [c for c in low_candidates if c.precision == "int8"]
            if int8:
                print()
                print(low_rank_table(int8))

        if args.json:
            report = {
                "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "environment": env,
                "ranks": ranks,
                "build_s": built - started,
                "timing_s": timed - built,
                "candidates": [c.to_json() for c in candidates],
                "low_rank_int8": {c.form: low_rank_quantization(c) for c in low_candidates if c.precision == "int8"},
            }
            args.json.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
            print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
