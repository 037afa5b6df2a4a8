"""Does a squeeze's latency table predict its deployed models, and what does the report's way of
timing them add? The table's recipe (random weights, static int8 calibrated on 16 texts) for the
teacher and the chosen shape, the trained models through the same recipe, the deployed exports
(OpenVINO int8, the teacher exported like the squeeze exports it) called directly and through
the torch wrapper ``evaluate`` uses, all timed interleaved at batch 1 on the task's training texts
(A); then again with the torch paths interleaved among them (B), as the report timed them before
it timed the exports apart (docs/RESULTS.md, issue 15).

Usage: SQUEEZEBERT_GLUE_DIR=... python scripts/report_timing_check.py TEACHER SQUEEZE_OUT GLUE_TASK
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import torch

from squeezebert.budget import candidate_shapes, fast_forward, module_forward, time_forwards, timing_batches
from squeezebert.checkpoint import load
from squeezebert.data import encode, load_glue
from squeezebert.export_openvino import examples_sample, export_model
from squeezebert.finetune import ExportedModel
from squeezebert.infer import Classifier, openvino_export_forward
from squeezebert.model import SqueezeBert
from squeezebert.quantize import optimize
from squeezebert.train import read_train_args

THREADS = 2


def main(teacher_dir: str, squeeze_out: str, task: str) -> None:
    torch.set_num_threads(THREADS)
    teacher, student = load(teacher_dir), load(squeeze_out)
    choice = (read_train_args(Path(squeeze_out)) or {}).get("budget_choice", {}).get("chosen", {})
    shapes = {s.name: s for s in candidate_shapes(teacher.model.config)}
    shape = shapes[choice["shape"]]
    train_examples = load_glue(task, "train", os.environ["SQUEEZEBERT_GLUE_DIR"])
    train = encode(teacher.tokenizer, train_examples, 128, None if task == "stsb" else teacher.model.config.label2id)
    batches = timing_batches(train, teacher.tokenizer, [1], seed=42)
    calibration = batches[1][:16]
    torch.manual_seed(0)
    f = {
        "table teacher (random weights)": SqueezeBert(teacher.model.config).eval(),
        f"table {shape.name} (random weights)": SqueezeBert(shape.config(teacher.model.config)).eval(),
        "trained teacher, table recipe": teacher.model,
        "trained student, table recipe": student.model,
    }
    f = {name: fast_forward(m, "openvino-int8", THREADS, calibration) for name, m in f.items()}
    with tempfile.TemporaryDirectory() as tmp:
        sample = examples_sample(train_examples, task, labels=False)
        export_model(teacher.model, tmp, teacher.tokenizer, precision="int8", calibration=sample, max_length=128)
        deploy = os.path.join(squeeze_out, "deploy")
        # as deployed: a run-time-scales export needs its flag, or its int8 weights run decompressed
        f["deployed teacher, direct"] = openvino_export_forward(tmp, THREADS)
        f["deployed student, direct"] = openvino_export_forward(deploy, THREADS)
        for who, where in (("teacher", tmp), ("student", deploy)):
            classifier = Classifier.from_pretrained(where, max_length=128, num_threads=THREADS)
            f[f"deployed {who}, torch wrapper"] = module_forward(ExportedModel(classifier))
        timings = {"A: OpenVINO paths only": time_forwards(f, batches, repeats=9)}
        g = dict(f)
        for who, m in (("teacher", teacher.model), ("student", student.model)):
            g[f"torch {who} fp32"] = module_forward(m.eval())
            for precision in ("int8", "bf16"):
                g[f"torch {who} {precision}"] = module_forward(optimize(m, precision).eval())
        timings["B: torch paths interleaved"] = time_forwards(g, batches, repeats=9)
    for title, t in timings.items():
        print(title)
        for name, v in t.items():
            print(f"  {name:42s} {v['batch1']['p50']:.3f} ms")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
