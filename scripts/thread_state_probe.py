"""Is a small student's batch-1 speed-up steadier on one OpenVINO thread, or without pinning?

Sessions 21-23 saw this machine run in two states: in the slow one the 6-layer teacher ran
1.3-1.5x slower but a narrow 5-layer student 1.5-1.7x slower, so a student re-timed at 3.3x read
2.6-2.8x in its report. A narrow model's operators are short; with two threads each one ends in a
barrier, and a thread pinned to a vCPU the host has just taken away stalls its partner. This
probe times random-weight twins (static int8 calibrated on the task's texts, as the budget table
times them) of the teacher and of several student shapes, each compiled for 2 threads pinned (the
product's setting), 2 threads unpinned and 1 thread, all interleaved in the same rounds at batch 1,
in spaced blocks, and prints every block's milliseconds and speed-ups against the teacher on
2 pinned threads, so that each setting can be read in both states.

Usage: SQUEEZEBERT_GLUE_DIR=... python scripts/thread_state_probe.py [TASK] [BLOCKS] [PAUSE_S] [BATCH]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import openvino as ov
import torch

from squeezebert.backends import OpenVinoForward
from squeezebert.budget import Shape, time_forwards, timing_batches
from squeezebert.checkpoint import load
from squeezebert.data import TaskSource, encode, load_task_data
from squeezebert.export_openvino import MODEL_FILE, _quiet, convert, quantize_int8
from squeezebert.model import SqueezeBert

REPEATS = 15
SHAPES = (Shape(6, 12, 1536), Shape(5, 2, 192), Shape(4, 3, 384), Shape(3, 4, 576))
SETTINGS = {"2p": (2, True), "2u": (2, False), "1": (1, True)}  # threads, pinned


def main(task: str = "sst2", blocks: str = "8", pause_s: str = "10", batch: str = "1") -> None:
    torch.set_num_threads(2)
    bs = int(batch)
    teacher = load("minilm-l6", num_labels=2)
    data = load_task_data(TaskSource(task, os.environ["SQUEEZEBERT_GLUE_DIR"]))
    sample = data.train[:3000]
    labels = sorted({e.label for e in sample})
    train = encode(teacher.tokenizer, sample, 128, {x: i for i, x in enumerate(labels)}, data.train_source)
    batches = timing_batches(train, teacher.tokenizer, [bs], seed=42)
    calibration = timing_batches(train, teacher.tokenizer, [1], texts=300, seed=7)[1]
    forwards = {}
    with tempfile.TemporaryDirectory(prefix="thread-probe-") as tmp:
        for shape in SHAPES:
            torch.manual_seed(0)
            model = SqueezeBert(shape.config(teacher.model.config)).eval()
            with _quiet():
                q = quantize_int8(convert(model), calibration, "static")
            path = Path(tmp) / shape.name / MODEL_FILE
            path.parent.mkdir()
            ov.save_model(q, str(path), compress_to_fp16=False)
            for tag, (threads, pinned) in SETTINGS.items():
                forwards[f"{shape.name} {tag}"] = OpenVinoForward(path, threads, "fp32", busy_wait=pinned)
        ref = f"{SHAPES[0].name} 2p"
        print(f"{task}, batch {bs}, {len(batches[bs])} calls per round, {REPEATS} rounds per block; ms (p50 of rounds)")
        print("block  utc       " + "  ".join(f"{n:>14s}" for n in forwards))
        ratios: dict[str, list[float]] = {n: [] for n in forwards}
        for block in range(int(blocks)):
            t = time_forwards(forwards, batches, repeats=REPEATS)
            ms = {n: t[n][f"batch{bs}"]["p50"] for n in forwards}
            for n in forwards:
                ratios[n].append(ms[ref] / ms[n])
            stamp = time.strftime("%H:%M:%S", time.gmtime())
            print(f"{block:5d}  {stamp}  " + "  ".join(f"{ms[n]:14.3f}" for n in forwards), flush=True)
            print("       speed-up   " + "  ".join(f"{ratios[n][-1]:13.2f}x" for n in forwards), flush=True)
            if block + 1 < int(blocks):
                time.sleep(float(pause_s))
        print("median speed-up against the teacher on 2 pinned threads, and min-max over blocks:")
        for n, r in ratios.items():
            print(f"  {n:22s} {statistics.median(r):5.2f}x  ({min(r):.2f}-{max(r):.2f})")


if __name__ == "__main__":
    main(*sys.argv[1:])
