"""Before/after timing of an optimize() change: each precision with and without the Q/K/V fusion.

For each model (a preset with random weights, or a checkpoint directory), thread count and batch
size, every candidate runs once per round in a freshly shuffled order, so drift on a shared
machine hits all alike; the median per candidate and the ratio fused / unfused are printed as a
markdown table. Precisions where the fusion changes nothing for that model (e.g. fp32 grouped Q/K/V)
are skipped. Random token ids, no padding.

    python scripts/fast_path_speed.py squeezebert-uncased /work/runs/student-sst2-lowrank \\
        --threads 1,2 --batch-sizes 1,32 --seq-len 128 --rounds 15,3
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

from squeezebert.checkpoint import load
from squeezebert.config import preset
from squeezebert.model import SqueezeBert
from squeezebert.quantize import FusedQKV, optimize
from squeezebert.timing import time_interleaved


def build(spec: str) -> SqueezeBert:
    if Path(spec).is_dir():
        return load(spec).model
    torch.manual_seed(0)
    return SqueezeBert(preset(spec, num_labels=2)).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", help="preset names or checkpoint directories")
    ap.add_argument("--precisions", default="fp32,bf16,int8")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--rounds", default="15,3", help="rounds per batch size (comma list, same order)")
    args = ap.parse_args()
    rounds = [int(r) for r in args.rounds.split(",")]
    rng = random.Random(0)
    print(f"torch {torch.__version__}, seq {args.seq_len}; median ms over rounds, interleaved")
    print("| model | threads | batch | precision | unfused ms | fused ms | fused / unfused | rounds |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in args.models:
        model = build(spec)
        cands = {}
        for precision in args.precisions.split(","):
            fused = optimize(model, precision)
            if not any(isinstance(m, FusedQKV) for m in fused.modules()):
                continue
            cands[(precision, "unfused")] = optimize(model, precision, fuse_qkv=False)
            cands[(precision, "fused")] = fused
        name = Path(spec).name if Path(spec).is_dir() else spec
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            for i, batch in enumerate(int(b) for b in args.batch_sizes.split(",")):
                ids = torch.randint(1000, model.config.vocab_size, (batch, args.seq_len))
                mask = torch.ones_like(ids)
                n = rounds[min(i, len(rounds) - 1)]
                # one warm-up call each (oneDNN primitive creation), then n shuffled rounds
                calls = {k: (lambda m=m, x=ids, a=mask: m(x, a)) for k, m in cands.items()}
                timed = time_interleaved(calls, warmup=1, repeats=n, shuffle=rng)
                for precision in dict.fromkeys(p for p, _ in cands):
                    before = timed[(precision, "unfused")].p50
                    after = timed[(precision, "fused")].p50
                    print(
                        f"| {name} | {threads} | {batch} | {precision} | {before:.1f} | {after:.1f} | "
                        f"{after / before:.2f} | {n} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
