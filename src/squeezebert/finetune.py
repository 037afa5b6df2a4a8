"""The fine-tuning workflows: finetune, evaluate a checkpoint or an export, run all of GLUE.

Each is a typed function the CLI calls once: data from a :class:`~squeezebert.data.TaskSource`,
the model from a checkpoint, training through :func:`squeezebert.train.fit` with
:func:`~squeezebert.train.classification_loss`, scoring through :func:`~squeezebert.train.evaluate`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from squeezebert import distributed
from squeezebert.checkpoint import load
from squeezebert.data import (
    CUSTOM,
    GLUE_TASKS,
    DataError,
    TaskSource,
    encode,
    examples_digest,
    glue_source,
    glue_task,
    load_glue,
    load_task_data,
    read_table,
    subsample,
)
from squeezebert.files import atomic_write_text, check_writable_dir
from squeezebert.infer import Classifier, export_backend, export_section
from squeezebert.model import SqueezeBert
from squeezebert.train import (
    METRICS_FILE,
    TrainConfig,
    check_out_dir,
    check_resume,
    classification_loss,
    drop_resume_state,
    evaluate,
    fit,
    resume_fingerprint,
    seed_everything,
    train_extra,
    trained_max_length,
)

log = logging.getLogger(__name__)


def finetune(
    model_src: str,
    out_dir: str | os.PathLike[str],
    source: TaskSource,
    config: TrainConfig | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Fine-tune ``model_src`` on a GLUE task or custom files (``source``) and evaluate the best
    checkpoint.

    The head gets the task's label names (GLUE order from :mod:`squeezebert.data`; custom labels
    sorted, see :func:`squeezebert.data.label_space`), saved in ``config.json``. Writes the run
    directory described in the module docstring; ``metrics.json`` ends up holding the final dev
    metrics of the best checkpoint and the training throughput. Returns that record.
    ``resume`` and ``overwrite``: see :func:`fit`; ``out_dir`` is checked before anything loads.
    """
    config = config or TrainConfig()
    out = Path(out_dir)
    check_out_dir(out, resume, overwrite)
    data = load_task_data(source)
    train_examples = subsample(data.train, config.max_train_samples, config.seed)
    run_args = {
        "model": str(model_src),
        "task": data.task,
        "kind": data.kind,
        "train_file": data.train_source,
        "dev_file": data.dev_source if data.dev else None,
        "train_sha256": examples_digest(data.train),
        "dev_sha256": examples_digest(data.dev) if data.dev else None,
        "text_column": source.text_column,
        "text_pair_column": source.text_pair_column,
        "label_column": source.label_column,
        "num_train_examples": len(train_examples),
    }
    if data.task != CUSTOM:
        run_args.update(text_column=None, text_pair_column=None, label_column=None, data_dir=str(source.data_dir))
    if resume:  # before the model loads: a mismatch is refused at once
        check_resume(out, resume_fingerprint(config, run_args, len(train_examples)))

    seed_everything(config.seed)  # before loading: a new head's initialization is part of the run
    if data.labels is None:
        ckpt = load(model_src, num_labels=1)
    else:
        ckpt = load(model_src, id2label=dict(enumerate(data.labels)))
    if ckpt.tokenizer is None:
        raise ValueError(f"{model_src}: has no tokenizer (tokenizer.json or vocab.txt) to encode the text with")
    model = ckpt.model
    max_length = min(config.max_length, model.config.max_position_embeddings)
    label2id = None if data.labels is None else model.config.label2id
    train = encode(ckpt.tokenizer, train_examples, max_length, label2id, data.train_source)
    dev = encode(ckpt.tokenizer, data.dev, max_length, label2id, data.dev_source) if data.dev else None
    evaluate_fn = None
    if dev is not None:

        def evaluate_fn(m: SqueezeBert) -> dict[str, float]:
            return evaluate(m, dev, data.kind, config.eval_batch_size)

    main_metric = train_extra("squeezebert.metrics").main_metric
    summary = fit(
        model,
        classification_loss,
        train,
        config,
        out,
        evaluate_fn=evaluate_fn,
        main_metric=main_metric(data.kind),
        resume=resume,
        tokenizer=ckpt.tokenizer,
        run_args=run_args,
        overwrite=overwrite,
    )
    record: dict[str, Any] = {
        "task": data.task,
        "kind": data.kind,
        "main_metric": main_metric(data.kind),
        "best_step": summary["best_step"],
        "train": {
            k: summary[k]
            for k in (
                "global_step",
                "train_loss",
                "train_time_s",
                "train_tokens",
                "train_samples",
                "tokens_per_s",
                "samples_per_s",
                "resumed_from_step",
            )
        },
    }
    if dev is not None:
        record["split"] = "dev"
        record["num_eval_examples"] = len(dev)
        # fit scored exactly these (best) weights already; score again only if that record is gone.
        record["eval"] = summary["best_eval"] or evaluate(model, dev, data.kind, config.eval_batch_size)
    if distributed.world().is_main:  # under torchrun every process returns the record; one writes it
        atomic_write_text(out / METRICS_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
        if not config.keep_resume_state:
            drop_resume_state(out)
    return record


class ExportedModel(nn.Module):
    """An export directory's :class:`~squeezebert.infer.Classifier` as the ``(ids, mask, types) ->
    logits`` module :func:`evaluate` runs, so an export is scored by the same code as a checkpoint.
    ``int8_recipe``: how an int8 export was made (``static``/``dynamic``), where the caller knows."""

    def __init__(self, classifier: Any, int8_recipe: str | None = None) -> None:
        super().__init__()
        self.classifier = classifier
        self.config = classifier.config
        self.int8_recipe = int8_recipe

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> Tensor:
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return torch.from_numpy(self.classifier.forward({k: v.numpy() for k, v in batch.items()}))


def evaluate_checkpoint(
    src: str | os.PathLike[str],
    source: TaskSource,
    split: str = "dev",
    batch_size: int = 64,
    max_length: int | None = None,
) -> dict[str, Any]:
    """Score a fine-tuned checkpoint, or an export directory through its own runtime (OpenVINO or
    ONNX Runtime, found by its files), on a GLUE ``split`` or a custom labelled file
    (``source.dev_file``).

    Labels are mapped to class ids by *name* through the checkpoint's ``label2id``; a label it never
    saw raises :class:`~squeezebert.data.DataError` naming the file and line. ``max_length``
    defaults to the one the checkpoint was trained with (``train_args.json``; for an export, the
    one its ``config.json`` records), else 128.
    """
    backend = export_backend(src)
    if backend is not None:  # an export directory: scored through its own runtime
        trained_length = export_section(Path(src) / "config.json", backend).get("max_length")
        classifier = Classifier.from_pretrained(src, max_length=max_length or trained_length or 128)
        model: Any = ExportedModel(classifier)
        tokenizer, max_length = classifier.tokenizer, classifier.max_length
    else:
        ckpt = load(src)
        model, tokenizer = ckpt.model, ckpt.tokenizer
        if ckpt.tokenizer is None:
            raise ValueError(f"{src}: has no tokenizer (tokenizer.json or vocab.txt)")
        if max_length is None:
            max_length = trained_max_length(ckpt.path)
    if model.config.num_labels == 0:
        raise ValueError(f"{src}: has no classification head; fine-tune it first")
    max_length = min(max_length, model.config.max_position_embeddings)
    regression = model.config.num_labels == 1
    if source.task == CUSTOM:
        if source.dev_file is None:
            raise ValueError("custom evaluation needs --dev FILE (or pass --task with --data-dir)")
        examples = read_table(source.dev_file, *source.columns)
        kind, where = ("regression" if regression else "classification"), str(source.dev_file)
    else:
        spec = glue_task(source.task)
        if spec.is_regression != regression:
            raise ValueError(
                f"{src}: a {'regression' if regression else f'{model.config.num_labels}-label'} model cannot be "
                f"scored on {spec.name}, a {'regression' if spec.is_regression else 'classification'} task"
            )
        examples = load_glue(spec.name, split, source.data_dir)
        kind = spec.name
        where = glue_source(spec, split, source.data_dir)
    label2id = None if regression else model.config.label2id
    data = encode(tokenizer, examples, max_length, label2id, where)
    metrics = evaluate(model, data, kind, batch_size)
    return {
        "model": str(src),
        "backend": backend or "torch",
        "task": source.task,
        "split": split,
        "source": where,
        "num_examples": len(data),
        "metrics": metrics,
    }


def run_glue(
    model_src: str,
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    tasks: Sequence[str] | None = None,
    config: TrainConfig | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Fine-tune and evaluate ``model_src`` on every GLUE task present in ``data_dir``.

    Each task runs in ``out_dir/<task>``; tasks without ``train.tsv`` or a dev file are skipped
    with a note. MNLI is scored on matched and mismatched dev. Writes ``glue.md`` and ``glue.json``
    (:func:`squeezebert.metrics.glue_summary`) to ``out_dir`` and returns the JSON summary.
    Under ``torchrun`` one process group serves all tasks, and rank 0 alone writes the summary.
    """
    with distributed.process_group((config or TrainConfig()).dist_timeout):
        return _run_glue(model_src, data_dir, out_dir, tasks, config, resume, overwrite)


def _run_glue(
    model_src: str,
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    tasks: Sequence[str] | None,
    config: TrainConfig | None,
    resume: bool,
    overwrite: bool = False,
) -> dict[str, Any]:
    glue_summary = train_extra("squeezebert.metrics").glue_summary
    data_dir, out = Path(data_dir), Path(out_dir)
    check_writable_dir(out, "--out")
    if not data_dir.is_dir():
        if data_dir.exists():
            raise NotADirectoryError(f"{data_dir}: is a file; --data-dir takes the GLUE data directory")
        raise FileNotFoundError(f"{data_dir}: no such GLUE data directory")
    names = [glue_task(t).name for t in (tasks or list(GLUE_TASKS))]
    results: dict[str, dict[str, float]] = {}
    skipped: list[str] = []
    config = config or TrainConfig()
    # Each task keeps its resume state until every task is done: a resumed glue run re-enters the
    # finished ones too (they resume at their last step and return at once).
    task_config = replace(config, keep_resume_state=True)
    for name in names:
        spec = GLUE_TASKS[name]
        assert spec.dir_name is not None
        needed = ["train", "dev"] + (["dev_mismatched"] if name == "mnli" else [])
        absent = [spec.split_file(s) for s in needed if not (data_dir / spec.dir_name / spec.split_file(s)).is_file()]
        if absent:
            note = f"{spec.dir_name}: skipped, no {' or '.join(absent)} in {data_dir / spec.dir_name}"
            log.warning(note)
            skipped.append(note)
            continue
        log.info("GLUE %s: fine-tuning", spec.dir_name)
        source = TaskSource(name, data_dir)
        record = finetune(model_src, out / name, source, config=task_config, resume=resume, overwrite=overwrite)
        if name == "mnli":
            results["mnli-m"] = record["eval"]
            mm = distributed.on_main(
                lambda: evaluate_checkpoint(
                    out / "mnli",
                    TaskSource("mnli", data_dir),
                    split="dev_mismatched",
                    batch_size=config.eval_batch_size,
                )
            )
            results["mnli-mm"] = mm["metrics"]
        else:
            results[name] = record["eval"]
    if not results:
        raise DataError(f"{data_dir}: none of the tasks {', '.join(names)} has train and dev files")
    markdown, summary = glue_summary(results)
    if skipped:
        markdown += "\n" + "\n".join(f"- {note}" for note in skipped) + "\n"
    summary["skipped"] = skipped
    summary["model"] = str(model_src)

    def write() -> None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "glue.md", markdown)
        atomic_write_text(out / "glue.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
        if not config.keep_resume_state:
            for name in names:
                drop_resume_state(out / name)

    distributed.on_main(write)
    return summary


__all__ = ["ExportedModel", "evaluate_checkpoint", "finetune", "run_glue"]
