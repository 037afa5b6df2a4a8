"""Where a CoLA student loses MCC against its teacher: on the training and dev sentences (fp32),
how often each says "acceptable", their agreement and MCC, and the student's dev MCC with its
decision threshold moved so that it says "acceptable" as often as the teacher does on the
*training* sentences (a calibration chosen without the dev set; docs/RESULTS.md, session 22).

Usage: SQUEEZEBERT_GLUE_DIR=... PYTHONPATH=src python scripts/cola_prediction_rates.py TEACHER STUDENT
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

from squeezebert.checkpoint import load
from squeezebert.data import encode, load_glue
from squeezebert.metrics import compute_metrics
from squeezebert.train import predict


def mcc(labels: np.ndarray, predicted: np.ndarray) -> float:
    return 100 * compute_metrics("cola", predicted, labels)["matthews_correlation"]


def main(teacher_dir: str, student_dir: str) -> None:
    torch.set_num_threads(2)
    teacher, student = load(teacher_dir), load(student_dir)
    label2id = teacher.model.config.label2id
    yes = label2id["1"]  # CoLA's "acceptable"
    margins = {}
    for split in ("train", "dev"):
        data = encode(teacher.tokenizer, load_glue("cola", split, os.environ["SQUEEZEBERT_GLUE_DIR"]), 128, label2id)
        y = (np.asarray(data.labels) == yes).astype(int)
        mt, ms = (predict(m.model, data) for m in (teacher, student))
        mt, ms = mt[:, yes] - mt[:, 1 - yes], ms[:, yes] - ms[:, 1 - yes]
        margins[split] = (y, mt, ms)
        pt, ps = (mt > 0).astype(int), (ms > 0).astype(int)
        print(
            f"{split}: {len(y)} sentences, acceptable {y.mean():.3f} | teacher says so {pt.mean():.3f}, MCC "
            f"{mcc(y, pt):.2f} | student {ps.mean():.3f}, MCC {mcc(y, ps):.2f} | agreement {np.mean(pt == ps):.3f}"
        )
    _, mt, ms = margins["train"]
    threshold = float(np.quantile(ms, 1 - np.mean(mt > 0)))
    y, _, ms_dev = margins["dev"]
    p = (ms_dev > threshold).astype(int)
    print(f"student threshold matched to the teacher's rate on train: {threshold:+.3f}; dev MCC {mcc(y, p):.2f}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
