"""Tabulate squeeze reports (report.json files) as the markdown table of docs/RESULTS.md.

python scripts/summarize_squeeze.py runs/student-*/report.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(paths: list[str]) -> None:
    print(
        "| task | student | teacher | after construction | after distillation | Δ | "
        "fp32 speedup b1 / b32 | int8 student vs int8 teacher b1 / b32 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for p in sorted(paths):
        r = json.loads(Path(p).read_text())
        m = r["main_metric"]
        rows = {row["model"]: row for row in r["rows"]}
        s = rows["student fp32"]["speedup_vs_teacher_fp32"]
        fp32 = f"{s['batch1']:.2f}x / {s.get('batch32', float('nan')):.2f}x"
        int8 = ""
        if "student int8" in rows:
            q = rows["student int8"]["speedup_vs_teacher_int8"]
            int8 = f"{q['batch1']:.2f}x / {q.get('batch32', float('nan')):.2f}x"
        t, a, d = r["teacher_metrics"][m], r["student_after_construction"][m], r["student_metrics"][m]
        name = Path(p).parent.name
        print(f"| {r['task']} | {name} | {t:.4f} | {a:.4f} | {d:.4f} | {d - t:+.4f} | {fp32} | {int8} |")


if __name__ == "__main__":
    main(sys.argv[1:])
