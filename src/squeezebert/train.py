"""The one training loop, its resume state, the fine-tuning loss, prediction and evaluation.

``fit(model, loss_fn, train_data, config, out_dir, evaluate_fn=...)`` is the only loop: workflows
differ in ``loss_fn(model, batch) -> {"loss": tensor, **to_log}`` alone (fine-tuning here,
distillation in ``distill.py``). It owns the optimizer (AdamW, no decay on biases and LayerNorm),
the schedule (linear warmup, linear decay), clipping, accumulation, length-grouped dynamic-padding
batches, periodic evaluation with keep-best checkpointing, a JSON-lines log and exact resume.

What a run directory holds::

    out_dir/config.json, model.safetensors, tokenizer.json   the best model (a normal checkpoint)
    out_dir/metrics.json, train_args.json                    its eval metrics; the run's arguments
    out_dir/train_log.jsonl                                  one JSON object per log step / eval
    out_dir/last/                                            resume state (weights, optimizer, RNG)

Resume is exact: the batch order is a pure function of ``(seed, epoch)``
(:func:`squeezebert.data.length_grouped_batches`), so a resumed run recomputes the epoch's batches
and skips the ones already done; weights, optimizer, scheduler and every RNG (dropout included)
come back from ``last/``. An interrupted-then-resumed run ends with the weights of an uninterrupted
one. ``last/`` is replaced as a whole directory (``last.tmp`` -> rename), never half-written.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from squeezebert import distributed
from squeezebert.checkpoint import save_checkpoint
from squeezebert.data import (
    DataError,
    EncodedDataset,
    collate,
    glue_task,
    length_grouped_batches,
)
from squeezebert.files import (
    atomic_write_text,
    check_writable_dir,
    read_json,
    read_json_object,
    remove_stale_temps,
    write_dir_atomically,
)
from squeezebert.model import SqueezeBert
from squeezebert.runtime import DEFAULT_MAX_LENGTH, TRAIN_ARGS_FILE, recorded_max_length
from squeezebert.tokenizer import Tokenizer

log = logging.getLogger(__name__)

LossFn = Callable[[SqueezeBert, dict[str, Tensor]], Mapping[str, Any]]
EvaluateFn = Callable[[SqueezeBert], Mapping[str, float]]

LOG_FILE = "train_log.jsonl"
METRICS_FILE = "metrics.json"
ARGS_FILE = TRAIN_ARGS_FILE  # runtime.py holds the name: the torch-free Classifier reads the file too
LAST_DIR = "last"
# Everything a run (finetune or squeeze) writes at the top of its directory: what --overwrite removes.
_RUN_FILES = (
    LAST_DIR, LAST_DIR + ".old", LAST_DIR + ".tmp", LOG_FILE, METRICS_FILE, ARGS_FILE, "config.json",
    "model.safetensors", "tokenizer.json", "report.md", "report.json", "pytorch_model.bin", "vocab.txt",
    "tokenizer_config.json", "deploy", "latency_vs_accuracy.png", "intermediate.json",
)  # fmt: skip
_STATE_FILE = "state.json"
_TORCH_STATE_FILE = "optimizer.pt"
_LOSS_STATE_FILE = "loss_fn.safetensors"
# Settings that change what the rest of a run computes (batch order, schedule, updates, which
# checkpoint is kept): a resumed run must share them. save_every, log_every, eval_batch_size,
# num_threads and dist_timeout do not change the result and may differ.
_RESUME_KEYS = (
    "seed", "batch_size", "grad_accum_steps", "epochs", "max_length", "max_train_samples", "lr", "weight_decay",
    "warmup_ratio", "max_grad_norm", "eval_every",
)  # fmt: skip
# run_args that say where the data came from: the data's content (``*_sha256``) is compared instead,
# so a moved copy of the same file resumes and an edited file at the same path does not.
_DATA_LOCATIONS = ("train_file", "dev_file", "data_dir")
# run_args naming a model: the same local directory may be written two ways (runs/x, ./runs/x).
_MODEL_ARGS = ("model", "teacher")
_SETTING_NAMES = {
    "grad_accum_steps": "--grad-accum",
    "train_sha256": "--train (content)",
    "dev_sha256": "--dev (content)",
    "num_train_examples": "number of training examples",
    "kind": "task kind",
    "distill": "distillation settings",
    "construction": "student construction",
}


class TrainingError(ValueError):
    """Training cannot go on (diverged loss, incompatible resume state): one line for the user."""


@dataclass
class TrainConfig:
    """Optimization settings of one run.

    ``batch_size`` is the examples per forward pass; an optimizer step sees
    ``batch_size * grad_accum_steps`` examples, and the data order depends only on that product, so
    accumulation changes memory use, not the result. ``eval_every`` and ``save_every`` count
    optimizer steps; 0 means evaluate at each epoch end (and always at the end of training) and
    save the resume state only at evaluations and epoch ends.

    Under ``torchrun`` (``WORLD_SIZE > 1``) the step batch is the *global* one, shared out among
    the processes (:mod:`squeezebert.distributed`), so the same settings give the same run on any
    number of processes. ``dist_timeout`` bounds, in seconds, every wait for another process.
    ``num_threads``: torch's thread count for the run, which is process-wide: the entry point sets
    it around the run (``squeezebert finetune``/``glue``/``squeeze`` do, with
    :func:`squeezebert.runtime.threads`); a library caller does the same.
    ``keep_resume_state``: keep ``last/`` when a :func:`finetune` run finishes (by default it is
    removed then: a finished run is not resumed, and the state is twice the model's size).
    """

    epochs: int = 3
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    grad_accum_steps: int = 1
    eval_every: int = 0
    save_every: int = 0
    seed: int = 42
    max_length: int = 128
    max_train_samples: int | None = None
    log_every: int = 10
    num_threads: int | None = None
    eval_batch_size: int = 64
    dist_timeout: float = distributed.DEFAULT_TIMEOUT_S
    keep_resume_state: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "grad_accum_steps", "max_length", "log_every", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("eval_every", "save_every", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.max_grad_norm < 0:
            raise ValueError(f"max_grad_norm must be >= 0 (0 = no clipping), got {self.max_grad_norm}")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise ValueError(f"max_train_samples must be >= 1, got {self.max_train_samples}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {self.num_threads}")
        if not self.dist_timeout > 0:
            raise ValueError(f"dist_timeout must be > 0 seconds, got {self.dist_timeout}")


# --------------------------------------------------------------------------- small pieces
def train_extra(module: str) -> Any:
    """Import a module of the ``train`` extra, or say which extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"training and evaluation need {e.name}: pip install 'squeezebert[train]'") from None


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy's global RNG and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def classification_loss(model: SqueezeBert, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The fine-tuning ``loss_fn``: cross-entropy, or MSE for a regression head (``num_labels == 1``)."""
    logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])  # (B, num_labels)
    labels = batch["labels"]
    if model.config.num_labels == 1:
        return {"loss": F.mse_loss(logits.squeeze(-1).float(), labels.float())}
    return {"loss": F.cross_entropy(logits.float(), labels)}


