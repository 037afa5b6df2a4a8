"""Would CoFi-style block pruning (removing a layer's whole attention or FFN block, not the whole
layer) buy accuracy at the same latency? Two measurements, neither part of the product: the model
has no block-removed layer, so this script patches one in (a removed block adds a constant, its
mean output on calibration tokens, before the layer's LayerNorm, as a fully pruned block would).

    # latency of layers with a block removed: random-weight twins through OpenVINO int8 with
    # run-time scales (the latency table's recipe), at the task's own lengths, interleaved
    PYTHONPATH=src python scripts/block_pruning_probe.py latency --task cola --data-dir $GLUE

    # a student with KEEP of the 12 blocks: all 6 layers pruned to 4 heads / 576 neurons, then
    # blocks removed greedily (the one whose removal changes the logits least on calibration
    # batches), at most MAX_ATTENTION_DROPS of them attention; then the squeeze's distillation
    # and report (deployed OpenVINO timing) unchanged
    PYTHONPATH=src python scripts/block_pruning_probe.py distill --task cola --data-dir $GLUE \
        --teacher runs/teacher-cola --out runs/cola-blocks --keep 6 --max-attention-drops 2 --seed 42
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging

import torch
import torch.nn.functional as F

from squeezebert.model import Layer

log = logging.getLogger("block_pruning_probe")


def _bias(module: torch.nn.Module) -> torch.Tensor:
    try:
        return module.bias
    except AttributeError:  # squeezebert.quantize's int8 projection keeps it private
        return module._bias


def _layer_forward(self: Layer, x, mask, return_probs: bool = False):
    probs = None
    if getattr(self, "no_attention", False):
        x = self.post_attention.layernorm(x + _bias(self.post_attention.conv1d))
    else:
        ctx, probs = self.attention(x, mask, return_probs)
        x = self.post_attention(ctx, x)
    if getattr(self, "no_ffn", False):
        x = self.output.layernorm(x + _bias(self.output.conv1d))
    else:
        x = self.output(self.intermediate(x), x)
    return x, probs


Layer.forward = _layer_forward


def _reader(layer: Layer, block: str) -> torch.nn.Module:
    return (layer.post_attention if block == "a" else layer.output).conv1d


def _set(layer: Layer, block: str, removed: bool) -> None:
    setattr(layer, "no_attention" if block == "a" else "no_ffn", removed)


@torch.no_grad()
def mean_outputs(model, batches) -> dict[tuple[int, str], torch.Tensor]:
    """Mean over real tokens of each block's output projection (bias included)."""
    sums: dict[tuple[int, str], torch.Tensor] = {}
    current: dict[str, torch.Tensor] = {}
    hooks = []
    for i, layer in enumerate(model.encoder.layers):
        for block in "af":

            def hook(module, args, out, key=(i, block)):
                sums[key] = sums.get(key, 0) + out[current["mask"]].double().sum(0)

            hooks.append(_reader(layer, block).register_forward_hook(hook))
    tokens = 0
    for b in batches:
        current["mask"] = b["attention_mask"].bool()
        tokens += int(current["mask"].sum())
        model(b["input_ids"], b["attention_mask"], b.get("token_type_ids"))
    for h in hooks:
        h.remove()
    return {k: (v / tokens).float() for k, v in sums.items()}


@torch.no_grad()
def drop_blocks(model, batches, keep: int, max_attention_drops: int) -> list[tuple[int, str, float]]:
    """Greedily remove blocks until ``keep`` remain; each step removes the block whose removal
    (its output replaced by its mean) changes the logits least (KL; squared error for a regression
    head). Returns (layer, block, change)."""
    model.eval()
    layers = model.encoder.layers

    def logits():
        return torch.cat([model(b["input_ids"], b["attention_mask"], b.get("token_type_ids")) for b in batches])

    reference = logits()
    means = mean_outputs(model, batches)
    biases = {(i, k): _reader(layers[i], k).bias.detach().clone() for i in range(len(layers)) for k in "af"}

    def remove(i: int, k: str, removed: bool) -> None:
        _set(layers[i], k, removed)
        _reader(layers[i], k).bias.copy_(means[(i, k)] if removed else biases[(i, k)])

    dropped: list[tuple[int, str, float]] = []
    while 2 * len(layers) - len(dropped) > keep:
        best = None
        for i, k in biases:
            if any(d[:2] == (i, k) for d in dropped):
                continue
            if k == "a" and sum(d[1] == "a" for d in dropped) >= max_attention_drops:
                continue
            remove(i, k, True)
            got = logits()
            remove(i, k, False)
            if got.shape[-1] == 1:  # regression (STS-B): the squared change of the score
                kl = F.mse_loss(got, reference)
            else:
                kl = F.kl_div(got.log_softmax(-1), reference.log_softmax(-1), log_target=True, reduction="batchmean")
            if best is None or kl.item() < best[2]:
                best = (i, k, kl.item())
        remove(best[0], best[1], True)
        dropped.append(best)
        log.info("removed layer %d's %s block: KL %.4f", best[0], "attention" if best[1] == "a" else "FFN", best[2])
    return dropped


