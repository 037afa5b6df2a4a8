"""Tabulate squeeze reports (report.json files) as the markdown tables of docs/RESULTS.md.

python scripts/summarize_squeeze.py runs/student-*/report.json
python scripts/summarize_squeeze.py --latency runs/latency-*   (issue 15's table, run directories)

The first table has one row per report; the second averages, per student variant (the report
directory's name without the task and seed: ``student-cola-grouped-s43`` -> ``grouped``), the change
of the main metric in points (x100) over the tasks that variant was run on (seeds of one task are
averaged first, so each task counts once), and the median speed ratios.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def _ratio(row: dict, key: str, batch: str) -> float:
    return row.get(key, {}).get(batch, float("nan"))


def main(paths: list[str]) -> None:
    print(
        "| task | student | teacher | after construction | after distillation | Δ (points) | "
        "fp32 speedup b1 / b32 | int8 student vs int8 teacher b1 / b32 | fastest vs fastest b1 / b32 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    by_variant: dict[str, list[tuple[str, float, float, float]]] = defaultdict(list)
    for p in sorted(paths):
        r = json.loads(Path(p).read_text())
        m = r["main_metric"]
        rows = {row["model"]: row for row in r["rows"]}
        fp = rows["student fp32"]
        fp32 = (
            f"{_ratio(fp, 'speedup_vs_teacher_fp32', 'batch1'):.2f}x / "
            f"{_ratio(fp, 'speedup_vs_teacher_fp32', 'batch32'):.2f}x"
        )
        int8 = ""
        q1 = q32 = float("nan")
        if "student int8" in rows:
            q = rows["student int8"]
            q1 = _ratio(q, "speedup_vs_teacher_int8", "batch1")
            q32 = _ratio(q, "speedup_vs_teacher_int8", "batch32")
            int8 = f"{q1:.2f}x / {q32:.2f}x"
        fastest = ""
        if "fastest" in r:  # reports from before the bf16 rows have no such section
            f1, f32 = r["fastest"].get("batch1"), r["fastest"].get("batch32")
            if f1 and f32:
                # "student bf16" vs "teacher int8" -> "(s bf16 vs int8)"
                fastest = " / ".join(
                    f"{f['speedup']:.2f}x (s {f['student'].split()[1]} vs {f['teacher'].split()[1]})" for f in (f1, f32)
                )
        t, a, d = r["teacher_metrics"][m], r["student_after_construction"][m], r["student_metrics"][m]
        name = Path(p).parent.name
        label = name.removeprefix("student-").removeprefix(f"{r['task']}-")
        variant = re.sub(r"-s\d+$", "", label)
        by_variant[variant].append((r["task"], 100 * (d - t), _ratio(fp, "speedup_vs_teacher_fp32", "batch1"), q1))
        print(
            f"| {r['task']} | {label} | {100 * t:.2f} | {100 * a:.2f} | {100 * d:.2f} | "
            f"{100 * (d - t):+.2f} | {fp32} | {int8} | {fastest} |"
        )
    budgeted = [(p, json.loads(Path(p).read_text())) for p in sorted(paths)]
    budgeted = [(p, r) for p, r in budgeted if r.get("budget")]
    if budgeted:
        print()
        print(
            "| task | student | budget (batch) | chosen shape | params | timed at choice | deployed student | "
            "within | metric Δ (points) | fastest vs fastest b1 / b32 |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for p, r in budgeted:
            b, m = r["budget"], r["main_metric"]
            key = f"batch{b['batch']}"
            chosen = next(c for c in b["candidates"] if c["chosen"])
            met = r.get("budget_met") or {}
            f = r.get("fastest", {})
            ff = " / ".join(f"{f[k]['speedup']:.2f}x" for k in ("batch1", "batch32") if k in f)
            label = Path(p).parent.name.removeprefix("student-").removeprefix(f"{r['task']}-")
            print(
                f"| {r['task']} | {label} | {b['budget_ms']:.2f} ms (b{b['batch']}) | {b['chosen']['shape']} | "
                f"{chosen['parameters'] / 1e6:.1f}M | {chosen['latency_ms'][key]:.2f} ms | "
                f"{met.get('path', '')} {met.get('ms', float('nan')):.2f} ms | "
                f"{'yes' if met.get('within') else 'NO'} | "
                f"{100 * (r['student_metrics'][m] - r['teacher_metrics'][m]):+.2f} | {ff} |"
            )
    print()
    print("| student | tasks (runs) | mean Δ (points) | median fp32 speedup b1 | median int8 vs int8 b1 |")
    print("|---|---|---|---|---|")
    for variant, rs in sorted(by_variant.items()):
        per_task: dict[str, list[float]] = defaultdict(list)
        for task, delta, *_ in rs:
            per_task[task].append(delta)
        tasks = ", ".join(f"{t} ({len(d)})" if len(d) > 1 else t for t, d in per_task.items())
        mean = statistics.fmean(statistics.fmean(d) for d in per_task.values())
        sp = statistics.median(x[2] for x in rs)
        q = statistics.median(x[3] for x in rs)
        print(f"| {variant} | {tasks} | {mean:+.2f} | {sp:.2f}x | {q:.2f}x |")


def _shape(r: dict) -> str:
    """The student's shape: the budget's choice, or a fixed pruned construction's own (e.g. 5L-3h-384f)."""
    if r["budget"]:
        return r["budget"]["chosen"]["shape"]
    c = json.loads(r["construction"]) if r["construction"].startswith("{") else {}
    if {"layers", "heads", "ffn"} <= c.keys():
        from squeezebert.budget import Shape  # torch: only for fixed-shape rows

        return f"{Shape(len(c['layers']), c['heads'], c['ffn']).name} (fixed)"
    return r["construction"]


def latency(paths: list[str]) -> None:
    """Issue 15's table: one row per ``squeeze --speedup`` run directory (its name is the task);
    a squeeze of a fixed shape gets its shape and no budget verdict."""
    print(
        "| task | tokens p50 / p90 | chosen shape | teacher | student (deployed) | Δ (points) | "
        "fastest vs fastest b1 / b32 | speed-up asked, met? | squeeze wall (min) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    deltas = []
    for d in sorted(paths):
        r = json.loads((Path(d) / "report.json").read_text())
        m, f, b = r["main_metric"], r["fastest"], r["budget"]
        deployed = next((row for row in r["rows"] if row["model"].startswith("student openvino")), None)
        student = (deployed or {}).get("metrics", r["student_metrics"])[m]
        teacher = r["teacher_metrics"][m]
        deltas.append(100 * (student - teacher))
        met = r.get("budget_met") or {}
        asked = "—"  # a fixed shape: no speed-up was asked for
        if b:
            asked = f"{b['speedup']}x: {'yes' if met.get('within') else 'NO'} ({met.get('speedup', float('nan')):.2f}x)"
        print(
            f"| {Path(d).name.removeprefix('latency-')} | {r['lengths']['p50']:.0f} / {r['lengths']['p90']:.0f} | "
            f"{_shape(r)} | {100 * teacher:.2f} | {100 * student:.2f} | {100 * (student - teacher):+.2f} | "
            f"{f['batch1']['speedup']:.2f}x / {f['batch32']['speedup']:.2f}x | "
            f"{asked} | "
            f"{sum(r['cost_s'].values()) / 60:.1f} |"
        )
    print(f"\nmean Δ over {len(deltas)} tasks: {statistics.fmean(deltas):+.2f} points")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--latency"]:
        latency(sys.argv[2:])
    else:
        main(sys.argv[1:])
