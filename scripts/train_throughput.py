"""Training throughput on short texts: does distillation keep the cores busy at 12, 25 and 64
tokens per text? Runs the one training loop (logit distillation from cached teacher logits, as
squeeze does) on a student of the given shape for a fixed number of steps per length, and prints
tokens/s, texts/s and CPU utilization (process CPU seconds / (wall seconds x threads)).

    python scripts/train_throughput.py --steps 60 --threads 2
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import numpy as np
import torch

from squeezebert.config import ModelConfig
from squeezebert.data import EncodedDataset
from squeezebert.distill import DistillationLoss, DistillConfig
from squeezebert.model import SqueezeBert
from squeezebert.train import TrainConfig, fit


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lengths", default="12,25,64")
    ap.add_argument("--shapes", default="6x12x1536,2x6x768", help="layers x heads x FFN of the student")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = ModelConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                       intermediate_size=1536, num_labels=2)  # fmt: skip
    rng = np.random.default_rng(0)
    print("| student | tokens/text | texts/s | tokens/s | CPU utilization |")
    print("|---|---|---|---|---|")
    for shape in args.shapes.split(","):
        layers, heads, ffn = (int(x) for x in shape.split("x"))
        cfg = base.replace(num_hidden_layers=layers)
        if heads != 12 or ffn != 1536:
            cfg = cfg.replace(layer_heads=[heads] * layers, layer_intermediate_sizes=[ffn] * layers)
        for length in (int(x) for x in args.lengths.split(",")):
            n = args.steps * args.batch_size
            ids = [[101, *rng.integers(1000, 29000, length - 2).tolist(), 102] for _ in range(n)]
            data = EncodedDataset(ids, [[0] * length] * n, rng.integers(0, 2, n).tolist(), [length] * n)
            logits = torch.from_numpy(rng.normal(size=(n, 2)).astype(np.float32))
            torch.manual_seed(0)
            student = SqueezeBert(cfg)
            loss = DistillationLoss(None, student, DistillConfig(augment=0, hidden_weight=0.0))
            config = TrainConfig(epochs=1, batch_size=args.batch_size, lr=1e-4, max_length=length, log_every=1000)
            with tempfile.TemporaryDirectory() as out:
                wall, cpu = time.perf_counter(), cpu_seconds()
                summary = fit(student, loss, data, config, out, batch_extras={"teacher_logits": logits})
                wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
            print(
                f"| {shape} | {length} | {n / wall:.0f} | {summary['tokens_per_s']:.0f} | "
                f"{cpu / (wall * args.threads):.0%} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
