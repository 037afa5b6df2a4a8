"""Benchmark helpers: report shape and bookkeeping only, never timing values."""

from __future__ import annotations

import pytest

from squeezebert.bench import _percentile, model_latency, random_batch, time_interleaved
from squeezebert.config import preset
from squeezebert.model import SqueezeBert


def test_interleaved_timing_calls_each_candidate_in_rounds() -> None:
    calls: list[str] = []
    result = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, warmup=1, repeats=4)
    assert calls == ["a", "b"] * 5  # warm-up round, then 4 interleaved rounds
    assert set(result) == {"a", "b"} and all(t.n == 4 for t in result.values())
    t = result["a"]
    assert t.p50 <= t.p90 <= t.p99


def test_percentile_interpolates() -> None:
    assert _percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert _percentile([0.0, 10.0], 0.9) == pytest.approx(9.0)


def test_model_latency_reports_every_model() -> None:
    models = {"x": SqueezeBert(preset("tiny", num_labels=2)).eval(), "y": SqueezeBert(preset("tiny")).eval()}
    result = model_latency(models, batch_size=2, seq_len=8, threads=1, repeats=3)
    assert set(result) == {"x", "y"} and result["x"].n == 3


def test_random_batch_shape() -> None:
    b = random_batch(30522, 3, 7)
    assert b["input_ids"].shape == (3, 7) and int(b["attention_mask"].sum()) == 21
