"""Which importance score to prune by: teacher agreement right after pruning (no training), on
held-out training examples (never the dev set), for several shapes and both scores.

    python scripts/prune_importance.py TEACHER_DIR --task sst2 --data-dir ../shared/data/glue
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from squeezebert.checkpoint import load
from squeezebert.data import TaskSource, collate, encode, load_task_data
from squeezebert.prune import _divergence, prune_model
from squeezebert.train import predict


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("teacher")
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--data-dir", default="../shared/data/glue")
    ap.add_argument("--calibration", type=int, default=512)
    ap.add_argument("--held-out", type=int, default=2000)
    ap.add_argument("--shapes", default="6:6:768,6:3:384,4:12:1536,3:12:1536,3:6:768,2:12:1536,2:6:768")
    args = ap.parse_args()
    torch.manual_seed(0)
    ckpt = load(args.teacher)
    teacher, tok = ckpt.model.eval(), ckpt.tokenizer
    data = load_task_data(TaskSource(args.task, args.data_dir))
    label2id = None if teacher.config.problem_type == "regression" else teacher.config.label2id
    rng = np.random.default_rng(0)
    order = rng.permutation(len(data.train))
    cal = encode(tok, [data.train[i] for i in order[: args.calibration]], 64, label2id)
    held = encode(
        tok, [data.train[i] for i in order[args.calibration : args.calibration + args.held_out]], 64, label2id
    )
    idx = sorted(range(len(cal)), key=lambda i: cal.lengths[i])
    batches = [collate(tok, cal, idx[i : i + 32]) for i in range(0, len(idx), 32)]
    ref = torch.from_numpy(predict(teacher, held))
    labels = np.array(held.labels)
    print("| layers | heads | FFN | importance | agreement | accuracy | KL | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for shape in args.shapes.split(","):
        n_layers, heads, ffn = (int(x) for x in shape.split(":"))
        for importance in ("taylor", "magnitude"):
            t0 = time.perf_counter()
            model, _ = prune_model(
                teacher,
                batches,
                num_layers=n_layers if n_layers < teacher.config.num_hidden_layers else None,
                heads=heads,
                ffn=ffn,
                importance=importance,
            )
            secs = time.perf_counter() - t0
            got = torch.from_numpy(predict(model, held))
            kl, agree = _divergence(ref, got, False)
            acc = float((got.argmax(-1).numpy() == labels).mean())
            print(
                f"| {n_layers} | {heads} | {ffn} | {importance} | {agree:.4f} | {acc:.4f} | {kl:.4f} | {secs:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
