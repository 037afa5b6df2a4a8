"""Timing and measurement, shared by the benchmark, ``squeeze``'s latency table, the load-test
client and the scripts: the interleaved timing harness, percentiles, memory and energy probes,
and a description of the machine the numbers came from.

Interleaved: candidates run round-robin (one call of each, then the next round) so that machine
drift — other processes, frequency changes — hits all of them alike; with ``shuffle``, each round
in a fresh order, so that no candidate always runs right after the same neighbour (whose worker
threads may still be winding down). Numbers from different runs are not comparable; ratios within
one run are.

Percentiles follow one convention everywhere: ``q`` in 0..100, linear interpolation between the
closest ranks (numpy's default), and a ValueError on no values.

Importing this module does not import torch: the load-test client and the scripts of the ONNX
and OpenVINO paths use it without torch. :func:`random_batch` and :func:`model_latency` build and
run torch models, and import torch when called.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import gc
import glob
import logging
import os
import platform
import random
import resource
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from squeezebert.runtime import with_threads

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


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

    @classmethod
    def of(cls, values_ms: Sequence[float]) -> Timing:
        """The percentiles and mean of ``values_ms`` (at least one value)."""
        values = sorted(values_ms)
        return cls(
            p50=statistics.median(values),
            p90=percentile(values, 90),
            p99=percentile(values, 99),
            mean=statistics.fmean(values),
            n=len(values),
        )


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (``q`` in 0..100) of ``values`` (any order), interpolated linearly
    between the closest ranks (numpy's default). Raises ValueError on no values: an empty
    percentile is the caller's to report (the load test reports NaN when nothing completed)."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in 0..100, got {q}")
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --------------------------------------------------------------------------- memory
def rss_bytes() -> int:
    """Current resident set of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current resident set (Linux >= 4.0); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int | None:
    """``VmHWM``: peak resident set since the last reset (or process start)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def process_peak_rss_bytes() -> int:
    """Peak resident set of the whole process since it started (``getrusage``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def trim() -> None:
    """Collect garbage and hand freed heap back to the OS, so that RSS deltas are not hidden by
    memory glibc keeps for reuse."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


# --------------------------------------------------------------------------- energy
RAPL_GLOB = "/sys/class/powercap/intel-rapl:*/energy_uj"


class EnergyMeter:
    """Joules per call: RAPL package counters when readable, else CPU time x watts per core.

    ``source`` is ``"rapl"`` or ``"estimate"``; ``note`` says what the number means.
    """

    def __init__(self, watts_per_core: float = 10.0, rapl_glob: str = RAPL_GLOB) -> None:
        if watts_per_core <= 0:
            raise ValueError(f"watts_per_core must be positive, got {watts_per_core}")
        self.watts_per_core = watts_per_core
        self.domains: list[tuple[str, int]] = []
        for path in sorted(glob.glob(rapl_glob)):
            if Path(path).parent.name.count(":") != 1:  # intel-rapl:0:1 is a sub-domain of package 0
                continue
            try:
                int(Path(path).read_text())
                max_range = int((Path(path).parent / "max_energy_range_uj").read_text())
            except (OSError, ValueError):
                continue  # often root-only since CVE-2020-8694
            self.domains.append((path, max_range))
        self.source = "rapl" if self.domains else "estimate"
        if self.domains:
            self.note = (
                f"RAPL package energy ({len(self.domains)} package(s)); counts the whole package, "
                "so other processes on the machine are included"
            )
        else:
            self.note = (
                f"estimate: process CPU time x {watts_per_core:g} W per busy core (RAPL counters "
                f"{rapl_glob} not readable)"
            )

    def read(self) -> list[int] | None:
        """Raw RAPL counters (µJ), or None for the estimate."""
        if not self.domains:
            return None
        return [int(Path(p).read_text()) for p, _ in self.domains]

    def joules(self, before: list[int] | None, after: list[int] | None, cpu_seconds: float) -> float:
        if before is None or after is None:
            return cpu_seconds * self.watts_per_core
        total = 0
        for (_, max_range), b, a in zip(self.domains, before, after):
            total += a - b if a >= b else a + max_range - b  # the counter wrapped
        return total / 1e6


# --------------------------------------------------------------------------- measurement
@dataclass
class Samples:
    """What :func:`measure` records for one candidate: per timed call its wall time and process
    CPU time (and energy, with a meter); the peak resident set of its first call (``track_memory``)."""

    times_ms: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    energy_j: list[float] = field(default_factory=list)
    run_peak_bytes: int | None = None


# Pause before each timed call. ONNX Runtime's worker threads busy-wait for a few ms after a call
# (its default, which backends.OnnxForward keeps for batch work), and so do torch's OpenMP threads:
# without a pause they steal the cores from the next candidate. Measured here: a small torch
# matmul right after an ONNX Runtime call took 5.4x its time, 1.2x after 5 ms.
SETTLE_S = 0.02


def measure(
    candidates: Mapping[str, Callable[[], Any]],
    warmup: int,
    repeats: int,
    max_seconds: float | None = None,
    meter: EnergyMeter | None = None,
    track_memory: bool = False,
    shuffle: random.Random | None = None,
    settle_s: float = SETTLE_S,
) -> dict[str, Samples]:
    """Warm up, then time each callable ``repeats`` times round-robin; stop early (after at least
    3 rounds) once ``max_seconds`` have passed. With ``track_memory``, each candidate's first call
    records its peak resident set above the one before it (needs ``warmup >= 1``). With
    ``shuffle``, each timed round runs the candidates in a fresh order drawn from it (no candidate
    always follows the same neighbour). Each timed call starts ``settle_s`` after the previous one
    ended (not timed; see ``SETTLE_S``)."""
    samples = {name: Samples() for name in candidates}
    for round_ in range(warmup):
        for name, fn in candidates.items():
            if track_memory and round_ == 0:
                trim()
                before, resettable = rss_bytes(), reset_peak_rss()
                fn()
                peak = peak_rss_bytes()
                if resettable and peak is not None:
                    samples[name].run_peak_bytes = max(0, peak - before)
            else:
                fn()
    start = time.perf_counter()
    order = list(candidates)
    for round_ in range(repeats):
        if shuffle is not None:
            shuffle.shuffle(order)
        for name in order:
            fn = candidates[name]
            if settle_s > 0:
                time.sleep(settle_s)
            e0 = meter.read() if meter else None
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            t1, c1 = time.perf_counter(), time.process_time()
            e1 = meter.read() if meter else None
            s = samples[name]
            s.times_ms.append((t1 - t0) * 1e3)
            s.cpu_s.append(c1 - c0)
            if meter:
                s.energy_j.append(meter.joules(e0, e1, c1 - c0))
        if max_seconds is not None and round_ >= 2 and time.perf_counter() - start > max_seconds:
            break
    return samples


def time_interleaved(
    candidates: dict[str, Callable[[], Any]],
    warmup: int = 3,
    repeats: int = 20,
    max_seconds: float | None = None,
    shuffle: random.Random | None = None,
) -> dict[str, Timing]:
    """Time each zero-argument callable ``repeats`` times, interleaved (in a fresh order each
    round when ``shuffle`` is given); stop early (at least 3 rounds) once ``max_seconds`` have
    passed."""
    samples = measure(candidates, warmup, repeats, max_seconds, shuffle=shuffle)
    return {name: Timing.of(s.times_ms) for name, s in samples.items()}


# --------------------------------------------------------------------------- torch models
def random_batch(vocab_size: int, batch_size: int, seq_len: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A full (unpadded) batch of random token ids, [CLS]-free: latency does not depend on ids."""
    import torch

    g = torch.Generator().manual_seed(seed)
    # skip the special tokens at the start of BERT-style vocabularies when there is room to
    low = 1000 if vocab_size > 2000 else min(vocab_size - 1, 5)
    ids = torch.randint(low, min(vocab_size, 30000), (batch_size, seq_len), generator=g)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
    }


