"""HTTP classification service: :func:`create_app` builds a FastAPI app around one classifier.

Endpoints::

    POST /v1/classify   {"texts": [...]} or {"pairs": [[a, b], ...]} -> {"predictions": [...]}
    GET  /v1/model      labels, backend, precision and the request limits
    GET  /healthz       200 while the process is up
    GET  /readyz        200 once the model has been warmed up, 503 before and while draining
    GET  /metrics       Prometheus text format
    GET  /openapi.json  the OpenAPI schema
    GET  /docs          Swagger UI, only with ``ServeConfig(docs=True)`` (``--docs``): its page
                        loads its JavaScript and CSS from a public CDN

Dynamic micro-batching (:class:`MicroBatcher`): requests wait in one queue; a batcher task takes
the oldest one, then for at most ``max_wait_ms`` gathers more until the batch holds
``max_batch_size`` texts, and runs ``Classifier.predict`` on the merged inputs in a single
worker thread, off the event loop. While the model runs new requests queue up, so under load
batches fill without waiting; that is why ``max_wait_ms`` defaults to 0 (an idle server answers
a lone request at once instead of holding it back for company). ``predict`` sorts a model call's
texts by length and runs them in forward passes of ``forward_batch_size`` (16): on CPU, passes of
8 to 16 short texts cost less per text than one pass of 32 (less padding, activations that stay
in cache; measured in docs/RESULTS.md). Each request gets exactly its own slice of the results
back, in order. A request is never split: one with more texts than ``max_batch_size`` runs alone.

Limits are part of the contract: the body size (413), the texts per request and characters per
text (422 naming the limit and the received value), the queue length (503 with ``Retry-After``),
a per-request deadline (504) that also bounds receiving the request (an incomplete body: 408; no
complete head: the connection is closed) and, under :func:`run`, the open connections (503).
With ``api_key`` set, ``/v1/*`` and ``/metrics`` need ``Authorization: Bearer KEY`` (compared in
constant time); the probes stay open for orchestrators.
:func:`resolve_api_key` reads the key from a flag, a key file or the environment and refuses an
empty one (it must never mean "no authentication").
No endpoint loads or runs anything a client names: the model is fixed when the app is built.

:func:`run` loads a model and serves it with uvicorn, on the loopback interface by default. On
SIGTERM it stops accepting connections, answers 503 to requests whose body is still arriving,
lets in-flight requests finish, drains the batcher and returns (exit code 0).

:func:`loadtest` is the matching client: a bounded, loopback-only load generator that reports
requests/s, latency percentiles and errors by status code.

FastAPI, uvicorn, prometheus_client and httpx are the ``serve`` extra, imported where used.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at
# runtime, and the request/response models are built inside create_app (the extra is optional).

import asyncio
import collections
import hmac
import ipaddress
import itertools
import json
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from squeezebert.files import require_file
from squeezebert.infer import Prediction, TextInput
from squeezebert.tables import invalid_text

log = logging.getLogger(__name__)

API_KEY_ENV = "SQUEEZEBERT_API_KEY"
CLASSIFY_PATH = "/v1/classify"
# Paths that get their own label in the request metrics; anything else counts as "other" (a
# scanner probing random paths must not create unbounded label values).
_METRIC_PATHS = ("/v1/classify", "/v1/model", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def _require(what: str) -> None:
    """Import the serve extra's modules up front, naming the extra when one is missing."""
    try:
        if what in ("app", "run"):
            import fastapi  # noqa: F401
            import prometheus_client  # noqa: F401
        if what == "run":
            import uvicorn  # noqa: F401
    except ImportError as e:
        raise ImportError(f"{what} needs {e.name}: pip install 'squeezebert[serve]'") from None


class SupportsPredict(Protocol):
    """What the service needs from a classifier: :meth:`squeezebert.infer.Classifier.predict`."""

    def predict(self, inputs: list[TextInput], batch_size: int = 32) -> list[Prediction]: ...


