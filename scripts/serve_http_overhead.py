"""The server's per-request CPU cost without a model: HTTP parsing, JSON, validation, metrics, event loop.

Serves `create_app` around a classifier that answers instantly (batching off, so every request
goes through the batcher and the worker thread as in production), in a subprocess per uvicorn
configuration, and measures the server process's CPU time (`/proc/PID/stat`) per answered
request under `squeezebert.serve.loadtest`, interleaved over --repeats rounds.

    python scripts/serve_http_overhead.py --configs asyncio:h11 --concurrency 8 --duration 4 --repeats 3

A configuration is LOOP:HTTP as uvicorn names them (uvloop/httptools need those packages).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from serve_loadtest import cpu_seconds, free_port  # noqa: E402

from squeezebert.loadtest import loadtest  # noqa: E402

SERVER = """
import sys, uvicorn
from squeezebert.infer import Prediction
from squeezebert.serve import ServeConfig, create_app

class Instant:
    labels = ("0", "1")
    max_length = 128

    def predict(self, inputs, batch_size=32):
        return [Prediction(label="1", score=0.9, probabilities={"0": 0.1, "1": 0.9}) for _ in inputs]

port, loop, http = int(sys.argv[1]), sys.argv[2], sys.argv[3]
app = create_app(Instant(), ServeConfig(batching=False))
uvicorn.run(app, host="127.0.0.1", port=port, loop=loop, http=http, log_level="warning")
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="asyncio:h11")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    servers = {}
    for config in args.configs.split(","):
        loop, http = config.split(":")
        port = free_port()
        servers[config] = (subprocess.Popen([sys.executable, "-c", SERVER, str(port), loop, http]), port)
    try:
        for _proc, port in servers.values():
            for _ in range(300):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        results: dict[str, list[float]] = {k: [] for k in servers}
        for _ in range(args.repeats):
            for config, (proc, port) in servers.items():
                before = cpu_seconds(proc.pid)
                report = loadtest(f"http://127.0.0.1:{port}", concurrency=args.concurrency, duration_s=args.duration)
                results[config].append(1000 * (cpu_seconds(proc.pid) - before) / max(report.requests, 1))
        for config, values in results.items():
            rounded = ", ".join(f"{v:.3f}" for v in values)
            print(f"{config}: server CPU ms per request {rounded} (median {statistics.median(values):.3f})")
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
