"""What batching can gain at most: the model's cost per text at each batch size, no HTTP at all.

The server's micro-batching can raise throughput by at most (cost per text at batch 1) / (cost per
text at the batch sizes it forms), plus whatever per-request overhead it amortizes. This measures
that ceiling for one model on the load test's texts, in one process, interleaved:

- one model call (`Classifier.predict`) on B texts, for B in --batch-sizes, split into stages
  (normalize + tokenize, pad, forward, postprocess) for one forward pass of B;
- a merged call of --merged texts cut into length-sorted forward passes of each --forward size
  (what `serve --forward-batch-size` chooses).

    python scripts/serve_model_cost.py MODEL --threads 1 --repeats 15 [--precision bf16] [--backend onnx]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from squeezebert.infer import Classifier
from squeezebert.loadtest import _SAMPLE_TEXTS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch-sizes", default="1,4,8,16,32")
    parser.add_argument("--merged", type=int, default=32)
    parser.add_argument("--forward", default="4,8,16,32")
    parser.add_argument("--precision", default=None, help="fp32, bf16 or int8 (default: the checkpoint's own)")
    parser.add_argument("--backend", default="torch", choices=("torch", "onnx"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    clf = Classifier.from_pretrained(
        args.model, precision=args.precision, backend=args.backend, num_threads=args.threads
    )
    texts = list(_SAMPLE_TEXTS)

    def batch(n: int) -> list[str]:
        return [texts[i % len(texts)] for i in range(n)]

    sizes = [int(x) for x in args.batch_sizes.split(",")]
    forwards = [int(x) for x in args.forward.split(",")]
    for n in sizes:
        clf.predict(batch(n), batch_size=n)  # warm-up
    stages: dict[int, dict[str, list[float]]] = {n: {"encode": [], "pad": [], "forward": [], "post": []} for n in sizes}
    merged: dict[int, list[float]] = {f: [] for f in forwards}
    for _ in range(args.repeats):  # interleaved: every candidate once per round
        for n in sizes:
            b = batch(n)
            t0 = time.perf_counter()
            items = clf.encode(b)
            t1 = time.perf_counter()
            padded = clf.tokenizer.pad(items)
            t2 = time.perf_counter()
            logits = clf.forward(padded)
            t3 = time.perf_counter()
            clf.postprocess(logits)
            t4 = time.perf_counter()
            for key, dt in zip(("encode", "pad", "forward", "post"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                stages[n][key].append(dt)
        for f in forwards:
            t0 = time.perf_counter()
            clf.predict(batch(args.merged), batch_size=f)
            merged[f].append((time.perf_counter() - t0) / args.merged)

    def total(n: int) -> list[float]:
        return [sum(parts) for parts in zip(*stages[n].values())]

    base = statistics.median(total(sizes[0])) / sizes[0]
    report = {
        "model": args.model,
        "precision": clf.precision,
        "backend": clf.backend,
        "threads": args.threads,
        "repeats": args.repeats,
        "calls": [],
        "merged": [],
    }
    print(f"token lengths of the texts (with [CLS]/[SEP]): {sorted(len(ids) for ids, _ in clf.encode(texts))}")
    print("| texts per call | ms per call | ms per text | texts/s | vs batch 1 | tokenize ms | forward ms |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        ms = 1000 * statistics.median(total(n))
        row = {
            "batch": n,
            "ms_per_call": ms,
            "ms_per_text": ms / n,
            "texts_per_s": 1000 * n / ms,
            "gain": base * 1000 / (ms / n),
            **{f"{k}_ms": 1000 * statistics.median(v) for k, v in stages[n].items()},
        }
        report["calls"].append(row)
        print(
            f"| {n} | {ms:.2f} | {ms / n:.2f} | {row['texts_per_s']:.0f} | {row['gain']:.2f}x | "
            f"{row['encode_ms']:.2f} | {row['forward_ms']:.2f} |"
        )
    print(f"\n| {args.merged} texts in forward passes of | ms per text | vs batch 1 |")
    print("|---|---|---|")
    for f in forwards:
        ms = 1000 * statistics.median(merged[f])
        report["merged"].append({"forward_batch_size": f, "ms_per_text": ms, "gain": base * 1000 / ms})
        print(f"| {f} | {ms:.2f} | {base * 1000 / ms:.2f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
