"""What the int8 accuracy options cost in speed: interleaved latency of one checkpoint's paths.

Candidates (each built once): torch fp32, torch int8 per-token (the default), torch int8
per-tensor (the plain path), and the same two int8 variants exported to ONNX Runtime. Inputs are
random token ids ``(batch, seq)`` without padding. Within a round every candidate runs once, in a
freshly shuffled order, so drift on a shared machine hits all alike; the median per candidate and
its ratio to the plain int8 path are printed.

    python scripts/int8_speed.py /work/runs/teacher-sst2 --threads 1 --batch-sizes 1,32 --seq-len 128
"""

from __future__ import annotations

import argparse
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from squeezebert.checkpoint import load
from squeezebert.export import _session, export_model, sample_inputs
from squeezebert.quantize import optimize
from squeezebert.timing import time_interleaved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--rounds", default="40,6", help="rounds per batch size (comma list, same order)")
    ap.add_argument("--no-onnx", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load(args.model).model
    cands: dict[str, Callable[[dict[str, np.ndarray]], object]] = {}

    def torch_call(m: torch.nn.Module) -> Callable[[dict[str, np.ndarray]], object]:
        return lambda inp: m(**{k: torch.from_numpy(v) for k, v in inp.items()})

    cands["torch fp32"] = torch_call(optimize(model, "fp32"))
    cands["torch int8 per-token"] = torch_call(optimize(model, "int8", int8_activations="per-token"))
    cands["torch int8 per-tensor"] = torch_call(optimize(model, "int8", int8_activations="per-tensor"))
    tmp = tempfile.TemporaryDirectory()
    if not args.no_onnx:
        for act in ("per-token", "per-tensor"):
            out = Path(tmp.name) / act
            export_model(model, out, precision="int8", int8_activations=act)
            session = _session(out / "model.onnx", args.threads)
            cands[f"onnx int8 {act}"] = lambda inp, s=session: s.run(None, inp)
    rng = random.Random(0)
    rounds = [int(r) for r in args.rounds.split(",")]
    print(f"{args.model}: seq {args.seq_len}, {args.threads} thread(s), torch {torch.__version__}")
    print("| batch | candidate | median ms | vs torch int8 per-tensor | rounds |")
    print("|---|---|---|---|---|")
    for i, batch in enumerate(int(b) for b in args.batch_sizes.split(",")):
        inp = sample_inputs(model.config, batch, args.seq_len, pad_step=0)
        n = rounds[min(i, len(rounds) - 1)]
        # two warm-up calls each (oneDNN primitive creation, ORT allocations), then n shuffled rounds
        timed = time_interleaved(
            {name: (lambda c=call, x=inp: c(x)) for name, call in cands.items()}, warmup=2, repeats=n, shuffle=rng
        )
        base = timed["torch int8 per-tensor"].p50
        for name, t in timed.items():
            print(f"| {batch} | {name} | {t.p50:.1f} | {t.p50 / base:.2f}x | {n} |", flush=True)
    tmp.cleanup()


if __name__ == "__main__":
    main()