def _split(indices: list[int], parts: int) -> list[list[int]]:
    """``indices`` cut into at most ``parts`` contiguous pieces whose sizes differ by at most one."""
    parts = min(parts, len(indices))
    size, extra = divmod(len(indices), parts)
    out, start = [], 0
    for p in range(parts):
        end = start + size + (p < extra)
        out.append(indices[start:end])
        start = end
    return out


def _no_decay(name: str, param: Tensor) -> bool:
    # Biases and LayerNorm gains/shifts are not weights to shrink (BERT's recipe).
    return param.ndim < 2 or name.endswith("bias") or "layernorm" in name.lower()


def build_optimizer(params: Sequence[tuple[str, nn.Parameter]], config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices only."""
    decay = [p for n, p in params if p.requires_grad and not _no_decay(n, p)]
    no_decay = [p for n, p in params if p.requires_grad and _no_decay(n, p)]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel updates all parameters in one pass: measured 17 ms against 154 ms per step
    # for minilm-l6's 22.7M parameters on 2 cores (the word embeddings dominate). torch < 2.4
    # has no fused CPU AdamW; fall back to the default implementation there.
    try:
        return torch.optim.AdamW(groups, lr=config.lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=config.lr)


def linear_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning rate rising linearly from 0 over ``warmup_steps``, then falling linearly to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# --------------------------------------------------------------------------- prediction
@torch.no_grad()
def predict(model: SqueezeBert, data: EncodedDataset, batch_size: int = 64) -> np.ndarray:
    """Logits ``(N, num_labels)`` float32 in the order of ``data``; batches run sorted by length so
    that little compute goes into padding. The model's train/eval mode is restored afterwards."""
    if model.config.num_labels == 0:
        raise ValueError("the model has no classification head (num_labels=0); fine-tune it first")
    was_training = model.training
    model.eval()
    pad = model.config.pad_token_id
    out = np.empty((len(data), model.config.num_labels), dtype=np.float32)
    try:
        for indices in length_grouped_batches(data.lengths, batch_size, seed=0, epoch=0, shuffle=False):
            batch = collate(pad, data, indices)
            logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
            out[indices] = logits.float().numpy()
    finally:
        model.train(was_training)
    return out


def evaluate(model: SqueezeBert, data: EncodedDataset, kind: str, batch_size: int = 64) -> dict[str, float]:
    """Metrics of ``model`` on labelled ``data``; ``kind`` is a GLUE task or ``classification`` /
    ``regression`` (see :func:`squeezebert.metrics.compute_metrics`).

    ``data.labels`` are class ids of this model (encoded through its ``label2id``). For a GLUE
    classification task the ids are mapped by label *name* into the task's class order before
    scoring, so metrics with a positive class (MRPC/QQP F1) stay right whatever order the model's
    head uses.
    """
    compute_metrics = train_extra("squeezebert.metrics").compute_metrics
    if data.labels is None:
        raise DataError("the evaluation data has no labels (a test split?); nothing to score")
    logits = predict(model, data, batch_size)
    regression = model.config.num_labels == 1
    if regression != data.is_regression:
        raise ValueError(
            f"the model is a {'regression' if regression else 'classification'} model but the data is "
            f"{'regression' if data.is_regression else 'classification'} data"
        )
    if regression:
        return compute_metrics(kind, logits[:, 0], np.asarray(data.labels, dtype=np.float64))
    predictions = logits.argmax(-1)
    references = np.asarray(data.labels, dtype=np.int64)
    task_labels = _glue_labels(kind)
    if task_labels is not None and tuple(model.config.labels) != task_labels:
        to_task = _label_index_map(model.config.labels, task_labels, kind)
        predictions, references = to_task[predictions], to_task[references]
    return compute_metrics(kind, predictions, references)


def _glue_labels(kind: str) -> tuple[str, ...] | None:
    if kind in ("classification", "regression"):
        return None
    return glue_task(kind).labels


def _label_index_map(model_labels: Sequence[str], task_labels: Sequence[str], kind: str) -> np.ndarray:
    unknown = [name for name in model_labels if name not in task_labels]
    if unknown:
        raise ValueError(
            f"the model's labels {list(model_labels)} include {unknown}, which are not labels of task "
            f"{kind} ({', '.join(task_labels)})"
        )
    return np.asarray([task_labels.index(name) for name in model_labels], dtype=np.int64)


# --------------------------------------------------------------------------- resume state
def drop_resume_state(out_dir: str | os.PathLike[str]) -> None:
    """Remove a finished run's resume state (``last/``: the weights again plus the optimizer's
    moments, about twice the model's size); the run is then finished, not resumable."""
    for name in (LAST_DIR, LAST_DIR + ".old"):
        shutil.rmtree(Path(out_dir) / name, ignore_errors=True)


def resume_dir(out_dir: Path) -> Path | None:
    """``out_dir/last``, or ``last.old`` when a crash fell between the two renames; None if neither."""
    for name in (LAST_DIR, LAST_DIR + ".old"):
        if (out_dir / name / _STATE_FILE).is_file():
            return out_dir / name
    return None


def resume_fingerprint(
    config: TrainConfig, run_args: Mapping[str, Any] | None = None, num_train_examples: int | None = None
) -> dict[str, Any]:
    """What a resumed run must share with the run that saved its state: the result-changing
    settings of ``config`` and every ``run_args`` entry (model, task, columns, data content, ...)
    except the data's location. JSON-normalized, as it is saved."""
    fingerprint: dict[str, Any] = {k: getattr(config, k) for k in _RESUME_KEYS}
    for key, value in (run_args or {}).items():
        if key in _DATA_LOCATIONS:
            continue
        if key in _MODEL_ARGS and isinstance(value, str) and Path(value).expanduser().exists():
            value = str(Path(value).expanduser().resolve())
        fingerprint[key] = value
    if num_train_examples is not None:
        fingerprint["num_train_examples"] = num_train_examples
    return json.loads(json.dumps(fingerprint, sort_keys=True, default=str))


def check_resume(out_dir: str | os.PathLike[str], fingerprint: Mapping[str, Any]) -> None:
    """Raise :class:`TrainingError` naming every setting in ``fingerprint`` that differs from the
    resume state in ``out_dir`` (see :func:`resume_fingerprint`); nothing to check without one.
    Workflows call it before their expensive steps; ``fit`` checks again before restoring."""
    where = resume_dir(Path(out_dir))
    if where is not None:
        _compare_fingerprints(where, _fingerprint_at(where), fingerprint)


def saved_fingerprint(out_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The fingerprint (:func:`resume_fingerprint`) that the resume state in ``out_dir`` was saved
    with: {} when it records none (an older version), None without a resume state."""
    where = resume_dir(Path(out_dir))
    return None if where is None else _fingerprint_at(where)


def _fingerprint_at(where: Path) -> dict[str, Any]:
    return _read_json(where / _STATE_FILE).get("fingerprint", {})


def _differs(saved: Any, now: Any) -> bool:
    """Whether a setting changed; in a group of settings (a dict), only those the state recorded."""
    if isinstance(saved, dict) and isinstance(now, dict):
        return any(k not in now or _differs(v, now[k]) for k, v in saved.items())
    return saved != now


def _compare_fingerprints(where: Path, saved: Mapping[str, Any], now: Mapping[str, Any]) -> None:
    def shown(key: str, value: Any) -> str:
        if key.endswith("_sha256") and isinstance(value, str):
            return value[:12]
        return repr(value)

    # A state saved by an older version: check what it recorded, also inside a group of settings
    # (a distillation setting added later must not refuse the resume of a run begun before it).
    unrecorded = [k for k in now if k not in saved]
    for k, v in now.items():
        if isinstance(v, dict) and isinstance(saved.get(k), dict):
            unrecorded += [f"{k}.{j}" for j in v if j not in saved[k]]
    if unrecorded:
        log.warning("%s: the resume state does not record %s; not checked", where, ", ".join(unrecorded))
    changed = [
        f"{_SETTING_NAMES.get(k, '--' + k.replace('_', '-'))}: {shown(k, saved[k])} then, {shown(k, v)} now"
        for k, v in now.items()
        if k in saved and _differs(saved[k], v)
    ]
    if changed:
        raise TrainingError(
            f"{where}: cannot resume with different settings ({'; '.join(changed)}); "
            "resume with the original ones, or start a new run in another output directory"
        )


def _is_scratch(name: str) -> bool:
    """A temporary left by an interrupted write (``.x.123.ab.tmp``, ``last.tmp``): not content."""
    return name.endswith(".tmp")


def check_out_dir(out_dir: str | os.PathLike[str], resume: bool = False, overwrite: bool = False) -> None:
    """Refuse, before any work, an output directory a run must not write into: one that cannot be
    written, or one that is not empty unless it holds a run to ``resume`` or ``overwrite`` is set.

    An empty or missing directory is fine. With ``resume``, so is one holding a resume state, or
    only the log of a run killed before its first save (which then starts afresh). Anything else
    (a previous run, a checkpoint, unrelated files) raises :class:`TrainingError` saying which
    flag to pass. Creates and removes nothing; :func:`fit` clears the run's files on overwrite.
    """
    out = Path(out_dir)
    check_writable_dir(out, "--out")
    if not out.is_dir() or overwrite:
        return
    names = sorted(p.name for p in out.iterdir() if not _is_scratch(p.name))
    if not names:
        return
    if resume and (resume_dir(out) is not None or set(names) <= {LOG_FILE, ARGS_FILE}):
        return
    previous = [n for n in (LAST_DIR, LAST_DIR + ".old", LOG_FILE) if n in names]
    if previous and not resume:
        raise TrainingError(
            f"{out}: holds a previous run ({', '.join(previous)}); pass --resume to continue it, --overwrite to "
            "start it again, or choose a new output directory"
        )
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    raise TrainingError(
        f"{out}: is not empty ({shown}) and holds no run to resume; pass --overwrite to replace it, "
        "or choose a new output directory"
    )


def _clear_run(out: Path) -> None:
    """Remove what a previous run wrote at the top of ``out`` (--overwrite); other files stay."""
    removed = []
    for name in _RUN_FILES:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    for path in out.glob(".*.tmp"):
        path.unlink(missing_ok=True)
    if removed:
        log.info("%s: --overwrite removed %s", out, ", ".join(removed))
    kept = sorted(p.name for p in out.iterdir())
    if kept:
        log.warning("%s: --overwrite kept files no run writes: %s", out, ", ".join(kept))


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=False)
    version, internal, gauss = random.getstate()
    return {
        "python": [version, list(internal), gauss],
        "numpy": {**np_state, "state": {**np_state["state"], "key": np_state["state"]["key"].tolist()}},
    }


def _set_rng_state(state: Mapping[str, Any], torch_rng: Tensor) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = dict(state["numpy"])
    np_state["state"] = {**np_state["state"], "key": np.asarray(np_state["state"]["key"], dtype=np.uint32)}
    np.random.set_state(np_state)
    torch.set_rng_state(torch_rng)


def _read_json(path: Path) -> Any:
    return read_json(path, TrainingError)


def read_train_args(ckpt_path: Path | None) -> dict[str, Any] | None:
    """The ``train_args.json`` a run saved beside its checkpoint, or None where there is none."""
    args_file = ckpt_path / ARGS_FILE if ckpt_path is not None else None
    if args_file is None or not args_file.is_file():
        return None
    return read_json_object(args_file, TrainingError)


def trained_max_length(ckpt_path: Path | None, default: int = DEFAULT_MAX_LENGTH) -> int:
    """The max length a checkpoint was trained at (its ``train_args.json``), else ``default``: one
    reading with the torch-free :class:`~squeezebert.infer.Classifier`'s
    (:func:`squeezebert.runtime.recorded_max_length`)."""
    return recorded_max_length(ckpt_path) or default


# --------------------------------------------------------------------------- the loop
@dataclass
class _Progress:
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_metric: float | None = None
    best_step: int | None = None


def fit(
    model: SqueezeBert,
    loss_fn: LossFn,
    train_data: EncodedDataset,
    config: TrainConfig,
    out_dir: str | os.PathLike[str],
    evaluate_fn: EvaluateFn | None = None,
    main_metric: str | None = None,
    greater_is_better: bool = True,
    resume: bool = False,
    tokenizer: Tokenizer | None = None,
    batch_extras: Mapping[str, Tensor] | None = None,
    run_args: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train ``model`` on ``train_data`` with ``loss_fn``; the one training loop.

    Every ``config.eval_every`` steps (or at epoch ends) and at the end, ``evaluate_fn(model)``
    returns metrics; when ``main_metric`` (default: the first key returned) improves, the model is
    saved as the checkpoint in ``out_dir`` with ``metrics.json`` and ``train_args.json``. Without
    ``evaluate_fn`` the final model is saved. On return the model holds the saved (best) weights.

    ``loss_fn(model, batch)`` gets a padded batch (``input_ids``, ``attention_mask``,
    ``token_type_ids``, ``labels``, plus ``batch_extras[k][indices]`` for per-example tensors such
    as cached teacher logits) and returns ``{"loss": scalar, **values_to_log}``. A ``loss_fn`` that
    is an ``nn.Module`` has its parameters trained and checkpointed with the model's.

    ``resume=True`` continues from ``out_dir/last`` (see the module docstring), or starts afresh
    with a warning when there is none. Without a run to resume, ``out_dir`` must be empty (or
    missing) unless ``overwrite``, which removes the previous run's files first
    (:func:`check_out_dir`). Returns a summary: steps, best metric and step, the best
    eval metrics, mean training loss and throughput (real, non-padding tokens per second).

    Launched by ``torchrun`` with ``WORLD_SIZE > 1``, fit trains data-parallel
    (:mod:`squeezebert.distributed`): each process takes its share of every step's batch, DDP
    averages the gradients, rank 0 alone evaluates and writes ``out_dir``, and every process
    returns the same summary and best weights. Logged losses and token counts are sums over all
    processes, i.e. those of the whole step batch.
    """
    with distributed.process_group(config.dist_timeout):
        run = _Run(
            model, loss_fn, train_data, config, Path(out_dir), evaluate_fn, main_metric, greater_is_better, tokenizer,
            run_args,
        )  # fmt: skip
        run.setup(batch_extras, resume, overwrite)
        run.train()
        return run.finish()


class _Run:
    """One call of :func:`fit`: ``setup`` (check the data, build the optimizer, start or restore the
    run), ``train`` (the epochs, with logging, evaluation and saves), ``finish`` (the best weights
    back into the model, the summary). Every process of a torchrun job holds one."""

    def __init__(
        self,
        model: SqueezeBert,
        loss_fn: LossFn,
        train_data: EncodedDataset,
        config: TrainConfig,
        out: Path,
        evaluate_fn: EvaluateFn | None,
        main_metric: str | None,
        greater_is_better: bool,
        tokenizer: Tokenizer | None,
        run_args: Mapping[str, Any] | None,
    ) -> None:
        self.model, self.loss_fn, self.data, self.config, self.out = model, loss_fn, train_data, config, out
        self.evaluate_fn, self.main_metric, self.greater_is_better = evaluate_fn, main_metric, greater_is_better
        self.tokenizer, self.run_args = tokenizer, run_args
        self.world = distributed.world()
        self.progress = _Progress()
        self.log_file: Any = None
        # what train() measured in this session (a resumed run counts from where it resumed)
        self.start_step = 0
        self.train_time = 0.0
        self.tokens = self.samples = 0
        self.session_losses: list[float] = []

    # ------------------------------------------------------------------ setup
    def setup(self, batch_extras: Mapping[str, Tensor] | None, resume: bool, overwrite: bool) -> None:
        """Check the data; build optimizer and schedule; start a fresh run or restore ``last/``;
        write ``train_args.json``."""
        config, data, model, loss_fn = self.config, self.data, self.model, self.loss_fn
        if len(data) == 0:
            raise DataError("no training examples")
        if data.labels is None and not batch_extras:
            raise DataError("the training data has no labels")
        self.extras = dict(batch_extras or {})
        for key, tensor in self.extras.items():
            if tensor.shape[0] != len(data):
                raise ValueError(f"batch_extras[{key!r}] has {tensor.shape[0]} rows for {len(data)} examples")

        self.step_size = config.batch_size * config.grad_accum_steps
        self.steps_per_epoch = len(length_grouped_batches(data.lengths, self.step_size, config.seed, 0))
        self.total_steps = self.steps_per_epoch * config.epochs
        self.warmup_steps = math.ceil(config.warmup_ratio * self.total_steps)
        self.fingerprint = resume_fingerprint(config, self.run_args, len(data))

        named = list(model.named_parameters())
        if isinstance(loss_fn, nn.Module):
            named += [(f"loss_fn.{n}", p) for n, p in loss_fn.named_parameters()]
        self.params = [p for _, p in named if p.requires_grad]
        self.optimizer = build_optimizer(named, config)
        self.scheduler = linear_schedule(self.optimizer, self.warmup_steps, self.total_steps)

        resumed = distributed.on_main(lambda: self._start(resume, overwrite))
        world = self.world
        if resumed is None:
            self.progress = _Progress()
            seed_everything(config.seed)  # dropout draws depend on the seed alone, not on what ran before
            if not world.is_main:  # rank 0 keeps the single-process stream; the others get their own
                torch.manual_seed(distributed.rank_seed(config.seed, world.rank))
        else:
            self.progress = resumed["progress"]
            if not world.is_main:
                self.optimizer.load_state_dict(resumed["optimizer"])
                self.scheduler.load_state_dict(resumed["scheduler"])
                torch_rngs = resumed["torch_rngs"]
                if torch_rngs is not None and len(torch_rngs) == world.size:
                    _set_rng_state(resumed["rng"], torch_rngs[world.rank])
                else:  # saved by a different number of processes: a fresh stream for this rank
                    _set_rng_state(resumed["rng"], torch.get_rng_state())
                    torch.manual_seed(distributed.rank_seed(config.seed, world.rank, self.progress.global_step))
        self.forward: Callable[[dict[str, Tensor]], Mapping[str, Any]]
        if world.size > 1:
            self.forward = distributed.DataParallelLoss(model, loss_fn)
        else:

            def forward(batch: dict[str, Tensor]) -> Mapping[str, Any]:
                return loss_fn(model, batch)

            self.forward = forward

        self.train_args = {
            **dataclasses.asdict(config),
            **(self.run_args or {}),
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "world_size": world.size,
        }
        if world.is_main:
            text = json.dumps(self.train_args, indent=2, sort_keys=True, default=str) + "\n"
            atomic_write_text(self.out / ARGS_FILE, text)

    def _start(self, resume: bool, overwrite: bool) -> dict[str, Any] | None:
        """Rank 0: check ``out``, then restore the resume state (returning what the other ranks
        need to continue in step with it) or start a fresh log (returning None)."""
        out = self.out
        found = resume_dir(out) if resume else None
        if found is None:
            check_out_dir(out, resume, overwrite)
            if overwrite and out.is_dir():
                _clear_run(out)
        if out.is_dir():  # what a killed run was writing: its temporaries, a half-written resume state
            for name in _RUN_FILES:
                remove_stale_temps(out / name)
            if (out / (LAST_DIR + ".tmp")).is_dir():
                shutil.rmtree(out / (LAST_DIR + ".tmp"))
        if resume and found is None:
            log.warning("%s: no resume state (%s/); starting from scratch", out, LAST_DIR)
        if found is not None:
            progress, torch_rngs = _restore(
                found, self.model, self.loss_fn, self.optimizer, self.scheduler, self.fingerprint
            )
            _truncate_log(out / LOG_FILE, progress.global_step)
            log.info(
                "resuming %s at step %d (epoch %d, batch %d)",
                out,
                progress.global_step,
                progress.epoch,
                progress.step_in_epoch,
            )
            if not distributed.is_distributed():
                return {"progress": progress}
            # The weights reach the other ranks when DDP is built (it broadcasts rank 0's).
            return {
                "progress": progress,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": _rng_state(),
                "torch_rngs": torch_rngs,
            }
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / LOG_FILE, "")
        return None

    # ------------------------------------------------------------------ train
    def train(self) -> None:
        """The epochs: steps, log records, evaluations with keep-best saves, resume-state saves."""
        config, progress, data = self.config, self.progress, self.data
        if self.world.is_main:
            self.log_file = (self.out / LOG_FILE).open("a", encoding="utf-8")
        tqdm = train_extra("tqdm.auto").tqdm
        bar = tqdm(
            total=self.total_steps,
            initial=progress.global_step,
            disable=not (self.world.is_main and sys.stderr.isatty()),
            desc="train",
        )
        pad = self.model.config.pad_token_id
        window: dict[str, list[float]] = {}
        window_tokens, window_time = 0, 0.0
        self.start_step = progress.global_step
        self.model.train()
        try:
            while progress.epoch < config.epochs:
                epoch = progress.epoch
                batches = length_grouped_batches(data.lengths, self.step_size, config.seed, epoch)
                while progress.step_in_epoch < len(batches):
                    t0 = time.perf_counter()
                    step_batch = batches[progress.step_in_epoch]
                    lr = self.scheduler.get_last_lr()[0]
                    values, n_tokens = _train_step(
                        self.forward, data, step_batch, config, pad, self.extras, self.optimizer, self.params
                    )
                    self.scheduler.step()
                    self.tokens += n_tokens
                    window_tokens += n_tokens
                    for key, value in values.items():
                        window.setdefault(key, []).append(value)
                    self.samples += len(step_batch)
                    progress.global_step += 1
                    progress.step_in_epoch += 1
                    elapsed = time.perf_counter() - t0
                    self.train_time += elapsed
                    window_time += elapsed
                    bar.update(1)
                    epoch_float = round(epoch + progress.step_in_epoch / len(batches), 4)
                    at_epoch_end = progress.step_in_epoch == len(batches)
                    at_end = progress.global_step == self.total_steps

                    if progress.global_step % config.log_every == 0 or at_end:
                        means = {k: float(np.mean(v)) for k, v in window.items()}
                        self.session_losses.extend(window.get("loss", []))
                        record = {
                            "step": progress.global_step,
                            "epoch": epoch_float,
                            "lr": lr,
                            **means,
                            "tokens_per_s": round(window_tokens / max(window_time, 1e-9), 1),
                        }
                        self._write_log(record)
                        bar.set_postfix(loss=f"{means.get('loss', float('nan')):.4f}")
                        window, window_tokens, window_time = {}, 0, 0.0

                    if at_epoch_end:
                        progress.epoch, progress.step_in_epoch = epoch + 1, 0
                    do_eval = self.evaluate_fn is not None and (
                        at_end
                        or (config.eval_every > 0 and progress.global_step % config.eval_every == 0)
                        or (config.eval_every == 0 and at_epoch_end)
                    )
                    if do_eval:
                        self._evaluate(epoch_float)
                    if at_end and self.evaluate_fn is None:
                        self._save_best({}, epoch_float)
                    if do_eval or at_epoch_end or (config.save_every and progress.global_step % config.save_every == 0):
                        self._save_state()
                    if at_epoch_end:
                        break
        finally:
            bar.close()
            if self.log_file is not None:
                self.log_file.close()
                self.log_file = None

    def _evaluate(self, epoch_float: float) -> None:
        """Score the model (rank 0; every rank gets the metrics and so takes the same decisions),
        log it, and save it as the checkpoint when the main metric improved."""
        evaluate_fn, progress, model = self.evaluate_fn, self.progress, self.model
        assert evaluate_fn is not None
        metrics = distributed.on_main(lambda: dict(evaluate_fn(model)))
        if self.main_metric is None:
            self.main_metric = next(iter(metrics))
        if self.main_metric not in metrics:
            raise ValueError(f"main_metric {self.main_metric!r} is not among the eval metrics {list(metrics)}")
        value = float(metrics[self.main_metric])
        best = progress.best_metric
        improved = best is None or (value > best if self.greater_is_better else value < best)
        self._write_log(
            {
                "step": progress.global_step,
                "epoch": epoch_float,
                **{f"eval_{k}": v for k, v in metrics.items()},
                "best": improved,
            }
        )
        if self.world.is_main:
            log.info("step %d: %s", progress.global_step, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        if improved:
            progress.best_metric, progress.best_step = value, progress.global_step
            self._save_best(metrics, epoch_float)

    def _write_log(self, record: dict[str, Any]) -> None:
        if self.log_file is not None:
            self.log_file.write(json.dumps(record, sort_keys=True) + "\n")
            self.log_file.flush()

    # ------------------------------------------------------------------ save
    def _save_best(self, metrics: Mapping[str, float], epoch_float: float) -> None:
        """Rank 0: the model as the run's checkpoint, with its eval record and the run's arguments."""
        record = {
            "main_metric": self.main_metric,
            "step": self.progress.global_step,
            "epoch": epoch_float,
            "eval": dict(metrics),
        }
        extra_json = {METRICS_FILE: record, ARGS_FILE: self.train_args}
        distributed.on_main(lambda: save_checkpoint(self.model, self.out, self.tokenizer, extra_json=extra_json))

    def _save_state(self) -> None:
        """Replace ``last/`` with the resume state (every rank takes part: the RNGs are gathered)."""
        torch_rngs = distributed.gather_rng_states()  # a collective: every rank takes part
        state = {**dataclasses.asdict(self.progress), "fingerprint": self.fingerprint, "rng": _rng_state()}
        torch_state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        if torch_rngs is not None:
            torch_state["torch_rngs"] = torch_rngs
        model, loss_fn = self.model, self.loss_fn

        def fill(tmp: Path) -> None:
            save_checkpoint(model, tmp)
            if isinstance(loss_fn, nn.Module) and loss_fn.state_dict():
                sd = {k: v.detach().contiguous() for k, v in loss_fn.state_dict().items()}
                save_file(sd, str(tmp / _LOSS_STATE_FILE))
            torch.save(torch_state, tmp / _TORCH_STATE_FILE)
            (tmp / _STATE_FILE).write_text(json.dumps(state) + "\n", encoding="utf-8")

        distributed.on_main(lambda: write_dir_atomically(self.out / LAST_DIR, fill))

    def finish(self) -> dict[str, Any]:
        """The saved (best) weights back into the model on every rank; the run's summary."""
        progress = self.progress

        def load_best() -> dict[str, Any]:
            """Rank 0: load the saved (best) weights back; return the saved eval record."""
            if progress.best_step is not None or self.evaluate_fn is None:
                sd = load_file(str(self.out / "model.safetensors"))
                self.model.load_state_dict(sd)
            return _read_json(self.out / METRICS_FILE) if (self.out / METRICS_FILE).is_file() else {}

        best_record = distributed.on_main(load_best)
        distributed.broadcast_module(self.model)
        self.model.eval()
        train_time, tokens, samples = self.train_time, self.tokens, self.samples
        return {
            "global_step": progress.global_step,
            "total_steps": self.total_steps,
            "resumed_from_step": self.start_step,
            "main_metric": self.main_metric,
            "best_metric": progress.best_metric,
            "best_step": progress.best_step,
            "best_eval": best_record.get("eval", {}),
            "train_loss": float(np.mean(self.session_losses)) if self.session_losses else None,
            "train_time_s": round(train_time, 3),
            "train_tokens": tokens,
            "train_samples": samples,
            "tokens_per_s": round(tokens / train_time, 1) if train_time else None,
            "samples_per_s": round(samples / train_time, 2) if train_time else None,
        }


def _train_step(
    forward: Callable[[dict[str, Tensor]], Mapping[str, Any]],
    data: EncodedDataset,
    step_batch: list[int],
    config: TrainConfig,
    pad: Callable[[Sequence[tuple[Sequence[int], Sequence[int]]]], dict[str, np.ndarray]],
    extras: Mapping[str, Tensor],
    optimizer: torch.optim.Optimizer,
    params: Sequence[nn.Parameter],
) -> tuple[dict[str, float], int]:
    """One optimizer step over ``step_batch``, in ``grad_accum_steps`` micro-batches. Returns the
    size-weighted mean of each logged value and the number of real (non-padding) tokens.

    ``forward(batch)`` is ``loss_fn(model, batch)``, or its DDP wrapper: then this process runs
    only its shard of ``step_batch`` and the returned values are those of the whole step batch.
    """
    world = distributed.world()
    optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = {}
    n_tokens = 0
    mine = distributed.shard(step_batch, world.rank, world.size) if world.size > 1 else step_batch
    # An empty shard (fewer examples than processes) still joins DDP's all-reduce, with weight 0.
    micros = _split(mine, config.grad_accum_steps) if mine else [step_batch[:1]]
    for i, micro in enumerate(micros):
        # Weighted by size, the summed gradients are those of the mean over the whole step batch;
        # the factor world.size undoes DDP's averaging over processes.
        weight = (len(micro) * world.size) / len(step_batch) if mine else 0.0
        last = i == len(micros) - 1
        with nullcontext() if last else distributed.no_sync(forward):  # all-reduce once per step
            batch = collate(pad, data, micro)
            for key, tensor in extras.items():
                batch[key] = tensor[micro]
            outputs = forward(batch)
            loss = outputs["loss"]
            if not torch.isfinite(loss):
                raise TrainingError(f"loss became {loss.item()}; lower the learning rate (lr={config.lr})")
            (loss * weight).backward()
        share = len(micro) / len(step_batch) if mine else 0.0
        for key, value in outputs.items():
            sums[key] = sums.get(key, 0.0) + share * float(value.detach() if isinstance(value, Tensor) else value)
        if mine:
            n_tokens += int(batch["attention_mask"].sum())
    if world.size > 1:
        sums, n_tokens = distributed.all_reduce_sum(sums, n_tokens)
    if config.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
    optimizer.step()
    return sums, n_tokens


def _restore(
    where: Path,
    model: SqueezeBert,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    fingerprint: Mapping[str, Any],
) -> tuple[_Progress, list[Tensor] | None]:
    """Load the resume state written by ``fit`` into the model, optimizer, scheduler and RNGs.
    Also returns each rank's torch RNG state when a multi-process run saved them."""
    state = _read_json(where / _STATE_FILE)
    _compare_fingerprints(where, state.get("fingerprint", {}), fingerprint)
    model.load_state_dict(load_file(str(where / "model.safetensors")))
    if isinstance(loss_fn, nn.Module) and (where / _LOSS_STATE_FILE).is_file():
        loss_fn.load_state_dict(load_file(str(where / _LOSS_STATE_FILE)), strict=False)
    try:
        # weights_only: tensors, dicts, lists and numbers only; never arbitrary unpickling.
        torch_state = torch.load(where / _TORCH_STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as e:
        raise TrainingError(
            f"{where / _TORCH_STATE_FILE}: cannot load resume state ({type(e).__name__}: {e})"
        ) from None
    optimizer.load_state_dict(torch_state["optimizer"])
    scheduler.load_state_dict(torch_state["scheduler"])
    _set_rng_state(state["rng"], torch_state["torch_rng"])
    progress = _Progress(
        epoch=state["epoch"],
        step_in_epoch=state["step_in_epoch"],
        global_step=state["global_step"],
        best_metric=state["best_metric"],
        best_step=state["best_step"],
    )
    return progress, torch_state.get("torch_rngs")


def _truncate_log(path: Path, step: int) -> None:
    """Drop log records after ``step`` (written by the interrupted run after its last save)."""
    if not path.is_file():
        atomic_write_text(path, "")
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by the interruption
            continue
        if isinstance(record, dict) and record.get("step", 0) <= step:
            kept.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in kept))


__all__ = [
    "TrainConfig",
    "TrainingError",
    "build_optimizer",
    "check_out_dir",
    "check_resume",
    "classification_loss",
    "evaluate",
    "fit",
    "linear_schedule",
    "predict",
    "drop_resume_state",
    "resume_dir",
    "resume_fingerprint",
    "saved_fingerprint",
    "seed_everything",
    "train_extra",
]
