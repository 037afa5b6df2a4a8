"""Does the report's order of timing make its small student read slow?

A squeeze's report times the torch paths (fp32, int8, bf16 of teacher and student) in one block
and then, right after, the deployed OpenVINO exports in another. Several reports (SST-2 and two
demos in sessions 22-23) read the deployed student 1.5-1.7x slower than the re-timing before
training did, and the teacher 1.4x slower, so the speed-up fell under the budget the re-timing
had confirmed. This probe times the deployed pair in one process, in cycles of:

  1. the pair alone ("before torch"),
  2. the report's torch block (the six torch paths, interleaved, as the report times them),
  3. the pair again at once ("right after torch", the report's order),
  4. a pause, and the pair again ("after a pause").

If the pair is slower only right after the torch block, the report's order is to blame; if every
block drifts together, the machine is.

Usage: SQUEEZEBERT_GLUE_DIR=... python scripts/report_order_probe.py TEACHER SQUEEZE_OUT GLUE_TASK [CYCLES] [PAUSE_S]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from squeezebert.budget import module_forward, time_forwards, timing_batches
from squeezebert.checkpoint import load
from squeezebert.data import encode, load_glue
from squeezebert.export_openvino import examples_sample, export_model
from squeezebert.infer import openvino_export_forward
from squeezebert.quantize import optimize
from squeezebert.train import read_train_args

THREADS = 2
REPEATS = 20  # squeeze's default --bench-repeats


def _pair(forwards: dict, batches: dict) -> tuple[float, float]:
    t = time_forwards(forwards, batches, repeats=REPEATS)
    return t["teacher"]["batch1"]["p50"], t["student"]["batch1"]["p50"]


def main(teacher_dir: str, squeeze_out: str, task: str, cycles: str = "4", pause_s: str = "10") -> None:
    torch.set_num_threads(THREADS)
    teacher, student = load(teacher_dir), load(squeeze_out)
    args = read_train_args(Path(squeeze_out)) or {}
    max_length = int(args.get("max_length", 128))
    train_examples = load_glue(task, "train", os.environ["SQUEEZEBERT_GLUE_DIR"])
    label2id = None if task == "stsb" else teacher.model.config.label2id
    train = encode(teacher.tokenizer, train_examples, max_length, label2id)
    batches = timing_batches(train, teacher.tokenizer, [1], seed=42)
    torch_paths = {}
    for who, m in (("teacher", teacher.model), ("student", student.model)):
        torch_paths[f"{who} fp32"] = module_forward(m.eval())
        for precision in ("int8", "bf16"):
            torch_paths[f"{who} {precision}"] = module_forward(optimize(m, precision).eval())
    print("| cycle | block | ended (UTC) | teacher ms | student ms | speed-up |", flush=True)
    print("|---|---|---|---|---|---|", flush=True)

    def row(cycle: int, block: str, t_ms: float, s_ms: float) -> None:
        ended = time.strftime("%H:%M:%S", time.gmtime())
        print(f"| {cycle} | {block} | {ended} | {t_ms:.3f} | {s_ms:.3f} | {t_ms / s_ms:.2f}x |", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        sample = examples_sample(train_examples, task, labels=False)
        export_model(teacher.model, tmp, teacher.tokenizer, precision="int8", calibration=sample, max_length=max_length)
        pair = {
            "teacher": openvino_export_forward(tmp, THREADS),
            "student": openvino_export_forward(os.path.join(squeeze_out, "deploy"), THREADS),
        }
        for cycle in range(int(cycles)):
            row(cycle, "before torch", *_pair(pair, batches))
            started = time.perf_counter()
            time_forwards(torch_paths, batches, repeats=REPEATS)
            torch_s = time.perf_counter() - started
            row(cycle, f"right after torch ({torch_s:.0f} s)", *_pair(pair, batches))
            time.sleep(float(pause_s))
            row(cycle, f"after a {pause_s} s pause", *_pair(pair, batches))


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5, 6):
        sys.exit(__doc__)
    main(*sys.argv[1:])
