"""Micro-batching on vs off, measured end to end: real `squeezebert serve` processes, real HTTP.

Starts one server per mode (each on its own free loopback port, same model and flags otherwise),
waits for /readyz, then runs `squeezebert.serve.loadtest` against them *interleaved*
(concurrency 1: mode A, mode B; concurrency 8: A, B; ...), so that a change in the machine's load
hits both modes alike. Around every run it also records where the CPU went:

- client CPU ms per request (this process: the load generator, `time.process_time`),
- server CPU ms per request (`/proc/PID/stat` utime + stime of the server process),
- model wall-clock ms per request and texts per model call (from the server's /metrics),

On a machine whose cores are busy with other work, a model call's wall time includes the time its
thread waits for a core, so it can exceed the server's CPU time; the CPU figures are the ones to
compare between modes (scripts/serve_http_overhead.py measures the non-model part on its own).
Optionally a fixed-rate (open loop) run per mode and a soak run (RSS before/after, 5xx count).

    python scripts/serve_loadtest.py MODEL --concurrency 1,8,32 --duration 30 --rate 50 \\
        --soak 60 --json results.json -- --num-threads 1

Arguments after ``--`` go to every `squeezebert serve`. Loopback only; every run is bounded by
the loadtest's own limits (<= 60 s, <= 256 clients).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from squeezebert.loadtest import loadtest

MODES = {
    "off": ["--no-batching"],
    "on": [],  # the defaults of `squeezebert serve`
    # The defaults before the forward-batch change: wait 5 ms to fill, one forward pass per call.
    "on-old": ["--max-wait-ms", "5", "--forward-batch-size", "32"],
}


@dataclass
class Server:
    mode: str
    port: int
    proc: subprocess.Popen

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model: str, mode: str, extra: list[str], log_dir: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "squeezebert", "serve", model, "--port", str(port), *MODES[mode], *extra]
    log = open(log_dir / f"serve-{mode}.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    return Server(mode, port, proc)


def wait_ready(server: Server, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server {server.mode} exited with {server.proc.returncode}")
        try:
            if httpx.get(server.base + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server {server.mode} not ready after {timeout_s} s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def rss_mb(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    assert match is not None
    return int(match.group(1)) / 1024


def model_stats(server: Server) -> dict[str, float]:
    text = httpx.get(server.base + "/metrics", timeout=10).text
    out = {}
    names = ("squeezebert_model_duration_seconds_sum", "squeezebert_batch_size_sum", "squeezebert_batch_size_count")
    for name in names:
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        out[name] = float(match.group(1)) if match else 0.0
    return out


def measure(server: Server, concurrency: int, duration: float, rate: float | None = None) -> dict:
    before_stats, before_cpu, before_rss = model_stats(server), cpu_seconds(server.proc.pid), rss_mb(server.proc.pid)
    client_cpu = time.process_time()
    report = loadtest(server.base, concurrency=concurrency, duration_s=duration, rate=rate)
    client_cpu = time.process_time() - client_cpu
    after_cpu, after_rss = cpu_seconds(server.proc.pid), rss_mb(server.proc.pid)
    after_stats = model_stats(server)
    done = max(report.status_counts.get("200", 0), 1)
    calls = after_stats["squeezebert_batch_size_count"] - before_stats["squeezebert_batch_size_count"]
    texts = after_stats["squeezebert_batch_size_sum"] - before_stats["squeezebert_batch_size_sum"]
    model_key = "squeezebert_model_duration_seconds_sum"
    model_s = after_stats[model_key] - before_stats[model_key]
    server_cpu = after_cpu - before_cpu
    row = {
        "mode": server.mode,
        "concurrency": concurrency,
        "rate": rate,
        "duration_s": report.duration_s,
        "requests_per_s": report.requests_per_s,
        "p50_ms": report.latency_ms["p50"],
        "p90_ms": report.latency_ms["p90"],
        "p99_ms": report.latency_ms["p99"],
        "status_counts": report.status_counts,
        "server_5xx": sum(n for s, n in report.status_counts.items() if s.startswith("5")),
        "texts_per_model_call": texts / calls if calls else 0.0,
        "model_wall_ms_per_request": 1000 * model_s / done,
        "server_cpu_ms_per_request": 1000 * server_cpu / done,
        "client_cpu_ms_per_request": 1000 * client_cpu / done,
        "rss_mb_before": before_rss,
        "rss_mb_after": after_rss,
        "loadavg_1min": os.getloadavg()[0],
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    argv = sys.argv[1:]
    serve_args: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, serve_args = argv[:i], argv[i + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--modes", default="off,on-old,on", help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=None, help="also a fixed-rate run per mode (requests/s)")
    parser.add_argument("--rate-concurrency", type=int, default=64, help="in-flight cap of the fixed-rate run")
    parser.add_argument("--soak", type=float, default=None, help="also a soak run of this many s (last mode)")
    parser.add_argument("--soak-concurrency", type=int, default=32)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    log_dir = Path(args.json).parent if args.json else Path(".")
    servers = [start(args.model, mode, serve_args, log_dir) for mode in modes]
    rows = []
    try:
        for server in servers:
            wait_ready(server)
        for c in (int(x) for x in args.concurrency.split(",")):
            for server in servers:
                rows.append(measure(server, c, args.duration))
        if args.rate is not None:
            for server in servers:
                rows.append(measure(server, args.rate_concurrency, args.duration, rate=args.rate))
        if args.soak is not None:
            rows.append({**measure(servers[-1], args.soak_concurrency, args.soak), "soak": True})
    finally:
        for server in servers:
            server.proc.send_signal(signal.SIGTERM)
        exits = {s.mode: s.proc.wait(timeout=60) for s in servers}
    result = {"model": args.model, "serve_args": serve_args, "runs": rows, "sigterm_exit_codes": exits}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