def latency(args: argparse.Namespace) -> None:
    from squeezebert.budget import Shape, fast_forward, time_forwards, timing_batches
    from squeezebert.checkpoint import load
    from squeezebert.data import TaskSource, encode, load_task_data
    from squeezebert.model import SqueezeBert

    torch.set_num_threads(args.threads)
    teacher = load("minilm-l6", num_labels=2)
    data = load_task_data(TaskSource(args.task, args.data_dir))
    labels = sorted({e.label for e in data.train[:3000]})
    train = encode(teacher.tokenizer, data.train[:3000], 128, {x: i for i, x in enumerate(labels)}, data.train_source)
    batches = timing_batches(train, teacher.tokenizer, [1, 32], seed=42)
    full = teacher.model.config

    def twin(shape: Shape, pattern: list[str]):
        torch.manual_seed(0)
        model = SqueezeBert(shape.config(full)).eval()
        for layer, kept in zip(model.encoder.layers, pattern):
            _set(layer, "a", "a" not in kept)
            _set(layer, "f", "f" not in kept)
        return model

    twins = {"teacher 6L-12h-1536f": twin(Shape(6, 12, 1536), ["af"] * 6)}
    for shape in (Shape(3, 4, 576), Shape(3, 12, 1536), Shape(3, 2, 192)):
        for kept in ("af", "a", "f"):
            twins[f"{shape.name} blocks {kept}"] = twin(shape, [kept] * 3)
    twins["1L-4h-576f"] = twin(Shape(1, 4, 576), ["af"])
    twins["6L-4h-576f attention in 3, FFN in 6"] = twin(Shape(6, 4, 576), ["af"] * 3 + ["f"] * 3)
    twins["6L-4h-576f attention in 2, FFN in 6"] = twin(Shape(6, 4, 576), ["af"] * 2 + ["f"] * 4)
    twins["6L-2h-192f attention in 3, FFN in 6"] = twin(Shape(6, 2, 192), ["af"] * 3 + ["f"] * 3)
    forwards = {name: fast_forward(m, "openvino-int8", args.threads, None) for name, m in twins.items()}
    for rnd in range(args.rounds):
        ms = time_forwards(forwards, batches, repeats=9)
        for bs in (1, 32):
            ref = ms["teacher 6L-12h-1536f"][f"batch{bs}"]["p50"]
            print(f"round {rnd}, batch {bs} (p50 ms, speed-up against the teacher twin):")
            for name, t in ms.items():
                p50 = t[f"batch{bs}"]["p50"]
                print(f"  {name:40s} {p50:8.3f}  {ref / p50:5.2f}x", flush=True)


def distill(args: argparse.Namespace) -> None:
    from squeezebert import squeeze as sq
    from squeezebert.data import TaskSource
    from squeezebert.prune import pruning_batches
    from squeezebert.surgery import StudentSpec

    construct = sq.construct_student

    def construct_with_blocks(teacher, spec, calibration):
        student, surgery, pruning = construct(teacher, spec, calibration)
        dropped = drop_blocks(student, pruning_batches(calibration), args.keep, args.max_attention_drops)
        with open(f"{args.out}.blocks.json", "w") as f:
            json.dump(dropped, f)
        return student, surgery, pruning

    sq.construct_student = construct_with_blocks
    spec = StudentSpec.from_construction("pruned", layers=list(range(6)), heads=args.heads, ffn=args.ffn)
    config = dataclasses.replace(sq.default_train_config(spec), seed=args.seed)
    sq.squeeze(args.teacher, args.out, TaskSource(args.task, args.data_dir), spec=spec, config=config, bench_threads=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("latency", "distill"))
    parser.add_argument("--task", default="cola")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--teacher")
    parser.add_argument("--out")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ffn", type=int, default=576)
    parser.add_argument("--keep", type=int, default=6, help="blocks kept of the 12")
    parser.add_argument("--max-attention-drops", type=int, default=12)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    latency(args) if args.what == "latency" else distill(args)


if __name__ == "__main__":
    main()
