"""Is torch.compile (fp32, bf16, max-autotune), or int8 through torchao, PT2E or zentorch, faster
than what the torch backend has today (``squeezebert.optimize``)? OpenVINO, today's fastest path,
is timed beside them for reference. Issue 14, item 4.

Every candidate is built from the same weights, run once at every timed shape (that first call is
where torch.compile compiles), checked against eager fp32 on a padded check batch, then timed
interleaved in one process: a fresh (seeded) order each round, a 20 ms pause before each call
(``squeezebert.timing.time_interleaved``), random unpadded token ids. A candidate that fails to
import, build or compile, or whose logits are off by more than 1e-2 (fp32) / 0.5 (bf16, int8)
from eager fp32, is a row that says so and is not timed.

    PYTHONPATH=src python scripts/torch_compile_speed.py --model /work/runs/teacher-sst2 \\
        --seq-len 64 --batch-sizes 1,32 --threads 2 --rounds 20 --json torch_compile.json

Candidates (``--candidates``, comma list; default all):
  eager-fp32, eager-bf16, eager-int8   optimize(model, precision): what exists
  compile-fp32          torch.compile (inductor) of the eager fp32 copy, weights frozen
  compile-bf16          the same of the eager bf16 copy
  compile-max-autotune  fp32, mode="max-autotune" (inductor's CPU C++ GEMM templates compete
                        with ATen per GEMM), weights frozen; slow to compile (--skip-autotune)
  torchao-int8          torchao Int8DynamicActivationInt8WeightConfig (int8 weights per channel,
                        activations per token at run time) + compile; torchao swaps nn.Linear
                        only, so the dense (groups == 1) projections are first swapped for
                        nn.Linear sharing their weights; grouped ones stay fp32
  pt2e-x86-int8         PT2E with X86InductorQuantizer, static activations (calibrated per
                        tensor), export -> prepare -> calibrate -> convert -> compile
  pt2e-x86-int8-dynamic the same with dynamic (per-tensor, at run time) activations
  zentorch              torch.compile(backend="zentorch") of the fp32 copy, in its own process
  openvino-fp32, openvino-int8  squeezebert.export_openvino (int8: NNCF static, calibrated on
                        32 random-id sequences, which is fine for timing, not for accuracy)

Compile settings: ``dynamic=False`` (one graph per batch shape: every shape is known before
timing, and static shapes let inductor specialise its GEMMs); inductor's ``freezing`` is set for
the compiles only (``torch._inductor.config.patch``, restored after) — passing it through
``torch.compile(options=...)`` is not the same: dynamo then still lifts the weights as graph
inputs, and PT2E's prepacked int8 weights fail to compile (seen on torch 2.13). After the compile
calls each compiled candidate is called once more under ``set_stance("fail_on_recompile")``, so
nothing timed recompiles (which would run without freezing).

zentorch runs in a child process of this script (``--isolate``), timed interleaved there against
its own eager-fp32, and its ratio is to that: importing it loads the system OpenMP into the
process, sets inductor passes globally, and its weight cache is keyed by address (all seen with
zentorch 2.13.0.2), any of which could spoil the other candidates. Any candidate can be isolated
so (``--isolate a,b``), e.g. one that crashes the process. Every candidate is checked against
eager fp32 both before and after its timed calls (a stale cache shows up in the second), and any
inductor setting that building a candidate changed globally is set back (and named in its row).

"compile s" is the time from building the candidate to the end of its first call at every timed
shape: the compile for torch.compile; export, calibration and compile for OpenVINO; the copy and
first calls for eager. Inductor compiles into an empty cache directory (cold: what a first
deployment pays; ``--warm-cache`` uses the usual one, where a rerun finds most of its work done).

Each cell shows the median ms and, in brackets, its ratio to the fastest eager (existing torch)
candidate of that cell.
"""

from __future__ import annotations

