"""Where an OpenVINO model's time goes: the CPU plugin's per-node counters (PERF_COUNT), summed by
node type and by execution kernel, over a few calls on random full-length inputs.

    PYTHONPATH=src python scripts/openvino_profile.py squeezebert-uncased --precision int8 \
        --inference-precision bf16 --batch 1 --seq 128 --threads 2

The model is a checkpoint, alias or preset (a preset gets random weights and a 2-label head);
int8 calibrates on random ids here (timing only) with the static recipe, as the benchmark does.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="int8")
    parser.add_argument("--inference-precision", choices=("fp32", "bf16"), default=None)
    parser.add_argument("--recipe", choices=("static", "dynamic"), default="static")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args()

    from squeezebert.checkpoint import load, resolve
    from squeezebert.export import sample_inputs
    from squeezebert.export_openvino import export_model
    from squeezebert.infer import import_openvino

    ckpt = load(args.model, num_labels=2) if isinstance(resolve(args.model), str) else load(args.model)
    config = ckpt.model.config
    ov = import_openvino()
    with tempfile.TemporaryDirectory() as tmp:
        calibration = [sample_inputs(config, 1, args.seq, seed=i, pad_step=0) for i in range(32)]
        export_model(
            ckpt.model,
            tmp,
            None,
            precision=args.precision,
            calibration=calibration if args.precision == "int8" else None,
            inference_precision=args.inference_precision,
            int8_recipe=args.recipe,
        )
        hint = {"fp32": "f32", "bf16": "bf16"}[
            args.inference_precision or ("bf16" if args.precision == "bf16" else "fp32")
        ]
        props = {
            "PERF_COUNT": True,
            "INFERENCE_PRECISION_HINT": hint,
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "INFERENCE_NUM_THREADS": args.threads,
            "DYNAMIC_QUANTIZATION_GROUP_SIZE": 32 if args.recipe == "dynamic" else 0,
        }
        core = ov.Core()
        compiled = core.compile_model(core.read_model(str(Path(tmp) / "model.xml")), "CPU", props)
    request = compiled.create_infer_request()
    inputs = sample_inputs(config, args.batch, args.seq, seed=99, pad_step=0)
    for _ in range(3):  # warm-up
        request.infer(inputs)
    by_type: dict[str, float] = defaultdict(float)
    by_kernel: dict[str, float] = defaultdict(float)
    total = 0.0
    for _ in range(args.calls):
        request.infer(inputs)
        for info in request.profiling_info:
            us = info.real_time.total_seconds() * 1e6
            by_type[info.node_type] += us
            by_kernel[f"{info.node_type} [{info.exec_type}]"] += us
            total += us
    n = args.calls
    print(f"{args.model}: {args.precision} (hint {hint}), batch {args.batch} x seq {args.seq}, {args.threads} threads")
    print(f"sum of node times per call: {total / n / 1000:.2f} ms\n")
    print("| node type | ms per call | share |\n|---|---|---|")
    for name, us in sorted(by_type.items(), key=lambda kv: -kv[1])[:15]:
        print(f"| {name} | {us / n / 1000:.2f} | {us / total:.1%} |")
    print("\n| node type [kernel] | ms per call | share |\n|---|---|---|")
    for name, us in sorted(by_kernel.items(), key=lambda kv: -kv[1])[:15]:
        print(f"| {name} | {us / n / 1000:.2f} | {us / total:.1%} |")


if __name__ == "__main__":
    main()
