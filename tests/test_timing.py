"""Timing harness and probes: call order, percentiles, batches, energy, environment; never timing values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from squeezebert.config import preset
from squeezebert.model import SqueezeBert
from squeezebert.timing import (
    EnergyMeter,
    busy_warning,
    model_latency,
    percentile,
    random_batch,
    time_interleaved,
)


def test_importing_timing_does_not_import_torch() -> None:
    # the load-test client and the scripts of the ONNX / OpenVINO paths time things without torch
    code = "import sys, squeezebert.timing; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_interleaved_timing_calls_each_candidate_in_rounds() -> None:
    calls: list[str] = []
    result = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, warmup=1, repeats=4)
    assert calls == ["a", "b"] * 5  # warm-up round, then 4 interleaved rounds
    assert set(result) == {"a", "b"} and all(t.n == 4 for t in result.values())
    t = result["a"]
    assert t.p50 <= t.p90 <= t.p99


def test_shuffled_rounds_run_every_candidate_once_per_round() -> None:
    import random

    calls: list[str] = []
    names = "abcd"
    fns = {n: (lambda n=n: calls.append(n)) for n in names}
    result = time_interleaved(fns, warmup=1, repeats=6, shuffle=random.Random(0))
    rounds = [calls[i : i + 4] for i in range(0, len(calls), 4)]
    assert rounds[0] == list(names)  # the warm-up keeps the given order
    assert all(sorted(r) == list(names) for r in rounds[1:]) and len(rounds) == 7
    assert len({tuple(r) for r in rounds[1:]}) > 1  # the order changes between rounds
    assert all(t.n == 6 for t in result.values())


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([0.0, 10.0], 90) == pytest.approx(9.0)
    assert percentile([10.0, 0.0], 90) == pytest.approx(9.0)  # any order


def test_percentile_of_nothing_or_out_of_range_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="0..100"):
        percentile([1.0], 100.5)


def test_model_latency_reports_every_model() -> None:
    models = {"x": SqueezeBert(preset("tiny", num_labels=2)).eval(), "y": SqueezeBert(preset("tiny")).eval()}
    result = model_latency(models, batch_size=2, seq_len=8, threads=1, repeats=3)
    assert set(result) == {"x", "y"} and result["x"].n == 3


def test_random_batch_shape() -> None:
    b = random_batch(30522, 3, 7)
    assert b["input_ids"].shape == (3, 7) and int(b["attention_mask"].sum()) == 21


def test_random_batch_small_vocabulary() -> None:
    # a vocabulary under 1000 tokens (test models) still gets ids inside it
    b = random_batch(100, 4, 16)
    assert int(b["input_ids"].max()) < 100 and int(b["input_ids"].min()) >= 5


def test_rapl_counters_are_read_per_package_and_wrap(tmp_path: Path) -> None:
    for name in ("intel-rapl:0", "intel-rapl:0:0"):  # a package and its sub-domain (not counted twice)
        (tmp_path / name).mkdir()
        (tmp_path / name / "energy_uj").write_text("1000\n")
        (tmp_path / name / "max_energy_range_uj").write_text("5000000\n")
    meter = EnergyMeter(rapl_glob=str(tmp_path / "intel-rapl:*" / "energy_uj"))
    assert meter.source == "rapl" and len(meter.domains) == 1 and meter.read() == [1000]
    assert meter.joules([4_000_000], [1_000_000], cpu_seconds=9.0) == pytest.approx(2.0)  # wrapped at 5 J


def test_busy_machine_is_flagged() -> None:
    env = {"load_average": [3.5, 3.0, 2.0], "load_average_end": [1.0, 1.0, 1.0], "cpus_available": 2}
    assert "busy" in busy_warning(env)[0]
    assert busy_warning(env | {"load_average": [0.5, 0.5, 0.5]}) == []
