"""Would CoFi-style block pruning (removing a layer's whole attention or FFN block, not the whole
layer) buy accuracy at the same latency? Two measurements on the product's block removal
(per-layer heads or FFN width 0: the block's output becomes its mean on calibration tokens, a
constant added before the layer's LayerNorm; :func:`squeezebert.prune.choose_blocks`).

    # latency of layers with a block removed: random-weight twins through OpenVINO int8 with
    # run-time scales (the latency table's recipe), at the task's own lengths, interleaved
    PYTHONPATH=src python scripts/block_pruning_probe.py latency --task cola --data-dir $GLUE

    # a student with KEEP of the 12 blocks: all 6 layers pruned to 4 heads / 576 neurons, then
    # blocks removed greedily (the one whose removal changes the logits least on calibration
    # batches), at most MAX_ATTENTION_DROPS of them attention (default: the product's third);
    # then the squeeze's distillation and report (deployed OpenVINO timing) unchanged. The same
    # as `squeezebert squeeze --construction pruned --heads 4 --ffn 576 --blocks 6` but for the cap.
    PYTHONPATH=src python scripts/block_pruning_probe.py distill --task cola --data-dir $GLUE \
        --teacher runs/teacher-cola --out runs/cola-blocks --keep 6 --max-attention-drops 2 --seed 42

Session 16 ran the same measurements through an earlier copy of this script that patched
block removal into ``Layer.forward`` before the model supported it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

import torch

log = logging.getLogger("block_pruning_probe")


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
        cfg = shape.config(full).replace(
            layer_heads=[shape.heads if "a" in kept else 0 for kept in pattern],
            layer_intermediate_sizes=[shape.ffn if "f" in kept else 0 for kept in pattern],
        )
        return SqueezeBert(cfg).eval()

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
    from squeezebert import prune
    from squeezebert import squeeze as sq
    from squeezebert.data import TaskSource
    from squeezebert.surgery import StudentSpec

    if args.max_attention_drops is not None:
        choose = prune.choose_blocks

        def capped(*a, **k):
            return choose(*a, **{**k, "max_attention_drops": args.max_attention_drops})

        prune.choose_blocks = capped
    spec = StudentSpec.from_construction("pruned", heads=args.heads, ffn=args.ffn, blocks=args.keep)
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
    parser.add_argument("--max-attention-drops", type=int, default=None, help="default: the product's rule")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    latency(args) if args.what == "latency" else distill(args)


if __name__ == "__main__":
    main()
