"""GLUE metrics, task scores and the GLUE summary table.

``kind`` is a GLUE task name (``cola``, ``SST-2``, ``mnli-mm``, ... see :func:`squeezebert.data.glue_task`)
or ``"classification"`` / ``"regression"`` for user data. Metric values are fractions (accuracy 0.9),
as scikit-learn returns them; the summary table shows them x100 as GLUE papers do.

Degenerate inputs never produce NaN: a correlation with a constant input (every prediction the same,
or a one-example eval set) is undefined, and it is reported as 0.0, i.e. no detectable relationship.
That keeps averages finite and gives a constant predictor no credit. Matthews correlation follows
scikit-learn, which also returns 0.0 in that case, and F1 with no predicted positives is 0.0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import f1_score, matthews_corrcoef

from squeezebert.data import CLASSIFICATION_METRICS, GLUE_TASKS, REGRESSION_METRICS, glue_task

__all__ = ["compute_metrics", "glue_summary", "main_metric", "metric_names", "task_score"]

_CUSTOM = {"classification": CLASSIFICATION_METRICS, "regression": REGRESSION_METRICS}

# Column labels for the summary table, in each task's metric order.
_SHORT = {
    "matthews_correlation": "MCC",
    "accuracy": "acc",
    "f1": "F1",
    "pearson": "pearson",
    "spearman": "spearman",
}


def metric_names(kind: str) -> tuple[str, ...]:
    """The metrics :func:`compute_metrics` returns for ``kind``, main metric first."""
    if kind in _CUSTOM:
        return _CUSTOM[kind]
    return glue_task(kind).metrics


def main_metric(kind: str) -> str:
    """The headline metric: CoLA ``matthews_correlation``, MRPC/QQP ``f1``, STS-B ``pearson``,
    other GLUE tasks and custom classification ``accuracy``, custom regression ``pearson``."""
    return metric_names(kind)[0]


def task_score(kind: str, metrics: Mapping[str, float]) -> float:
    """One number per task. GLUE convention: the mean of the task's metrics (MRPC: mean of F1 and
    accuracy). Custom kinds use their main metric, since their metric sets mix scales (mse)."""
    names = (main_metric(kind),) if kind in _CUSTOM else metric_names(kind)
    missing = [n for n in names if n not in metrics]
    if missing:
        raise ValueError(f"{kind}: metrics lack {', '.join(missing)} (have: {', '.join(metrics) or 'nothing'})")
    return float(np.mean([metrics[n] for n in names]))


def _correlation(kind: str, x: np.ndarray, y: np.ndarray) -> float:
    # pearsonr/spearmanr return NaN (with a warning) for a constant input; see the module docstring.
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    result = stats.pearsonr(x, y) if kind == "pearson" else stats.spearmanr(x, y)
    return float(result[0])


def compute_metrics(
    kind: str, predictions: Sequence[Any] | np.ndarray, references: Sequence[Any] | np.ndarray
) -> dict[str, float]:
    """Metrics for ``kind``. Predictions are class indices (argmax of the logits), or floats for a
    regression task; references likewise. For MRPC/QQP ``f1`` is binary with class 1 positive."""
    names = metric_names(kind)
    preds = np.asarray(predictions)
    refs = np.asarray(references)
    if preds.ndim != 1 or refs.ndim != 1:
        raise ValueError(
            f"{kind}: predictions and references must be 1-D, got shapes {preds.shape} and {refs.shape} "
            "(take the argmax of the logits first)"
        )
    if len(preds) != len(refs):
        raise ValueError(f"{kind}: {len(preds)} predictions but {len(refs)} references")
    if len(preds) == 0:
        raise ValueError(f"{kind}: no predictions to score")
    regression = "pearson" in names
    if regression:
        preds, refs = preds.astype(np.float64), refs.astype(np.float64)
    elif not (np.issubdtype(preds.dtype, np.integer) and np.issubdtype(refs.dtype, np.integer)):
        raise ValueError(f"{kind}: classification predictions and references must be integer class ids")

    out: dict[str, float] = {}
    for name in names:
        if name == "accuracy":
            out[name] = float(np.mean(preds == refs))
        elif name == "matthews_correlation":
            out[name] = float(matthews_corrcoef(refs, preds))
        elif name == "f1":
            out[name] = float(f1_score(refs, preds, pos_label=1, average="binary", zero_division=0))
        elif name == "macro_f1":
            out[name] = float(f1_score(refs, preds, average="macro", zero_division=0))
        elif name in ("pearson", "spearman"):
            out[name] = _correlation(name, preds, refs)
        elif name == "mse":
            out[name] = float(np.mean((preds - refs) ** 2))
        else:  # a TaskSpec named a metric this module does not know
            raise ValueError(f"{kind}: no implementation for metric {name!r}")
    return out


# Display names and order of the GLUE table; MNLI shows matched and mismatched on two rows.
_DISPLAY = {
    "cola": "CoLA",
    "sst2": "SST-2",
    "mrpc": "MRPC",
    "stsb": "STS-B",
    "qqp": "QQP",
    "mnli-m": "MNLI-m",
    "mnli-mm": "MNLI-mm",
    "qnli": "QNLI",
    "rte": "RTE",
    "wnli": "WNLI",
}


def _result_key(name: str) -> str:
    """``mnli``/``mnli-m``/``MNLI-m`` -> ``mnli-m``; other names -> the GLUE task key."""
    low = name.strip().lower()
    if low in ("mnli", "mnli-m", "mnli_matched"):
        return "mnli-m"
    if low in ("mnli-mm", "mnli_mismatched"):
        return "mnli-mm"
    return glue_task(name).name


def glue_summary(results: Mapping[str, Mapping[str, float]]) -> tuple[str, dict[str, Any]]:
    """A markdown table of GLUE results and a JSON-able dict of the same numbers.

    ``results`` maps a task (``sst2``, ``SST-2``; MNLI as ``mnli``/``mnli-m`` and ``mnli-mm``) to
    its :func:`compute_metrics` output. Each task's score is the mean of its metrics; MNLI's is the
    mean of matched and mismatched accuracy (or the one present). The average is over the tasks
    present, and the note names the GLUE tasks missing from it. The dict keeps fractions.
    """
    rows: dict[str, Mapping[str, float]] = {}
    for name, metrics in results.items():
        key = _result_key(name)
        if key in rows:
            raise ValueError(f"results name task {_DISPLAY[key]} twice")
        rows[key] = metrics

    lines = ["| Task | Metric | Score |", "|---|---|---|"]
    report_rows: dict[str, dict[str, Any]] = {}
    for key in _DISPLAY:
        if key not in rows:
            continue
        names = metric_names(key)
        missing = [n for n in names if n not in rows[key]]
        if missing:
            raise ValueError(f"results for {_DISPLAY[key]} lack {', '.join(missing)}")
        values = [float(rows[key][n]) for n in names]
        shown = "/".join(f"{100 * v:.1f}" for v in values)
        lines.append(f"| {_DISPLAY[key]} | {'/'.join(_SHORT[n] for n in names)} | {shown} |")
        report_rows[key] = {"metrics": dict(zip(names, values, strict=True)), "score": float(np.mean(values))}

    task_scores: dict[str, float] = {}
    for name in GLUE_TASKS:
        if name == "mnli":
            halves = [report_rows[k]["score"] for k in ("mnli-m", "mnli-mm") if k in report_rows]
            if halves:
                task_scores[name] = float(np.mean(halves))
        elif name in report_rows:
            task_scores[name] = report_rows[name]["score"]
    missing_tasks = [GLUE_TASKS[n].dir_name or n for n in GLUE_TASKS if n not in task_scores]
    average = float(np.mean(list(task_scores.values()))) if task_scores else None

    notes = []
    if average is not None:
        lines.append(f"| **Average** | {len(task_scores)} tasks | **{100 * average:.1f}** |")
    if missing_tasks:
        notes.append(f"Not in the average (no results): {', '.join(missing_tasks)}.")
    if ("mnli-m" in report_rows) != ("mnli-mm" in report_rows):
        half = "MNLI-m" if "mnli-m" in report_rows else "MNLI-mm"
        notes.append(f"MNLI's score uses {half} only.")
    markdown = "\n".join(lines) + ("\n\n" + " ".join(notes) if notes else "") + "\n"
    summary = {
        "tasks": report_rows,
        "task_scores": task_scores,
        "average": average,
        "missing": missing_tasks,
    }
    return markdown, summary