import argparse
import copy
import faulthandler
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from squeezebert.checkpoint import load
from squeezebert.config import PRESETS
from squeezebert.export import sample_inputs
from squeezebert.files import atomic_write_text
from squeezebert.model import GroupedLinear, SqueezeBert
from squeezebert.quantize import optimize
from squeezebert.timing import environment, random_batch, time_interleaved

CANDIDATES = (
    "eager-fp32",
    "eager-bf16",
    "eager-int8",
    "compile-fp32",
    "compile-bf16",
    "compile-max-autotune",
    "torchao-int8",
    "pt2e-x86-int8",
    "pt2e-x86-int8-dynamic",
    "zentorch",
    "openvino-fp32",
    "openvino-int8",
)
EXISTING = ("eager-fp32", "eager-bf16", "eager-int8")
FP32 = ("eager-fp32", "compile-fp32", "compile-max-autotune", "zentorch", "openvino-fp32")
FP32_TOL, LOW_PRECISION_TOL = 1e-2, 0.5
CALIBRATION_BATCHES = 32
# Inductor settings for one candidate's compile, on top of freezing (torchao's recommendation for
# its int8 tensors; the ones for GPU kernels only are left out).
INDUCTOR_SETTINGS: dict[str, dict[str, Any]] = {
    "torchao-int8": {
        "coordinate_descent_tuning": True,
        "coordinate_descent_check_all_directions": True,
        "force_fuse_int_mm_with_mul": True,
    },
}
CHECK = "check"  # key of a candidate's call on the check batch, beside its cells ("b1", "b32")
HEAD = ("pooler.", "classifier")  # fp32 in every int8 candidate, as in optimize(int8)

Batch = dict[str, Tensor]
# A candidate binds a batch once (outside the timed call) and returns the timed zero-arg call.
Binder = Callable[[Batch], Callable[[], Any]]


@dataclass
class Row:
    name: str
    how: str = ""
    compile_s: float | None = None
    max_abs_diff: float | None = None
    error: str | None = None
    note: str = ""
    p50_ms: dict[str, float] = field(default_factory=dict)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    reference_p50_ms: dict[str, float] | None = None  # isolated: eager-fp32 in the same child


# --------------------------------------------------------------------------- helpers
def _args(batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
    return batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]


def _torch_binder(fn: Callable[..., Tensor]) -> Binder:
    def bind(batch: Batch) -> Callable[[], Tensor]:
        args = _args(batch)

        def call() -> Tensor:
            with torch.inference_mode():
                return fn(*args).float()

        return call

    return bind


def _logits(out: Any) -> np.ndarray:
    return out.numpy() if isinstance(out, Tensor) else np.asarray(out, dtype=np.float32)


def _error(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}"[:200]


