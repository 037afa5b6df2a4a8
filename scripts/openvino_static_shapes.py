"""Milliseconds per single text through OpenVINO exports with and without static compiled models
for the frequent lengths (backends.OpenVinoForward ``static_shapes``), interleaved in one process,
and what each static model adds to the resident memory (docs/RESULTS.md, "Static shapes at
batch 1").

Usage: python scripts/openvino_static_shapes.py TEXTS_FILE EXPORT_DIR [EXPORT_DIR ...]
  TEXTS_FILE: text/CSV/TSV/JSONL (column ``text``, or ``sentence`` for GLUE tsv; a ``question`` /
  ``sentence2`` column makes pairs). Environment: TEXTS (128), ROUNDS (10), THREADS (2),
  VARIANTS (0,4,8: static_shapes values).
Prints one JSON line per export and variant: median ms per call over rounds, static lengths
compiled, resident-memory growth.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time

from squeezebert.backends import STATIC_PROMOTE_AFTER, OpenVinoForward
from squeezebert.infer import openvino_export_forward
from squeezebert.tables import read_texts
from squeezebert.tokenizer import Tokenizer


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def columns(path: str) -> tuple[str, str | None]:
    with open(path, encoding="utf-8") as f:
        head = f.readline().strip().replace(",", "\t").split("\t")
    for text, pair in (("sentence1", "sentence2"), ("question", "sentence"), ("#1 String", "#2 String"), ("a", "b")):
        if text in head and pair in head:
            return text, pair
    return ("sentence" if "sentence" in head else "text"), None


def deployed(export: str, threads: int, variant: str) -> OpenVinoForward:
    """The export's forward as ``Classifier.from_pretrained`` builds it, with the variant's
    ``static_shapes`` (and ``/step``)."""
    count, _, step = variant.partition("/")
    return openvino_export_forward(export, threads, static_shapes=int(count), static_step=int(step) if step else None)


def main(texts_file: str, *exports: str) -> None:
    n, rounds = int(os.environ.get("TEXTS", 128)), int(os.environ.get("ROUNDS", 10))
    threads = int(os.environ.get("THREADS", 2))
    variants = [v.strip() for v in os.environ.get("VARIANTS", "0,4/8,8/16").split(",")]
    text, pair = columns(texts_file)
    examples = read_texts(texts_file, text, pair, plain_if_unknown=True)
    examples = random.Random(int(os.environ.get("SEED", 0))).sample(examples, min(n, len(examples)))
    forwards, inputs = {}, {}
    for export in exports:
        tok = Tokenizer.from_dir(export)
        inputs[export] = [tok([e.text], [e.text_pair] if pair else None, 128) for e in examples]
        for v in variants:
            forwards[(export, v)] = deployed(export, threads, v)
    # Warm-up passes: a length is promoted on its STATIC_PROMOTE_AFTER-th call, so that many passes
    # compile every static model before the first timed round (one pass left the compiles in it).
    for _ in range(STATIC_PROMOTE_AFTER):
        for key, forward in forwards.items():
            for batch in inputs[key[0]]:
                forward(batch)
    samples: dict[tuple[str, int], list[float]] = {key: [] for key in forwards}
    order = list(forwards)
    for _ in range(rounds):
        random.shuffle(order)
        for key in order:
            forward = forwards[key]
            start = time.perf_counter()
            for batch in inputs[key[0]]:
                forward(batch)
            samples[key].append((time.perf_counter() - start) / len(inputs[key[0]]) * 1e3)
    lengths = sorted(b["input_ids"].shape[1] for b in next(iter(inputs.values())))
    for (export, v), forward in forwards.items():
        ms = round(statistics.median(samples[(export, v)]), 3)
        row = {"export": export, "variant": v, "static_step": forward.static_step, "ms_p50": ms}
        row.update(static_lengths=sorted(forward.static), texts=len(lengths), tokens_p50=lengths[len(lengths) // 2])
        print(json.dumps(row), flush=True)
    # Memory of the static models: one fresh forward, RSS before and after promoting the lengths.
    for export in exports:
        forward = deployed(export, threads, variants[-1])
        forward(inputs[export][0])
        before = rss_mb()
        for batch in inputs[export]:
            forward(batch)
        grown = rss_mb() - before
        count = len(forward.static)
        print(json.dumps({"export": export, "static_models": count, "rss_mb_each": round(grown / max(count, 1), 1)}))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
