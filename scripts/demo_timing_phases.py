"""How steady is a speed-up on this machine? The demo's teacher and distilled student, each
through the table's recipe (OpenVINO int8, run-time scales), the student's random-weight twin,
the teacher exported as a squeeze exports it and the student's deployed export, interleaved over
the demo's 64 timing texts at batch 1 for 15 rounds, K times in a row. Per measurement: each
one's median ms, and each pair's speed-up as the ratio of medians and as the median of per-round
ratios (docs/RESULTS.md, session 22).

Usage: PYTHONPATH=src python scripts/demo_timing_phases.py TEACHER_DIR STUDENT_DIR [K]
(``make demo`` writes runs/demo/teacher and runs/demo/student)
"""

from __future__ import annotations

import statistics
import sys
import tempfile

import numpy as np
import torch

from squeezebert.budget import fast_forward, timing_batches
from squeezebert.checkpoint import load
from squeezebert.data import CUSTOM, TaskSource, encode, load_task_data
from squeezebert.export_openvino import examples_sample, export_model
from squeezebert.infer import openvino_export_forward
from squeezebert.model import SqueezeBert
from squeezebert.squeeze import demo_data_dir
from squeezebert.timing import measure

THREADS = 2
PAIRS = (("T_dep", "S_dep"), ("T_ff", "S_ff"), ("T_ff", "S_twin"))


def main(teacher_dir: str, student_dir: str, k: int) -> None:
    torch.set_num_threads(THREADS)
    teacher, student = load(teacher_dir), load(student_dir)
    d = demo_data_dir()
    source = TaskSource(CUSTOM, train_file=str(d / "train.tsv"), dev_file=str(d / "dev.tsv"), text_column="sentence")
    data = load_task_data(source)
    train = encode(teacher.tokenizer, data.train, 128, teacher.model.config.label2id)
    batches = timing_batches(train, teacher.tokenizer, [1], seed=42)[1]
    torch.manual_seed(0)
    forwards = {
        "T_ff": fast_forward(teacher.model, "openvino-int8", THREADS),
        "S_ff": fast_forward(student.model, "openvino-int8", THREADS),
        "S_twin": fast_forward(SqueezeBert(student.model.config).eval(), "openvino-int8", THREADS),
    }
    with tempfile.TemporaryDirectory() as tmp:
        sample = examples_sample(data.train, "classification", labels=False)
        export_model(teacher.model, tmp, teacher.tokenizer, precision="int8", calibration=sample, max_length=128)
        forwards["T_dep"] = openvino_export_forward(tmp, THREADS)
        forwards["S_dep"] = openvino_export_forward(f"{student_dir}/deploy", THREADS)

        def over_texts(fn):
            def run() -> None:
                for b in batches:
                    fn(b)

            return run

        calls = {name: over_texts(f) for name, f in forwards.items()}
        rows = []
        for i in range(k):
            samples = measure(calls, warmup=1, repeats=15)
            ms = {name: np.array(s.times_ms) / len(batches) for name, s in samples.items()}
            row = {name: float(np.median(v)) for name, v in ms.items()}
            for a, b in PAIRS:
                row[f"{a}/{b} ratio of medians"] = row[a] / row[b]
                row[f"{a}/{b} median of ratios"] = float(np.median(ms[a] / ms[b]))
            rows.append(row)
            print(i, " ".join(f"{n}={v:.3f}" for n, v in row.items()), flush=True)
    print(f"over {k} measurements: min / median / max")
    for name in rows[0]:
        v = [r[name] for r in rows]
        print(f"  {name:32s} {min(v):.3f} {statistics.median(v):.3f} {max(v):.3f}")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) == 4 else 6)
