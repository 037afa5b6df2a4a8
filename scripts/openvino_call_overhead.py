"""What one single-text call costs around the compiled model: ``OpenVinoForward`` as deployed,
against the way it called a static model until session 12 (the text padded with ``np.pad``, a dict
of arrays passed to ``infer``, the logits copied out) and against the bare request (inputs bound
once, ``infer()`` with no arguments), on random-weight models exported through the dynamic int8
recipe, interleaved in one process.

Usage: PYTHONPATH=src python scripts/openvino_call_overhead.py [--teacher CONFIG_JSON]
       [--shapes 1L-2h-192f,3L-3h-384f,6L-12h-1536f] [--texts 64] [--rounds 15] [--threads 2]
Texts are random ids of 8-40 tokens (one per call). Prints one JSON line per model and way.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--teacher", default=None, help="teacher config.json to cut the shapes from (default: minilm-l6's shape)"
    )
    parser.add_argument("--shapes", default="1L-2h-192f,3L-3h-384f,6L-12h-1536f")
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import openvino as ov

    from squeezebert.backends import OpenVinoForward
    from squeezebert.budget import Shape
    from squeezebert.config import ModelConfig, preset
    from squeezebert.export_openvino import _quiet, convert, quantize_int8
    from squeezebert.model import SqueezeBert

    minilm = dict(hidden_size=384, embedding_size=384, num_hidden_layers=6, intermediate_size=1536, num_labels=2)
    teacher = ModelConfig.load(args.teacher) if args.teacher else preset("bert-base", **minilm)
    rng = np.random.default_rng(0)
    texts = []
    for n in rng.integers(8, 41, args.texts):
        ids = rng.integers(1000, 2000, (1, n))
        texts.append({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})
    calls = {}
    tmp = tempfile.TemporaryDirectory()
    for spec in args.shapes.split(","):
        layers, heads, ffn = (int(part[:-1]) for part in spec.split("-"))
        torch.manual_seed(0)
        model = SqueezeBert(Shape(layers, heads, ffn).config(teacher)).eval()
        with _quiet():
            xml = Path(tmp.name) / spec / "model.xml"
            ov.save_model(quantize_int8(convert(model), [], "dynamic"), str(xml))
        forward = OpenVinoForward(xml, args.threads, dynamic_int8=True)
        forward.compile_static(64)
        padded_requests = {b: c.create_infer_request() for b, c in forward.static.items()}

        def padded(batch: dict, requests: dict = padded_requests, forward: OpenVinoForward = forward) -> np.ndarray:
            length = batch["input_ids"].shape[1]
            bucket = forward.padded_length(length)
            inputs = {k: np.pad(v, ((0, 0), (0, bucket - length))) for k, v in batch.items()}
            return np.array(requests[bucket].infer(inputs, share_inputs=True)[0])

        bound = []  # the bare request: inputs bound once, as OpenVinoForward now does, without the wrapper
        for batch in texts:
            length = batch["input_ids"].shape[1]
            bucket = forward.padded_length(length)
            request = forward.static[bucket].create_infer_request()
            for name, value in batch.items():
                request.set_tensor(name, ov.Tensor(np.pad(value, ((0, 0), (0, bucket - length))), shared_memory=False))
            bound.append(request)
        for batch in texts:  # same logits, whichever way
            np.testing.assert_allclose(forward(batch), padded(batch), rtol=0, atol=1e-5)
        calls[(spec, "OpenVinoForward")] = lambda f=forward: [f(b) for b in texts]
        calls[(spec, "np.pad + infer(dict)")] = lambda f=padded: [f(b) for b in texts]
        calls[(spec, "bare request")] = lambda rs=bound: [r.infer() for r in rs]
    for call in calls.values():
        call()
    samples: dict = {key: [] for key in calls}
    for _ in range(args.rounds):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            samples[key].append((time.perf_counter() - start) / len(texts) * 1e3)
    for (spec, way), ms in samples.items():
        print(json.dumps({"shape": spec, "way": way, "ms_p50": round(statistics.median(ms), 4)}))


if __name__ == "__main__":
    main()
