"""Where a distillation step's time goes when the teacher runs alongside the student (hidden-state
targets, squeeze's default on augmented small tasks), with the teacher's forward in fp32 and in
bf16 autocast (``DistillConfig.teacher_precision``). A pruned student of the given shape is cut
from the teacher; random batches of training texts, padded to their longest as the training loop
pads them; the two precisions interleaved round by round (medians), each step timed as
student+teacher forward, backward and optimizer step.

    PYTHONPATH=src python scripts/distill_step_cost.py runs/teacher-short \\
        --train runs/custom-data/short-train.jsonl --layers 0,2,3,5 --heads 3 --ffn 384
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from squeezebert.checkpoint import load
from squeezebert.data import TaskSource, collate, encode, load_task_data
from squeezebert.distill import DistillationLoss, DistillConfig, teacher_autocast
from squeezebert.prune import prune_model
from squeezebert.train import TrainConfig, build_optimizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("teacher")
    ap.add_argument("--train", required=True, help="training file (CSV/TSV/JSONL with text and label columns)")
    ap.add_argument("--layers", default="0,2,3,5")
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--ffn", type=int, default=384)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10, help="steps per precision per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    ckpt = load(args.teacher)
    teacher, tokenizer = ckpt.model.eval(), ckpt.tokenizer
    data = load_task_data(TaskSource(train_file=args.train, dev_file=args.train))
    train = encode(tokenizer, data.train, args.max_length, teacher.config.label2id, args.train)
    rng = np.random.default_rng(0)
    n = args.batch_size * (8 + args.steps * args.rounds)
    order = rng.choice(len(train), size=min(n, len(train)), replace=False).tolist()
    bs = args.batch_size
    batches = [collate(tokenizer.pad_token_id, train, order[i : i + bs]) for i in range(0, len(order), bs)]
    kept = [int(x) for x in args.layers.split(",")]
    student, _ = prune_model(teacher, batches[:8], layers=kept, heads=args.heads, ffn=args.ffn)
    student.train()
    layer_map = [(0, 0)] + [(j + 1, i + 1) for j, i in enumerate(kept)]
    config = {p: DistillConfig(hidden_weight=1.0, layer_map=layer_map, teacher_precision=p) for p in ("fp32", "bf16")}
    losses = {p: DistillationLoss(teacher, student, c) for p, c in config.items()}
    optimizer = build_optimizer(list(student.named_parameters()), TrainConfig(lr=1e-6))
    parts = {p: {"forward": [], "backward": [], "optimizer": [], "teacher forward": []} for p in losses}
    print(f"student {len(kept)}L-{args.heads}h-{args.ffn}f, batches of {args.batch_size}, "
          f"{statistics.mean(b['input_ids'].shape[1] for b in batches):.1f} tokens per padded text")  # fmt: skip
    for r in range(args.rounds):
        todo = batches[8 + r * args.steps : 8 + (r + 1) * args.steps]
        for precision, loss_fn in losses.items():
            spent = dict.fromkeys(parts[precision], 0.0)
            for b in todo:
                extras = {"teacher_logits": torch.zeros(b["input_ids"].shape[0], teacher.config.num_labels)}
                t0 = time.perf_counter()
                out = loss_fn(student, {**b, **extras})
                t1 = time.perf_counter()
                out["loss"].backward()
                t2 = time.perf_counter()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                t3 = time.perf_counter()
                with torch.no_grad(), teacher_autocast(precision):
                    teacher.encode(b["input_ids"], b["attention_mask"], b["token_type_ids"], output_hidden_states=True)
                t4 = time.perf_counter()
                for k, v in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                    spent[k] += v
            for k, v in spent.items():
                parts[precision][k].append(v / len(todo) * 1e3)
    print("| teacher forward in | step ms (median) | forward | backward | optimizer | the teacher's forward alone |")
    print("|---|---|---|---|---|---|")
    for precision, d in parts.items():
        steps = [a + b + c for a, b, c in zip(d["forward"], d["backward"], d["optimizer"])]
        cells = " | ".join(f"{statistics.median(v):.0f}" for v in d.values())
        print(f"| {precision} | {statistics.median(steps):.0f} ({', '.join(f'{s:.0f}' for s in steps)}) | {cells} |")


if __name__ == "__main__":
    main()
