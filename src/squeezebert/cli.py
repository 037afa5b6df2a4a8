"""Command line: parse arguments, call one library function, print. Nothing else reads sys.argv."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

# torch-free, as the commands that run an export: the names every --backend/--precision offers
from squeezebert.augment import AUGMENT_WORDS
from squeezebert.config import CONSTRUCTIONS
from squeezebert.runtime import BACKENDS, DEFAULT_MAX_LENGTH, PRECISIONS, RuntimeOptions, threads

if TYPE_CHECKING:
    from squeezebert.data import TaskSource
    from squeezebert.train import TrainConfig

log = logging.getLogger("squeezebert")

# Errors that are the user's input or environment, not our bug: printed as one line, exit code 2.
# OSError covers the file system's refusals too (read-only or full disk, permissions).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, ImportError)


#: The answer to a command that needs PyTorch on a deployment install (squeezebert[onnx] or [openvino]).
NO_TORCH = (
    "this needs PyTorch, which is not installed here: pip install 'squeezebert[train]' (for a CPU-only build, "
    "first: pip install torch --index-url https://download.pytorch.org/whl/cpu). Without torch, predict, serve "
    "and batch run an export directory (squeezebert export, where torch is installed)"
)


def _one_line(error: BaseException) -> str:
    """The error as one line; an OSError from the system names its file and says what went wrong."""
    if isinstance(error, ImportError) and (error.name or "").partition(".")[0] == "torch":
        return NO_TORCH
    if isinstance(error, OSError) and error.strerror:
        if error.filename is not None:
            target = error.filename if error.filename2 is None else f"{error.filename} -> {error.filename2}"
            return f"{target}: {error.strerror}"
        return error.strerror
    return str(error)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- info
def add_info_parser(sub: Subparsers) -> None:
    """The ``info`` command's arguments."""
    p = _command(sub, "info", help="summarize a checkpoint: config, parameters, FLOPs, size")
    p.add_argument("model", help="checkpoint directory, HF directory, alias (minilm-l6), preset or Hub id")
    p.add_argument("--json", action="store_true", help="print one JSON object (raw numbers) instead of the table")
    p.set_defaults(handler=cmd_info)


