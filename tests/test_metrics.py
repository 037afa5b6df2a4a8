"""Tests for squeezebert.metrics: every metric against a value worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from squeezebert.metrics import compute_metrics, glue_summary, main_metric, metric_names, task_score


def test_accuracy_for_sst2() -> None:
    assert compute_metrics("sst2", [0, 1, 1, 0], [0, 1, 0, 0]) == {"accuracy": 0.75}


def test_matthews_correlation_for_cola() -> None:
    # TP=2 FP=1 TN=2 FN=0: (2*2 - 1*0) / sqrt(3*2*3*2) = 4/6.
    result = compute_metrics("CoLA", [1, 1, 0, 0, 1], [1, 0, 0, 0, 1])
    assert result.keys() == {"matthews_correlation"}
    assert result["matthews_correlation"] == pytest.approx(4 / 6)


def test_mrpc_f1_uses_class_one_as_positive() -> None:
    # TP=2 FP=1 FN=1 TN=0: precision = recall = 2/3, F1 = 2/3; accuracy 2/4.
    result = compute_metrics("mrpc", [1, 1, 1, 0], [1, 0, 1, 1])
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["accuracy"] == pytest.approx(0.5)
    assert list(result) == ["f1", "accuracy"]
    # Taking class 0 as positive would give 0 here (the one predicted 0 is wrong), not 2/3.
    assert compute_metrics("qqp", [1, 1, 1, 0], [1, 0, 1, 1])["f1"] == pytest.approx(2 / 3)


def test_f1_with_no_predicted_positives_is_zero() -> None:
    assert compute_metrics("mrpc", [0, 0], [1, 0])["f1"] == 0.0


def test_stsb_pearson_and_spearman() -> None:
    # x = 1,2,3; y = 1,2,4: cov = 3, var_x = 2, var_y = 42/9 -> r = 9 / sqrt(84).
    result = compute_metrics("stsb", [1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    assert result["pearson"] == pytest.approx(9 / math.sqrt(84))
    assert result["spearman"] == pytest.approx(1.0)
    # ranks 1,2,3 vs 3,1,2: sum d^2 = 6 -> rho = 1 - 6*6 / (3*8) = -0.5.
    assert compute_metrics("STS-B", [1.0, 2.0, 3.0], [3.0, 1.0, 2.0])["spearman"] == pytest.approx(-0.5)


def test_constant_predictions_give_zero_correlation_not_nan() -> None:
    result = compute_metrics("stsb", [2.0, 2.0, 2.0], [1.0, 2.0, 4.0])
    assert result == {"pearson": 0.0, "spearman": 0.0}
    assert compute_metrics("regression", [1.5], [1.0])["pearson"] == 0.0
    assert compute_metrics("cola", [1, 1, 1], [0, 1, 1])["matthews_correlation"] == 0.0


def test_custom_classification_accuracy_and_macro_f1() -> None:
    # per-class F1: class 0 = 2/3, class 1 = 2/3, class 2 = 1 -> macro 7/9.
    result = compute_metrics("classification", np.array([0, 1, 1, 2]), np.array([0, 0, 1, 2]))
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["macro_f1"] == pytest.approx(7 / 9)


def test_custom_regression_reports_mse() -> None:
    result = compute_metrics("regression", [1.0, 2.0, 3.0], [2.0, 4.0, 3.0])
    assert result["mse"] == pytest.approx(5 / 3)
    assert set(result) == {"pearson", "spearman", "mse"}


def test_compute_metrics_rejects_logits_and_length_mismatch() -> None:
    with pytest.raises(ValueError, match="argmax"):
        compute_metrics("sst2", np.zeros((2, 2)), [0, 1])
    with pytest.raises(ValueError, match="3 predictions but 2 references"):
        compute_metrics("sst2", [0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="integer class ids"):
        compute_metrics("rte", [0.2, 0.7], [0, 1])
    with pytest.raises(ValueError, match="unknown GLUE task"):
        compute_metrics("sst5", [0], [0])


def test_main_metric_and_metric_names() -> None:
    assert main_metric("cola") == "matthews_correlation"
    assert main_metric("MRPC") == "f1"
    assert main_metric("qqp") == "f1"
    assert main_metric("stsb") == "pearson"
    assert main_metric("mnli-mm") == "accuracy"
    assert main_metric("classification") == "accuracy"
    assert main_metric("regression") == "pearson"
    assert metric_names("stsb") == ("pearson", "spearman")


def test_task_score_is_mean_of_glue_metrics() -> None:
    assert task_score("mrpc", {"f1": 0.9, "accuracy": 0.8}) == pytest.approx(0.85)
    assert task_score("regression", {"pearson": 0.5, "spearman": 0.7, "mse": 3.0}) == 0.5
    with pytest.raises(ValueError, match="lack spearman"):
        task_score("stsb", {"pearson": 0.5})


def test_glue_summary_averages_task_scores_and_names_missing_tasks() -> None:
    results = {
        "cola": {"matthews_correlation": 0.5},
        "MRPC": {"f1": 0.9, "accuracy": 0.8},
        "mnli": {"accuracy": 0.8},
        "mnli-mm": {"accuracy": 0.7},
        "STS-B": {"pearson": 0.88, "spearman": 0.84},
    }
    markdown, summary = glue_summary(results)
    # Scores: CoLA 0.5, MRPC 0.85, MNLI (0.8 + 0.7) / 2 = 0.75, STS-B 0.86 -> average 2.96 / 4.
    assert summary["average"] == pytest.approx(0.74)
    assert summary["task_scores"] == pytest.approx({"cola": 0.5, "mrpc": 0.85, "mnli": 0.75, "stsb": 0.86})
    assert summary["missing"] == ["SST-2", "QQP", "QNLI", "RTE", "WNLI"]
    assert "| MRPC | F1/acc | 90.0/80.0 |" in markdown
    assert "| STS-B | pearson/spearman | 88.0/84.0 |" in markdown
    assert "| MNLI-m | acc | 80.0 |" in markdown and "| MNLI-mm | acc | 70.0 |" in markdown
    assert "| **Average** | 4 tasks | **74.0** |" in markdown
    assert "Not in the average (no results): SST-2, QQP, QNLI, RTE, WNLI." in markdown
    json.dumps(summary)  # must be JSON-able


def test_glue_summary_with_matched_only_mnli_says_so() -> None:
    markdown, summary = glue_summary({"mnli-m": {"accuracy": 0.8}, "rte": {"accuracy": 0.6}})
    assert summary["average"] == pytest.approx(0.7)
    assert "MNLI's score uses MNLI-m only." in markdown


def test_glue_summary_rejects_duplicate_and_incomplete_results() -> None:
    with pytest.raises(ValueError, match="twice"):
        glue_summary({"sst2": {"accuracy": 0.9}, "SST-2": {"accuracy": 0.9}})
    with pytest.raises(ValueError, match="MRPC lack accuracy"):
        glue_summary({"mrpc": {"f1": 0.9}})
