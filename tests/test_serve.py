"""The HTTP service: schemas, limits, auth, readiness, metrics, queueing, timeouts and batching
tested in-process (httpx ASGI transport, lifespan driven by the test), plus one end-to-end run of
``python -m squeezebert serve`` that ends with SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")

from squeezebert.checkpoint import save_checkpoint  # noqa: E402
from squeezebert.config import preset  # noqa: E402
from squeezebert.infer import Classifier, Prediction, TextInput  # noqa: E402
from squeezebert.loadtest import loadtest  # noqa: E402
from squeezebert.model import SqueezeBert  # noqa: E402
from squeezebert.serve import ServeConfig, create_app, is_loopback  # noqa: E402
from squeezebert.tokenizer import Tokenizer  # noqa: E402

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"good bad movie film plot was very the a it".split()]
KEY = "s3cret-key"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random classifier with a 15-word vocabulary, saved as a checkpoint directory."""
    tmp = tmp_path_factory.mktemp("serve-model")
    (tmp / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    config = preset("tiny", vocab_size=len(VOCAB), max_position_embeddings=64, id2label={0: "neg", 1: "pos"})
    model = SqueezeBert(config).eval()
    save_checkpoint(model, tmp / "ckpt", tokenizer=Tokenizer.from_vocab(tmp / "vocab.txt"))
    return tmp / "ckpt"


@pytest.fixture(scope="module")
def classifier(checkpoint: Path) -> Classifier:
    return Classifier.from_pretrained(checkpoint, normalize=True)


class Recording:
    """Wraps a classifier: records every call's size; optionally waits on ``gate`` first."""

    def __init__(
        self, inner: Any = None, gate: threading.Event | None = None, fail: bool = False, max_length: int = 16
    ) -> None:
        self.inner = inner
        self.gate = gate
        self.fail = fail
        self.max_length = max_length
        self.labels = ("neg", "pos")
        self.calls: list[int] = []
        self.batch_sizes: list[int] = []
        self.entered = threading.Event()

    def predict(self, inputs: Sequence[TextInput], batch_size: int = 32) -> list[Prediction]:
        self.calls.append(len(inputs))
        self.batch_sizes.append(batch_size)
        self.entered.set()
        if self.gate is not None and not self.gate.wait(timeout=30):
            raise TimeoutError("test gate never opened")
        if self.fail:
            raise RuntimeError("model exploded")
        if self.inner is not None:
            return self.inner.predict(inputs, batch_size=batch_size)
        return [Prediction(label="pos", score=float(len(x)), probabilities={"neg": 0.0, "pos": 1.0}) for x in inputs]


@asynccontextmanager
async def serving(app: Any, ready: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and give a client talking to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            if ready:
                await wait_ready(client)
            yield client


async def wait_ready(client: httpx.AsyncClient, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while (await client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, "never became ready"
        await asyncio.sleep(0.01)


async def wait_for(event: threading.Event, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not event.is_set():
        assert time.monotonic() < deadline, "the model was never called"
        await asyncio.sleep(0.005)


def run(coro_fn: Callable[[], Any]) -> Any:
    return asyncio.run(coro_fn())


# --------------------------------------------------------------------------- schemas and results
def test_classify_texts_and_pairs_match_a_direct_predict(classifier: Classifier) -> None:
    texts = ["good movie", "bad plot", "the film was very good"]
    pairs = [("good movie", "bad plot"), ("it was", "very good")]

    async def main() -> None:
        async with serving(create_app(classifier)) as client:
            r = await client.post("/v1/classify", json={"texts": texts})
            assert r.status_code == 200
            assert r.json()["predictions"] == [p.to_dict() for p in classifier.predict(texts)]
            r = await client.post("/v1/classify", json={"pairs": [list(p) for p in pairs]})
            assert r.status_code == 200
            got = r.json()["predictions"]
            assert [g["label"] for g in got] == [p.label for p in classifier.predict(pairs)]
            assert set(got[0]) == {"label", "score", "probabilities"}

    run(main)


def test_health_docs_and_model_info_answer(classifier: Classifier) -> None:
    async def main() -> None:
        async with serving(create_app(classifier, ServeConfig(max_texts=7))) as client:
            assert (await client.get("/healthz")).json() == {"status": "alive"}
            assert (await client.get("/docs")).status_code == 404  # off by default: see test_docs_are_opt_in
            schema = (await client.get("/openapi.json")).json()
            assert "/v1/classify" in schema["paths"]
            info = (await client.get("/v1/model")).json()
            assert info["labels"] == ["neg", "pos"] and info["limits"]["max_texts"] == 7
            assert "api_key" not in info["limits"]

    run(main)


def test_readyz_is_503_until_the_warm_up_has_run() -> None:
    gate = threading.Event()
    fake = Recording(gate=gate)

    async def main() -> None:
        async with serving(create_app(fake), ready=False) as client:
            await wait_for(fake.entered)  # warm-up is running, held at the gate
            r = await client.get("/readyz")
            assert r.status_code == 503 and r.json()["status"] == "warming up"
            assert (await client.get("/healthz")).status_code == 200  # alive all the same
            gate.set()
            await wait_ready(client)
            metrics = (await client.get("/metrics")).text
            assert "squeezebert_ready 1.0" in metrics

    run(main)


def test_warm_up_compiles_the_static_models_before_the_first_request() -> None:
    """A classifier that has static models to compile (OpenVINO) gets them compiled while the
    server warms up, before the warm-up texts and before /readyz says ready."""

    class WithStatic(Recording):
        def __init__(self) -> None:
            super().__init__()
            self.order: list[str] = []

        def compile_static_shapes(self) -> list[int]:
            self.order.append("compile")
            return [16, 32]

        def predict(self, inputs: Sequence[TextInput], batch_size: int = 32) -> list[Prediction]:
            self.order.append("predict")
            return super().predict(inputs, batch_size)

    fake = WithStatic()

    async def main() -> None:
        async with serving(create_app(fake)):
            assert fake.order[0] == "compile" and fake.order.count("compile") == 1 and "predict" in fake.order

    run(main)
    unwarmed = WithStatic()

    async def off() -> None:
        async with serving(create_app(unwarmed, ServeConfig(warmup=False))):
            pass

    run(off)
    assert unwarmed.order == []


def test_a_failed_warm_up_keeps_readyz_503_with_the_reason() -> None:
    async def main() -> None:
        async with serving(create_app(Recording(fail=True)), ready=False) as client:
            for _ in range(500):
                r = await client.get("/readyz")
                if "failed" in r.json()["status"]:
                    break
                await asyncio.sleep(0.01)
            assert r.status_code == 503 and "model exploded" in r.json()["status"]

    run(main)


# --------------------------------------------------------------------------- limits and bad input
@pytest.mark.parametrize(
    ("body", "expect"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"hello"', "must be a JSON object"),
        (b'{"texts": "one string"}', "texts"),
        (b'{"texts": [1, 2]}', "texts.0"),
        (b'{"texts": []}', "empty"),
        (b'{"pairs": []}', "empty"),
        (b'{"pairs": [["only one"]]}', "pairs.0"),
        (b'{"pairs": [["a", 2]]}', "pairs.0.1"),
        (b'{"texts": ["a"], "pairs": [["a", "b"]]}', "not both"),
        (b"{}", "give 'texts'"),
        (b'{"text": ["a"]}', "text"),
        (b'{"texts": ["a"], "model": "/etc/passwd"}', "model"),
    ],
)
def test_malformed_requests_get_422_with_a_clear_message(body: bytes, expect: str) -> None:
    fake = Recording()

    async def main() -> None:
        async with serving(create_app(fake, ServeConfig(warmup=False))) as client:
            r = await client.post("/v1/classify", content=body, headers={"content-type": "application/json"})
            assert r.status_code == 422, r.text
            assert expect in r.json()["detail"]

    run(main)
    assert fake.calls == []  # nothing reached the model


def test_texts_per_request_and_characters_per_text_are_bounded() -> None:
    config = ServeConfig(max_texts=3, max_chars=10, warmup=False)

    async def main() -> None:
        async with serving(create_app(Recording(), config)) as client:
            r = await client.post("/v1/classify", json={"texts": ["a"] * 4})
            assert r.status_code == 422
            assert r.json() | {"detail": None} == {"detail": None, "limit": "max_texts", "max": 3, "received": 4}
            r = await client.post("/v1/classify", json={"texts": ["ok", "x" * 11]})
            assert r.status_code == 422
            assert (r.json()["limit"], r.json()["received"], r.json()["field"]) == ("max_chars", 11, "texts[1]")
            r = await client.post("/v1/classify", json={"pairs": [["ok", "y" * 12]]})
            assert (r.status_code, r.json()["field"], r.json()["received"]) == (422, "pairs[0][1]", 12)
            r = await client.post("/v1/classify", json={"texts": ["a"] * 3 + []})
            assert r.status_code == 200  # at the limits is fine
            r = await client.post("/v1/classify", json={"texts": ["x" * 10]})
            assert r.status_code == 200

    run(main)


def test_bodies_over_the_limit_get_413_declared_or_streamed() -> None:
    fake = Recording()
    config = ServeConfig(max_body_bytes=100, warmup=False)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"texts": ["'
        for _ in range(20):
            yield b"aaaaaaaaaa"  # no Content-Length: counted as it arrives
        yield b'"]}'

    async def main() -> None:
        async with serving(create_app(fake, config)) as client:
            r = await client.post("/v1/classify", json={"texts": ["a" * 200]})
            assert r.status_code == 413
            assert (r.json()["limit"], r.json()["max"]) == ("max_body_bytes", 100)
            assert r.json()["received"] > 100
            r = await client.post("/v1/classify", content=chunks(), headers={"content-type": "application/json"})
            assert r.status_code == 413
            r = await client.post("/v1/classify", json={"texts": ["small"]})
            assert r.status_code == 200

    run(main)
    assert fake.calls == [1]


# --------------------------------------------------------------------------- auth
def test_api_key_is_required_on_the_api_and_metrics_but_not_the_probes() -> None:
    async def main() -> None:
        async with serving(create_app(Recording(), ServeConfig(api_key=KEY, warmup=False))) as client:
            body = {"texts": ["good"]}
            for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": KEY}, {"authorization": "Bearer"}):
                r = await client.post("/v1/classify", json=body, headers=headers)
                assert r.status_code == 401, headers
                assert r.headers["www-authenticate"] == "Bearer"
            assert (await client.get("/metrics")).status_code == 401
            assert (await client.get("/v1/model")).status_code == 401
            ok = {"authorization": f"Bearer {KEY}"}
            assert (await client.post("/v1/classify", json=body, headers=ok)).status_code == 200
            assert (await client.get("/metrics", headers=ok)).status_code == 200
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code == 200

    run(main)


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        ServeConfig(max_batch_size=0)
    with pytest.raises(ValueError, match="forward_batch_size"):
        ServeConfig(forward_batch_size=0)
    with pytest.raises(ValueError, match="timeout_s"):
        ServeConfig(timeout_s=0)
    with pytest.raises(ValueError, match="api_key"):
        ServeConfig(api_key=" ")


# --------------------------------------------------------------------------- queueing, timeouts, failures
def test_a_full_queue_answers_503_with_retry_after() -> None:
    gate = threading.Event()
    fake = Recording(gate=gate)
    config = ServeConfig(max_queue=1, batching=False, warmup=False)

    async def main() -> None:
        async with serving(create_app(fake, config)) as client:
            first = asyncio.create_task(client.post("/v1/classify", json={"texts": ["a"]}))
            await wait_for(fake.entered)  # the model holds the first request
            second = asyncio.create_task(client.post("/v1/classify", json={"texts": ["b"]}))
            for _ in range(200):  # until the second one waits in the queue
                if "squeezebert_queue_depth 1.0" in (await client.get("/metrics")).text:
                    break
                await asyncio.sleep(0.005)
            r = await client.post("/v1/classify", json={"texts": ["c"]})
            assert r.status_code == 503
            assert r.headers["retry-after"] == "1" and "busy" in r.json()["detail"]
            gate.set()
            assert (await first).status_code == 200 and (await second).status_code == 200
            metrics = (await client.get("/metrics")).text
            assert 'squeezebert_requests_total{path="/v1/classify",status="503"} 1.0' in metrics

    run(main)


def test_a_request_past_its_deadline_gets_504_and_the_server_recovers() -> None:
    gate = threading.Event()
    fake = Recording(gate=gate)

    async def main() -> None:
        async with serving(create_app(fake, ServeConfig(timeout_s=0.2, warmup=False))) as client:
            r = await client.post("/v1/classify", json={"texts": ["slow"]})
            assert r.status_code == 504 and r.json()["limit"] == "timeout_s"
            gate.set()
            r = await client.post("/v1/classify", json={"texts": ["fast"]})
            assert r.status_code == 200

    run(main)


def test_a_model_failure_is_a_500_for_that_batch_only() -> None:
    fake = Recording(fail=True)

    async def main() -> None:
        async with serving(create_app(fake, ServeConfig(warmup=False))) as client:
            r = await client.post("/v1/classify", json={"texts": ["boom"]})
            assert r.status_code == 500 and "RuntimeError" in r.json()["detail"]
            fake.fail = False
            assert (await client.post("/v1/classify", json={"texts": ["fine"]})).status_code == 200

    run(main)


def test_shutdown_finishes_in_flight_requests() -> None:
    gate = threading.Event()
    fake = Recording(gate=gate)
    app = create_app(fake, ServeConfig(warmup=False))

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            lifespan = app.router.lifespan_context(app)
            await lifespan.__aenter__()
            pending = asyncio.create_task(client.post("/v1/classify", json={"texts": ["in flight"]}))
            await wait_for(fake.entered)
            stopping = asyncio.create_task(lifespan.__aexit__(None, None, None))
            await asyncio.sleep(0.05)
            assert not stopping.done()  # waits for the model
            assert (await client.get("/readyz")).json()["status"] == "draining"
            gate.set()
            r = await pending
            await asyncio.wait_for(stopping, 10)
            assert r.status_code == 200

    run(main)


# --------------------------------------------------------------------------- batching
def test_concurrent_requests_are_merged_and_each_gets_its_own_results(classifier: Classifier) -> None:
    fake = Recording(inner=classifier)
    config = ServeConfig(max_batch_size=32, max_wait_ms=50, forward_batch_size=3, warmup=False)
    words = "good bad movie film plot was very the a it".split()
    requests = [[" ".join(words[(i + k) % 10 : (i + k) % 10 + 1 + k % 4]) for k in range(1 + i % 3)] for i in range(12)]

    async def main() -> list[httpx.Response]:
        async with serving(create_app(fake, config)) as client:
            responses = await asyncio.gather(*(client.post("/v1/classify", json={"texts": t}) for t in requests))
            metrics = (await client.get("/metrics")).text
        assert "squeezebert_batch_size_count" in metrics
        return list(responses)

    responses = run(main)
    assert max(fake.calls) > 1 and len(fake.calls) < len(requests)
    assert sum(fake.calls) == sum(len(t) for t in requests)
    assert set(fake.batch_sizes) == {3}  # merged calls run in forward passes of forward_batch_size
    for texts, r in zip(requests, responses):
        assert r.status_code == 200
        got = r.json()["predictions"]
        want = classifier.predict(texts)
        assert [g["label"] for g in got] == [w.label for w in want]
        # Merged batches pad to a different length: scores agree to float32 rounding.
        assert [g["score"] for g in got] == pytest.approx([w.score for w in want], abs=1e-5)


def test_batching_off_runs_one_request_per_model_call() -> None:
    fake = Recording()

    async def main() -> None:
        async with serving(create_app(fake, ServeConfig(batching=False, warmup=False))) as client:
            await asyncio.gather(*(client.post("/v1/classify", json={"texts": ["a", "b"]}) for _ in range(8)))

    run(main)
    assert fake.calls == [2] * 8


def test_every_app_has_its_own_metrics_registry() -> None:
    a, b = create_app(Recording()), create_app(Recording())
    assert a.state.metrics.registry is not b.state.metrics.registry


def test_metrics_report_requests_latency_batches_and_queue_depth() -> None:
    async def main() -> str:
        async with serving(create_app(Recording(), ServeConfig(warmup=False))) as client:
            await client.post("/v1/classify", json={"texts": ["a", "b", "c"]})
            await client.post("/v1/classify", json={"texts": []})
            await client.get("/no/such/path")
            return (await client.get("/metrics")).text

    text = run(main)
    assert 'squeezebert_requests_total{path="/v1/classify",status="200"} 1.0' in text
    assert 'squeezebert_requests_total{path="/v1/classify",status="422"} 1.0' in text
    assert 'squeezebert_requests_total{path="other",status="404"} 1.0' in text
    assert 'squeezebert_request_duration_seconds_bucket{le="0.005",path="/v1/classify"}' in text
    assert 'squeezebert_batch_size_bucket{le="4.0"} 1.0' in text and "squeezebert_batch_size_count 1.0" in text
    assert "squeezebert_queue_depth 0.0" in text
    assert "squeezebert_model_duration_seconds_count 1.0" in text


# --------------------------------------------------------------------------- hosts
@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.3.2.1", "[::1]", "::1"])
def test_loopback_hosts_are_recognized(host: str) -> None:
    assert is_loopback(host)


# --------------------------------------------------------------------------- end to end
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_real_server_serves_concurrent_requests_and_exits_0_on_sigterm(checkpoint: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SQUEEZEBERT_API_KEY": KEY, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "squeezebert", "serve", str(checkpoint), "--port", str(port), "--num-threads", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_ready(proc, port)
        with httpx.Client(base_url=base, headers={"authorization": f"Bearer {KEY}"}, timeout=10) as client:
            r = client.post("/v1/classify", json={"texts": ["good movie", "bad plot"]})
            assert r.status_code == 200 and len(r.json()["predictions"]) == 2
            assert client.post("/v1/classify", json={"texts": ["x"]}, headers={"authorization": ""}).status_code == 401

        report = loadtest(base, concurrency=8, duration_s=1.0, api_key=KEY)
        assert report.requests > 0 and report.status_counts == {"200": report.requests} and report.errors == 0
        assert report.latency_ms["p50"] <= report.latency_ms["p99"]
        # Open loop: request i is due at i / rate, so 1 s at 20/s is exactly 20 requests.
        paced = loadtest(base, concurrency=4, duration_s=1.0, rate=20, api_key=KEY)
        assert paced.status_counts == {"200": 20} and paced.rate == 20 and "20 requests/s" in paced.summary()
        with httpx.Client(base_url=base, headers={"authorization": f"Bearer {KEY}"}) as client:
            metrics = client.get("/metrics").text
        assert "squeezebert_batch_size_count" in metrics

        # SIGTERM in the middle of a load: requests already accepted are answered, later ones find
        # the port closed (a transport error), none gets a 5xx, and the process exits 0.
        during: list[Any] = []
        loader = threading.Thread(target=lambda: during.append(loadtest(base, 8, 2.0, api_key=KEY)))
        loader.start()
        time.sleep(0.7)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
        loader.join(timeout=30)
        assert proc.returncode == 0, output
        assert "Application shutdown complete" in output
        statuses = during[0].status_counts
        assert statuses.get("200", 0) > 0, statuses
        assert not [s for s in statuses if s.isdigit() and s != "200"], statuses
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_real_server_loads_an_openvino_export_without_a_backend_flag(checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    from squeezebert.export_openvino import export

    export(checkpoint, tmp_path / "ov")  # fp32: the same labels as the checkpoint in torch
    port = _free_port()
    proc = subprocess.Popen(
        _serve_cmd(tmp_path / "ov", port=port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_ready(proc, port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            info = client.get("/v1/model").json()
            assert (info["backend"], info["precision"]) == ("openvino", "fp32")
            texts = ["good movie", "bad plot", "the film was very good"]
            r = client.post("/v1/classify", json={"texts": texts})
            want = Classifier.from_pretrained(checkpoint, backend="torch", normalize=True).predict(texts)
            assert r.status_code == 200 and [p["label"] for p in r.json()["predictions"]] == [w.label for w in want]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_server_loads_onnx_without_busy_waiting_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    # Spinning ONNX Runtime workers would hold the cores the request threads need between calls.
    from squeezebert import infer
    from squeezebert.runtime import RuntimeOptions
    from squeezebert.serve import run

    seen: dict = {}

    class Loaded(Exception):
        pass

    def from_pretrained(path, options):
        seen.update(vars(options))
        raise Loaded

    monkeypatch.setattr(infer.Classifier, "from_pretrained", staticmethod(from_pretrained))
    with pytest.raises(Loaded):
        run("some-model", options=RuntimeOptions(backend="onnx"))
    assert seen["busy_wait"] is False and seen["backend"] == "onnx"


# --------------------------------------------------------------------------- issue 16: bad input and faults
def _serve_cmd(checkpoint: Path, *extra: str, port: int | None = None) -> list[str]:
    port = _free_port() if port is None else port
    return [
        sys.executable, "-m", "squeezebert", "serve", str(checkpoint), "--port", str(port), "--num-threads", "1",
        *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "env_key", "message"),
    [
        (["--api-key", ""], None, "--api-key is empty"),
        (["--api-key", "  "], None, "--api-key is empty"),
        ([], "", "$SQUEEZEBERT_API_KEY is empty"),
        (["--api-key-file", "{empty}"], None, "is empty"),
        (["--api-key", "a", "--api-key-file", "{key}"], None, "not both"),
    ],
)
def test_an_explicitly_empty_api_key_is_refused_at_start_up(
    checkpoint: Path, tmp_path: Path, flags: list[str], env_key: str | None, message: str
) -> None:
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "key").write_text(KEY + "\n")
    flags = [f.format(empty=tmp_path / "empty", key=tmp_path / "key") for f in flags]
    env = {k: v for k, v in os.environ.items() if k != "SQUEEZEBERT_API_KEY"}
    if env_key is not None:
        env["SQUEEZEBERT_API_KEY"] = env_key
    proc = subprocess.run(_serve_cmd(checkpoint, *flags), env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_the_api_key_comes_from_the_flag_the_key_file_or_the_environment(tmp_path: Path) -> None:
    from squeezebert.serve import resolve_api_key

    key_file = tmp_path / "key"
    key_file.write_text(f"  {KEY}\n")
    assert resolve_api_key(None, key_file, {}) == KEY
    assert resolve_api_key("flag-key", None, {"SQUEEZEBERT_API_KEY": "env-key"}) == "flag-key"
    assert resolve_api_key(None, None, {"SQUEEZEBERT_API_KEY": "env-key"}) == "env-key"
    assert resolve_api_key(None, None, {}) is None
    with pytest.raises(FileNotFoundError, match="no such API key file"):
        resolve_api_key(None, tmp_path / "missing", {})
    with pytest.raises(ValueError, match="printable ASCII"):
        resolve_api_key("k\u00e9y", None, {})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"texts": ["good", "\\ud800"]}', "texts[1]"),
        (b'{"texts": ["bad \\udfff movie"]}', "texts[0]"),
        (b'{"pairs": [["good", "x\\udc00"]]}', "pairs[0][1]"),
    ],
)
def test_a_lone_surrogate_is_a_422_for_that_request_alone(classifier: Classifier, body: bytes, field: str) -> None:
    async def main() -> None:
        async with serving(create_app(classifier, ServeConfig(max_wait_ms=50, warmup=False))) as client:
            headers = {"content-type": "application/json"}
            bad = client.post("/v1/classify", content=body, headers=headers)
            good = client.post("/v1/classify", json={"texts": ["good movie"]})
            bad, good = await asyncio.gather(bad, good)
            assert bad.status_code == 422, bad.text
            assert bad.json()["field"] == field and "surrogate" in bad.json()["detail"]
            assert good.status_code == 200

    run(main)


def test_a_body_that_never_arrives_gets_408_and_one_arriving_at_the_drain_gets_503() -> None:
    fake = Recording()
    headers = {"content-type": "application/json"}

    def stalled(waiting: asyncio.Event) -> AsyncIterator[bytes]:
        async def body() -> AsyncIterator[bytes]:
            yield b'{"texts": ["'
            waiting.set()  # the server asks for more
            await asyncio.Event().wait()  # the rest never comes
            yield b'"]}'

        return body()

    async def main() -> None:
        async with serving(create_app(fake, ServeConfig(timeout_s=0.2, warmup=False))) as client:
            r = await client.post("/v1/classify", content=stalled(asyncio.Event()), headers=headers)
            assert r.status_code == 408 and r.json()["limit"] == "timeout_s", r.text
            assert r.headers["connection"] == "close"
            assert (await client.post("/v1/classify", json={"texts": ["fine"]})).status_code == 200
            metrics = (await client.get("/metrics")).text
            assert 'squeezebert_requests_total{path="/v1/classify",status="408"} 1.0' in metrics

    async def draining() -> None:
        app = create_app(fake, ServeConfig(timeout_s=60, warmup=False))
        async with serving(app) as client:
            waiting = asyncio.Event()
            pending = asyncio.create_task(client.post("/v1/classify", content=stalled(waiting), headers=headers))
            await asyncio.wait_for(waiting.wait(), 10)
            app.state.service.begin_drain()  # what SIGTERM does under `squeezebert serve`
            r = await asyncio.wait_for(pending, 10)
            assert r.status_code == 503 and "shutting down" in r.json()["detail"], r.text

    run(main)
    run(draining)
    assert fake.calls == [1]


def test_config_bounds_connections_and_keep_alive() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        ServeConfig(max_connections=0)
    with pytest.raises(ValueError, match="keep_alive_s"):
        ServeConfig(keep_alive_s=0)


def _wait_ready(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, "server never became ready"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)


def _raw_connection(port: int, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    if data:
        sock.sendall(data)
    return sock


def _read_to_eof(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    sock.close()
    return b"".join(chunks)


_STALLED = b'POST /v1/classify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"te'


@pytest.mark.slow
def test_real_server_bounds_slow_and_idle_clients_and_connections_and_stops_promptly(checkpoint: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SQUEEZEBERT_API_KEY"} | {"OMP_NUM_THREADS": "1"}
    # A: long deadlines (graceful shutdown would wait 65 s), 4 connections. B: a 1-second deadline.
    port_a, port_b = _free_port(), _free_port()
    cmd_a = _serve_cmd(checkpoint, "--timeout-s", "60", "--max-connections", "4", port=port_a)
    cmd_b = _serve_cmd(checkpoint, "--timeout-s", "1", "--max-wait-ms", "50", port=port_b)
    a = subprocess.Popen(cmd_a, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    b = subprocess.Popen(cmd_b, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_ready(a, port_a)
        _wait_ready(b, port_b)

        # B: a body that stops short gets 408; a connection that sends nothing, or half a head, is
        # closed; a lone surrogate is a 422 while the request batched with it gets its answer.
        assert _read_to_eof(_raw_connection(port_b, _STALLED)).startswith(b"HTTP/1.1 408 ")
        assert _read_to_eof(_raw_connection(port_b)) == b""
        assert _read_to_eof(_raw_connection(port_b, b"POST /v1/classify HTTP/1.1\r\nhost:")) == b""
        with httpx.Client(base_url=f"http://127.0.0.1:{port_b}", timeout=30) as client:
            bad = threading.Thread(
                target=lambda: results.append(
                    client.post(
                        "/v1/classify", content=b'{"texts": ["\\ud800"]}', headers={"content-type": "application/json"}
                    )
                )
            )
            results: list[httpx.Response] = []
            bad.start()
            good = client.post("/v1/classify", json={"texts": ["good movie"]})
            bad.join(30)
        assert good.status_code == 200 and results[0].status_code == 422, results[0].text
        r = httpx.post(f"http://127.0.0.1:{port_b}/v1/classify", data={"texts": "good"}, timeout=30)  # a form
        assert r.status_code == 415, r.text

        # A: three stalled bodies hold three of the four connections: the next request gets 503.
        stalled = [_raw_connection(port_a, _STALLED) for _ in range(3)]
        r = httpx.post(f"http://127.0.0.1:{port_a}/v1/classify", json={"texts": ["good"]}, timeout=30)
        assert r.status_code == 503, r.text
        # SIGTERM: the stalled bodies are cut off with 503 at once, the process exits 0 long before
        # its 65-second graceful timeout, and nothing is cancelled with a traceback.
        a.send_signal(signal.SIGTERM)
        output, _ = a.communicate(timeout=30)
        assert a.returncode == 0, output
        assert "Traceback" not in output and "Cancel" not in output, output
        for sock in stalled:
            assert _read_to_eof(sock).startswith(b"HTTP/1.1 503 ")

        b.send_signal(signal.SIGTERM)
        output, _ = b.communicate(timeout=30)
        assert b.returncode == 0 and "Traceback" not in output, output
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),  # what curl -d sends without -H
        ("multipart/form-data; boundary=x", 415),
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("application/vnd.api+json", 200),
    ],
)
def test_a_body_that_is_not_declared_json_gets_415_saying_what_is_expected(content_type: str, status: int) -> None:
    async def main() -> None:
        async with serving(create_app(Recording(), ServeConfig(warmup=False))) as client:
            r = await client.post(
                "/v1/classify", content=b'{"texts": ["good"]}', headers={"content-type": content_type}
            )
            assert r.status_code == status, r.text
            if status == 415:
                assert "send the body as application/json" in r.json()["detail"]
                assert r.json()["expected"] == "application/json"

    run(main)


def test_docs_are_opt_in_because_their_page_loads_scripts_from_a_cdn() -> None:
    async def main() -> None:
        async with serving(create_app(Recording(), ServeConfig(warmup=False))) as client:
            assert (await client.get("/docs")).status_code == 404
            assert (await client.get("/redoc")).status_code == 404
            assert "/v1/classify" in (await client.get("/openapi.json")).json()["paths"]
        async with serving(create_app(Recording(), ServeConfig(warmup=False, docs=True))) as client:
            page = await client.get("/docs")
            assert page.status_code == 200 and "https://" in page.text  # the CDN the page loads from

    run(main)
