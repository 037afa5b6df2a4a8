"""The load-test client of ``squeezebert serve`` (:func:`loadtest`, ``squeezebert loadtest``).

A bounded, loopback-only load generator: ``concurrency`` clients send ``POST /v1/classify`` for
at most a minute, closed loop (each client sends its next request when its last one is answered)
or open loop at a fixed ``rate``; the report gives requests/s, latency percentiles and the
responses by status code. Its HTTP client is a few lines of asyncio streams, not httpx: the
load generator shares the CPU with the server it measures (see :class:`_Connection`).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from squeezebert.serve import CLASSIFY_PATH, is_loopback
from squeezebert.timing import percentile

MAX_LOAD_SECONDS = 60.0
MAX_LOAD_CONCURRENCY = 256
MAX_LOAD_RATE = 2000.0
_SAMPLE_TEXTS = (
    "a gripping, beautifully acted film",
    "the plot was thin and the jokes fell flat",
    "not bad at all",
    "an utterly forgettable sequel that overstays its welcome by at least half an hour",
    "i loved every minute of it",
    "the soundtrack is the only thing worth remembering, and even that is derivative of better films",
    "meh",
    "a warm, funny and surprisingly moving story about growing up in a small town",
)


@dataclass
class LoadReport:
    """What :func:`loadtest` measured. Latencies in milliseconds, over completed requests."""

    url: str
    concurrency: int
    duration_s: float
    texts_per_request: int
    rate: float | None
    requests: int
    requests_per_s: float
    latency_ms: dict[str, float]
    status_counts: dict[str, int]
    errors: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lat = self.latency_ms
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.status_counts.items())) or "none"
        load = f"concurrency {self.concurrency}"
        if self.rate is not None:
            load = f"a fixed {self.rate:g} requests/s (at most {self.concurrency} in flight)"
        return (
            f"{self.url}: {self.requests} requests in {self.duration_s:.1f} s at {load} "
            f"({self.texts_per_request} text(s) each)\n"
            f"  {self.requests_per_s:.1f} requests/s\n"
            f"  latency ms: p50 {lat['p50']:.1f}  p90 {lat['p90']:.1f}  p99 {lat['p99']:.1f}  "
            f"mean {lat['mean']:.1f}  max {lat['max']:.1f}\n"
            f"  status codes: {statuses}; errors (non-200): {self.errors}"
        )


def _classify_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL; give e.g. http://127.0.0.1:8080")
    if not is_loopback(parts.hostname):
        raise ValueError(
            f"{url}: the load test only targets this machine (localhost, 127.0.0.0/8, ::1), not {parts.hostname!r}"
        )
    return url.rstrip("/") + CLASSIFY_PATH if parts.path in ("", "/") else url


def read_texts(path: str | os.PathLike[str]) -> list[str]:
    """The load test's request texts: the non-blank lines of a text file, stripped, or the
    ``text`` column of a ``.csv``, ``.tsv`` or ``.jsonl`` file (any other extension: plain text),
    read by :func:`squeezebert.tables.read_texts` with its errors (an empty file is one)."""
    from squeezebert import tables

    examples = tables.read_texts(path, what="a text file (one request text per line)", plain_if_unknown=True)
    return [e.text.strip() for e in examples]


def loadtest(
    url: str,
    concurrency: int = 8,
    duration_s: float = 10.0,
    *,
    texts: Sequence[str] | None = None,
    texts_per_request: int = 1,
    rate: float | None = None,
    api_key: str | None = None,
    request_timeout_s: float = 30.0,
) -> LoadReport:
    """Send ``POST /v1/classify`` from ``concurrency`` concurrent clients for ``duration_s``.

    ``url``: the server's base URL (``http://127.0.0.1:8080``) or the classify URL; only
    loopback hosts are accepted. Bounded: ``duration_s`` <= 60, ``concurrency`` <= 256,
    ``rate`` <= 2000. ``texts`` are sent round-robin, ``texts_per_request`` per request (default:
    a few built-in review-like sentences). Requests in flight at the deadline are completed and
    counted.

    Closed loop by default: each client sends its next request when its last one is answered.
    With ``rate``, open loop: request *i* is due at ``i / rate`` seconds, whatever the server's
    speed, with at most ``concurrency`` in flight; its latency counts from when it was due, so
    a server that falls behind shows it in the percentiles instead of slowing the load down.
    """
    target = _classify_url(url)
    if not 1 <= concurrency <= MAX_LOAD_CONCURRENCY:
        raise ValueError(f"concurrency must be in 1..{MAX_LOAD_CONCURRENCY}, got {concurrency}")
    if not 0 < duration_s <= MAX_LOAD_SECONDS:
        raise ValueError(f"duration must be in (0, {MAX_LOAD_SECONDS:g}] seconds, got {duration_s}")
    if texts_per_request < 1:
        raise ValueError(f"texts_per_request must be >= 1, got {texts_per_request}")
    if rate is not None and not (math.isfinite(rate) and 0 < rate <= MAX_LOAD_RATE):
        raise ValueError(f"rate must be in (0, {MAX_LOAD_RATE:g}] requests/s, got {rate}")
    pool = list(texts) if texts else list(_SAMPLE_TEXTS)
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    latencies, statuses, elapsed = asyncio.run(
        _load(target, concurrency, duration_s, pool, texts_per_request, headers, request_timeout_s, rate)
    )
    done = len(latencies)
    ms = sorted(x * 1000 for x in latencies)
    nothing = math.nan  # no request completed: no latency to report
    return LoadReport(
        url=target,
        concurrency=concurrency,
        duration_s=elapsed,
        texts_per_request=texts_per_request,
        rate=rate,
        requests=sum(statuses.values()),
        requests_per_s=done / elapsed if elapsed > 0 else 0.0,
        latency_ms={
            "p50": percentile(ms, 50) if ms else nothing,
            "p90": percentile(ms, 90) if ms else nothing,
            "p99": percentile(ms, 99) if ms else nothing,
            "mean": sum(ms) / done if done else nothing,
            "max": ms[-1] if ms else nothing,
        },
        status_counts=dict(statuses),
        errors=sum(n for status, n in statuses.items() if status != "200"),
    )


class _Connection:
    """One keep-alive HTTP/1.1 connection for the load test: POST a JSON body, read the status.

    Just enough HTTP for ``squeezebert serve`` (Content-Length or chunked bodies, ``Connection:
    close``), written out because the load generator shares the CPU with the server it measures:
    httpx spent 2 to 5 ms of CPU per request here (measured, docs/RESULTS.md), about as much as
    the server's own work, which starved the server of requests to batch.
    """

    def __init__(self, url: str, headers: dict[str, str], timeout_s: float) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = parts.scheme == "https"
        self.timeout_s = timeout_s
        host = f"[{self.host}]" if ":" in self.host else self.host
        lines = [
            f"POST {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
            f"host: {host}:{self.port}",
            "content-type: application/json",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        self.head = ("\r\n".join(lines) + "\r\ncontent-length: ").encode("latin-1")
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> int:
        """Send one request and read its whole response; returns the status code."""
        try:
            return await asyncio.wait_for(self._post(body), self.timeout_s)
        except BaseException:
            self.close()  # a half-read response leaves the connection unusable
            raise

    async def _post(self, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, ssl=self.ssl or None)
        assert self.reader is not None
        self.writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        status_line = await self.reader.readline()
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ConnectionError(f"not an HTTP response: {status_line[:60]!r}")
        status = int(parts[1])
        length, chunked, close = 0, False, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = b"close" in value.lower()
        if chunked:
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)  # the chunk and its CRLF
                if size == 0:
                    break
        else:
            await self.reader.readexactly(length)
        if close:
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _load(
    url: str,
    concurrency: int,
    duration_s: float,
    texts: list[str],
    per_request: int,
    headers: dict[str, str],
    timeout_s: float,
    rate: float | None = None,
) -> tuple[list[float], collections.Counter[str], float]:
    latencies: list[float] = []
    statuses: collections.Counter[str] = collections.Counter()
    counter = itertools.count()

    async def send(connection: _Connection, i: int, due: float) -> None:
        """Request number ``i``; its latency counts from ``due``."""
        body = json.dumps({"texts": [texts[(i * per_request + k) % len(texts)] for k in range(per_request)]}).encode()
        try:
            status = await connection.post(body)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            statuses[type(e).__name__] += 1  # connection refused, timeout, cut-off response, ...
            await asyncio.sleep(0.01)  # a dead server must not become a busy loop
            return
        latencies.append(time.perf_counter() - due)
        statuses[str(status)] += 1

    async def worker(connection: _Connection) -> None:
        while time.perf_counter() < deadline:
            await send(connection, next(counter), time.perf_counter())

    async def scheduler(rate: float) -> None:
        idle: asyncio.Queue[_Connection] = asyncio.Queue()
        for connection in connections:
            idle.put_nowait(connection)

        async def send_and_release(connection: _Connection, i: int, due: float) -> None:
            try:
                await send(connection, i, due)
            finally:
                idle.put_nowait(connection)

        tasks: set[asyncio.Task[None]] = set()
        for i in itertools.count():
            due = start + i / rate
            if due >= deadline:
                break
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            connection = await idle.get()  # `concurrency` in flight: the next one waits (and is late)
            task = asyncio.create_task(send_and_release(connection, i, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)

    connections = [_Connection(url, headers, timeout_s) for _ in range(concurrency)]
    start = time.perf_counter()
    deadline = start + duration_s
    try:
        if rate is None:
            await asyncio.gather(*(worker(c) for c in connections))
        else:
            await scheduler(rate)
    finally:
        for connection in connections:
            connection.close()
    elapsed = time.perf_counter() - start
    return latencies, statuses, elapsed
