"""How much look-alike obfuscation hurts a classifier, with and without normalization.

Builds an obfuscated copy of a GLUE single-sentence dev set by replacing a fraction of the Latin
letters that have a Cyrillic or Greek look-alike (seeded), then reports accuracy and agreement
with the clean-text predictions, with ``normalize_text`` on and off.

    python scripts/homoglyph_experiment.py runs/teacher-sst2 --data-dir $SQUEEZEBERT_GLUE_DIR --fraction 0.3
"""

from __future__ import annotations

import argparse
import random

import numpy as np

from squeezebert.data import glue_task, load_glue
from squeezebert.infer import Classifier

# Latin letter -> look-alikes an obfuscator would use (Cyrillic, Greek); the inverse direction
# of the normalizer's table, written separately so the test is not circular by construction.
LOOKALIKES = {
    "a": ["\u0430", "\u03b1"],
    "c": ["\u0441", "\u03f2"],
    "e": ["\u0435"],
    "i": ["\u0456", "\u03b9"],
    "j": ["\u0458"],
    "o": ["\u043e", "\u03bf"],
    "p": ["\u0440", "\u03c1"],
    "s": ["\u0455"],
    "x": ["\u0445", "\u03c7"],
    "y": ["\u0443"],
}


def obfuscate(text: str, fraction: float, rng: random.Random) -> str:
    return "".join(rng.choice(LOOKALIKES[ch]) if ch in LOOKALIKES and rng.random() < fraction else ch for ch in text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--fraction", type=float, default=0.3, help="share of eligible letters replaced")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    spec = glue_task(args.task)
    examples = load_glue(spec.name, "dev", args.data_dir)
    rng = random.Random(args.seed)
    clean = [ex.text for ex in examples]
    dirty = [obfuscate(t, args.fraction, rng) for t in clean]
    gold = np.array([spec.labels.index(str(ex.label)) for ex in examples])
    changed = sum(a != b for a, b in zip(clean, dirty))
    print(f"{spec.name} dev: {len(clean)} texts, {changed} obfuscated (fraction {args.fraction} of eligible letters)")
    print("| input | normalization | accuracy | agreement with clean predictions |")
    print("|---|---|---|---|")
    base = None
    for normalize in (False, True):
        clf = Classifier.from_pretrained(args.model, normalize=normalize, num_threads=args.threads)
        for name, texts in (("clean", clean), ("obfuscated", dirty)):
            pred = np.array([spec.labels.index(p.label) for p in clf.predict(texts, batch_size=64)])
            if base is None:
                base = pred
            acc = (pred == gold).mean() * 100
            agree = (pred == base).mean() * 100
            print(f"| {name} | {'on' if normalize else 'off'} | {acc:.2f}% | {agree:.2f}% |", flush=True)


if __name__ == "__main__":
    main()
