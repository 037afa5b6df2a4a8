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

Requests are merged into model batches by :class:`~squeezebert.batcher.MicroBatcher` (its own
module): one queue, batches of at most ``max_batch_size`` texts gathered for at most
``max_wait_ms`` (default 0: an idle server answers a lone request at once), run by
``Classifier.predict`` in one worker thread off the event loop. ``predict`` sorts a model call's
texts by length and runs them in forward passes of ``forward_batch_size`` (16): on CPU, passes of
8 to 16 short texts cost less per text than one pass of 32 (less padding, activations that stay
in cache; measured in docs/RESULTS.md).

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

:func:`squeezebert.loadtest.loadtest` is the matching client: a bounded, loopback-only load
generator that reports requests/s, latency percentiles and errors by status code.

FastAPI, uvicorn, prometheus_client and httpx are the ``serve`` extra, imported where used.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at
# runtime, and the request/response models are built inside create_app (the extra is optional).

import asyncio
import hmac
import ipaddress
import json
import logging
import math
import os
import signal
import time
from collections.abc import Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from squeezebert.batcher import MicroBatcher, QueueFull
from squeezebert.infer import Prediction, TextInput
from squeezebert.predict import SupportsPredict
from squeezebert.runtime import RuntimeOptions, threads
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
                # OpenVINO: single texts' static models now, not in the first requests at each length
                compile_static = getattr(classifier, "compile_static_shapes", None)
                if compile_static is not None:
                    lengths = await asyncio.to_thread(compile_static)
                    if lengths:
                        log.info("static models for single texts of %s tokens compiled", lengths)
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
    options: RuntimeOptions | None = None,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Load ``model`` (:meth:`Classifier.from_pretrained` with ``options``; busy waiting off unless
    they turn it on, so that the request threads get the cores between calls) and serve it until
    SIGTERM/SIGINT. Torch's thread count is ``options.num_threads`` while it serves, restored after.

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
        options = options or RuntimeOptions()
        # The request threads need the cores between calls: no spinning unless asked for.
        classifier = Classifier.from_pretrained(model, replace(options, busy_wait=options.spins(False)))
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
        with threads(options.num_threads):  # torch's count, once for every request thread
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
