"""Latency measurement: warm up, pin threads, interleave candidates, report percentiles.

Candidates run round-robin (one call of each, then the next round) so that machine drift — other
processes, frequency changes — hits all of them alike; compare numbers from one run only.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass
class Timing:
    """Latency of one candidate in milliseconds over ``n`` timed calls."""

    p50: float
    p90: float
    p99: float
    mean: float
    n: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        raise ValueError("no timings")
    k = (len(sorted_values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def time_interleaved(
    candidates: dict[str, Callable[[], Any]], warmup: int = 3, repeats: int = 20, max_seconds: float | None = None
) -> dict[str, Timing]:
    """Time each zero-argument callable ``repeats`` times, interleaved; stop early (at least 3
    rounds) once ``max_seconds`` have passed."""
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    start = time.perf_counter()
    for round_ in range(repeats):
        for name, fn in candidates.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
        if max_seconds is not None and round_ >= 2 and time.perf_counter() - start > max_seconds:
            break
    out = {}
    for name, values in times.items():
        values.sort()
        out[name] = Timing(
            p50=statistics.median(values),
            p90=_percentile(values, 0.9),
            p99=_percentile(values, 0.99),
            mean=statistics.fmean(values),
            n=len(values),
        )
    return out


def random_batch(vocab_size: int, batch_size: int, seq_len: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A full (unpadded) batch of random token ids, [CLS]-free: latency does not depend on ids."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, min(vocab_size, 30000), (batch_size, seq_len), generator=g)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
    }


def model_latency(
    models: dict[str, torch.nn.Module],
    batch_size: int,
    seq_len: int,
    threads: int | None = None,
    repeats: int = 20,
    max_seconds: float | None = 60.0,
) -> dict[str, Timing]:
    """Forward latency of each model on the same random batch, interleaved, under inference mode."""
    if threads is not None:
        torch.set_num_threads(threads)
    vocab = min(getattr(getattr(m, "config", None), "vocab_size", 30000) for m in models.values())
    batch = random_batch(vocab, batch_size, seq_len)

    def call(m: torch.nn.Module) -> Callable[[], Any]:
        def run() -> Any:
            with torch.inference_mode():
                return m(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

        return run

    return time_interleaved({name: call(m) for name, m in models.items()}, repeats=repeats, max_seconds=max_seconds)
