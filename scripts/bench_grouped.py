"""Measure formulations of a grouped projection on this CPU (fp32, forward).

Candidates, all computing the same map for SqueezeBERT-base's grouped shapes (groups=4):

* ``conv1d_bct``: ``nn.Conv1d(k=1, groups)`` on ``(B, C, T)`` input, as transformers does (no
  transposes counted: that layout is kept between layers there).
* ``conv1d_btc``: the same Conv1d called from our ``(B, T, C)`` layout (two transposes).
* ``bmm``: one batched matmul over groups in ``(B, T, C)`` (what ``GroupedLinear`` does).
* ``baddbmm``: the same with the bias fused into the matmul.
* ``baddbmm_out``: ``baddbmm`` writing straight into the ``(N, G, out/G)`` result through a
  transposed view, saving the copy back to ``(B, T, C)`` (no autograd through ``out=``).
* ``einsum``: ``torch.einsum("ngi,goi->ngo")``.
* ``blockdiag_linear``: one dense GEMM with the block-diagonal weight (groups x the FLOPs).
* ``loop``: a Python loop of ``F.linear`` over groups, for reference only.

Candidates are interleaved round-robin so machine drift hits all alike; medians are reported.

    python scripts/bench_grouped.py --threads 2 --repeats 30 --markdown
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F


def candidates(cin: int, cout: int, g: int, b: int, t: int) -> dict[str, Callable[[], torch.Tensor]]:
    torch.manual_seed(0)
    w = torch.randn(cout, cin // g) * 0.02  # (out, in/G)
    bias = torch.randn(cout)
    x_btc = torch.randn(b, t, cin)
    x_bct = x_btc.transpose(1, 2).contiguous()
    conv = torch.nn.Conv1d(cin, cout, 1, groups=g)
    with torch.no_grad():
        conv.weight.copy_(w.unsqueeze(-1))
        conv.bias.copy_(bias)
    wg = w.view(g, cout // g, cin // g).transpose(1, 2).contiguous()  # (G, in/G, out/G)
    w_e = w.view(g, cout // g, cin // g)  # (G, out/G, in/G)
    dense = torch.block_diag(*w.view(g, cout // g, cin // g).unbind(0))  # (out, in)
    chunks_w = w.view(g, cout // g, cin // g).unbind(0)
    chunks_b = bias.view(g, cout // g).unbind(0)

    def bmm() -> torch.Tensor:
        xg = x_btc.reshape(-1, g, cin // g).transpose(0, 1)  # (G, N, in/G)
        y = torch.bmm(xg, wg).transpose(0, 1).reshape(b, t, cout)  # (B, T, out)
        return y + bias

    bias_g = bias.view(g, 1, cout // g)  # (G, 1, out/G)

    def baddbmm() -> torch.Tensor:
        xg = x_btc.reshape(-1, g, cin // g).transpose(0, 1)  # (G, N, in/G)
        return torch.baddbmm(bias_g, xg, wg).transpose(0, 1).reshape(b, t, cout)  # (B, T, out)

    def baddbmm_out() -> torch.Tensor:
        xg = x_btc.reshape(-1, g, cin // g).transpose(0, 1)  # (G, N, in/G)
        y = torch.empty(b * t, g, cout // g)  # (N, G, out/G): written through a transposed view
        torch.baddbmm(bias_g, xg, wg, out=y.transpose(0, 1))
        return y.view(b, t, cout)

    def einsum() -> torch.Tensor:
        y = torch.einsum("ngi,goi->ngo", x_btc.reshape(-1, g, cin // g), w_e)  # (N, G, out/G)
        return y.reshape(b, t, cout) + bias

    def loop() -> torch.Tensor:
        xs = x_btc.split(cin // g, dim=-1)
        return torch.cat([F.linear(xi, wi, bi) for xi, wi, bi in zip(xs, chunks_w, chunks_b)], dim=-1)

    return {
        "conv1d_bct": lambda: conv(x_bct),
        "conv1d_btc": lambda: conv(x_btc.transpose(1, 2)).transpose(1, 2),
        "bmm": bmm,
        "baddbmm": baddbmm,
        "baddbmm_out": baddbmm_out,
        "einsum": einsum,
        "blockdiag_linear": lambda: F.linear(x_btc, dense, bias),
        "loop": loop,
    }


def check_equal(fns: dict[str, Callable[[], torch.Tensor]]) -> None:
    ref = fns["bmm"]()
    for name, fn in fns.items():
        out = fn()
        out = out.transpose(1, 2) if name == "conv1d_bct" else out
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4, msg=f"{name} disagrees")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    # SqueezeBERT-base's grouped projections (q/k/v, FFN in, FFN out), groups = 4.
    shapes = [(768, 768, 4), (768, 3072, 4), (3072, 768, 4)]
    rows = []
    with torch.inference_mode():
        for b in (1, 32):
            for t in (32, 128):
                fns_per_shape = [candidates(cin, cout, g, b, t) for cin, cout, g in shapes]
                for fns in fns_per_shape:
                    check_equal(fns)
                names = list(fns_per_shape[0])
                times: dict[str, list[float]] = {n: [] for n in names}
                reps = args.repeats if b == 1 else max(5, args.repeats // 3)
                for _ in range(3):  # warm-up
                    for fns in fns_per_shape:
                        for fn in fns.values():
                            fn()
                for _ in range(reps):
                    for n in names:  # interleaved: one candidate's full layer stack, then the next
                        start = time.perf_counter()
                        for fns in fns_per_shape:
                            fns[n]()
                        times[n].append((time.perf_counter() - start) * 1e3)
                med = {n: statistics.median(v) for n, v in times.items()}
                rows.append((b, t, med))
    names = list(rows[0][2])
    if args.markdown:
        print("| batch | seq | " + " | ".join(names) + " | fastest |")
        print("|---|---|" + "---|" * len(names) + "---|")
        for b, t, med in rows:
            best = min((m for n, m in med.items() if n != "loop"))
            cells = [f"**{med[n]:.3f}**" if med[n] == best else f"{med[n]:.3f}" for n in names]
            fastest = min((n for n in names if n != "loop"), key=med.get)
            print(f"| {b} | {t} | " + " | ".join(cells) + f" | {fastest} |")
    else:
        for b, t, med in rows:
            print(b, t, {n: round(v, 3) for n, v in med.items()})


if __name__ == "__main__":
    main()
