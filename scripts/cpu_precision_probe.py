"""Which OpenVINO precision is fastest on *this* CPU: static int8, int8 with run-time scales, fp32?

The export ladder ships the first precision that passes its agreement checks, int8 first, on the
assumption that int8 is the fast path. That holds where the CPU multiplies int8 natively (VNNI on
the AVX-512 EPYC and Xeon of earlier sessions); on an AVX2-only CPU (AMD Zen 2/3, older Intel)
int8 GEMMs go through a slower emulation. This probe times random-weight twins of the minilm-l6
teacher and of student shapes through every precision, interleaved in the same rounds, at batch 1
(one text per call) and batch 32 on a task's training texts, and prints medians and each path's
time over its shape's static int8.

Usage: SQUEEZEBERT_GLUE_DIR=... python scripts/cpu_precision_probe.py [TASK] [ROUNDS] [THREADS]
"""

from __future__ import annotations

import os
import sys

import torch

from squeezebert.backends import openvino_has_bf16
from squeezebert.budget import Shape, time_forwards, timing_batches
from squeezebert.checkpoint import load
from squeezebert.data import TaskSource, encode, load_task_data
from squeezebert.export_openvino import _compile, _quiet, convert, quantize_int8
from squeezebert.model import SqueezeBert

SHAPES = (Shape(6, 12, 1536), Shape(5, 2, 192), Shape(3, 4, 576))


def cpu_words() -> str:
    info: dict[str, str] = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    flags = set(info.get("flags", "").split())
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8") if f in flags]
    return f"{info.get('model name')} (family {info.get('cpu family')} model {info.get('model')}), {'/'.join(isa)}"


def main(task: str = "sst2", rounds: str = "9", threads: str = "2") -> None:
    torch.set_num_threads(int(threads))
    print(cpu_words())
    teacher = load("minilm-l6", num_labels=2)
    data = load_task_data(TaskSource(task, os.environ["SQUEEZEBERT_GLUE_DIR"]))
    sample = data.train[:3000]
    labels = sorted({e.label for e in sample})
    train = encode(teacher.tokenizer, sample, 128, {x: i for i, x in enumerate(labels)}, data.train_source)
    batches = timing_batches(train, teacher.tokenizer, [1, 32], seed=42)
    calibration = timing_batches(train, teacher.tokenizer, [1], texts=300, seed=7)[1]
    precisions = ["static int8", "dynamic int8", "fp32"] + (["bf16"] if openvino_has_bf16() else [])
    forwards = {}
    for shape in SHAPES:
        torch.manual_seed(0)
        model = SqueezeBert(shape.config(teacher.model.config)).eval()
        with _quiet():
            static = quantize_int8(convert(model), calibration, "static")
            dynamic = quantize_int8(convert(model), [], "dynamic")
        forwards[f"{shape.name} static int8"] = _compile(static, "fp32", int(threads))
        forwards[f"{shape.name} dynamic int8"] = _compile(dynamic, "fp32", int(threads), dynamic_int8=True)
        forwards[f"{shape.name} fp32"] = _compile(convert(model), "fp32", int(threads))
        if "bf16" in precisions:
            forwards[f"{shape.name} bf16"] = _compile(convert(model), "bf16", int(threads))
    t = time_forwards(forwards, batches, repeats=int(rounds), max_seconds=None)
    print(f"{task}, {threads} threads, {rounds} interleaved rounds; p50 ms per call (x its shape's static int8)")
    for bs in (1, 32):
        print(f"batch {bs}:")
        for shape in SHAPES:
            base = t[f"{shape.name} static int8"][f"batch{bs}"]["p50"]
            cells = []
            for p in precisions:
                ms = t[f"{shape.name} {p}"][f"batch{bs}"]["p50"]
                cells.append(f"{p} {ms:7.3f} ({ms / base:4.2f}x)")
            print(f"  {shape.name:14s} " + "   ".join(cells))


if __name__ == "__main__":
    main(*sys.argv[1:])
