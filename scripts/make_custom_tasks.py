"""Two custom-data tasks for the squeeze-for-latency table (docs/RESULTS.md, issue 15), derived
from the GLUE files beside the repository so that they run through the custom-data path (file
formats, label names, columns) rather than the GLUE loaders:

- ``short``: 10,000 SST-2 training phrases (random, seed 0; about 10 tokens at the median) as
  JSONL ``{"text", "label"}`` with labels ``negative``/``positive``; dev = the SST-2 dev sentences.
- ``pairs3``: STS-B pairs as CSV ``a,b,label`` with three classes by similarity score:
  ``low`` (< 2), ``mid`` (2 to < 3.5), ``high`` (>= 3.5); train and dev from STS-B's.

Usage: python scripts/make_custom_tasks.py GLUE_DIR OUT_DIR   (writes OUT_DIR/{short,pairs3}-{train,dev}.*)
"""

from __future__ import annotations

import csv
import json
import random
import sys
from pathlib import Path

SENTIMENT = {"0": "negative", "1": "positive"}


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def similarity_class(score: float) -> str:
    return "low" if score < 2.0 else "mid" if score < 3.5 else "high"


def main(glue: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    train = rows(glue / "SST-2" / "train.tsv")
    random.Random(0).shuffle(train)
    for name, part in (("short-train.jsonl", train[:10_000]), ("short-dev.jsonl", rows(glue / "SST-2" / "dev.tsv"))):
        with (out / name).open("w", encoding="utf-8") as f:
            for r in part:
                f.write(json.dumps({"text": r["sentence"].strip(), "label": SENTIMENT[r["label"]]}) + "\n")
    for split in ("train", "dev"):
        with (out / f"pairs3-{split}.csv").open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["a", "b", "label"])
            for r in rows(glue / "STS-B" / f"{split}.tsv"):
                w.writerow([r["sentence1"], r["sentence2"], similarity_class(float(r["score"]))])
    print(f"wrote {out}/short-{{train,dev}}.jsonl and {out}/pairs3-{{train,dev}}.csv")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
