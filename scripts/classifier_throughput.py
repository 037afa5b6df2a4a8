"""Texts per second of our Classifier alone (tokenization, forward, labels; no transformers in the
loop) on a workload file, one text per call and 32 per call: the path a code change could slow.
Run it from two trees alternately (PYTHONPATH=TREE/src) to compare them on the same export
(docs/RESULTS.md, issue 18's before/after).

Usage: python scripts/classifier_throughput.py MODEL_OR_EXPORT_DIR WORKLOAD.tsv [LABEL] [THREADS]
Environment: STATIC_SHAPES (OpenVINO's static single-text models, see backends.OpenVinoForward;
unset: the default). Prints one JSON line: {"label", "package", "b1", "b32"} (texts/s, median of
5 passes).
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import sys
import time

import squeezebert
from squeezebert.infer import Classifier


def main(model: str, workload: str, label: str = "", threads: int = 2) -> None:
    with open(workload, encoding="utf-8", newline="") as f:
        texts = [r["sentence"] for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    static = os.environ.get("STATIC_SHAPES")
    clf = Classifier.from_pretrained(model, num_threads=threads, static_shapes=None if static is None else int(static))
    out = {"label": label, "package": squeezebert.__file__}
    for bs in (1, 32):
        chunks = [texts[i : i + bs] for i in range(0, len(texts), bs)]
        for c in chunks[:50]:  # warm-up
            clf.predict(c, batch_size=bs)
        rates = []
        for _ in range(5):
            start = time.perf_counter()
            for c in chunks:
                clf.predict(c, batch_size=bs)
            rates.append(len(texts) / (time.perf_counter() - start))
        out[f"b{bs}"] = round(statistics.median(rates), 1)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], *sys.argv[3:4], *(int(a) for a in sys.argv[4:5]))
