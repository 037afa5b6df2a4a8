"""Command line: parse arguments, call one library function, print. Nothing else reads sys.argv."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger("squeezebert")

# Errors that are the user's input, not our bug: printed as one line, exit code 2.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, ImportError, NotADirectoryError)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- info
def cmd_info(args: argparse.Namespace) -> int:
    from squeezebert.checkpoint import file_size, load
    from squeezebert.config import PROJECTIONS

    ckpt = load(args.model)
    cfg = ckpt.model.config
    groups = "/".join(str(cfg.groups(p)) for p in PROJECTIONS)
    rows = [
        ("source", f"{ckpt.path or args.model} ({ckpt.format})"),
        ("layers x hidden", f"{cfg.num_hidden_layers} x {cfg.hidden_size} (FFN {cfg.intermediate_size})"),
        ("heads", str(cfg.num_attention_heads)),
        ("groups q/k/v/post/inter/out", groups),
        ("ranks", json.dumps(cfg.ranks) if cfg.ranks else "full"),
        ("embedding size", f"{cfg.embedding_size} (vocab {cfg.vocab_size})"),
        ("head", f"{cfg.num_labels} labels {cfg.labels}" if cfg.num_labels else "none (encoder)"),
        ("parameters", f"{ckpt.model.num_parameters():,}"),
        ("FLOPs at seq 128", f"{ckpt.model.flops(128) / 1e9:.2f} G"),
        ("weights on disk", _human_bytes(file_size(ckpt.path))),
        ("tokenizer", "yes" if ckpt.tokenizer else "none"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


# --------------------------------------------------------------------------- convert
def cmd_convert(args: argparse.Namespace) -> int:
    from squeezebert.checkpoint import load, save_checkpoint, save_hf

    ckpt = load(args.src, strict=not args.allow_mismatch)
    out = Path(args.out)
    if args.to == "hf":
        save_hf(ckpt.model, out, ckpt.tokenizer, arch=args.hf_arch)
    else:
        save_checkpoint(ckpt.model, out, ckpt.tokenizer)
    print(f"wrote {out} ({args.to} format)")
    return 0


# --------------------------------------------------------------------------- demo
DEMO_SENTENCES = [
    "A warm, funny and beautifully acted film.",
    "The plot was a tedious mess and I left early.",
    "Not bad at all, I would watch it again.",
]


def cmd_demo(args: argparse.Namespace) -> int:
    import torch

    from squeezebert.checkpoint import load

    ckpt = load(args.model, num_labels=2)
    if ckpt.tokenizer is None:
        raise ValueError(f"{args.model}: has no tokenizer")
    batch = {k: torch.from_numpy(v) for k, v in ckpt.tokenizer(DEMO_SENTENCES).items()}
    with torch.no_grad():
        probs = ckpt.model(**batch).softmax(-1)
    print(f"{args.model}: {ckpt.model.num_parameters():,} parameters; classification head is untrained")
    for text, p in zip(DEMO_SENTENCES, probs.tolist()):
        print(f"  {p[1]:.3f}  {text}")
    return 0


# --------------------------------------------------------------------------- parser
Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="squeezebert", description="Fast, small NLP models on CPUs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="summarize a checkpoint: config, parameters, FLOPs, size")
    p.add_argument("model", help="checkpoint directory, HF directory, alias (minilm-l6), preset or Hub id")
    p.set_defaults(handler=cmd_info)

    p = sub.add_parser("convert", help="convert between our checkpoint format and Hugging Face's")
    p.add_argument("src", help="source checkpoint (any format load understands)")
    p.add_argument("out", help="output directory")
    p.add_argument("--to", choices=("hf", "squeezebert"), required=True)
    p.add_argument(
        "--hf-arch", choices=("auto", "bert", "squeezebert"), default="auto", help="HF architecture to write"
    )
    p.add_argument("--allow-mismatch", action="store_true", help="load despite missing/unexpected weights")
    p.set_defaults(handler=cmd_convert)

    p = sub.add_parser("demo", help="the end-to-end demo on the embedded model")
    p.add_argument("--model", default="minilm-l6")
    p.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.handler(args)
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"squeezebert {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
