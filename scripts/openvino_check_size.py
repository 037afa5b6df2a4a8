"""How many held-out texts the int8 agreement check needs: a model's static int8 export (the
recipe ``export`` tries first) compared with PyTorch fp32 on the export's own held-out sample
(first ``CHECK`` texts after the calibration texts, as ``export_model`` draws them) and on
``OTHERS`` further training texts, with the number of changed labels on each, compared the way
the export compares (``export_openvino._compare``).

Usage: python scripts/openvino_check_size.py CHECKPOINT GLUE_TASK GLUE_DIR [--check 256,1000] [--others 2000]
Prints one JSON line per sample (regression models: the correlation of the scores instead).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from squeezebert.checkpoint import load
from squeezebert.data import TaskSource, load_task_data
from squeezebert.export_openvino import (
    CALIBRATION_SIZE,
    TextSample,
    _compare,
    _compile,
    _encode_each,
    _quiet,
    _split_calibration,
    convert,
    examples_sample,
    quantize_int8,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("task")
    ap.add_argument("glue_dir")
    ap.add_argument("--check", default="256,1000", help="held-out sample sizes to compare on")
    ap.add_argument("--others", type=int, default=2000, help="further training texts to compare on")
    ap.add_argument("--max-length", type=int, default=128)
    args = ap.parse_args()
    ckpt = load(args.checkpoint)
    model, tok = ckpt.model.float().eval(), ckpt.tokenizer
    data = load_task_data(TaskSource(task=args.task, data_dir=args.glue_dir))
    sample = examples_sample(data.train, data.train_source, labels=False)
    sizes = [int(s) for s in args.check.split(",")]
    calib, held = _split_calibration(sample, CALIBRATION_SIZE, max(sizes))
    seen = {str(x) for x in calib.inputs + held.inputs}
    rest = [x for x in sample.inputs if str(x) not in seen]
    rng = np.random.default_rng(1)
    others = [rest[i] for i in rng.choice(len(rest), size=min(args.others, len(rest)), replace=False)]
    samples = {f"held-out {n}": held.inputs[:n] for n in sizes}
    samples[f"{len(others)} other training texts"] = others
    with _quiet():
        q = quantize_int8(convert(model), _encode_each(tok, calib.inputs, args.max_length), "static")
    forward = _compile(q, "fp32", 2)
    for name, texts in samples.items():
        agreement = _compare(model, forward, tok, TextSample(texts, name), args.max_length)["agreement"]
        if model.config.num_labels == 1:
            result = {"correlation": round(agreement, 5)}
        else:
            result = {"changed": round((1 - agreement) * len(texts)), "agreement": round(agreement, 4)}
        print(json.dumps({"checkpoint": args.checkpoint, "sample": name, "texts": len(texts), **result}), flush=True)


if __name__ == "__main__":
    main()
