"""Time ONNX model files against each other, interleaved, in one ONNX Runtime process.

Each argument is a ``model.onnx`` (or an export directory), optionally suffixed ``@nospin`` to
run it with ONNX Runtime's worker threads sleeping instead of busy-waiting between operators.
Every round runs each candidate once (several calls for small batches) in a fresh random order,
through :func:`squeezebert.timing.time_interleaved` (which pauses before each call, so one
candidate's spinning threads stay out of the next one's time); the table gives median ms per
call and the ratio to the first candidate. Inputs are random token ids of the given shape; in
every row after the first, the second half is padding.

    python scripts/onnx_speed.py --batch 32 --seq 25 --rounds 12 old/model.onnx new/model.onnx
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np

from squeezebert.infer import OnnxForward
from squeezebert.timing import time_interleaved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    sessions = {}
    for spec in args.models:
        path, _, flag = spec.partition("@")
        if flag not in ("", "nospin"):
            raise SystemExit(f"{spec}: the only suffix is @nospin")
        file = Path(path) / "model.onnx" if Path(path).is_dir() else Path(path)
        sessions[spec] = OnnxForward(file, num_threads=args.threads, busy_wait=flag != "nospin")
    rng = np.random.default_rng(0)
    feed = {
        "input_ids": rng.integers(1000, 2000, (args.batch, args.seq)),
        "attention_mask": np.ones((args.batch, args.seq), np.int64),
        "token_type_ids": np.zeros((args.batch, args.seq), np.int64),
    }
    feed["attention_mask"][1:, args.seq // 2 :] = 0
    calls = max(1, 20 // args.batch)  # several calls per timing for small batches

    def timed(forward: OnnxForward) -> Callable[[], None]:
        def run() -> None:
            for _ in range(calls):
                forward(feed)

        return run

    timings = time_interleaved(
        {name: timed(forward) for name, forward in sessions.items()},
        warmup=3,
        repeats=args.rounds,
        shuffle=random.Random(0),
    )
    first = None
    print(f"batch {args.batch} x seq {args.seq}, {args.threads} threads, {args.rounds} rounds")
    for name, timing in timings.items():
        ms = timing.p50 / calls
        first = first or ms
        print(f"{name:50s} {ms:9.2f} ms  {ms / first:5.2f}x")


if __name__ == "__main__":
    main()
