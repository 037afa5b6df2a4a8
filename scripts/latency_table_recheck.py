"""Does a budgeted squeeze's chosen shape still meet its speed-up when timed again, and does timing
it inside the whole candidate table (as the squeeze does) move the answer?

For a finished ``squeeze --speedup X`` run: the teacher exported as the squeeze exports it, the
student's own ``deploy/`` export, the teacher's random-weight twin and the chosen shape's twin (with
its two narrower/shallower neighbours), timed through the table's recipe on the run's own training
texts at batch 1, interleaved, in the order given by ``ORDER`` (``s`` = those alone, ``f`` = those
plus every other candidate shape of the table, ~26 models). Each block prints every model's median
ms and its speed-up against the deployed teacher, and the process's thread count.

Usage: PYTHONPATH=src python scripts/latency_table_recheck.py SQUEEZE_OUT [ORDER, default sfs]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from squeezebert.budget import candidate_shapes, measure_configs, timing_batches
from squeezebert.checkpoint import load
from squeezebert.data import TaskSource, encode, load_task_data
from squeezebert.infer import DEPLOY_DIR, openvino_export_forward
from squeezebert.squeeze import _deploy_teacher_openvino, _openvino_inputs
from squeezebert.train import read_train_args, trained_max_length

THREADS = 2


def main(out: str, order: str = "sfs") -> None:
    torch.set_num_threads(THREADS)
    args = read_train_args(Path(out)) or {}
    choice = (args.get("budget_choice") or {}).get("chosen")
    if not choice:
        sys.exit(f"{out}: not a budgeted squeeze run (no budget_choice in train_args.json)")
    ckpt = load(args["teacher"])
    teacher, tokenizer = ckpt.model, ckpt.tokenizer
    source = TaskSource.recorded(args)
    if source is None:
        sys.exit(f"{out}: train_args.json records no local data (custom files or a GLUE data_dir)")
    data = load_task_data(source)
    regression = teacher.config.problem_type == "regression"
    max_length = min(trained_max_length(Path(out)), teacher.config.max_position_embeddings)  # as squeeze
    label2id = None if regression else teacher.config.label2id
    train = encode(tokenizer, data.train, max_length, label2id, data.train_source)
    batches = timing_batches(train, tokenizer, [1], seed=args.get("seed", 42))
    notes: list[str] = []
    name, module, _ = _deploy_teacher_openvino(  # as squeeze deploys it: the faster fallback at batch 1
        teacher, tokenizer, _openvino_inputs(data, regression), max_length, THREADS, notes, batches, 1
    )
    print(f"teacher deployed as {name}; {'; '.join(notes)}", flush=True)
    extra = {
        "teacher deployed": module.classifier.forward,
        "student deployed": openvino_export_forward(Path(out) / DEPLOY_DIR, THREADS),
    }
    shapes = {s.name: s for s in candidate_shapes(teacher.config)}
    names = list(shapes)
    chosen = choice["shape"]
    i = names.index(chosen)
    small = names[max(0, i - 1) : i + 2]  # the chosen shape and its table neighbours
    for block in order:
        picked = small if block == "s" else names
        configs = {"teacher twin": teacher.config, **{n: shapes[n].config(teacher.config) for n in picked}}
        started = time.perf_counter()
        ms = measure_configs(configs, batches, "openvino-int8", THREADS, extra=extra)
        threads = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("Threads"))
        ref = ms["teacher deployed"]["batch1"]
        print(
            f"[{'alone' if block == 's' else 'in the full table'}]",
            f"{time.perf_counter() - started:.0f} s, {threads} threads",
        )
        for n in ["teacher deployed", "teacher twin", "student deployed", *small]:
            mark = " (chosen)" if n == chosen else ""
            print(f"  {n + mark:28s} {ms[n]['batch1']:.3f} ms  {ref / ms[n]['batch1']:.2f}x", flush=True)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(*sys.argv[1:])
