"""Batch inference throughput: single-process `predict` against `batch` on a local Ray instance.

Generates N texts (5 to 20 words drawn from the demo training sentences' vocabulary, fixed seed)
into a CSV with an id column, saves a classifier with a random 2-label head (``tiny`` preset with
the MiniLM WordPiece vocabulary, or ``minilm-l6``), then runs, interleaved, ``--repeats`` times:

* ``predict 1x1``: :func:`squeezebert.predict.predict_file` in this process, 1 torch thread;
* ``predict 1x2`` (with ``--with-2-threads``): the same with 2 torch threads;
* ``ray 2x1``: :func:`squeezebert.batch.classify_file` on a fresh local Ray instance with 2 CPUs,
  2 actors x 1 thread.

Each figure is end-to-end wall time of the call: reading the input, loading the model (in every
actor for Ray), classifying, writing the JSONL output; for Ray also starting and stopping the
instance. texts/s = N / that time. ``predict``'s own classification-only rate (model loading and
input header excluded) is reported alongside. The script also checks that Ray's output rows equal
predict's (ids, labels; scores within 1e-6).

    python scripts/bench_batch.py --model tiny --texts 100000 --repeats 3 --out /tmp/bench_batch
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import statistics
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import torch  # noqa: E402

from squeezebert.batch import classify_file  # noqa: E402
from squeezebert.checkpoint import load, minilm_dir, save_checkpoint  # noqa: E402
from squeezebert.predict import predict_file  # noqa: E402
from squeezebert.runtime import RuntimeOptions  # noqa: E402
from squeezebert.squeeze import demo_data_dir  # noqa: E402
from squeezebert.tokenizer import Tokenizer  # noqa: E402

LABELS = {0: "negative", 1: "positive"}


def make_model(name: str, where: Path) -> Path:
    torch.manual_seed(0)
    if name == "tiny":
        ckpt = load("tiny", id2label=LABELS)
        tokenizer = Tokenizer.from_dir(minilm_dir())
    else:
        ckpt = load(name, id2label=LABELS)
        tokenizer = ckpt.tokenizer
    save_checkpoint(ckpt.model, where, tokenizer)
    return where


def make_texts(n: int, path: Path, seed: int = 0) -> None:
    rows = (demo_data_dir() / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    vocab = sorted({w for row in rows for w in row.split("\t")[0].split()})
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        for i in range(n):
            writer.writerow([f"t{i}", " ".join(rng.choices(vocab, k=rng.randint(5, 20)))])


def same_rows(a: Path, b: Path) -> int:
    """Rows of ``b`` that differ from ``a`` (id, label, or a score by more than 1e-6)."""
    bad = 0
    with a.open(encoding="utf-8") as fa, b.open(encoding="utf-8") as fb:
        for la, lb in zip(fa, fb, strict=True):
            ra, rb = json.loads(la), json.loads(lb)
            bad += ra["id"] != rb["id"] or ra["label"] != rb["label"] or abs(ra["score"] - rb["score"]) > 1e-6
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny", help="tiny or minilm-l6 (random 2-label head either way)")
    parser.add_argument("--texts", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--with-2-threads", action="store_true", help="also predict with 2 torch threads")
    parser.add_argument("--out", type=Path, required=True, help="working directory (model, input, outputs)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = make_model(args.model, args.out / f"model-{args.model}")
    src = args.out / f"texts-{args.texts}.csv"
    make_texts(args.texts, src)
    common = {"id_column": "id", "batch_size": args.batch_size}
    options = RuntimeOptions(max_length=args.max_length)

    def run_predict(threads: int) -> tuple[float, float]:
        t0 = time.perf_counter()
        out = args.out / f"predict-{threads}.jsonl"
        report = predict_file(model, src, out, options=replace(options, num_threads=threads), **common)
        return time.perf_counter() - t0, report.texts_per_s

    def run_ray() -> tuple[float, float]:
        t0 = time.perf_counter()
        out = args.out / "ray.jsonl"
        classify_file(model, src, out, num_cpus=2, num_workers=2, threads_per_worker=1, options=options, **common)
        wall = time.perf_counter() - t0
        return wall, args.texts / wall

    candidates = {"predict 1x1": lambda: run_predict(1), "ray 2x1": run_ray}
    if args.with_2_threads:
        candidates["predict 1x2"] = lambda: run_predict(2)
    walls: dict[str, list[float]] = {k: [] for k in candidates}
    inner: dict[str, list[float]] = {k: [] for k in candidates}
    load_before = os.getloadavg()
    for r in range(args.repeats):
        for name, fn in candidates.items():
            wall, rate = fn()
            walls[name].append(wall)
            inner[name].append(rate)
            print(f"repeat {r + 1} {name}: {wall:.1f} s, {args.texts / wall:.0f} texts/s end to end", flush=True)
    mismatches = same_rows(args.out / "predict-1.jsonl", args.out / "ray.jsonl")
    base = statistics.median(args.texts / w for w in walls["predict 1x1"])
    result = {
        "model": args.model,
        "texts": args.texts,
        "repeats": args.repeats,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "ray_rows_differing_from_predict": mismatches,
        "results": {
            name: {
                "texts_per_s_median": round(statistics.median(args.texts / w for w in walls[name]), 1),
                "texts_per_s_all": [round(args.texts / w, 1) for w in walls[name]],
                "wall_s_all": [round(w, 2) for w in walls[name]],
                "vs_predict_1x1": round(statistics.median(args.texts / w for w in walls[name]) / base, 2),
                # predict: classification only (its own report); ray: same as end to end.
                "inner_texts_per_s_median": round(statistics.median(inner[name]), 1),
            }
            for name in candidates
        },
    }
    print(json.dumps(result, indent=2))
    (args.out / f"bench_batch-{args.model}-{args.texts}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
