"""The load-test client: its bounds (loopback only, bounded runs) and its report when the server is
not there. The client against a real server: tests/test_serve.py's end-to-end runs."""

from __future__ import annotations

import math
import socket

import pytest

from squeezebert.loadtest import loadtest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("url", "kwargs", "match"),
    [
        ("http://10.0.0.5:8080", {}, "only targets this machine"),
        ("http://example.com", {}, "only targets this machine"),
        ("http://0.0.0.0:8080", {}, "only targets this machine"),
        ("ftp://127.0.0.1", {}, "not an http"),
        ("http://127.0.0.1:1", {"duration_s": 61}, "duration"),
        ("http://127.0.0.1:1", {"duration_s": 0}, "duration"),
        ("http://127.0.0.1:1", {"concurrency": 257}, "concurrency"),
        ("http://127.0.0.1:1", {"concurrency": 0}, "concurrency"),
        ("http://127.0.0.1:1", {"rate": 0}, "rate"),
        ("http://127.0.0.1:1", {"rate": 2001}, "rate"),
        ("http://127.0.0.1:1", {"rate": float("nan")}, "rate"),
    ],
)
def test_loadtest_refuses_remote_hosts_and_unbounded_runs(url: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        loadtest(url, **{"duration_s": 1, **kwargs})


def test_loadtest_counts_a_refused_connection_as_an_error_by_name() -> None:
    report = loadtest(f"http://127.0.0.1:{_free_port()}", concurrency=2, duration_s=0.2)
    assert report.requests > 0 and report.status_counts == {"ConnectionRefusedError": report.requests}
    assert report.errors == report.requests and report.requests_per_s == 0
    assert math.isnan(report.latency_ms["p50"])  # nothing completed: no latency, not an error