@with_threads()
def model_latency(
    models: dict[str, torch.nn.Module],
    batch_size: int,
    seq_len: int,
    threads: int | None = None,
    repeats: int = 20,
    max_seconds: float | None = 60.0,
) -> dict[str, Timing]:
    """Forward latency of each model on the same random batch, interleaved, under inference mode."""
    import torch

    vocab = min(getattr(getattr(m, "config", None), "vocab_size", 30000) for m in models.values())
    batch = random_batch(vocab, batch_size, seq_len)

    def call(m: torch.nn.Module) -> Callable[[], Any]:
        def run() -> Any:
            with torch.inference_mode():
                return m(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

        return run

    return time_interleaved({name: call(m) for name, m in models.items()}, repeats=repeats, max_seconds=max_seconds)


# --------------------------------------------------------------------------- environment
def environment(threads: int | None = None) -> dict[str, Any]:
    """What a reader needs to judge the numbers: CPU, cores, threads, library versions, date, load."""
    cpu, flags = platform.processor() or "unknown", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and cpu in ("unknown", platform.processor()):
                cpu = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    versions = {}
    packages = (
        "torch",
        "onnxruntime",
        "onnx",
        "openvino",
        "nncf",
        "ctranslate2",
        "transformers",
        "numpy",
        "tokenizers",
    )
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = os.cpu_count()
    return {
        "cpu": cpu,
        "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8"}),
        "logical_cpus": os.cpu_count(),
        "cpus_available": affinity,
        "threads": threads,
        "torch_threads": _torch_threads(),
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _torch_threads() -> int | None:
    """torch's intra-op thread count, or None where torch is not installed (the ONNX and
    OpenVINO paths run without it)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.get_num_threads()


def busy_warning(env: Mapping[str, Any]) -> list[str]:
    """A warning when other work kept the CPUs busy (1-minute load average at or above the
    number of available CPUs, at start or end): multi-threaded timings then suffer most, because
    a thread that waits at a barrier for a preempted peer waits a whole scheduler slice."""
    loads = [env["load_average"][0]] + ([env["load_average_end"][0]] if env.get("load_average_end") else [])
    cpus = env.get("cpus_available") or 1
    if max(loads) < cpus:
        return []
    return [
        f"the machine was busy (load average {max(loads):.1f} on {cpus} CPUs): timings are inflated and noisy, "
        "most of all for multi-threaded runs; compare ratios within this run only (or use --threads 1)"
    ]