def cmd_info(args: argparse.Namespace) -> int:
    from squeezebert.checkpoint import file_size, load
    from squeezebert.config import PROJECTIONS

    ckpt = load(args.model)
    cfg = ckpt.model.config
    if args.json:
        record = {
            "source": str(ckpt.path or args.model),
            "format": ckpt.format,
            "num_hidden_layers": cfg.num_hidden_layers,
            "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size,
            "num_attention_heads": cfg.num_attention_heads,
            "layer_heads": cfg.layer_heads or None,
            "layer_intermediate_sizes": cfg.layer_intermediate_sizes or None,
            "groups": {p: cfg.groups(p) for p in PROJECTIONS},
            "ranks": cfg.ranks or None,
            "embedding_size": cfg.embedding_size,
            "vocab_size": cfg.vocab_size,
            "num_labels": cfg.num_labels,
            "labels": list(cfg.labels) if cfg.num_labels else [],
            "parameters": ckpt.model.num_parameters(),
            "flops_seq128": ckpt.model.flops(128),
            "weights_bytes": file_size(ckpt.path),
            "tokenizer": ckpt.tokenizer is not None,
        }
        print(json.dumps(record, indent=2))
        return 0
    groups = "/".join(str(cfg.groups(p)) for p in PROJECTIONS)
    # a pruned model: per layer, 0 where the whole block was removed
    heads = "/".join(str(cfg.heads(i)) for i in range(cfg.num_hidden_layers)) if cfg.is_pruned else ""
    ffn = "/".join(str(cfg.ffn_width(i)) for i in range(cfg.num_hidden_layers)) if cfg.is_pruned else ""
    heads = f"{heads} per layer" if heads else str(cfg.num_attention_heads)
    ffn = f"{ffn} per layer" if ffn else str(cfg.intermediate_size)
    rows = [
        ("source", f"{ckpt.path or args.model} ({ckpt.format})"),
        ("layers x hidden", f"{cfg.num_hidden_layers} x {cfg.hidden_size} (FFN {ffn})"),
        ("heads", heads),
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
def add_convert_parser(sub: Subparsers) -> None:
    """The ``convert`` command's arguments."""
    p = _command(sub, "convert", help="convert between our checkpoint format and Hugging Face's")
    p.add_argument("src", help="source checkpoint (any format load understands)")
    p.add_argument("out", help="output directory")
    p.add_argument(
        "--to",
        choices=("hf", "squeezebert"),
        required=True,
        help="hf: Hugging Face's SqueezeBERT/BERT files (dense); squeezebert: our checkpoint directory",
    )
    p.add_argument(
        "--hf-arch", choices=("auto", "bert", "squeezebert"), default="auto", help="HF architecture to write"
    )
    p.add_argument("--allow-mismatch", action="store_true", help="load despite missing/unexpected weights")
    p.set_defaults(handler=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from squeezebert.checkpoint import load, save_checkpoint, save_hf
    from squeezebert.files import check_writable_dir

    out = Path(args.out)
    check_writable_dir(out, "out")
    ckpt = load(args.src, strict=not args.allow_mismatch)
    if args.to == "hf":
        save_hf(ckpt.model, out, ckpt.tokenizer, arch=args.hf_arch)
    else:
        save_checkpoint(ckpt.model, out, ckpt.tokenizer)
    print(f"wrote {out} ({args.to} format)")
    return 0


# --------------------------------------------------------------------------- demo / squeeze
def add_demo_parser(sub: Subparsers) -> None:
    """The ``demo`` command's arguments."""
    p = _command(sub, "demo", help="fine-tune the embedded model, squeeze it and print the report (offline)")
    p.add_argument("--model", default="minilm-l6", help="teacher to start from")
    p.add_argument("--out", default="runs/demo", help="output directory (teacher/ and student/ inside)")
    p.add_argument(
        "--data-dir",
        default=None,
        help="GLUE directory: use SST-2 (default: $SQUEEZEBERT_GLUE_DIR, else the shipped sample)",
    )
    p.add_argument(
        "--construction",
        default=None,
        choices=CONSTRUCTIONS,
        help="student shape (as squeeze --construction; default: the shape --speedup chooses)",
    )
    p.add_argument(
        "--speedup",
        type=float,
        default=3.0,
        help="the student's shape is chosen by measured latency to run this many times faster than the teacher",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    import os

    from squeezebert.squeeze import demo

    data_dir = args.data_dir or os.environ.get("SQUEEZEBERT_GLUE_DIR") or None
    with threads(args.threads):
        report = demo(
            args.out,
            data_dir=data_dir,
            teacher=args.model,
            construction=args.construction,
            threads=args.threads,
            speedup=args.speedup,
        )
    print((Path(args.out) / "student" / "report.md").read_text(encoding="utf-8"), end="")
    print(f"\nwrote {Path(args.out) / 'student'} (student checkpoint, report.md, report.json)")
    return 0 if report else 1


def _int_list(text: str | None, name: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{name} takes comma-separated integers, got {text!r}") from None


def _auto_or(kind: Callable[[str], float], what: str) -> Callable[[str], Any]:
    """An argparse type: the word ``auto``, or ``kind(text)`` that must be >= 0 (``what`` names it)."""

    def parse(text: str) -> Any:
        if text == "auto":
            return text
        try:
            value = kind(text)
        except ValueError:
            value = -1
        if not value >= 0:  # also refuses nan
            raise argparse.ArgumentTypeError(f"expected 'auto' or {what} >= 0, got {text!r}")
        return value

    return parse


_augment_arg = _auto_or(int, "a number of copies")  # --augment
_weight_arg = _auto_or(float, "a weight")  # --hidden-weight


def add_squeeze_parser(sub: Subparsers) -> None:
    """The ``squeeze`` command's arguments."""
    p = _command(sub, "squeeze", help="distill a fine-tuned teacher into a smaller, faster student; write a report")
    p.add_argument("--teacher", required=True, help="fine-tuned teacher checkpoint (any format load understands)")
    p.add_argument("--task", default=None, help="GLUE task (sst2, mrpc, ...); 'custom' (implied by --train)")
    p.add_argument("--data-dir", default=None, help="GLUE data directory (default: the Hugging Face Hub)")
    p.add_argument("--train", default=None, help="custom training file (.csv, .tsv or .jsonl)")
    p.add_argument("--dev", default=None, help="custom dev file (needed: the report scores the student on it)")
    _add_column_args(p)
    p.add_argument("--student", default=None, help="distill into this pretrained checkpoint instead of surgery")
    p.add_argument(
        "--construction",
        default=None,
        choices=CONSTRUCTIONS,
        help="student shape: lowrank (the default without a budget), grouped and grouped-lowrank at a quarter of "
        "the projections' FLOPs; pruned: structured pruning only (--num-layers/--heads/--ffn)",
    )
    p.add_argument(
        "--latency-budget",
        type=float,
        default=None,
        metavar="MS",
        help="choose the student's shape by measured latency: the most accurate pruned shape within MS "
        "milliseconds per call at --budget-batch, on this CPU, through the deployed runtime, at the data's lengths",
    )
    p.add_argument(
        "--speedup",
        type=float,
        default=None,
        metavar="X",
        help="like --latency-budget, with the budget set to the teacher's latency through the same path / X",
    )
    p.add_argument(
        "--budget-batch",
        type=int,
        default=1,
        help="texts per call the budget applies to (and at which run-time-scale int8 and bf16 are compared "
        "for the deployed export when static int8 is refused)",
    )
    p.add_argument(
        "--budget-recipe",
        default="auto",
        choices=("auto", "static", "dynamic"),
        help="with --latency-budget/--speedup: the OpenVINO int8 recipe candidate shapes are timed through: "
        "auto (default) the one the teacher deployed with (static int8 where it passed the agreement checks); "
        "dynamic: run-time activation scales, which every int8 export can fall back to, so the budget holds "
        "even if the student's static int8 misses the bar (at the cost of a smaller student when it would not)",
    )
    p.add_argument(
        "--prune-unit",
        default="layers",
        choices=("layers", "blocks"),
        help="with --latency-budget/--speedup: reach the chosen depth by removing whole layers, or by keeping "
        "every layer and removing twice as many attention/FFN blocks (the ones whose removal changes the "
        "teacher's outputs least)",
    )
    p.add_argument(
        "--unlabeled",
        default=None,
        metavar="FILE",
        help="in-domain texts without labels (text, CSV, TSV or JSONL), labelled by the teacher and added to "
        "the distillation data",
    )
    p.add_argument("--num-layers", type=int, default=None, help="prune to this many layers, chosen by importance")
    p.add_argument("--heads", type=int, default=None, help="prune to this many attention heads per layer")
    p.add_argument("--ffn", type=int, default=None, help="prune to this many FFN neurons per layer")
    p.add_argument(
        "--blocks",
        type=int,
        default=None,
        help="then keep only this many of the layers' attention and FFN blocks (2 per layer), the rest removed "
        "one at a time by least output change, at most a third of them attention",
    )
    p.add_argument(
        "--intermediate-epochs",
        type=int,
        default=None,
        help="a pruned student with fewer and narrower layers than its teacher is pruned in two steps: every "
        "layer to the final width first, distilled this many epochs, then the layers removed; 0: in one step "
        "(default: 1)",
    )
    p.add_argument(
        "--carved-lr",
        type=float,
        default=None,
        help="peak learning rate for the student carved out of the intermediate one (two-step pruning; "
        "default: a third of --lr)",
    )
    p.add_argument(
        "--fade",
        type=float,
        default=None,
        help="two-step pruning: the fraction of the intermediate's distillation over which the layers to be "
        "removed fade out instead of being cut outright (default: 0, cut)",
    )
    p.add_argument(
        "--importance",
        default="magnitude",
        choices=("taylor", "magnitude"),
        help="how heads and FFN neurons are ranked for pruning",
    )
    p.add_argument("--groups", default=None, help="groups q,k,v,post_attention,intermediate,output e.g. 4,4,4,1,4,4")
    p.add_argument("--layers", default=None, help="teacher layers to keep, e.g. 0,2,4 (default all)")
    p.add_argument("--rank", type=int, default=None, help="rank per group of every factorized projection")
    p.add_argument("--rank-energy", type=float, default=None, help="keep this fraction of output energy")
    p.add_argument("--param-budget", type=int, default=None, help="largest student within this many parameters")
    p.add_argument("--flops-fraction", type=float, default=None, help="factorized projections at this FLOPs fraction")
    p.add_argument("--embedding-size", type=int, default=None, help="factorize word embeddings to this width")
    p.add_argument("--init", default="lsq", choices=("lsq", "block", "random"), help="how the student starts")
    p.add_argument("--permute", action="store_true", help="permute FFN neurons/heads before grouping")
    p.add_argument("--alpha", type=float, default=0.7, help="weight of logit distillation vs the task loss")
    p.add_argument("--temperature", type=float, default=2.0, help="softmax temperature of logit distillation")
    p.add_argument(
        "--hidden-weight",
        type=_weight_arg,
        default="auto",
        help="hidden-state MSE weight (runs the teacher every step); 'auto' (default): 1.0 when --augment adds "
        "copies and the student is not pruned, else 0",
    )
    p.add_argument("--attention-weight", type=float, default=0.0, help="attention KL weight (runs the teacher)")
    p.add_argument(
        "--teacher-precision",
        choices=("auto", "fp32", "bf16"),  # distill.TEACHER_PRECISIONS, restated: a torch-free parser
        default="auto",
        help="the teacher's forward while distilling, where it runs (hidden-state/attention targets): 'auto' "
        "(default) = bf16 where this CPU runs it natively and it measures faster on the training batches, else fp32",
    )
    p.add_argument(
        "--augment",
        type=_augment_arg,
        default="auto",
        help="add this many perturbed copies of each training example, labelled by the teacher; 'auto' (default): "
        "up to 3, enough to bring a small training set to about 32k examples; 0: the training set alone",
    )
    p.add_argument(
        "--augment-words",
        choices=AUGMENT_WORDS,
        default="random",
        help="where a perturbed copy's replacement words come from: 'random' (default), any training word drawn "
        "by frequency; 'neighbours', one of the word's nearest whole words in the teacher's input embeddings",
    )
    p.add_argument("--calibration-samples", type=int, default=4000, help="training examples for surgery statistics")
    p.add_argument("--bench-threads", type=int, default=None, help="threads for the latency measurement")
    p.add_argument("--bench-repeats", type=int, default=20, help="timed rounds of the report's latency measurement")
    int8 = p.add_mutually_exclusive_group()
    int8.add_argument(
        "--int8",
        dest="int8",
        action="store_const",
        const=True,
        default=None,
        help="time torch int8 in the report even where it is emulated (default: where oneDNN runs it, i.e. with VNNI)",
    )
    int8.add_argument("--no-int8", dest="int8", action="store_const", const=False, help="skip the torch int8 paths")
    p.add_argument(
        "--no-bf16", action="store_true", help="skip the bf16 paths in the report (default: on CPUs with native bf16)"
    )
    p.add_argument(
        "--no-openvino",
        action="store_true",
        help="skip the OpenVINO int8 exports (default: when installed; the student's is kept in OUT/deploy)",
    )
    _add_train_args(p, lr_default="1e-4; 3e-4 for a pruned student, as every --latency-budget/--speedup one is")
    # --lr: None = squeeze's default, which depends on the student (squeeze.default_train_config)
    p.set_defaults(handler=cmd_squeeze, lr=None)


def cmd_squeeze(args: argparse.Namespace) -> int:
    from squeezebert.config import PROJECTIONS
    from squeezebert.distill import DistillConfig
    from squeezebert.squeeze import FADE, INTERMEDIATE_EPOCHS, default_train_config, squeeze
    from squeezebert.surgery import StudentSpec
    from squeezebert.train import drop_resume_state

    source = _task_source(args, "--train FILE --dev FILE")
    groups = _int_list(args.groups, "--groups")
    if groups is not None and len(groups) != len(PROJECTIONS):
        raise ValueError(f"--groups takes 6 numbers ({'/'.join(PROJECTIONS)}), got {args.groups!r}")
    rank_flags = [f for f in ("rank", "rank_energy", "param_budget", "flops_fraction") if getattr(args, f) is not None]
    if len(rank_flags) > 1:
        raise ValueError("give at most one of --rank, --rank-energy, --param-budget, --flops-fraction")
    budgeted = args.latency_budget is not None or args.speedup is not None
    if budgeted and (args.construction is not None or args.student is not None):
        raise ValueError("--latency-budget/--speedup choose the student's shape: drop --construction/--student")
    shape_flags = ("num_layers", "heads", "ffn", "blocks", "layers", "groups", "embedding_size", *rank_flags)
    given = [f"--{f.replace('_', '-')}" for f in shape_flags if getattr(args, f) is not None]
    if budgeted and given:
        raise ValueError(
            f"--latency-budget/--speedup choose the student's shape: drop {', '.join(given)} "
            "(--prune-unit blocks removes blocks instead of layers)"
        )
    if args.carved_lr is not None and not args.carved_lr > 0:
        raise ValueError(f"--carved-lr must be a positive learning rate, got {args.carved_lr}")
    if args.fade is not None and not 0 <= args.fade <= 1:
        raise ValueError(f"--fade must be a fraction from 0 to 1, got {args.fade}")
    if args.intermediate_epochs is not None and args.intermediate_epochs < 0:
        raise ValueError(f"--intermediate-epochs must be 0 (prune in one step) or more, got {args.intermediate_epochs}")
    if not budgeted and args.prune_unit != "layers":
        raise ValueError("--prune-unit applies to --latency-budget/--speedup; by hand, give --blocks N")
    if not budgeted and args.budget_recipe != "auto":
        raise ValueError("--budget-recipe applies to --latency-budget/--speedup")
    spec = (
        None
        if budgeted
        else StudentSpec.from_construction(
            args.construction or "lowrank",
            layers=_int_list(args.layers, "--layers"),
            groups=None if groups is None else dict(zip(PROJECTIONS, groups)),
            rank=args.rank,
            rank_energy=args.rank_energy,
            param_budget=args.param_budget,
            flops_fraction=args.flops_fraction,
            embedding_size=args.embedding_size,
            init=args.init,
            permute=args.permute,
            num_layers=args.num_layers,
            heads=args.heads,
            ffn=args.ffn,
            importance=args.importance,
            blocks=args.blocks,
        )
    )
    if args.lr is None:
        args.lr = default_train_config(spec, budgeted).lr
    distill = DistillConfig(
        alpha=args.alpha,
        temperature=args.temperature,
        hidden_weight=args.hidden_weight,
        attention_weight=args.attention_weight,
        augment=args.augment,
        augment_words=args.augment_words,
        teacher_precision=args.teacher_precision,
    )
    with threads(args.num_threads):
        report = squeeze(
            args.teacher,
            args.out,
            source,
            student_src=args.student,
            spec=spec,
            distill=distill,
            config=_train_config(args),
            calibration_samples=args.calibration_samples,
            bench_threads=args.bench_threads,
            bench_repeats=args.bench_repeats,
            int8=args.int8,
            bf16=False if args.no_bf16 else None,
            openvino=False if args.no_openvino else None,
            resume=args.resume,
            overwrite=args.overwrite,
            latency_budget_ms=args.latency_budget,
            speedup=args.speedup,
            budget_batch=args.budget_batch,
            unlabeled=args.unlabeled,
            prune_unit=args.prune_unit,
            budget_recipe=args.budget_recipe,
            intermediate_epochs=INTERMEDIATE_EPOCHS if args.intermediate_epochs is None else args.intermediate_epochs,
            carved_lr=args.carved_lr,
            fade=FADE if args.fade is None else args.fade,
        )
    if _is_main():
        if not args.keep_resume_state:  # the student is distilled and reported: nothing to resume
            drop_resume_state(args.out)
        print((Path(args.out) / "report.md").read_text(encoding="utf-8"), end="")
    return 0 if report else 1


# --------------------------------------------------------------------------- finetune / evaluate / glue
def _train_config(args: argparse.Namespace) -> TrainConfig:
    from squeezebert.train import TrainConfig

    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_ratio=args.warmup_ratio,
        max_grad_norm=args.max_grad_norm,
        grad_accum_steps=args.grad_accum,
        eval_every=args.eval_every,
        save_every=args.save_every,
        seed=args.seed,
        max_length=args.max_length,
        max_train_samples=args.max_train_samples,
        log_every=args.log_every,
        num_threads=args.num_threads,
        eval_batch_size=args.eval_batch_size,
        dist_timeout=args.dist_timeout,
        keep_resume_state=args.keep_resume_state,
    )


def _task_source(args: argparse.Namespace, custom_files: str, custom_flag: str = "train") -> TaskSource:
    """The task/data flags that finetune, evaluate and squeeze share, as one value. Without
    --task, the data is custom when the ``custom_flag`` file is given."""
    from squeezebert.data import CUSTOM, TaskSource

    task = args.task or (CUSTOM if getattr(args, custom_flag) else None)
    if task is None:
        raise ValueError(f"give --task TASK (a GLUE task, with --data-dir) or {custom_files} for custom data")
    return TaskSource(
        task,
        data_dir=args.data_dir,
        train_file=getattr(args, "train", None),
        dev_file=args.dev,
        text_column=args.text_column,
        text_pair_column=args.text_pair_column,
        label_column=args.label_column,
    )


def _is_main() -> bool:
    """False in the processes other than rank 0 of a torchrun job: they print nothing."""
    from squeezebert.distributed import world

    return world().is_main


def _print_metrics(metrics: dict[str, float], indent: str = "  ") -> None:
    for name, value in metrics.items():
        print(f"{indent}{name:<22} {value:.4f}")


def add_finetune_parser(sub: Subparsers) -> None:
    """The ``finetune`` command's arguments."""
    p = _command(sub, "finetune", help="fine-tune a model on a GLUE task or custom CSV/TSV/JSONL data")
    p.add_argument("--model", required=True, help="checkpoint directory, alias (minilm-l6), preset or Hub id")
    p.add_argument("--task", default=None, help="GLUE task (sst2, mrpc, ...); 'custom' (implied by --train)")
    p.add_argument("--data-dir", default=None, help="GLUE data directory (default: the Hugging Face Hub)")
    p.add_argument("--train", default=None, help="custom training file (.csv, .tsv or .jsonl)")
    p.add_argument("--dev", default=None, help="custom dev file, scored during training")
    _add_column_args(p)
    _add_train_args(p)
    p.set_defaults(handler=cmd_finetune)


def cmd_finetune(args: argparse.Namespace) -> int:
    from squeezebert.finetune import finetune

    source = _task_source(args, "--train FILE [--dev FILE]")
    with threads(args.num_threads):  # torch's count is process-wide: set here, restored after
        record = finetune(
            args.model,
            args.out,
            source,
            config=_train_config(args),
            resume=args.resume,
            overwrite=args.overwrite,
        )
    if not _is_main():
        return 0
    train = record["train"]
    print(f"wrote {args.out}: {record['task']} ({record['kind']}), best step {record['best_step']}")
    if train["tokens_per_s"]:
        print(
            f"training: {train['global_step']} steps, {train['train_time_s']:.1f} s, "
            f"{train['tokens_per_s']:.0f} tokens/s, {train['samples_per_s']:.1f} examples/s"
        )
    if "eval" in record:
        print(f"{record['split']} ({record['num_eval_examples']} examples):")
        _print_metrics(record["eval"])
    return 0


def add_evaluate_parser(sub: Subparsers) -> None:
    """The ``evaluate`` command's arguments."""
    p = _command(sub, "evaluate", help="score a fine-tuned checkpoint on a GLUE split or a custom labelled file")
    p.add_argument("model", help="fine-tuned checkpoint or export directory (OpenVINO or ONNX)")
    p.add_argument("--task", default=None, help="GLUE task; 'custom' (implied by --dev)")
    p.add_argument("--data-dir", default=None, help="GLUE data directory (default: the Hugging Face Hub)")
    p.add_argument("--split", default="dev", help="GLUE split (dev, dev_mismatched, ...)")
    p.add_argument("--dev", default=None, help="custom labelled file (.csv, .tsv or .jsonl)")
    _add_column_args(p)
    p.add_argument("--batch-size", type=int, default=64, help="examples per forward pass")
    p.add_argument("--max-length", type=int, default=None, help="default: the checkpoint's training max length")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.set_defaults(handler=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from squeezebert.data import CUSTOM
    from squeezebert.files import atomic_write_text, check_writable_file
    from squeezebert.finetune import evaluate_checkpoint

    source = _task_source(args, "--dev FILE", custom_flag="dev")
    if source.task != CUSTOM and args.dev:
        raise ValueError(f"--dev is for custom data; task {source.task!r} reads its split from --data-dir")
    if args.json:
        check_writable_file(args.json, "--json")  # before the evaluation, not after it
    result = evaluate_checkpoint(
        args.model,
        source,
        split=args.split,
        batch_size=args.batch_size,
        max_length=args.max_length,
    )
    print(f"{result['source']} ({result['num_examples']} examples):")
    _print_metrics(result["metrics"])
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


def add_glue_parser(sub: Subparsers) -> None:
    """The ``glue`` command's arguments."""
    p = _command(sub, "glue", help="fine-tune and evaluate on every GLUE task present; write glue.md/glue.json")
    p.add_argument("--model", required=True, help="checkpoint directory, alias (minilm-l6), preset or Hub id")
    p.add_argument("--data-dir", required=True, help="GLUE data directory (tasks without train.tsv are skipped)")
    p.add_argument("--tasks", nargs="+", default=None, help="tasks to run (default: all GLUE tasks)")
    _add_train_args(p)
    p.set_defaults(handler=cmd_glue)


def cmd_glue(args: argparse.Namespace) -> int:
    from squeezebert.finetune import run_glue

    with threads(args.num_threads):
        run_glue(
            args.model,
            args.data_dir,
            args.out,
            args.tasks,
            config=_train_config(args),
            resume=args.resume,
            overwrite=args.overwrite,
        )
    if not _is_main():
        return 0
    print((Path(args.out) / "glue.md").read_text(encoding="utf-8"), end="")
    print(f"wrote {Path(args.out) / 'glue.md'} and glue.json")
    return 0


def _add_train_args(p: argparse.ArgumentParser, lr_default: str | None = None) -> None:
    """The training flags; ``lr_default``: the learning rate's default in words, where the
    command resolves it itself (the parser's default is then None)."""
    p.add_argument("--out", required=True, help="output run directory (best checkpoint, logs, resume state)")
    p.add_argument("--epochs", type=int, default=3, help="passes over the training data")
    p.add_argument("--batch-size", type=int, default=32, help="examples per forward pass")
    p.add_argument("--grad-accum", type=int, default=1, help="forward passes per optimizer step")
    lr_help = "peak learning rate (AdamW, linear warm-up and decay)"
    p.add_argument("--lr", type=float, default=5e-5, help=lr_help + (f" (default: {lr_default})" if lr_default else ""))
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (not on biases, norms)")
    p.add_argument("--warmup-ratio", type=float, default=0.1, help="fraction of the steps the learning rate warms up")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="0 disables clipping")
    p.add_argument("--max-length", type=int, default=128, help="tokens per example (pair) after truncation")
    p.add_argument("--max-train-samples", type=int, default=None, help="train on a seeded random subset")
    p.add_argument("--seed", type=int, default=42, help="seed of the shuffling, dropout and subsets")
    p.add_argument("--eval-every", type=int, default=0, help="steps between evaluations (0: at epoch ends)")
    p.add_argument("--save-every", type=int, default=0, help="steps between resume-state saves (0: at evals)")
    p.add_argument("--log-every", type=int, default=10, help="steps between train_log.jsonl records")
    p.add_argument("--eval-batch-size", type=int, default=64, help="examples per forward pass when evaluating")
    p.add_argument("--num-threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--dist-timeout",
        type=float,
        default=1800.0,
        help="under torchrun: seconds a process waits for the others before failing (above the longest evaluation)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last/ state (same arguments)"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace what a previous run or checkpoint left in --out (default: refuse a non-empty --out)",
    )
    p.add_argument(
        "--keep-resume-state",
        action="store_true",
        help="keep --out/last/ (the weights and optimizer state to resume from) once the run has finished; "
        "by default it is removed then",
    )


def _add_column_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-column", default="text", help="custom data: column of the (first) text")
    p.add_argument("--text-pair-column", default=None, help="custom data: column of the second text of a pair")
    p.add_argument(
        "--label-column", default="label", help="custom data: label column (numbers with decimals: regression)"
    )


# --------------------------------------------------------------------------- export
def add_export_parser(sub: Subparsers) -> None:
    """The ``export`` command's arguments."""
    p = _command(
        sub,
        "export",
        help="export a checkpoint for a CPU runtime: OpenVINO IR or ONNX, with config.json and the tokenizer files",
        description="Writes a self-contained directory that predict, serve, batch and evaluate load without "
        "PyTorch. The export is checked against PyTorch fp32 first (fp32: max abs difference <= 1e-4; int8/bf16: "
        "prediction agreement on held-out real texts and the dev set the checkpoint records); nothing is written "
        "unless the checks pass.",
    )
    p.add_argument("model", help="checkpoint directory, alias (minilm-l6) or preset")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--format",
        choices=("onnx", "openvino"),
        default="onnx",
        help="onnx: ONNX Runtime graph (model.onnx); openvino: OpenVINO IR (model.xml + model.bin)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="int8: ONNX dynamic per-token int8 / OpenVINO NNCF static int8 calibrated on real text; "
        "bf16: OpenVINO only, where the CPU has native bf16",
    )
    p.add_argument(
        "--calibration",
        default=None,
        help="openvino int8: text/CSV/TSV/JSONL file of real texts to calibrate on (default: the training texts "
        "the checkpoint records in train_args.json)",
    )
    p.add_argument("--text-column", default="text", help="--calibration CSV/TSV/JSONL: column of the (first) text")
    p.add_argument("--text-pair-column", default=None, help="--calibration: column of the second text of a pair")
    p.add_argument(
        "--max-length", type=int, default=None, help="calibration/check tokens per text (default: the trained length)"
    )
    p.add_argument(
        "--inference-precision",
        choices=("fp32", "bf16"),
        default=None,
        help="openvino: precision of the operations int8 leaves in float (default: fp32; bf16 for --precision bf16)",
    )
    p.add_argument(
        "--min-agreement",
        type=float,
        default=0.99,
        help="openvino int8/bf16: least prediction agreement with PyTorch fp32 the export must reach (default 0.99)",
    )
    p.add_argument(
        "--int8-recipe",
        choices=("auto", "static", "dynamic"),
        default="auto",
        help="openvino int8: static (NNCF, calibrated; fastest), dynamic (int8 weights, activations quantized per "
        "token at run time; most accurate) or auto (default: static, else dynamic if static misses --min-agreement)",
    )
    p.add_argument("--opset", type=int, default=None, help="onnx: opset (>= 14, default 17)")
    p.add_argument(
        "--int8-activations",
        choices=("per-token", "per-tensor"),
        default=None,
        help="onnx int8 activation scales: per token (default, more accurate) or per tensor (ONNX Runtime's own)",
    )
    p.add_argument(
        "--standard-ops",
        action="store_true",
        help="onnx: standard ONNX operators only (no ONNX Runtime contrib ops), for Optimum and other ONNX "
        "consumers; the directory also gets the transformers config files (default: ONNX Runtime's fused ops)",
    )
    p.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    if args.format == "openvino":
        from squeezebert.export_openvino import export as export_openvino

        if args.int8_activations is not None or args.opset is not None or args.standard_ops:
            raise ValueError(
                "--int8-activations, --opset and --standard-ops are ONNX options; OpenVINO's int8 is NNCF's static int8"
            )
        report: Any = export_openvino(
            args.model,
            args.out,
            precision=args.precision,
            calibration=args.calibration,
            text_column=args.text_column,
            text_pair_column=args.text_pair_column,
            max_length=args.max_length,
            inference_precision=args.inference_precision,
            min_agreement=args.min_agreement,
            int8_recipe=args.int8_recipe,
        )
    else:
        from squeezebert.export import DEFAULT_OPSET, export

        if args.precision == "bf16":
            raise ValueError("the ONNX export is fp32 or int8; bf16 is for --format openvino")
        if args.calibration is not None or args.inference_precision is not None:
            raise ValueError("--calibration and --inference-precision are for --format openvino")
        report = export(
            args.model,
            args.out,
            precision=args.precision,
            opset=args.opset or DEFAULT_OPSET,
            int8_activations=args.int8_activations or "per-token",
            standard_ops=args.standard_ops,
        )
    print(report.summary())
    return 0


# --------------------------------------------------------------------------- bench
def add_bench_parser(sub: Subparsers) -> None:
    """The ``bench`` command's arguments."""
    p = _command(
        sub,
        "bench",
        help="side-by-side CPU benchmark against transformers' SqueezeBERT and BERT (or a real text file)",
        description="Grid mode (default): latency, throughput, GOP/s vs the matmul peaks, energy, memory and size "
        "of our model (torch fp32/bf16/int8, ONNX fp32/int8, OpenVINO fp32/bf16/int8) and transformers peers "
        "(torch, ONNX Runtime, OpenVINO with NNCF int8, CTranslate2 int8), interleaved in one run, with our best "
        "against the best peer per cell. "
        "Workload mode (--workload FILE --model CKPT): texts -> labels end to end against transformers.pipeline.",
    )
    p.add_argument("--model", default=None, help="our checkpoint, alias or preset (default squeezebert-uncased)")
    p.add_argument(
        "--candidates",
        default=None,
        help="comma-separated names or patterns, e.g. 'ours-*,hf-bert-*' or '*openvino*' (default: all but "
        "hf-bert-onnx-fp32)",
    )
    p.add_argument(
        "--quick", action="store_true", help="tiny models and grid (batch 1,2 x seq 8, 2 repeats): a smoke run"
    )
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for every candidate (default 2)")
    p.add_argument("--batch-sizes", default=None, help="comma-separated (default 1,8,32; workload 1,32)")
    p.add_argument("--seq-lens", default=None, help="comma-separated sequence lengths (default 32,128)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up rounds per cell (default 2; workload 1)")
    p.add_argument(
        "--repeats", type=int, default=None, help="timed interleaved rounds per cell (default 20; workload 3)"
    )
    p.add_argument("--max-seconds", type=float, default=None, help="stop a cell's rounds after this long (default 30)")
    p.add_argument("--matmul-size", type=int, default=None, help="N of the NxNxN matmul peak (default 2048)")
    p.add_argument("--watts-per-core", type=float, default=10.0, help="watts per busy core (energy without RAPL)")
    p.add_argument("--baseline", default=None, help="candidate speedups are given against (default hf-bert-torch-fp32)")
    p.add_argument("--metrics", default=None, help="JSON {candidate: accuracy} for the accuracy-vs-latency plot")
    p.add_argument("--json", default=None, help="write the report as JSON")
    p.add_argument("--markdown", default=None, help="write the report as markdown")
    p.add_argument("--plot", default=None, help="write a PNG plot (needs matplotlib: squeezebert[plot])")
    p.add_argument("--workload", default=None, help="text file (one text per line, or a GLUE .tsv with 'sentence')")
    p.add_argument("--backend", choices=BACKENDS, default=None, help="workload: our backend (default torch)")
    p.add_argument(
        "--teacher", default=None, help="workload: also time this checkpoint of ours (the student's teacher) alike"
    )
    p.add_argument("--precision", choices=PRECISIONS, default=None, help="workload: our precision")
    p.add_argument("--max-length", type=int, default=128, help="workload: tokens per text after truncation")
    p.add_argument("--max-texts", type=int, default=None, help="workload: use the first N texts")
    p.set_defaults(handler=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from squeezebert.bench import run_bench, run_workload
    from squeezebert.bench_report import format_report

    given = {
        "threads": args.threads,
        "batch_sizes": _int_list(args.batch_sizes, "--batch-sizes"),
        "warmup": args.warmup,
        "repeats": args.repeats,
        "max_seconds": args.max_seconds,
        "json_path": args.json,
        "markdown_path": args.markdown,
        "plot_path": args.plot,
    }
    if args.workload:
        if args.model is None:
            raise ValueError("--workload needs --model (a fine-tuned classifier; a preset gives random weights)")
        for flag, value in (
            ("--candidates", args.candidates),
            ("--seq-lens", args.seq_lens),
            ("--metrics", args.metrics),
        ):
            if value is not None:
                raise ValueError(f"{flag} is for the grid benchmark, not --workload")
        # like for like with the pipeline, which does not normalize its text either
        options = RuntimeOptions(args.backend, args.precision, args.max_length, normalize=False)
        extra = {"max_texts": args.max_texts, "teacher": args.teacher}
        kwargs = {k: v for k, v in (given | extra).items() if v is not None}
        report = run_workload(args.workload, args.model, options, **kwargs)
    else:
        if args.backend or args.precision or args.max_texts or args.teacher:
            raise ValueError(
                "--backend, --precision, --max-texts and --teacher go with --workload; pick grid candidates with "
                "--candidates"
            )
        report = run_bench(
            model=args.model,
            candidates=args.candidates.split(",") if args.candidates else None,
            seq_lens=_int_list(args.seq_lens, "--seq-lens"),
            quick=args.quick,
            matmul_size=args.matmul_size,
            watts_per_core=args.watts_per_core,
            metrics=args.metrics,
            baseline=args.baseline,
            **given,
        )
    print(format_report(report), end="")
    written = [p for p in (args.json, args.markdown, args.plot) if p]
    if written:
        print(f"wrote {', '.join(written)}")
    return 0


# --------------------------------------------------------------------------- batch (Ray)
def add_batch_parser(sub: Subparsers) -> None:
    """The ``batch`` command's arguments."""
    p = _command(
        sub,
        "batch",
        help="classify a CSV/TSV/JSONL/Parquet file on a pool of Ray actors; write JSONL or Parquet",
        description="Batch inference with Ray Data: one model per actor, results in input order with the "
        "input's ids, written atomically. Without --ray-address a local Ray instance is started. "
        "Needs squeezebert[ray].",
    )
    p.add_argument("model", help="fine-tuned checkpoint or export directory (on every node of a cluster)")
    p.add_argument("--input", required=True, help="input file: .csv, .tsv, .jsonl or .parquet")
    p.add_argument("--output", required=True, help="output file: .jsonl or .parquet (written atomically)")
    p.add_argument("--text-column", default="text", help="column of the (first) text")
    p.add_argument("--text-pair-column", default=None, help="second text of a pair task")
    p.add_argument("--id-column", default=None, help="column copied to the output (default: 'row', the row number)")
    p.add_argument("--ray-address", default=None, help="Ray cluster to join, e.g. auto or ray://head:10001")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--num-workers", type=int, default=None, help="actors (default: Ray's CPUs / threads per worker)")
    p.add_argument("--threads-per-worker", type=int, default=1, help="torch/ONNX Runtime threads per actor")
    p.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    _add_runtime_flags(p, with_threads=False)
    p.set_defaults(handler=cmd_batch)


def cmd_batch(args: argparse.Namespace) -> int:
    from squeezebert.batch import classify_file

    report = classify_file(
        args.model,
        args.input,
        args.output,
        text_column=args.text_column,
        text_pair_column=args.text_pair_column,
        id_column=args.id_column,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        threads_per_worker=args.threads_per_worker,
        ray_address=args.ray_address,
        num_cpus=args.num_cpus,
        options=_runtime_options(args),
    )
    print(
        f"wrote {report.output}: {report.rows} rows in {report.seconds:.1f} s ({report.texts_per_s:.0f} texts/s, "
        f"{report.workers} workers x {report.threads_per_worker} threads)"
    )
    return 0


# --------------------------------------------------------------------------- predict / serve / loadtest
class _Terminated(BaseException):
    """SIGTERM as an exception in the main thread, so that cleanup runs (a partial output's removal)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated


def add_predict_parser(sub: Subparsers) -> None:
    """The ``predict`` command's arguments."""
    p = _command(
        sub,
        "predict",
        help="classify a text/CSV/TSV/JSONL file (or stdin) into JSONL, streamed in chunks",
        description="One JSON object per input row, in order: line (and id when the input has one), label, "
        "score and probabilities (value for regression). Input and output '-' mean stdin/stdout. An output file is "
        "written under a temporary name and renamed at the end: a bad row leaves no partial file.",
    )
    p.add_argument("model", help="fine-tuned checkpoint, export directory (OpenVINO or ONNX) or alias")
    p.add_argument("--input", default="-", help="input file or - for stdin (default -)")
    p.add_argument("--output", default="-", help="output JSONL file or - for stdout (default -)")
    p.add_argument(
        "--format", choices=("text", "csv", "tsv", "jsonl"), default=None, help="input format (default: extension)"
    )
    p.add_argument("--text-column", default="text", help="CSV/TSV/JSONL: column of the (first) text")
    p.add_argument("--text-pair-column", default=None, help="CSV/TSV/JSONL: column of the second text of a pair")
    p.add_argument("--id-column", default=None, help="column copied to the output as id (default: 'id' if present)")
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass")
    p.add_argument("--chunk-size", type=int, default=1024, help="rows read, classified and written at a time")
    _add_runtime_flags(p)
    p.set_defaults(handler=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    import signal
    import threading

    from squeezebert.predict import predict_file

    # SIGINT already arrives as KeyboardInterrupt; SIGTERM would end the process on the spot and
    # leave the partial output's temporary file behind. (Handlers can only be set in the main thread.)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    try:
        report = predict_file(
            args.model,
            args.input,
            args.output,
            fmt=args.format,
            text_column=args.text_column,
            text_pair_column=args.text_pair_column,
            id_column=args.id_column,
            batch_size=args.batch_size,
            chunk_size=args.chunk_size,
            options=_runtime_options(args),
        )
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    # The predictions may be on stdout: the summary goes to stderr.
    where = "stdout" if report.output == "-" else report.output
    print(
        f"wrote {where}: {report.rows} rows in {report.seconds:.1f} s ({report.texts_per_s:.0f} texts/s)",
        file=sys.stderr,
    )
    return 0


def add_serve_parser(sub: Subparsers) -> None:
    """The ``serve`` command's arguments; the server's defaults are :class:`ServeConfig`'s."""
    from squeezebert.serve import ServeConfig

    def default(name: str) -> Any:
        return _field_default(ServeConfig, name)

    p = _command(
        sub,
        "serve",
        help="HTTP classification service (FastAPI + uvicorn) with dynamic micro-batching",
        description='POST /v1/classify {"texts": [...]} or {"pairs": [[a, b], ...]}; GET /healthz, /readyz, '
        "/metrics (Prometheus), /openapi.json. SIGTERM drains in-flight requests and exits 0. Needs "
        "squeezebert[serve].",
    )
    p.add_argument("model", help="fine-tuned checkpoint, export directory (OpenVINO or ONNX) or alias")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, default=8080, help="TCP port to listen on (0: any free one)")
    _add_runtime_flags(p)
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=default("max_batch_size"),
        help="texts merged into one model call (1: no batching)",
    )
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=default("max_wait_ms"),
        help="how long a batch waits to fill (0: batches form from what queues while the model runs)",
    )
    p.add_argument(
        "--forward-batch-size",
        type=int,
        default=default("forward_batch_size"),
        help="texts per forward pass inside a model call, sorted by length",
    )
    p.add_argument("--no-batching", action="store_true", help="one request per model call")
    p.add_argument("--max-texts", type=int, default=default("max_texts"), help="texts per request (more: 422)")
    p.add_argument("--max-chars", type=int, default=default("max_chars"), help="characters per text (more: 422)")
    p.add_argument(
        "--max-body-bytes", type=int, default=default("max_body_bytes"), help="request body size (more: 413)"
    )
    p.add_argument(
        "--max-queue", type=int, default=default("max_queue"), help="requests waiting for the model (more: 503)"
    )
    p.add_argument(
        "--timeout-s",
        type=float,
        default=default("timeout_s"),
        help="per-request deadline (past it: 504); also bounds receiving a request (body: 408; head: closed)",
    )
    p.add_argument(
        "--max-connections", type=int, default=default("max_connections"), help="open connections (more: 503)"
    )
    p.add_argument(
        "--keep-alive-s",
        type=float,
        default=default("keep_alive_s"),
        help="idle keep-alive connections close after this",
    )
    _add_api_key_flags(p, "require Authorization: Bearer KEY on /v1/* and /metrics")
    p.add_argument(
        "--docs", action="store_true", help="serve Swagger UI at /docs (its page loads scripts from a public CDN)"
    )
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from squeezebert.serve import ServeConfig, resolve_api_key, run

    config = ServeConfig(
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        forward_batch_size=args.forward_batch_size,
        batching=not args.no_batching,
        max_texts=args.max_texts,
        max_chars=args.max_chars,
        max_body_bytes=args.max_body_bytes,
        max_queue=args.max_queue,
        timeout_s=args.timeout_s,
        max_connections=args.max_connections,
        keep_alive_s=args.keep_alive_s,
        api_key=resolve_api_key(args.api_key, args.api_key_file),
        docs=args.docs,
    )
    run(
        args.model,
        args.host,
        args.port,
        config=config,
        options=_runtime_options(args),
        log_level="debug" if args.verbose else "warning" if args.quiet else "info",
        access_log=args.access_log,
    )
    return 0


def add_loadtest_parser(sub: Subparsers) -> None:
    """The ``loadtest`` command's arguments."""
    p = _command(
        sub,
        "loadtest",
        help="load-test a local squeezebert serve: requests/s, latency percentiles, errors",
        description="Concurrent clients POST /v1/classify for a bounded time (<= 60 s, <= 256 clients); only "
        "loopback addresses (localhost, 127.0.0.0/8, ::1) are accepted.",
    )
    p.add_argument("url", help="server URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent clients (<= 256)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds (<= 60)")
    p.add_argument(
        "--texts",
        default=None,
        help="text file, one request text per line, or a .csv/.tsv/.jsonl text column (default: built-in samples)",
    )
    p.add_argument("--texts-per-request", type=int, default=1, help="texts in each request's body")
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help="open loop: this many requests/s (<= 2000), at most --concurrency in flight; latency counts from "
        "each request's due time (default: closed loop, each client sends when answered)",
    )
    _add_api_key_flags(p, "send Authorization: Bearer KEY")
    p.add_argument("--json", default=None, help="also write the report as JSON to this file")
    p.set_defaults(handler=cmd_loadtest)


def cmd_loadtest(args: argparse.Namespace) -> int:
    from squeezebert.files import atomic_write_text, check_writable_file
    from squeezebert.loadtest import loadtest, read_texts
    from squeezebert.serve import resolve_api_key

    if args.json:
        check_writable_file(args.json, "--json")
    report = loadtest(
        args.url,
        concurrency=args.concurrency,
        duration_s=args.duration,
        texts=read_texts(args.texts) if args.texts else None,
        texts_per_request=args.texts_per_request,
        rate=args.rate,
        api_key=resolve_api_key(args.api_key, args.api_key_file),
    )
    print(report.summary())
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


# --------------------------------------------------------------------------- parser
Handler = Callable[[argparse.Namespace], int]
Subparsers = Any  # argparse._SubParsersAction, which argparse does not make public


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help with each option's default appended (``(default: 32)``) where the help
    does not already name it; None and off switches have none to show (their help says what
    happens without them)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if default is None or default is False or default is argparse.SUPPRESS or not action.option_strings:
            return text
        if "default" in text and str(default) in text:  # in its own words: "(default 2)", "'auto' (default)"
            return text
        return f"{text} (default: %(default)s)"


def _add_common_flags(p: argparse.ArgumentParser, default: Any) -> None:
    """-v/-q/--debug, accepted before the command and after it: in a command's parser their
    default is SUPPRESS, so that a flag given before the command is not reset by it."""
    p.add_argument("-v", "--verbose", action="store_true", default=default, help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", default=default, help="warnings and errors only")
    p.add_argument("--debug", action="store_true", default=default, help="show tracebacks instead of one-line errors")


def _command(sub: Subparsers, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A command's parser, with the defaults in its ``--help`` and the common flags."""
    p = sub.add_parser(name, formatter_class=_HelpFormatter, **kwargs)
    _add_common_flags(p, argparse.SUPPRESS)
    return p


def _field_default(cls: type, name: str) -> Any:
    """The default of dataclass ``cls``'s field ``name``: the flags take their defaults from it."""
    return cls.__dataclass_fields__[name].default  # type: ignore[attr-defined]


def _runtime_options(args: argparse.Namespace) -> RuntimeOptions:
    """The one :class:`RuntimeOptions` of a batch, predict or serve command line."""
    return RuntimeOptions(
        backend=args.backend,
        precision=args.precision,
        max_length=args.max_length,
        num_threads=getattr(args, "num_threads", None),
        normalize=not args.no_normalize,
        static_shapes=args.static_shapes,
    )


def _add_runtime_flags(p: argparse.ArgumentParser, with_threads: bool = True) -> None:
    """The inference-runtime flags that batch, predict and serve share: :class:`RuntimeOptions`'
    fields, with its names and defaults (``--no-normalize`` turns its ``normalize`` off)."""

    def default(name: str) -> Any:
        return _field_default(RuntimeOptions, name)

    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=default("backend"),
        help="default: an export directory's own runtime; for a checkpoint torch in fp32, OpenVINO first in int8/bf16",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=default("precision"),
        help="default: an export's own precision, else fp32",
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=default("max_length"),
        help=f"tokens per text after truncation (default: the model's trained length, else {DEFAULT_MAX_LENGTH})",
    )
    if with_threads:
        p.add_argument(
            "--num-threads",
            type=int,
            default=default("num_threads"),
            help="intra-op threads (default: the backend's choice)",
        )
    p.add_argument(
        "--static-shapes",
        type=int,
        default=default("static_shapes"),
        metavar="N",
        help="openvino: single texts of the N most asked-for lengths (rounded up to a multiple of 16) run on "
        "static compiled models, which skip the re-planning a new input shape costs; each holds a copy of the "
        "weights (default: 8, every length up to 128 tokens; 0: none)",
    )
    assert default("normalize") is True  # the flag turns it off
    p.add_argument("--no-normalize", action="store_true", help="skip NFKC and look-alike letter normalization")


def _add_api_key_flags(p: argparse.ArgumentParser, what: str) -> None:
    """--api-key-file and --api-key; $SQUEEZEBERT_API_KEY when neither is given (an empty one is refused)."""
    p.add_argument(
        "--api-key-file",
        default=None,
        metavar="FILE",
        help=f"{what}, KEY being this file's one line (preferred, as is $SQUEEZEBERT_API_KEY, the default)",
    )
    p.add_argument(
        "--api-key", default=None, metavar="KEY", help="the key itself: other users can read it in ps; prefer the above"
    )


#: Every command, in the order ``--help`` lists them.
COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    add_info_parser,
    add_convert_parser,
    add_demo_parser,
    add_squeeze_parser,
    add_finetune_parser,
    add_evaluate_parser,
    add_glue_parser,
    add_export_parser,
    add_bench_parser,
    add_batch_parser,
    add_predict_parser,
    add_serve_parser,
    add_loadtest_parser,
)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: the global flags, then one subparser per command, each built by the
    ``add_X_parser`` function beside its ``cmd_X`` handler."""
    parser = argparse.ArgumentParser(
        prog="squeezebert", description="Fast, small NLP models on CPUs.", formatter_class=_HelpFormatter
    )
    _add_common_flags(parser, False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose and args.quiet:
        parser.error("-v/--verbose and -q/--quiet do not go together")
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"squeezebert {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("terminated", file=sys.stderr)
        return 128 + 15  # the shell's code for SIGTERM


if __name__ == "__main__":
    sys.exit(main())
