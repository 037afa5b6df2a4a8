"""Accuracy of the fast inference paths against fp32, on a GLUE dev set.

For each path (torch fp32/bf16/int8, ONNX Runtime fp32/int8) prints the task metric and the
share of dev predictions that agree with torch fp32. An int8 path may name its activation
quantization: ``torch:int8`` is the default (per token), ``torch:int8/per-tensor`` the plain
path (likewise ``onnx:int8/per-tensor``).

    python scripts/fast_path_accuracy.py runs/teacher-sst2 --task sst2 --data-dir $SQUEEZEBERT_GLUE_DIR \
        --paths torch:fp32 torch:bf16 torch:int8 torch:int8/per-tensor onnx:int8 onnx:int8/per-tensor

For a classification task the table also gives the mean KL(torch fp32 || path) of the class
distributions, the finer measure where agreement saturates. ``--split train --sample 2000`` reads
a seeded sample of the training set instead (to choose a method without looking at dev).
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import numpy as np

from squeezebert.checkpoint import load
from squeezebert.data import glue_task, load_glue
from squeezebert.infer import Classifier, TorchForward
from squeezebert.metrics import compute_metrics, main_metric


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("model")
    ap.add_argument("--task", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--paths", nargs="+", default=["torch:fp32", "torch:bf16", "torch:int8", "onnx:fp32", "onnx:int8"])
    ap.add_argument("--split", default="dev", choices=("dev", "train"))
    ap.add_argument("--sample", type=int, default=0, help="a seeded sample of this many examples (0: all)")
    args = ap.parse_args()
    spec = glue_task(args.task)
    examples = load_glue(spec.name, args.split, args.data_dir)
    if args.sample:
        random.Random(0).shuffle(examples)
        examples = examples[: args.sample]
    inputs = [ex.text if ex.text_pair is None else (ex.text, ex.text_pair) for ex in examples]
    metric = main_metric(spec.name)
    preds: dict[str, np.ndarray] = {}
    probs: dict[str, np.ndarray] = {}
    print(f"| path | {metric} | agreement with torch fp32 | mean KL(torch fp32 ‖ path) |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.paths:
            backend, _, variant = path.partition(":")
            precision, _, activations = variant.partition("/")
            options = {"int8_activations": activations} if activations else {}
            if backend == "onnx":  # export once per variant, then load the export directory
                from squeezebert.export import export

                src = str(Path(tmp) / variant.replace("/", "-"))
                export(args.model, src, precision=precision, **options)
                clf = Classifier.from_pretrained(
                    src, precision=precision, backend=backend, max_length=args.max_length, num_threads=args.threads
                )
            else:
                ckpt = load(args.model)
                forward = TorchForward(ckpt.model, precision, args.threads, **options)
                clf = Classifier(forward, ckpt.tokenizer, ckpt.model.config, args.max_length, backend, precision)
            out = clf.predict(inputs, batch_size=64)
            if spec.is_regression:
                p = np.array([o.value for o in out])
                refs = np.array([float(ex.label) for ex in examples])
            else:
                p = np.array([spec.labels.index(o.label) for o in out])
                refs = np.array([spec.labels.index(str(ex.label)) for ex in examples])
                probs[path] = np.array([[o.probabilities[label] for label in clf.labels] for o in out])
            preds[path] = p
            score = compute_metrics(spec.name, p, refs)[metric]
            base = preds.get("torch:fp32")
            if base is None:
                agree = "-"
            elif spec.is_regression:
                agree = f"max |Δ| {np.abs(p - base).max():.4f}"
            else:
                agree = f"{(p == base).mean() * 100:.2f}%"
            kl = "-"
            if "torch:fp32" in probs and path in probs:
                ref, got = (np.clip(probs[k], 1e-12, 1.0) for k in ("torch:fp32", path))
                kl = f"{(ref * (np.log(ref) - np.log(got))).sum(-1).mean():.2e}"
            print(f"| {path} | {score:.4f} | {agree} | {kl} |", flush=True)


if __name__ == "__main__":
    main()
