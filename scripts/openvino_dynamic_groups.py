"""Group size of the dynamic int8 recipe (OpenVINO's ``DYNAMIC_QUANTIZATION_GROUP_SIZE``: how many
input channels share one run-time activation scale), against the static recipe, timed the way a
deployment runs them (``OpenVinoForward``: static shapes at batch 1, 2 threads) in interleaved rounds.

For each checkpoint: agreement with PyTorch fp32 on the export's own 1,000 held-out training texts
and on the dev set (the two checks an export must pass), then milliseconds per call at batch 1
(one text per call) and batch 32 on 64 of those texts. ``--random`` adds random-weight shapes
(timing only, 20-40 random tokens): a 3-layer 384-hidden model whose 416-neuron FFN no group of
128 divides, and a BERT-base-size model. (``scripts/openvino_int8_variants.py`` compares the
recipes' accuracy more widely; its timing runs dynamic shapes only.)

Usage: python scripts/openvino_dynamic_groups.py [CHECKPOINT ...] [--groups 32,64,128,4294967295]
       [--random] [--rounds 2]
Prints one JSON line per checkpoint and variant (agreement), then one per round (timings).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from squeezebert import backends
from squeezebert.budget import time_forwards, timing_batches
from squeezebert.checkpoint import load
from squeezebert.data import encode
from squeezebert.export_openvino import (
    CALIBRATION_SIZE,
    CHECK_SIZE,
    _compare,
    _compile,
    _encode_each,
    _quiet,
    _split_calibration,
    convert,
    quantize_int8,
    recorded_data,
)
from squeezebert.model import ModelConfig, SqueezeBert
from squeezebert.tables import Example

RANDOM_SHAPES = {  # name: (layers, hidden, heads, FFN)
    "random 3L-384h-416f": (3, 384, 6, 416),
    "random 12L-768h-3072f": (12, 768, 12, 3072),
}


def variants(ov_model, calibration, groups: list[int]) -> dict:
    """The static export (where calibration inputs are given) and the dynamic one at each group size."""
    forwards = {}
    with _quiet():
        if calibration is not None:
            forwards["static"] = _compile(quantize_int8(ov_model.clone(), calibration, "static"), "fp32", 2)
        dynamic = quantize_int8(ov_model.clone(), [], "dynamic")  # clone: NNCF compresses in place
    shipped = backends.DYNAMIC_INT8_GROUP
    try:
        for g in groups:  # OpenVinoForward reads the group size when it compiles (static shapes too)
            backends.DYNAMIC_INT8_GROUP = g
            forwards[f"dynamic {g}"] = _compile(dynamic, "fp32", 2, dynamic_int8=True)
    finally:
        backends.DYNAMIC_INT8_GROUP = shipped
    return forwards


def timed(name: str, forwards: dict, batches: dict, rounds: int) -> None:
    for r in range(rounds):
        t = time_forwards(forwards, batches, repeats=9)
        row = {"model": name, "round": r}
        for bs in batches:
            row[f"batch{bs} p50 ms"] = {k: round(v[f"batch{bs}"]["p50"], 3) for k, v in t.items()}
        print(json.dumps(row), flush=True)


def random_singles(rng: np.random.Generator, n: int = 32) -> list[dict]:
    singles = []
    for _ in range(n):
        length = int(rng.integers(20, 40))
        singles.append({
            "input_ids": rng.integers(1000, 5000, (1, length)).astype(np.int64),
            "attention_mask": np.ones((1, length), np.int64),
            "token_type_ids": np.zeros((1, length), np.int64),
        })  # fmt: skip
    return singles


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="*")
    ap.add_argument("--groups", default="32,64,128,4294967295")
    ap.add_argument("--random", action="store_true")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    groups = [int(g) for g in args.groups.split(",")]
    for path in map(Path, args.checkpoints):
        ckpt = load(path)
        model, tok = ckpt.model.float().eval(), ckpt.tokenizer
        train, dev = recorded_data(path)
        if train is None:
            raise SystemExit(f"{path}: records no training data (train_args.json)")
        calib, held = _split_calibration(train, CALIBRATION_SIZE, CHECK_SIZE)
        forwards = variants(convert(model), _encode_each(tok, calib.inputs, 128), groups)
        for name, f in forwards.items():
            row = {"model": str(path), "variant": name, "held-out": _compare(model, f, tok, held, 128)["agreement"]}
            if dev is not None:
                row["dev"] = _compare(model, f, tok, dev, 128)["agreement"]
            print(json.dumps(row), flush=True)
        texts = held.inputs[:64]
        examples = [Example(*(t if isinstance(t, tuple) else (t, None)), None, i) for i, t in enumerate(texts)]
        batches = timing_batches(encode(tok, examples, 128, None), tok, [1, 32], seed=0)
        timed(str(path), forwards, batches, args.rounds)
    if args.random:
        rng = np.random.default_rng(0)
        for name, (layers, hidden, heads, ffn) in RANDOM_SHAPES.items():
            torch.manual_seed(0)
            config = ModelConfig(
                vocab_size=30522, num_labels=2, num_hidden_layers=layers, hidden_size=hidden,
                num_attention_heads=heads, intermediate_size=ffn,
            )  # fmt: skip
            forwards = variants(convert(SqueezeBert(config).eval()), None, groups)
            timed(name, forwards, {1: random_singles(rng)}, args.rounds)


if __name__ == "__main__":
    main()