def dense_as_linear(model: nn.Module) -> int:
    """Replace, in place, every dense (``groups == 1``) ``GroupedLinear`` by an ``nn.Linear``
    sharing its weight and bias (same computation: ``F.linear``); returns how many."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, GroupedLinear) and child.groups == 1:
                linear = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
                linear.weight, linear.bias = child.weight, child.bias
                setattr(parent, name, linear)
                swapped += 1
    return swapped


def _projections(model: SqueezeBert) -> int:
    """Encoder projections (each half of a low-rank one counts) plus the embedding projection."""
    count = sum(isinstance(m, GroupedLinear) for m in model.modules())
    return count + (model.embeddings.projection is not None)


# --------------------------------------------------------------------------- candidates
def build(name: str, model: SqueezeBert, seq_len: int, threads: int, tmp: Path) -> tuple[Binder, str, bool]:
    """The candidate ``name``: its binder, a line saying how it was built, and whether it is a
    torch.compile result (compiled at its first call per shape, under freezing)."""
    if name.startswith("eager-"):
        precision = name.removeprefix("eager-")
        return _torch_binder(optimize(model, precision)), f"optimize(model, {precision!r})", False
    if name in ("compile-fp32", "compile-bf16"):
        inner = optimize(model, name.removeprefix("compile-")).model
        return _torch_binder(torch.compile(inner, dynamic=False)), "inductor, freezing, dynamic=False", True
    if name == "compile-max-autotune":
        inner = optimize(model, "fp32").model
        compiled = torch.compile(inner, mode="max-autotune", dynamic=False)
        backends = torch._inductor.config.max_autotune_gemm_backends
        return _torch_binder(compiled), f"fp32, mode=max-autotune (GEMM backends {backends}), freezing", True
    if name == "torchao-int8":
        return _torchao_int8(model)
    if name in ("pt2e-x86-int8", "pt2e-x86-int8-dynamic"):
        return _pt2e_int8(model, seq_len, dynamic=name.endswith("dynamic"))
    if name == "zentorch":
        import zentorch  # noqa: F401  (registers the "zentorch" backend)

        inner = optimize(model, "fp32").model
        how = f"zentorch {metadata.version('zentorch')}, backend=zentorch, freezing, dynamic=False"
        return _torch_binder(torch.compile(inner, backend="zentorch", dynamic=False)), how, True
    if name in ("openvino-fp32", "openvino-int8"):
        return _openvino(model, name.removeprefix("openvino-"), seq_len, threads, tmp)
    raise ValueError(f"unknown candidate {name!r}; choose from {', '.join(CANDIDATES)}")


def _torchao_int8(model: SqueezeBert) -> tuple[Binder, str, bool]:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    def encoder_linear(module: nn.Module, fqn: str) -> bool:
        return isinstance(module, nn.Linear) and not fqn.startswith(HEAD)

    inner = optimize(model, "fp32").model
    as_is = sum(encoder_linear(m, n) for n, m in inner.named_modules())
    swapped = dense_as_linear(inner)
    # set_inductor_config=False: torchao would set its recommended inductor settings globally
    # and leave them; they are applied to this candidate's compile only (INDUCTOR_SETTINGS).
    quantize_(inner, Int8DynamicActivationInt8WeightConfig(set_inductor_config=False), filter_fn=encoder_linear)
    converted = sum(
        encoder_linear(m, n) and type(m.weight) not in (Tensor, nn.Parameter) for n, m in inner.named_modules()
    )
    how = (
        f"torchao {metadata.version('torchao')}: int8 {converted} of {_projections(model)} projections "
        f"({as_is} as the model stands, {swapped} dense ones swapped for nn.Linear); compile, freezing"
    )
    return _torch_binder(torch.compile(inner, dynamic=False)), how, True


def _pt2e_int8(model: SqueezeBert, seq_len: int, dynamic: bool) -> tuple[Binder, str, bool]:
    from torchao.quantization.pt2e.inductor_passes.x86 import quant_lift_up
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    # Importing the quantizer sets this pass globally (once per process); set it here for this
    # candidate's compile, and _prepare sets it back after, so no other candidate compiles with it.
    torch._inductor.config.pre_grad_custom_pass = quant_lift_up
    inner = optimize(model, "fp32").model
    # The quantizer finds linears by their nn.Linear module: F.linear inside GroupedLinear is
    # left alone (seen on torchao 0.18), so the dense projections become nn.Linear first.
    swapped = dense_as_linear(inner)
    config = model.config
    # Batch 2 in the example: a dynamic dimension exported at size 1 would be specialised to 1.
    example = {k: torch.from_numpy(v) for k, v in sample_inputs(config, 2, seq_len).items()}
    batch = torch.export.Dim("batch", min=1, max=4096)
    exported = torch.export.export(inner, _args(example), dynamic_shapes=({0: batch},) * 3).module()
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config(is_dynamic=dynamic))
    for module_name in ("pooler", "classifier"):
        quantizer.set_module_name_qconfig(module_name, None)
    prepared = prepare_pt2e(exported, quantizer)
    with torch.no_grad():
        for i in range(CALIBRATION_BATCHES if not dynamic else 1):
            prepared(*_args({k: torch.from_numpy(v) for k, v in sample_inputs(config, 1, seq_len, seed=i).items()}))
    converted = convert_pt2e(prepared)
    linears = [n for n in converted.graph.nodes if n.target == torch.ops.aten.linear.default]
    int8 = sum("dequantize" in str(getattr(n.args[1], "target", "")) for n in linears)
    kind = "dynamic per-tensor activations" if dynamic else f"static per-tensor, {CALIBRATION_BATCHES} random batches"
    how = (
        f"torchao {metadata.version('torchao')} PT2E X86InductorQuantizer ({kind}): int8 {int8} of "
        f"{_projections(model)} projections ({swapped} dense ones swapped for nn.Linear; grouped ones are bmm "
        "and stay fp32; head fp32); compile, freezing"
    )
    return _torch_binder(torch.compile(converted, dynamic=False)), how, True


def _openvino(model: SqueezeBert, precision: str, seq_len: int, threads: int, tmp: Path) -> tuple[Binder, str, bool]:
    from squeezebert.export_openvino import MODEL_FILE, export_model
    from squeezebert.infer import OpenVinoForward

    out = tmp / f"openvino-{precision}"
    calibration = None
    if precision == "int8":
        calibration = [sample_inputs(model.config, 1, seq_len, seed=i) for i in range(CALIBRATION_BATCHES)]
    export_model(
        model, out, None, precision=precision, calibration=calibration, int8_recipe="static", num_threads=threads
    )
    forward = OpenVinoForward(out / MODEL_FILE, num_threads=threads, inference_precision="fp32")

    def bind(batch: Batch) -> Callable[[], np.ndarray]:
        arrays = {k: v.numpy() for k, v in batch.items()}
        return lambda: forward(arrays)

    how = f"openvino {metadata.version('openvino')}, hint f32"
    return bind, how + (", NNCF static int8, 32 random calibration sequences" if precision == "int8" else ""), False


# --------------------------------------------------------------------------- the run
def _prepare(
    name: str,
    model: SqueezeBert,
    cells: dict[str, Batch],
    check: Batch,
    ref: np.ndarray,
    args: argparse.Namespace,
    tmp: Path,
) -> tuple[Row, dict[str, Callable[[], Any]] | None]:
    """Build, compile (first call at every shape) and check one candidate; the row and, if it
    passed, its timed calls per cell."""
    row = Row(name)
    tol = FP32_TOL if name in FP32 else LOW_PRECISION_TOL
    saved = _inductor_config()
    start = time.perf_counter()
    try:
        # Freezing for the compiles only: they happen at the first call of each shape, below.
        with torch._inductor.config.patch(freezing=True, **INDUCTOR_SETTINGS.get(name, {})):
            bind, row.how, compiled = build(name, model, args.seq_len, args.threads, tmp)
            calls = {cell: bind(batch) for cell, batch in cells.items()}
            for call in calls.values():
                call()
            got = _logits(bind(check)())
        row.compile_s = time.perf_counter() - start
        if compiled:  # the timed calls must hit the frozen graphs compiled above
            with torch.compiler.set_stance("fail_on_recompile"):
                for call in calls.values():
                    call()
    except Exception as e:  # every failure is a row, never a crash
        row.error = _error(e)
        return row, None
    finally:  # whatever was set globally (by a library, on import) is undone before the next build
        changed = _restore_inductor_config(saved)
        if changed:
            row.note = f"inductor settings changed globally while building: {', '.join(changed)} (restored); "
    row.max_abs_diff = float(np.abs(got - ref).max())
    if not np.isfinite(row.max_abs_diff) or row.max_abs_diff > tol:
        row.error = f"wrong results: max abs diff {row.max_abs_diff:.3g} > {tol:g}"
        return row, None
    row.note += "ok"
    calls[CHECK] = bind(check)  # not timed: the re-check after timing
    return row, calls


def _inductor_config() -> dict[str, Any]:
    """Inductor's settings as they are now: containers copied (so that a change in place shows),
    anything else by reference (compared by identity: a custom pass has no ``==``)."""
    cfg = torch._inductor.config
    values = {k: getattr(cfg, k) for k in cfg.get_config_copy()}
    return {k: copy.copy(v) if isinstance(v, (list, dict, set)) else v for k, v in values.items()}


def _restore_inductor_config(saved: dict[str, Any]) -> list[str]:
    """Set back every inductor setting that differs from ``saved``; returns their names."""
    cfg, now = torch._inductor.config, _inductor_config()
    changed = [k for k, v in now.items() if k not in saved or not (v is saved[k] or _equal(v, saved[k]))]
    for k in changed:
        if k in saved:
            setattr(cfg, k, saved[k])
    return changed


def _equal(a: Any, b: Any) -> bool:
    plain = (bool, int, float, str, bytes, tuple, list, dict, set, frozenset, type(None))
    return type(a) is type(b) and isinstance(a, plain) and a == b


def run_isolated(name: str, args: argparse.Namespace, tmp: Path) -> Row:
    """``name`` timed in a child process of this script, interleaved with its own eager-fp32."""
    out = tmp / f"{name}.json"
    command = [sys.executable, __file__, "--model", args.model, "--candidates", f"eager-fp32,{name}"]
    command += ["--isolate", "", "--batch-sizes", args.batch_sizes, "--seq-len", str(args.seq_len)]
    command += ["--threads", str(args.threads), "--rounds", str(args.rounds), "--json", str(out)]
    command += ["--warm-cache"] if args.warm_cache else []
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:160]
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        return Row(name, error=f"child process failed ({how}): {tail}")
    rows = {r["name"]: r for r in json.loads(out.read_text())["candidates"]}
    row = Row(**rows[name])
    row.reference_p50_ms = rows["eager-fp32"]["p50_ms"]
    row.note = (
        (row.note + "; " if row.note else "")
        + "own process, eager-fp32 there: "
        + " / ".join(f"{v:.2f}" for v in row.reference_p50_ms.values())
        + " ms"
    )
    return row


def _cell(batch_size: int) -> str:
    return f"b{batch_size}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint directory or preset (random weights, 2 labels)")
    ap.add_argument("--candidates", default=",".join(CANDIDATES))
    ap.add_argument("--skip-autotune", action="store_true", help="leave out compile-max-autotune (slow to compile)")
    ap.add_argument("--isolate", default="zentorch", help="candidates timed each in a child process")
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=20, help="timed interleaved rounds per cell")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument(
        "--warm-cache",
        action="store_true",
        help="compile with inductor's usual on-disk cache (default: an empty one, so compile s is a cold compile)",
    )
    args = ap.parse_args()
    faulthandler.enable()  # a crash inside a compiler (not an exception) at least says where
    names = [n for n in args.candidates.split(",") if n]
    if args.skip_autotune:
        names = [n for n in names if n != "compile-max-autotune"]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise SystemExit(f"unknown candidates {unknown}; choose from {', '.join(CANDIDATES)}")
    isolated = [n for n in args.isolate.split(",") if n and n in names]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    # Process-wide settings belong to the entry point: threads once; and a recompile limit high
    # enough for every compiled candidate at every shape (they share SqueezeBert.forward's code
    # object), failing loudly if it is reached rather than silently running eager.
    torch.set_num_threads(args.threads)
    torch._dynamo.config.recompile_limit = 64
    torch._dynamo.config.accumulated_recompile_limit = 1024
    torch._dynamo.config.fail_on_recompile_limit_hit = True

    torch.manual_seed(0)
    model = load(args.model, num_labels=2 if args.model in PRESETS else None).model.eval()
    config = model.config
    cells = {_cell(b): random_batch(config.vocab_size, b, args.seq_len) for b in batch_sizes}
    # Padded, with a second segment; the shape of the largest cell, so no extra compile.
    check = {k: torch.from_numpy(v) for k, v in sample_inputs(config, max(batch_sizes), args.seq_len, seed=1).items()}
    with torch.inference_mode():
        ref = model(*_args(check)).float().numpy()

    rows: dict[str, Row] = {}
    timed: dict[str, dict[str, Callable[[], Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if not args.warm_cache:  # read by inductor at every cache access; a child makes its own
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(tmp / "inductor-cache")
        for name in names:
            if name in isolated:
                continue
            print(f"building {name} ...", file=sys.stderr, flush=True)
            rows[name], calls = _prepare(name, model, cells, check, ref, args, tmp)
            if calls is not None:
                timed[name] = calls
            print(f"  {rows[name].error or 'ok'} ({rows[name].compile_s or 0:.1f} s)", file=sys.stderr, flush=True)

        rng = random.Random(0)
        for cell in cells:
            calls = {name: c[cell] for name, c in timed.items()}  # (never CHECK)
            for name, t in time_interleaved(calls, warmup=1, repeats=args.rounds, shuffle=rng).items():
                rows[name].p50_ms[cell] = t.p50
                rows[name].timings[cell] = t.to_dict()
        # Check again after the timed calls (a stale weight cache, a recompile gone wrong).
        for name, c in timed.items():
            row = rows[name]
            after = float(np.abs(_logits(c[CHECK]()) - ref).max())
            tol = FP32_TOL if name in FP32 else LOW_PRECISION_TOL
            if not after <= tol:
                row.error = f"wrong results after timing: max abs diff {after:.3g} > {tol:g}"
            row.max_abs_diff = max(row.max_abs_diff or 0.0, after)

        for name in isolated:  # after the main rounds, so the child has the cores to itself
            print(f"building and timing {name} in a child process ...", file=sys.stderr, flush=True)
            rows[name] = run_isolated(name, args, tmp)

    ordered = [rows[n] for n in names]
    report(ordered, cells, args, float(np.abs(ref).max()))
    if args.json:
        result = {
            "environment": environment(args.threads)
            | {"extra_versions": {p: _version(p) for p in ("torchao", "zentorch", "openvino", "nncf")}},
            "args": vars(args),
            "reference_max_abs_logit": float(np.abs(ref).max()),
            "candidates": [asdict(r) for r in ordered],
        }
        atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def report(rows: list[Row], cells: dict[str, Batch], args: argparse.Namespace, max_logit: float) -> None:
    best_existing = {
        cell: min((r.p50_ms[cell] for r in rows if r.name in EXISTING and cell in r.p50_ms), default=None)
        for cell in cells
    }
    print(
        f"\n{args.model}: seq {args.seq_len}, {args.threads} threads, {args.rounds} rounds, torch {torch.__version__}; "
        f"median ms (ratio to the fastest eager candidate); check batch max |logit| {max_logit:.3g}\n"
    )
    heads = " | ".join(f"batch {c.removeprefix('b')} ms" for c in cells)
    print(f"| candidate | {heads} | compile s | max abs diff | status |")
    print("|---|" + "---|" * len(cells) + "---|---|---|")
    for r in rows:
        values = []
        for cell in cells:
            ms, best, mark = r.p50_ms.get(cell), best_existing[cell], ""
            if r.reference_p50_ms is not None:  # timed in its own process: against the eager there
                best, mark = r.reference_p50_ms.get(cell), " of its eager-fp32"
            ratio = f" ({ms / best:.2f}x{mark})" if ms is not None and best else ""
            values.append("–" if ms is None or r.error else f"{ms:.2f}{ratio}")
        compile_s = "–" if r.compile_s is None else f"{r.compile_s:.1f}"
        diff = "–" if r.max_abs_diff is None else f"{r.max_abs_diff:.2g}"
        status = f"FAILED: {r.error}" if r.error else r.note
        print(f"| {r.name} | {' | '.join(values)} | {compile_s} | {diff} | {status.replace('|', '/')} |")
    print("\nHow each was built:")
    for r in rows:
        if r.how:
            print(f"- {r.name}: {r.how}")


if __name__ == "__main__":
    main()
