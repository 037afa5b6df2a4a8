"""Where the time of one optimized forward goes: torch.profiler, operators by self CPU time.

Random weights (timing does not depend on them), random token ids without padding.

    python scripts/profile_inference.py --preset squeezebert-uncased --precision int8 --batch 1 --seq-len 128
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from squeezebert.config import preset
from squeezebert.model import SqueezeBert
from squeezebert.quantize import optimize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="squeezebert-uncased")
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--int8-activations", default="per-token")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--rows", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = SqueezeBert(preset(args.preset, num_labels=2)).eval()
    fast = optimize(model, args.precision, int8_activations=args.int8_activations)
    ids = torch.randint(1000, model.config.vocab_size, (args.batch, args.seq_len))
    mask = torch.ones_like(ids)
    for _ in range(3):  # warm-up: oneDNN primitive creation
        fast(ids, mask)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.calls):
            fast(ids, mask)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print(
        f"{args.preset} {args.precision} ({args.int8_activations}), batch {args.batch} x seq {args.seq_len}, "
        f"{args.threads} thread(s): {total / args.calls / 1e3:.1f} ms of CPU per call (mean of {args.calls})"
    )
    print("| operator | share | ms per forward | calls per forward |")
    print("|---|---|---|---|")
    for e in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[: args.rows]:
        print(
            f"| {e.key} | {100 * e.self_cpu_time_total / total:.1f}% | "
            f"{e.self_cpu_time_total / args.calls / 1e3:.2f} | {e.count // args.calls} |"
        )


if __name__ == "__main__":
    main()
