"""How well does squeeze's latency table predict the deployed models? The candidate shapes as
random-weight models through the table's recipe (OpenVINO dynamic int8), fitted as squeeze fits
them, against a trained teacher and student through the dynamic and static int8 recipes (static
also with bf16 for the float operations), all timed interleaved in one process on a GLUE task's
training texts at batch 1 and 32 (docs/RESULTS.md, issue 15).

Usage: python scripts/budget_predict.py TEACHER STUDENT TRAIN_TSV [REPEATS] [JSON_OUT]
"""

from __future__ import annotations

import json
import sys
import time

import torch

from squeezebert.budget import candidate_shapes, fast_forward, fit_latency, teacher_shape, time_forwards, timing_batches
from squeezebert.checkpoint import load
from squeezebert.data import encode
from squeezebert.export_openvino import _compile, _quiet, convert, quantize_int8
from squeezebert.model import SqueezeBert
from squeezebert.tables import read_table

THREADS = 2


def main(teacher_dir: str, student_dir: str, train_tsv: str, repeats: int = 9, json_out: str | None = None) -> None:
    torch.set_num_threads(THREADS)
    teacher, student = load(teacher_dir), load(student_dir)
    cfg = teacher.model.config
    examples = read_table(train_tsv, "sentence", None, "label")[:4000]
    train = encode(teacher.tokenizer, examples, 64, cfg.label2id)
    batches = timing_batches(train, teacher.tokenizer, [1, 32], seed=0)
    calibration = timing_batches(train, teacher.tokenizer, [8], texts=300, seed=1)[8]

    forwards, build_s = {}, {}
    torch.manual_seed(0)
    shapes = {"teacher": teacher_shape(cfg), **{s.name: s for s in candidate_shapes(cfg)}}
    for name, s in shapes.items():
        start = time.perf_counter()
        model = SqueezeBert(cfg if name == "teacher" else s.config(cfg)).eval()
        forwards[f"random {name}"] = fast_forward(model, "openvino-int8", THREADS)
        build_s[name] = round(time.perf_counter() - start, 1)

    def static(model: torch.nn.Module, bf16: bool = False):
        with _quiet():
            q = quantize_int8(convert(model), calibration, "static")
        return _compile(q, "bf16" if bf16 else "fp32", THREADS)

    for who, m in (("teacher", teacher.model), ("student", student.model)):
        forwards[f"trained {who} dynamic"] = fast_forward(m, "openvino-int8", THREADS)
        forwards[f"trained {who} static"] = static(m)
        forwards[f"trained {who} static+bf16"] = static(m, bf16=True)
    print("seconds to build each table entry:", build_s, flush=True)

    timings = time_forwards(forwards, batches, repeats=repeats)
    p50 = {n: {k: v["p50"] for k, v in t.items()} for n, t in timings.items()}
    table = {n.removeprefix("random "): p50[n] for n in p50 if n.startswith("random ")}
    fitted, residual = fit_latency(table, shapes)
    print("largest relative residual of the fit:", {k: round(v, 3) for k, v in residual.items()})
    print("| model | ms b1 (fitted) | ms b32 (fitted) |\n|---|---|---|")
    for n in shapes:
        print(f"| random {n} | {table[n]['batch1']:.3f} ({fitted[n]['batch1']:.3f}) | "
              f"{table[n]['batch32']:.2f} ({fitted[n]['batch32']:.2f}) |")  # fmt: skip
    for n in p50:
        if n.startswith("trained"):
            print(f"| {n} | {p50[n]['batch1']:.3f} | {p50[n]['batch32']:.2f} |")
    if json_out:
        with open(json_out, "w") as f:
            json.dump({"p50": p50, "fitted": fitted, "residual": residual, "build_s": build_s}, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:5]), *sys.argv[5:6])
