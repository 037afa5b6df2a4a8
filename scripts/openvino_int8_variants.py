"""Compare ways to make an OpenVINO int8 model of one checkpoint: accuracy against PyTorch fp32 on
held-out *training* texts (where a default may be chosen) and on the dev set (checked once), and
batch-1 latency over the same texts, all variants interleaved in one process.

    PYTHONPATH=src python scripts/openvino_int8_variants.py runs/teacher-sst2 --sample 2000 --threads 2

Variants (names on the command line with --variants):
  static        nncf.quantize, transformer preset (SmoothQuant), symmetric activations
  static-mixed  the same with asymmetric activations (QuantizationPreset.MIXED)
  static-1000   static on 1,000 calibration texts instead of 300
  static-nosq   static without SmoothQuant
  static-keep-ffnout  static, with each layer's FFN output projection (after GELU) left in float
  static-keep-ffnin, static-keep-attnout, static-keep-head, static-keep-first, static-keep-last
                static with the FFN input projections, the attention output projections, the
                pooler and classifier, the first layer, or the last layer (and the head) left in float
  weights-dyn   int8 weights only (nncf.compress_weights INT8_ASYM), activations quantized at run time by
                the CPU plugin in groups of 32 channels (DYNAMIC_QUANTIZATION_GROUP_SIZE)
  weights-dyn-N the same in groups of N channels (weights-dyn-32, like weights-dyn, is what the
                export ships); N of 4294967295: one group per token
  weights-only  int8 weights only, computed in fp32 (dynamic quantization off)
  fp32, bf16    the float model with that inference-precision hint (for reference)
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--sample", type=int, default=2000, help="held-out training texts to compare on")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds over the dev texts")
    parser.add_argument("--batch-sizes", default="1,32", help="timed batch sizes (dev texts sorted by length)")
    parser.add_argument("--max-length", type=int, default=64, help="tokens per text (a squeeze exports at 128)")
    parser.add_argument("--variants", default="static,static-mixed,static-1000,static-nosq,weights-dyn,weights-only")
    args = parser.parse_args()

    from squeezebert.infer import import_openvino

    ov = import_openvino()  # without its network telemetry, before nncf imports it
    import nncf
    import torch

    from squeezebert.checkpoint import load
    from squeezebert.export_openvino import _encode_each, convert, recorded_data

    torch.set_num_threads(args.threads)
    ckpt = load(args.checkpoint)
    model, tok = ckpt.model.eval(), ckpt.tokenizer
    train, dev = recorded_data(ckpt.path)
    assert train is not None and dev is not None, "the checkpoint records no task data"
    order = list(range(len(train.inputs)))
    random.Random(0).shuffle(order)
    calib_texts = [train.inputs[i] for i in order[:1000]]
    held = [train.inputs[i] for i in order[1000 : 1000 + args.sample]]
    max_length = args.max_length

    def logits_torch(texts: list) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for b in _encode_each(tok, texts, max_length):
                out.append(model(**{k: torch.from_numpy(v) for k, v in b.items()}).numpy())
        return np.concatenate(out)

    ref_held, ref_dev = logits_torch(held), logits_torch(dev.inputs)
    fp32 = convert(model)
    calib300 = _encode_each(tok, calib_texts[:300], max_length)
    calib1000 = _encode_each(tok, calib_texts, max_length)
    tt = nncf.ModelType.TRANSFORMER

    def build(name: str) -> tuple[object, dict]:
        props: dict = {}
        if name == "static":
            m = nncf.quantize(fp32, nncf.Dataset(calib300), model_type=tt, subset_size=300)
        elif name == "static-mixed":
            m = nncf.quantize(
                fp32, nncf.Dataset(calib300), model_type=tt, subset_size=300, preset=nncf.QuantizationPreset.MIXED
            )
        elif name == "static-1000":
            m = nncf.quantize(fp32, nncf.Dataset(calib1000), model_type=tt, subset_size=1000)
        elif name == "static-nosq":
            from nncf.quantization.advanced_parameters import (
                AdvancedQuantizationParameters,
                AdvancedSmoothQuantParameters,
            )

            adv = AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1))
            m = nncf.quantize(fp32, nncf.Dataset(calib300), model_type=tt, subset_size=300, advanced_parameters=adv)
        elif name.startswith("static-keep-"):
            last = model.config.num_hidden_layers - 1
            head = r".*(classifier|pooler).*"
            patterns = {
                "ffnout": [r".*output\.conv1d.*"],
                "ffnin": [r".*intermediate\.conv1d.*"],
                "attnout": [r".*post_attention\.conv1d.*"],
                "head": [head],
                "first": [r".*layers\.0\..*"],
                "last": [rf".*layers\.{last}\..*", head],
            }[name.removeprefix("static-keep-")]
            keep = nncf.IgnoredScope(patterns=patterns, validate=False)
            m = nncf.quantize(fp32, nncf.Dataset(calib300), model_type=tt, subset_size=300, ignored_scope=keep)
        elif name in ("fp32", "bf16"):
            m = fp32
            props["INFERENCE_PRECISION_HINT"] = "f32" if name == "fp32" else "bf16"
        elif name.startswith("weights-dyn") or name == "weights-only":
            m = nncf.compress_weights(fp32.clone(), mode=nncf.CompressWeightsMode.INT8_ASYM)  # clone: in place
            group = 0 if name == "weights-only" else int(name.removeprefix("weights-dyn").removeprefix("-") or 32)
            props["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = group
        else:
            raise SystemExit(f"unknown variant {name}")
        return m, props

    core = ov.Core()
    variants = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants.split(","):
            m, props = build(name)
            path = Path(tmp) / f"{name}.xml"
            ov.save_model(m, str(path), compress_to_fp16=False)
            props = {
                "INFERENCE_PRECISION_HINT": "f32",
                "PERFORMANCE_HINT": "LATENCY",
                "NUM_STREAMS": 1,
                "INFERENCE_NUM_THREADS": args.threads,
                **props,
            }
            variants[name] = (core.compile_model(core.read_model(str(path)), "CPU", props), path.with_suffix(".bin"))

        def logits(compiled: object, texts: list) -> np.ndarray:
            request = compiled.create_infer_request()
            return np.concatenate([np.array(request.infer(b)[0]) for b in _encode_each(tok, texts, max_length)])

        def kl(ref: np.ndarray, got: np.ndarray) -> float:
            p = torch.log_softmax(torch.from_numpy(ref).double(), -1)
            q = torch.log_softmax(torch.from_numpy(got).double(), -1)
            return float((p.exp() * (p - q)).sum(-1).mean())

        gold = np.array([model.config.label2id[str(y)] for y in dev.labels])
        print(f"{'variant':18} {'held agree':>10} {'held KL':>9} {'dev agree':>9} {'dev acc':>8} {'MB':>6}")
        print(f"{'torch fp32':18} {'':>10} {'':>9} {'':>9} {100 * (ref_dev.argmax(-1) == gold).mean():8.2f}")
        for name, (compiled, weights) in variants.items():
            h, d = logits(compiled, held), logits(compiled, dev.inputs)
            print(
                f"{name:18} {100 * (h.argmax(-1) == ref_held.argmax(-1)).mean():10.2f} {kl(ref_held, h):9.2e} "
                f"{100 * (d.argmax(-1) == ref_dev.argmax(-1)).mean():9.2f} {100 * (d.argmax(-1) == gold).mean():8.2f} "
                f"{weights.stat().st_size / 1e6:6.1f}"
            )
        # latency over the dev texts, sorted by length and padded per batch; variants interleaved
        from squeezebert.export_openvino import _batches

        by_length = sorted(dev.inputs, key=lambda t: len(t) if isinstance(t, str) else len(t[0]) + len(t[1]))
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            batches = list(_batches(tok, by_length, max_length, batch_size))
            requests = {name: c.create_infer_request() for name, (c, _) in variants.items()}
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(args.rounds):
                names = list(requests)
                random.shuffle(names)
                for name in names:
                    time.sleep(0.02)
                    start = time.perf_counter()
                    for b in batches:
                        requests[name].infer(b)
                    times[name].append(time.perf_counter() - start)
            for name, t in times.items():
                per_text = 1000 * statistics.median(t) / len(dev.inputs)
                print(f"{name:18} dev texts at batch {batch_size}: {per_text:.3f} ms/text (median of {len(t)})")


if __name__ == "__main__":
    main()