@dataclass
class ServeConfig:
    """Batching, limits and security of one app. Defaults match ``squeezebert serve``.

    ``batching=False`` (or ``max_batch_size=1``) runs every request as its own model call.
    ``max_batch_size`` bounds the texts merged into one model call, ``forward_batch_size`` the
    texts of one forward pass inside it.
    ``max_queue`` bounds the requests waiting for the model (not counting the batch it runs).
    ``timeout_s`` is each request's deadline from arrival to answer; it also bounds the time to
    receive a request's head and body (past it: 408, or the connection closed).
    ``max_connections`` and ``keep_alive_s`` apply to :func:`run`: open connections past the
    limit get 503, and an idle keep-alive connection is closed after ``keep_alive_s``.
    ``docs`` serves Swagger UI at ``/docs`` and ReDoc at ``/redoc``. Off by default: FastAPI's pages
    load their JavaScript and CSS from a public CDN, so opening them makes the browser fetch code
    from a third party (and they stay blank offline). ``/openapi.json`` is always served; any
    OpenAPI viewer can read it.
    """

    max_batch_size: int = 32
    max_wait_ms: float = 0.0
    forward_batch_size: int = 16
    batching: bool = True
    max_texts: int = 64
    max_chars: int = 2000
    max_body_bytes: int = 1_000_000
    max_queue: int = 256
    timeout_s: float = 10.0
    max_connections: int = 512
    keep_alive_s: float = 5.0
    api_key: str | None = field(default=None, repr=False)
    warmup: bool = True
    docs: bool = False

    def __post_init__(self) -> None:
        for name in (
            "max_batch_size", "forward_batch_size", "max_texts", "max_chars", "max_body_bytes", "max_queue",
            "max_connections",
        ):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (math.isfinite(self.max_wait_ms) and self.max_wait_ms >= 0):
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms!r}")
        for name in ("timeout_s", "keep_alive_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if self.api_key is not None:
            _check_api_key(self.api_key, "api_key")


def _check_api_key(key: str, where: str) -> None:
    # An empty key must never mean "no key": that would switch authentication off silently.
    if not key.strip():
        raise ValueError(f"{where} is empty; pass a real key, or give none to serve without authentication")
    if not all(" " < c < "\x7f" for c in key.strip()):
        raise ValueError(f"{where}: the key must be printable ASCII without spaces (it travels in an HTTP header)")


def resolve_api_key(
    flag: str | None = None,
    file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The API key given by ``--api-key`` (``flag``), ``--api-key-file`` (``file``: its first line)
    or ``$SQUEEZEBERT_API_KEY`` (in ``environ``, default ``os.environ``), in that order; None when
    none of them is given.

    The key file and the variable keep the key out of ``ps``; a flag is visible to every user of
    the machine. A key that is given but empty (``--api-key ''``, an empty file, the variable set to
    ``""``) raises ValueError rather than turning authentication off.
    """
    environ = os.environ if environ is None else environ
    if flag is not None and file is not None:
        raise ValueError("give --api-key or --api-key-file, not both")
    if flag is not None:
        key, where = flag, "--api-key"
    elif file is not None:
        path = Path(file)
        if path.is_dir():
            raise IsADirectoryError(f"{path}: is a directory; --api-key-file takes a file holding the key")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such API key file")
        try:
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not utf-8 text; --api-key-file takes a file holding the key") from None
        if len(lines) > 1:
            raise ValueError(f"{path}: holds {len(lines)} lines; --api-key-file takes a file holding one key")
        key, where = (lines[0] if lines else ""), f"--api-key-file {path}"
    elif API_KEY_ENV in environ:
        key, where = environ[API_KEY_ENV], f"${API_KEY_ENV}"
    else:
        return None
    _check_api_key(key, where)
    return key.strip()


# --------------------------------------------------------------------------- micro-batching
class QueueFull(RuntimeError):
    """The batcher's queue holds ``max_queue`` requests already."""


@dataclass
class _Item:
    inputs: list[TextInput]
    future: "asyncio.Future[list[Prediction]]"
    pairs: bool


class MicroBatcher:
    """Merge concurrent requests into model batches run by one worker thread.

    ``predict(inputs)`` is called in the worker thread with the merged inputs of one or more
    requests (all texts or all pairs; the two kinds are never mixed in one call) and must return
    one prediction per input, in order. ``on_batch(size, seconds)`` and ``on_queue(depth)`` feed
    the metrics. Use from one event loop: :meth:`start`, :meth:`submit` per request,
    :meth:`close` at shutdown (it finishes what is queued first).
    """

    def __init__(
        self,
        predict: Callable[[list[TextInput]], list[Prediction]],
        max_batch_size: int = 32,
        max_wait_s: float = 0.005,
        max_queue: int = 256,
        batching: bool = True,
        on_batch: Callable[[int, float], None] | None = None,
        on_queue: Callable[[int], None] | None = None,
    ) -> None:
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.batching = batching and max_batch_size > 1
        self._on_batch = on_batch
        self._on_queue = on_queue
        self._pending: collections.deque[_Item] = collections.deque()
        # One thread: one model call at a time keeps torch's intra-op threads from fighting each
        # other. (The tokenizer is thread-safe, so this is a choice, not a constraint.)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="squeezebert-model")
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def depth(self) -> int:
        """Requests waiting for the model."""
        return len(self._pending)

    async def start(self) -> None:
        """Start the batcher task on the running loop."""
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="squeezebert-batcher")

    def submit(self, inputs: list[TextInput]) -> "asyncio.Future[list[Prediction]]":
        """Queue one request's inputs; the future resolves to its predictions in order.

        Raises :class:`QueueFull` when ``max_queue`` requests are waiting, and RuntimeError once
        :meth:`close` has begun.
        """
        if not inputs:
            raise ValueError("submit at least one input")
        if self._closing or self._arrived is None:
            raise RuntimeError("the batcher is not running")
        if len(self._pending) >= self.max_queue:
            raise QueueFull(f"{len(self._pending)} requests are waiting (max_queue={self.max_queue})")
        future: asyncio.Future[list[Prediction]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Item(inputs, future, isinstance(inputs[0], (tuple, list))))
        self._queue_changed()
        self._arrived.set()
        return future

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in the model thread (warm-up uses this), between batches."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        """Finish the queued requests, then stop the task and the worker thread."""
        self._closing = True
        if self._arrived is not None:
            self._arrived.set()
        if self._task is not None:
            await self._task
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)

    # ------------------------------------------------------------------ internals
    def _queue_changed(self) -> None:
        if self._on_queue is not None:
            self._on_queue(len(self._pending))

    async def _next(self) -> _Item | None:
        assert self._arrived is not None
        while True:
            while self._pending:
                item = self._pending.popleft()
                self._queue_changed()
                if not item.future.done():  # done = timed out (cancelled) while waiting
                    return item
            if self._closing:
                return None
            self._arrived.clear()
            await self._arrived.wait()

    def _take_more(self, batch: list[_Item], size: int) -> tuple[int, bool]:
        """Move queued requests of the batch's kind into it while they fit, oldest first.
        Returns the new size and whether a request that does not fit is waiting (stop then)."""
        kind = batch[0].pairs
        kept: list[_Item] = []
        blocked = False
        while self._pending:
            item = self._pending.popleft()
            if item.future.done():
                continue
            if blocked or item.pairs != kind:
                kept.append(item)
            elif size + len(item.inputs) <= self.max_batch_size:
                batch.append(item)
                size += len(item.inputs)
            else:
                kept.append(item)
                blocked = True  # first in line and too big: it opens the next batch
        self._pending.extendleft(reversed(kept))
        self._queue_changed()
        return size, blocked

    async def _gather(self, first: _Item) -> list[_Item]:
        batch, size = [first], len(first.inputs)
        if not self.batching or size >= self.max_batch_size:
            return batch
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while True:
            size, blocked = self._take_more(batch, size)
            remaining = deadline - loop.time()
            if blocked or size >= self.max_batch_size or self._closing or remaining <= 0:
                return batch
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                size, _ = self._take_more(batch, size)
                return batch

    async def _run(self) -> None:
        while True:
            first = await self._next()
            if first is None:
                return
            batch = await self._gather(first)
            inputs = [x for item in batch for x in item.inputs]
            try:
                predictions = await self._call(inputs)
            except Exception as e:
                if len(batch) == 1:
                    log.exception("model call on %d inputs failed", len(inputs))
                    if not batch[0].future.done():
                        batch[0].future.set_exception(e)
                    continue
                # One request's input may be what broke the call: run each request on its own, so
                # that only the one that fails again gets the error.
                log.warning("model call on %d requests failed (%s: %s); running them one by one", len(batch),
                            type(e).__name__, e)  # fmt: skip
                for item in batch:
                    if item.future.done():  # timed out meanwhile
                        continue
                    try:
                        result = await self._call(item.inputs)
                    except Exception as e:
                        log.exception("model call on %d inputs failed", len(item.inputs))
                        if not item.future.done():
                            item.future.set_exception(e)
                    else:
                        if not item.future.done():
                            item.future.set_result(result)
                continue
            offset = 0
            for item in batch:
                n = len(item.inputs)
                if not item.future.done():  # a request that timed out meanwhile gets nothing
                    item.future.set_result(predictions[offset : offset + n])
                offset += n

    async def _call(self, inputs: list[TextInput]) -> list[Prediction]:
        """One model call in the worker thread, checked and recorded in the metrics."""
        start = time.perf_counter()
        predictions = await asyncio.get_running_loop().run_in_executor(self._executor, self._predict, inputs)
        if len(predictions) != len(inputs):
            raise RuntimeError(f"the model returned {len(predictions)} results for {len(inputs)} inputs")
        if self._on_batch is not None:
            self._on_batch(len(inputs), time.perf_counter() - start)
        return predictions


# --------------------------------------------------------------------------- metrics
class _Metrics:
    """This app's Prometheus collectors, in their own registry (apps in one process don't clash)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "squeezebert_requests", "HTTP requests by path and status code", ["path", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "squeezebert_request_duration_seconds",
            "HTTP request latency, arrival to last byte",
            ["path"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "squeezebert_batch_size", "Texts per model call", buckets=_BATCH_BUCKETS, registry=self.registry
        )
        self.model_latency = Histogram(
            "squeezebert_model_duration_seconds",
            "Model call latency (tokenize + forward + postprocess)",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge("squeezebert_queue_depth", "Requests waiting for the model", registry=self.registry)
        self.ready = Gauge("squeezebert_ready", "1 once the model is warmed up and serving", registry=self.registry)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.model_latency.observe(seconds)


class _Gate:
    """Outermost ASGI layer: bounds the request body and records every response in the metrics.

    The body is read here, up to ``max_body_bytes``, before the app sees it: a declared
    Content-Length over the limit is refused without reading, a chunked body as soon as it
    passes the limit, each with 413. A body not received within ``timeout_s`` of the request's
    head (a client that announces more than it sends, or trickles it) gets 408, and one still
    arriving when the server starts to drain gets 503: a stuck client never holds a connection,
    nor a SIGTERM, for longer than that.
    """

    def __init__(self, app: Any, metrics: "_Metrics", max_body_bytes: int, timeout_s: float, state: "_State") -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.timeout_s = timeout_s
        self.state = state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in _METRIC_PATHS else "other"
        start = time.perf_counter()
        status = [500]  # what an exception that escapes the app amounts to

        async def send_and_record(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            body = await self._read_body(scope, receive)
            if isinstance(body, int):  # over the limit: the size seen so far
                await _send_json(
                    send_and_record,
                    413,
                    {
                        "detail": f"request body of {body} bytes is over the limit of {self.max_body_bytes}",
                        "limit": "max_body_bytes",
                        "max": self.max_body_bytes,
                        "received": body,
                    },
                )
                return
            if body is _TIMED_OUT:
                detail = f"request body not received within {self.timeout_s:g} s"
                content = {"detail": detail, "limit": "timeout_s", "max": self.timeout_s}
                await _send_json(send_and_record, 408, content, close=True)
                return
            if body is _DRAINING:
                content = {"detail": "shutting down: the request body was still arriving; retry elsewhere"}
                await _send_json(send_and_record, 503, content, close=True, headers={"retry-after": "1"})
                return
            if body is None:
                status[0] = 499  # the client went away before sending its body (nginx's code for it)
                return
            replayed = False

            async def replay() -> dict[str, Any]:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_and_record)
        finally:
            self.metrics.requests.labels(path, str(status[0])).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)

    async def _read_body(self, scope: dict[str, Any], receive: Any) -> Any:
        """The body; or its size once over the limit; None if the client left; or a marker when the
        deadline passed (``_TIMED_OUT``) or the drain began (``_DRAINING``) before it all came."""
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0  # uvicorn rejects a malformed Content-Length before we get here
                if declared > self.max_body_bytes:
                    return declared
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive(receive, deadline)
            if not isinstance(message, dict):
                return message
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return size
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _receive(self, receive: Any, deadline: float) -> Any:
        """``receive()``, unless the deadline passes or the drain begins first (then a marker)."""
        loop = asyncio.get_running_loop()
        message = asyncio.ensure_future(receive())
        draining = self.state.drain_started()
        try:
            waiting = {message} if draining is None else {message, draining}
            await asyncio.wait(waiting, timeout=max(deadline - loop.time(), 0), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if draining is not None:
                draining.cancel()
        if message.done():  # what has arrived is read, even during the drain
            return message.result()
        message.cancel()
        return _DRAINING if self.state.draining else _TIMED_OUT


_TIMED_OUT = object()  # markers of _Gate._read_body
_DRAINING = object()


async def _send_json(
    send: Any, status: int, body: dict[str, Any], close: bool = False, headers: dict[str, str] | None = None
) -> None:
    """Send a JSON response; ``close``: ask the server to close the connection after it (the rest
    of the request body, if any, is never read)."""
    payload = json.dumps(body).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw_headers += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    if close:
        raw_headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


# --------------------------------------------------------------------------- the app
class _ApiError(Exception):
    """An error answer: status, a one-line ``detail`` and extra JSON fields (the limit, ...)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers
        self.extra = extra


@dataclass
class _State:
    ready: bool = False
    draining: bool = False
    warmup_error: str | None = None
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _drain: asyncio.Event | None = field(default=None, repr=False)

    def status(self) -> str:
        if self.draining:
            return "draining"
        if self.warmup_error is not None:
            return f"warm-up failed: {self.warmup_error}"
        return "ready" if self.ready else "warming up"

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind to the serving loop (lifespan start-up), so that :meth:`begin_drain` can wake it."""
        self._loop, self._drain = loop, asyncio.Event()
        if self.draining:
            self._drain.set()

    def begin_drain(self) -> None:
        """Start draining: /readyz says 503 and bodies still arriving are cut off. Safe to call from
        a signal handler or another thread."""
        self.draining = True
        if self._loop is not None and self._drain is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._drain.set)

    def drain_started(self) -> "asyncio.Future[Any] | None":
        """A future that completes when the drain begins (None before :meth:`attach`)."""
        return None if self._drain is None else asyncio.ensure_future(self._drain.wait())


def _warmup_inputs(classifier: Any, max_batch_size: int) -> list[list[TextInput]]:
    """A short text, a text at the length limit and a full batch: the shapes requests will bring."""
    max_length = int(getattr(classifier, "max_length", 128))
    long_text = " ".join(["warm"] * max_length)
    return [["warm up"], [long_text], ["warm up the model with a full batch"] * max_batch_size]


def create_app(classifier: SupportsPredict, config: ServeConfig | None = None) -> Any:
    """A FastAPI app serving ``classifier`` (a :class:`~squeezebert.infer.Classifier` or anything
    with its ``predict(inputs, batch_size)``) under ``config``'s batching and limits.

    The batcher starts, and the model is warmed up in the background, when the app's lifespan
    starts (uvicorn, or ``with TestClient(app)``); ``/readyz`` answers 200 from then on. The
    lifespan's end drains the queue. ``app.state.batcher`` and ``app.state.metrics`` are the
    live :class:`MicroBatcher` and collectors.
    """
    _require("app")
    from fastapi import Depends, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from pydantic import BaseModel, ConfigDict, Field, StrictStr

    config = config or ServeConfig()
    metrics = _Metrics()
    state = _State()
    batch_size = config.forward_batch_size

    def run_model(inputs: list[TextInput]) -> list[Prediction]:
        return classifier.predict(inputs, batch_size=batch_size)

    batcher = MicroBatcher(
        run_model,
        max_batch_size=config.max_batch_size,
        max_wait_s=config.max_wait_ms / 1000,
        max_queue=config.max_queue,
        batching=config.batching,
        on_batch=metrics.observe_batch,
        on_queue=metrics.queue_depth.set,
    )

    async def warm_up() -> None:
        try:
            if config.warmup:
                for inputs in _warmup_inputs(classifier, config.max_batch_size):
                    await batcher.call(run_model, inputs)
        except Exception as e:  # reported by /readyz; the process stays up for inspection
            log.exception("warm-up failed")
            state.warmup_error = f"{type(e).__name__}: {e}"
            return
        state.ready = True
        metrics.ready.set(1)
        log.info("model warmed up; ready")

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        state.attach(asyncio.get_running_loop())
        await batcher.start()
        warming = asyncio.create_task(warm_up())
        try:
            yield
        finally:
            state.begin_drain()
            metrics.ready.set(0)
            await warming
            await batcher.close()

    # ------------------------------------------------------------------ schemas
    class ClassifyRequest(BaseModel):
        """Give exactly one of ``texts`` or ``pairs``."""

        model_config = ConfigDict(extra="forbid")
        texts: list[StrictStr] | None = Field(default=None, description="texts to classify")
        pairs: list[tuple[StrictStr, StrictStr]] | None = Field(
            default=None, description="[text, text] pairs, for pair tasks (paraphrase, entailment)"
        )

    class PredictionOut(BaseModel):
        label: str | None = Field(default=None, description="the most probable label (classification)")
        score: float | None = Field(default=None, description="its probability")
        probabilities: dict[str, float] | None = Field(default=None, description="label -> probability")
        value: float | None = Field(default=None, description="the predicted value (regression)")

    class ClassifyResponse(BaseModel):
        predictions: list[PredictionOut] = Field(description="one per input, in input order")

    # ------------------------------------------------------------------ app
    app = FastAPI(
        docs_url="/docs" if config.docs else None,
        redoc_url="/redoc" if config.docs else None,
        title="squeezebert",
        description="Text classification with a small BERT-family model on CPU, micro-batched.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.state.metrics = metrics
    app.state.config = config
    app.add_middleware(
        _Gate, metrics=metrics, max_body_bytes=config.max_body_bytes, timeout_s=config.timeout_s, state=state
    )

    @app.exception_handler(_ApiError)
    async def api_error(request: Request, exc: _ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail, **exc.extra}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_describe(e) for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(errors[:5]), "errors": errors}, status_code=422)

    key = None if config.api_key is None else config.api_key.encode()

    def authorize(request: Request) -> None:
        if key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        # compare_digest: the time taken does not tell a caller how much of the key matched.
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key):
            raise _ApiError(
                401, "missing or wrong API key: send Authorization: Bearer KEY", {"WWW-Authenticate": "Bearer"}
            )

    def require_json(request: Request) -> None:
        # Without this, a form or text body reads as "the body must be a JSON object" (422).
        content_type = request.headers.get("content-type")
        if content_type is None:  # not declared: read as JSON
            return
        media = content_type.partition(";")[0].strip().lower()
        if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
            raise _ApiError(
                415,
                f"content-type {media or content_type!r} is not JSON; send the body as application/json",
                expected="application/json",
                received=media,
            )

    def check_limits(body: ClassifyRequest) -> list[TextInput]:
        if body.texts is not None and body.pairs is not None:
            raise _ApiError(422, "give either 'texts' or 'pairs', not both")
        if body.texts is None and body.pairs is None:
            raise _ApiError(422, "give 'texts' (a list of strings) or 'pairs' (a list of [text, text])")
        field_name = "texts" if body.texts is not None else "pairs"
        inputs: list[TextInput] = list(body.texts) if body.texts is not None else list(body.pairs or [])
        if not inputs:
            raise _ApiError(422, f"'{field_name}' is empty; send at least one")
        if len(inputs) > config.max_texts:
            raise _ApiError(
                422,
                f"{len(inputs)} {field_name} is over the limit of {config.max_texts} per request",
                limit="max_texts",
                max=config.max_texts,
                received=len(inputs),
            )
        for i, x in enumerate(inputs):
            for j, text in enumerate((x,) if isinstance(x, str) else x):
                where = f"{field_name}[{i}]" if isinstance(x, str) else f"{field_name}[{i}][{j}]"
                if len(text) > config.max_chars:
                    raise _ApiError(
                        422,
                        f"{where} has {len(text)} characters, over the limit of {config.max_chars}",
                        limit="max_chars",
                        max=config.max_chars,
                        received=len(text),
                        field=where,
                    )
                problem = invalid_text(text)  # caught here, it fails this request, not the whole batch
                if problem is not None:
                    raise _ApiError(422, f"{where} {problem}", field=where)
        return inputs

    @app.post(
        CLASSIFY_PATH,
        response_model=ClassifyResponse,
        response_model_exclude_none=True,
        dependencies=[Depends(authorize), Depends(require_json)],
        summary="Classify texts or text pairs",
        responses={
            401: {"description": "missing or wrong API key"},
            408: {"description": "body not received within timeout_s"},
            413: {"description": "body over max_body_bytes"},
            415: {"description": "a content-type other than application/json"},
            422: {"description": "malformed request or over max_texts / max_chars"},
            503: {"description": "queue full (see Retry-After)"},
            504: {"description": "not answered within timeout_s"},
        },
    )
    async def classify(body: ClassifyRequest) -> Any:
        arrived = time.perf_counter()
        inputs = check_limits(body)
        # No refusal while draining: uvicorn has closed the listening socket, and a request that
        # still reaches us on an open connection is served before that connection closes.
        try:
            future = batcher.submit(inputs)
        except QueueFull as e:
            raise _ApiError(503, f"server busy: {e}", {"Retry-After": "1"}) from None
        except RuntimeError:
            raise _ApiError(503, "not serving (starting up or shutting down)", {"Retry-After": "1"}) from None
        remaining = config.timeout_s - (time.perf_counter() - arrived)
        try:
            predictions = await asyncio.wait_for(future, max(remaining, 0.0))
        except asyncio.TimeoutError:
            raise _ApiError(
                504, f"not answered within {config.timeout_s:g} s", limit="timeout_s", max=config.timeout_s
            ) from None
        except Exception as e:
            raise _ApiError(500, f"the model failed on this batch ({type(e).__name__})") from None
        return {"predictions": [p.to_dict() for p in predictions]}

    @app.get("/v1/model", dependencies=[Depends(authorize)], summary="The model and this server's limits")
    async def model_info() -> dict[str, Any]:
        info = {k: getattr(classifier, k, None) for k in ("backend", "precision", "max_length", "normalize")}
        labels = getattr(classifier, "labels", None)
        limits = {k: v for k, v in asdict(config).items() if k not in ("api_key", "warmup", "docs")}
        return {**info, "labels": list(labels) if labels is not None else None, "limits": limits}

    @app.get("/healthz", summary="Liveness: 200 while the process runs")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", summary="Readiness: 200 once the model is warmed up, else 503")
    async def readyz() -> Response:
        ok = state.ready and not state.draining
        return JSONResponse({"status": state.status()}, status_code=200 if ok else 503)

    @app.get("/metrics", dependencies=[Depends(authorize)], summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.state.service = state
    return app


def _describe(error: dict[str, Any]) -> str:
    """One line for a pydantic error: where in the body, and what was wrong."""
    loc = [str(p) for p in error.get("loc", ()) if p != "body"]
    if not loc and error.get("type") in ("model_attributes_type", "dict_type", "model_type"):
        return 'the body must be a JSON object: {"texts": [...]} or {"pairs": [[a, b], ...]}'
    if error.get("type") == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "invalid JSON")
        return f"malformed JSON at character {loc[0] if loc else '?'}: {reason}"
    where = ".".join(loc) if loc else "body"
    return f"{where}: {error.get('msg', 'invalid')}"


