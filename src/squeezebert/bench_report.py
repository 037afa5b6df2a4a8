"""The benchmark's report as text and as a picture: terminal or markdown tables
(:func:`format_report`), a PNG plot (:func:`plot_report`), and the files a run writes
(:func:`write_outputs`). The reports are the dictionaries :func:`squeezebert.bench.run_bench` and
:func:`squeezebert.bench.run_workload` return; nothing here measures.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from squeezebert.timing import busy_warning


def _fmt(value: Any, spec: str = ".1f") -> str:
    if value is None:
        return "-"
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def _environment_lines(env: Mapping[str, Any]) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    return [
        f"CPU: {env['cpu']} ({env['cpus_available']} of {env['logical_cpus']} logical CPUs available; "
        f"{' '.join(env['cpu_flags']) or 'no AVX-512'}), threads {env['threads']}",
        f"software: python {env['python']}, {versions}",
        f"date: {env['date']}; load average at start {env['load_average']}, at end {env.get('load_average_end')}",
    ] + [f"WARNING: {w}" for w in busy_warning(env)]


def format_report(report: Mapping[str, Any], markdown: bool = False) -> str:
    """The report as text: terminal tables, or markdown with ``markdown=True``."""
    if report["kind"] == "workload":
        return _format_workload(report, markdown)
    env, settings = report["environment"], report["settings"]
    peaks = report["matmul_peak_gops"]
    m = settings["matmul_size"]
    lines = ["# squeezebert bench" if markdown else "squeezebert bench", ""]
    lines += [("- " if markdown else "") + line for line in _environment_lines(env)]
    lines += [
        ("- " if markdown else "")
        + f"matmul peak ({m}x{m}x{m}, same run): "
        + ", ".join(f"{p} {_fmt(v)} GOP/s" for p, v in peaks.items()),
        ("- " if markdown else "") + f"energy: {report['energy']['note']}",
        ("- " if markdown else "")
        + f"timing: {settings['warmup']} warm-up + up to {settings['repeats']} interleaved rounds per cell"
        + (f" (at most {limit} s)" if (limit := settings["max_seconds_per_cell"]) else "")
        + f", {settings['inputs']}"
        + (f"; {order}" if (order := settings.get("order")) else ""),
        ("- " if markdown else "") + f"speedup vs {report['baseline']} (p50 ratio)",
        ("- " if markdown else "")
        + "GOP/s: the model's FLOPs per batch / p50; % peak: of the matmul peak of the candidate's precision, "
        + "% int8 peak: of the int8 peak",
        "",
    ]
    header = ["candidate", "model", "params M", "file MB", "RSS load MB", "RSS run MB", "status / note"]
    rows = []
    for c in report["candidates"]:
        rows.append(
            [
                c["name"],
                c["model"] or "-",
                _fmt(None if c["parameters"] is None else c["parameters"] / 1e6, ".2f"),
                _fmt(None if c["file_bytes"] is None else c["file_bytes"] / 1e6, ".1f"),
                _fmt(c["rss_load_mb"]),
                _fmt(c["rss_run_peak_mb"]),
                c["note"] if c["status"] == "ok" else c["note"],
            ]
        )
    lines += [_table(header, rows, markdown), ""]
    header = ["candidate", "batch", "seq", "p50 ms", "p90 ms", "p99 ms", "texts/s", "GOP/s", "% peak", "% int8 peak"]
    header += ["J/1k texts" + (" (est.)" if report["energy"]["source"] == "estimate" else ""), "speedup"]
    cell_rows = []
    for c in report["candidates"]:
        for cell in c["cells"]:
            lat = cell["latency_ms"]
            cell_rows.append(
                (
                    (cell["batch_size"], cell["seq_len"], c["name"]),
                    [
                        c["name"],
                        str(cell["batch_size"]),
                        str(cell["seq_len"]),
                        _fmt(lat["p50"], ".2f"),
                        _fmt(lat["p90"], ".2f"),
                        _fmt(lat["p99"], ".2f"),
                        _fmt(cell["throughput_texts_per_s"]),
                        _fmt(cell["gops"]),
                        _fmt(None if cell["peak_fraction"] is None else 100 * cell["peak_fraction"], ".1f"),
                        _fmt(_percent(cell.get("int8_peak_fraction")), ".1f"),
                        _fmt(cell["energy_j_per_1000_texts"], ".2f"),
                        _fmt(cell["speedup_vs_baseline"], ".2f") + "x",
                    ],
                )
            )
    order = {c["name"]: i for i, c in enumerate(report["candidates"])}
    cell_rows.sort(key=lambda r: (r[0][0], r[0][1], order[r[0][2]]))
    lines.append(_table(header, [r for _, r in cell_rows], markdown))
    if report.get("summary"):
        lines += ["", _summary_table(report["summary"], markdown)]
    lines += ["", ("- " if markdown else "") + "memory: " + report["memory_method"]]
    lines.append(("- " if markdown else "") + f"process peak RSS: {report['process_peak_rss_mb']} MB")
    return "\n".join(lines) + "\n"


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else 100 * fraction


def _summary_table(summary: Sequence[Mapping[str, Any]], markdown: bool) -> str:
    """Best of ours against the best peer, per cell (see :func:`summarize`)."""
    title = "best of ours vs the best peer (fastest of all the others), p50"
    header = ["batch", "seq", "best ours", "ms", "best peer", "ms", "peer/ours", "int8 floor ms", "floor/ours"]
    rows = [
        [
            str(s["batch_size"]),
            str(s["seq_len"]),
            _fmt(s["best_ours"]),
            _fmt(s["best_ours_p50_ms"], ".2f"),
            _fmt(s["best_peer"]),
            _fmt(s["best_peer_p50_ms"], ".2f"),
            _fmt(s["ratio"], ".2f") + ("x" if s["ratio"] is not None else ""),
            _fmt(s["floor_ms"], ".2f"),
            _fmt(s["floor_ratio"], ".3f"),
        ]
        for s in summary
    ]
    return ("### " if markdown else "") + title + "\n\n" + _table(header, rows, markdown)


def _format_workload(report: Mapping[str, Any], markdown: bool) -> str:
    s = report["settings"]
    lines = ["# squeezebert bench --workload" if markdown else "squeezebert bench --workload", ""]
    bullet = "- " if markdown else ""
    lines += [bullet + line for line in _environment_lines(report["environment"])]
    lines += [
        bullet
        + f"workload: {s['workload']} ({s['num_texts']} texts), model {s['model']}, max_length {s['max_length']}",
        bullet + f"ours: {s['ours']}",
        *([bullet + f"teacher: {s['teacher']}, run alike (student speedup: over it)"] if s.get("teacher") else []),
        bullet + f"transformers: {s['transformers']} (label agreement: with it)",
        bullet + f"timed: {s['timed']}; {s['warmup']} warm-up, up to {s['repeats']} interleaved passes",
        "",
    ]
    header = ["implementation", "batch", "s/pass p50", "s/pass p90", "texts/s", "speedup", "label agreement"]
    teacher = any("student_speedup" in r for r in report["rows"])
    if teacher:
        header += ["student speedup", "student agreement"]
    rows = [
        [
            r["implementation"],
            str(r["batch_size"]),
            _fmt(r["seconds_per_pass"]["p50"], ".3f"),
            _fmt(r["seconds_per_pass"]["p90"], ".3f"),
            _fmt(r["texts_per_s"]),
            _fmt(r["speedup_vs_transformers"], ".2f") + "x",
            f"{r['label_agreement']:.2%}",
        ]
        + (
            [
                _fmt(r.get("student_speedup"), ".2f") + ("x" if "student_speedup" in r else ""),
                f"{r['student_agreement']:.2%}" if "student_agreement" in r else "-",
            ]
            if teacher
            else []
        )
        for r in report["rows"]
    ]
    lines.append(_table(header, rows, markdown))
    return "\n".join(lines) + "\n"


def require_matplotlib() -> Any:
    """matplotlib, or an ImportError naming the extra (the runners call this before measuring)."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install 'squeezebert[plot]'") from None
    return matplotlib


