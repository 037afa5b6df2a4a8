"""Which projections does int8 hurt? Measured on a calibration sample of the TRAINING set.

For a checkpoint, runs torch fp32 once on N training sentences (seeded sample, never dev), then
torch int8 under several policies and prints, per policy, the share of predictions that agree
with fp32 and the mean KL(fp32 || int8) of the class distributions (continuous, so it ranks
policies that flip the same few sentences). Policies:

* ``all``: every projection int8 (the plain path);
* ``only:<type>``: only projections of one type int8 (query, key, value, post_attention,
  intermediate, output; ``.down``/``.up`` halves of a low-rank projection count as its type);
* ``skip:<type>``: all int8 except one type;
* ``only-layer:<i>``: only layer i int8;
* plus any ``--policy NAME=PATTERN,PATTERN`` given: fnmatch patterns of modules kept fp32, or,
  prefixed ``pt:``, of modules whose activations are quantized per token.

    python scripts/int8_sensitivity.py /work/runs/teacher-sst2 --task sst2 --data-dir $GLUE
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch

from squeezebert.checkpoint import load
from squeezebert.data import glue_task, load_glue
from squeezebert.infer import Classifier, TorchForward
from squeezebert.quantize import int8_targets, optimize, quantize_projections

TYPES = {
    "query": "*.attention.query*",
    "key": "*.attention.key*",
    "value": "*.attention.value*",
    "post_attention": "*.post_attention.conv1d*",
    "intermediate": "*.intermediate.conv1d*",
    "output": "*.output.conv1d*",
}


def logits_of(clf: Classifier, inputs: list, batch_size: int) -> np.ndarray:
    out = np.zeros((len(inputs), clf.config.num_labels), dtype=np.float32)
    for positions, batch in clf.preprocess(inputs, batch_size):
        out[positions] = clf.forward(batch)
    return out


def kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    def log_softmax(z: np.ndarray) -> np.ndarray:
        z = z.astype(np.float64) - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    lp, lq = log_softmax(p_logits), log_softmax(q_logits)
    return float((np.exp(lp) * (lp - lq)).sum(-1).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--task", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--samples", type=int, default=2000, help="training sentences in the calibration sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sweep", default="types", help="comma list of: types, layers")
    ap.add_argument("--policy", action="append", default=[], help="NAME=PATTERN[,PATTERN...] (kept fp32)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = glue_task(args.task)
    train = load_glue(spec.name, "train", args.data_dir)
    sample = random.Random(args.seed).sample(train, min(args.samples, len(train)))
    inputs = [ex.text if ex.text_pair is None else (ex.text, ex.text_pair) for ex in sample]
    ckpt = load(args.model)
    names = int8_targets(ckpt.model)
    layers = ckpt.model.config.num_hidden_layers

    def classifier(precision: str, patterns: list[str] | None = None) -> Classifier:
        forward = TorchForward(ckpt.model, "fp32")
        if precision != "fp32":
            patterns = patterns or []
            keep = [p for p in patterns if not p.startswith("pt:")]
            per_token = [p[3:] for p in patterns if p.startswith("pt:")]
            fast = optimize(ckpt.model, "fp32")
            quantize_projections(fast.model, keep, per_token)
            forward.model = fast
        return Classifier(forward, ckpt.tokenizer, ckpt.model.config, args.max_length)

    base = logits_of(classifier("fp32"), inputs, args.batch_size)
    policies: dict[str, list[str]] = {"all": []}
    sweeps = args.sweep.split(",") if args.sweep else []
    if "types" in sweeps:
        for t, pat in TYPES.items():
            policies[f"only:{t}"] = [n for n in names if not torch_match(n, [pat])]
        for t, pat in TYPES.items():
            policies[f"skip:{t}"] = [pat]
    if "layers" in sweeps:
        for i in range(layers):
            policies[f"only-layer:{i}"] = [n for n in names if not n.startswith(f"encoder.layers.{i}.")]
    for p in args.policy:
        name, _, pats = p.partition("=")
        policies[name] = pats.split(",")
    print(
        f"{args.model}: {len(inputs)} training sentences (seed {args.seed}), max_length {args.max_length}, "
        f"batch {args.batch_size}, {args.threads} thread(s)"
    )
    print("| policy | projections int8 | agreement with fp32 | flips | mean KL(fp32‖int8) |")
    print("|---|---|---|---|---|")
    for name, keep in policies.items():
        t0 = time.perf_counter()
        got = logits_of(classifier("int8", keep), inputs, args.batch_size)
        n_int8 = sum(not torch_match(n, [p for p in keep if not p.startswith("pt:")]) for n in names)
        flips = int((got.argmax(-1) != base.argmax(-1)).sum())
        print(
            f"| {name} | {n_int8}/{len(names)} | {100 * (1 - flips / len(inputs)):.2f}% | {flips} | "
            f"{kl(base, got):.2e} |  ({time.perf_counter() - t0:.0f}s)",
            flush=True,
        )


def torch_match(name: str, patterns: list[str]) -> bool:
    import fnmatch

    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


if __name__ == "__main__":
    main()