def _version() -> str:
    from squeezebert import __version__

    return __version__


# --------------------------------------------------------------------------- running
def is_loopback(host: str) -> bool:
    """True for ``localhost`` and the loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(
    model: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    config: ServeConfig | None = None,
    backend: str = "torch",
    precision: str | None = None,
    max_length: int = 128,
    num_threads: int | None = None,
    normalize: bool = True,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Load ``model`` (see :meth:`Classifier.from_pretrained`) and serve it until SIGTERM/SIGINT.

    Binds ``host`` (loopback by default; another address without an ``api_key`` logs a
    warning). Serves over uvicorn's h11 protocol with a deadline on request heads, at most
    ``config.max_connections`` open connections (more: 503) and ``config.keep_alive_s``
    keep-alive. SIGTERM stops accepting connections, cuts off bodies still arriving (503), waits
    for in-flight requests (up to ``config.timeout_s`` + 5 s), drains the batcher and returns
    normally.
    """
    _require("run")
    import uvicorn

    from squeezebert.infer import Classifier

    config = config or ServeConfig()
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0..65535, got {port}")
    if not is_loopback(host) and config.api_key is None:
        log.warning("serving on %s without an API key: anyone who can reach it can use it", host)

    # uvicorn handles SIGTERM while it serves, then restores the handler it found and raises
    # the signal again; this handler makes that a no-op (exit 0), and a SIGTERM that arrives
    # while the model loads skips serving.
    terminated = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: terminated.append(signum))
    try:
        classifier = Classifier.from_pretrained(
            model,
            precision=precision,
            backend=backend,
            max_length=max_length,
            num_threads=num_threads,
            normalize=normalize,
            busy_wait=False,  # the request threads need the cores between calls
        )
        log.info("loaded %s: %r", model, classifier)
        if terminated:
            return
        app = create_app(classifier, config)
        state: _State = app.state.service

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                state.begin_drain()  # /readyz says 503 from the signal on; stuck bodies are cut off
                super().handle_exit(sig, frame)

        server = Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level=log_level,
                access_log=access_log,
                timeout_graceful_shutdown=int(math.ceil(config.timeout_s)) + 5,
                server_header=False,
                limit_concurrency=config.max_connections,  # more open connections: 503
                timeout_keep_alive=config.keep_alive_s,
                http=_bounded_h11(config.timeout_s),
            )
        )
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _bounded_h11(head_timeout_s: float) -> type:
    """uvicorn's h11 protocol with a deadline on each request's head (request line and headers).

    uvicorn times an idle connection out only after a first response: a client that connects and
    sends nothing, or trickles its headers, would hold the connection (and one of
    ``limit_concurrency``'s slots) forever. Here the head must be complete within
    ``head_timeout_s`` of the connection opening or the previous response ending; otherwise the
    connection is closed. The body has its own deadline (:class:`_Gate`).
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class BoundedH11Protocol(H11Protocol):  # type: ignore[misc]
        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(head_timeout_s, self._head_timed_out)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.cycle is None or self.cycle.response_complete:  # still no new request
                self.timeout_keep_alive_handler()  # uvicorn's own way to close an idle connection

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a request's head came in complete
                self._disarm()

        def on_response_complete(self) -> None:
            self._arm()  # before: a pipelined request may start inside
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return BoundedH11Protocol


# --------------------------------------------------------------------------- load test (client)
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
    """Non-blank lines of a utf-8 text file (the load test's request texts)."""
    path = require_file(path, "a text file (one request text per line)")
    try:
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not utf-8 text ({e.reason})") from None
    if not texts:
        raise ValueError(f"{path}: no texts (one per line)")
    return texts


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
    return LoadReport(
        url=target,
        concurrency=concurrency,
        duration_s=elapsed,
        texts_per_request=texts_per_request,
        rate=rate,
        requests=sum(statuses.values()),
        requests_per_s=done / elapsed if elapsed > 0 else 0.0,
        latency_ms={
            "p50": _percentile(ms, 50),
            "p90": _percentile(ms, 90),
            "p99": _percentile(ms, 99),
            "mean": sum(ms) / done if done else math.nan,
            "max": ms[-1] if ms else math.nan,
        },
        status_counts=dict(statuses),
        errors=sum(n for status, n in statuses.items() if status != "200"),
    )


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


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