def plot_report(report: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """A PNG: p50 latency per configuration (and accuracy vs latency when accuracies are known);
    for a workload report, texts/s per implementation and batch size."""
    matplotlib = require_matplotlib()
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    from squeezebert.files import atomic_write

    if report["kind"] == "workload":
        fig = Figure(figsize=(6, 4), layout="constrained")
        ax = fig.subplots()
        batch_sizes = report["settings"]["batch_sizes"]
        width = 0.38
        for k, who in enumerate(("ours", "transformers")):
            values = [
                next(r["texts_per_s"] for r in report["rows"] if r["implementation"] == who and r["batch_size"] == b)
                for b in batch_sizes
            ]
            ax.bar([i + (k - 0.5) * width for i in range(len(batch_sizes))], values, width, label=who)
        ax.set_xticks(range(len(batch_sizes)), [f"batch {b}" for b in batch_sizes])
        ax.set_ylabel("texts/s (end to end, higher is better)")
        ax.set_title(f"{Path(report['settings']['workload']).name}: {report['settings']['num_texts']} texts")
        ax.legend()
    else:
        measured = [c for c in report["candidates"] if c["cells"]]
        with_acc = [c for c in measured if c["accuracy"] is not None]
        fig = Figure(figsize=(13 if with_acc else 9, 5), layout="constrained")
        axes = fig.subplots(1, 2 if with_acc else 1, squeeze=False)[0]
        ax = axes[0]
        cells = sorted({(cell["batch_size"], cell["seq_len"]) for c in measured for cell in c["cells"]})
        width = 0.8 / max(1, len(measured))
        for k, c in enumerate(measured):
            p50 = {(cell["batch_size"], cell["seq_len"]): cell["latency_ms"]["p50"] for cell in c["cells"]}
            color = matplotlib.colormaps["tab20"](k % 20)  # tab10 would repeat after ten candidates
            ax.bar(
                [i + k * width for i in range(len(cells))],
                [p50[cell] for cell in cells],
                width,
                label=c["name"],
                color=color,
            )
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cells))], [f"b{b} x s{s}" for b, s in cells])
        ax.set_yscale("log")
        ax.set_ylabel("p50 latency, ms (log; lower is better)")
        threads = report["settings"]["threads"]
        ax.set_title(f"{report['environment']['cpu']}, {threads} thread{'s' if threads != 1 else ''}")
        ax.legend(fontsize=7, ncol=2)
        if with_acc:
            b, s = min(cell[0] for cell in cells), max(cell[1] for cell in cells)
            ax2 = axes[1]
            for c in with_acc:
                p50 = next(
                    cell["latency_ms"]["p50"] for cell in c["cells"] if (cell["batch_size"], cell["seq_len"]) == (b, s)
                )
                ax2.scatter(p50, c["accuracy"])
                ax2.annotate(c["name"], (p50, c["accuracy"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax2.set_xscale("log")
            ax2.set_xlabel(f"p50 latency at batch {b} x seq {s}, ms (log)")
            ax2.set_ylabel("accuracy")
            ax2.set_title("accuracy vs latency")
    atomic_write(Path(path), lambda p: fig.savefig(p, format="png", dpi=120))


def write_outputs(
    report: Mapping[str, Any],
    json_path: str | os.PathLike[str] | None = None,
    markdown_path: str | os.PathLike[str] | None = None,
    plot_path: str | os.PathLike[str] | None = None,
) -> None:
    """Write the report as JSON, markdown and a PNG plot (each only where a path is given),
    each to a temporary name first, then renamed."""
    from squeezebert.files import atomic_write_text

    for target in (json_path, markdown_path, plot_path):
        if target is not None:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
    if json_path is not None:
        atomic_write_text(Path(json_path), json.dumps(report, indent=2) + "\n")
    if markdown_path is not None:
        atomic_write_text(Path(markdown_path), format_report(report, markdown=True))
    if plot_path is not None:
        plot_report(report, plot_path)
