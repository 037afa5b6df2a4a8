"""The squeeze report in words and pictures: the markdown (:func:`render_report`), the shape
choice's latency-vs-accuracy plot (:func:`plot_budget`), and the summaries of the measured rows
the report is built from (:func:`fastest_paths`, :func:`block_speedups`, :func:`pareto_notes`).
Everything here reads the plain dictionaries :mod:`squeezebert.squeeze` measured; nothing here
measures, trains or imports torch, so a saved ``report.json`` renders anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from squeezebert.files import atomic_write

REPORT_MD = "report.md"
REPORT_JSON = "report.json"
REPORT_PNG = "latency_vs_accuracy.png"


def retiming_words(c: dict[str, Any]) -> str:
    """One re-timing of the chosen shape (``report["budget"]["confirmation"]``) in words."""
    words = (
        f"{c['shape']} {c['ms']:.2f} ms against the teacher's {c['teacher_ms']:.2f} ms, {c['speedup']:.2f}x "
        f"({'within' if c['within'] else 'short of'} the budget)"
    )
    if c.get("beside"):
        words += ", beside it " + ", ".join(
            f"{b['shape']} {b['speedup']:.2f}x{'' if b['within'] else ' (short)'}" for b in c["beside"]
        )
    if c.get("next_budget_ms") is not None:
        words += f"; the budget {'grown' if c['within'] else 'shrunk'} to {c['next_budget_ms']:.2f} ms in the table"
    if c.get("then"):
        words += f"; {c['then']}, re-timed within it, chosen"
    return words


def _recipe_words(recipe: str | None, why: str | None) -> str:
    """The report's words for the int8 recipe the latency table timed the shapes through."""
    if recipe == "dynamic":
        return (
            " (int8 weights with run-time activation scales: "
            + (why if why and why != "as given" else "the recipe every int8 export can fall back to")
            + ", so the budget holds whichever int8 recipe the student deploys with)"
        )
    if recipe == "fp32":
        return f" ({why})"
    if recipe == "static":
        return (
            " (static int8 calibrated on the training texts: "
            + (why if why and why != "as given" else "--budget-recipe static")
            + "; a student whose static int8 misses the agreement bar deploys slower than the table says)"
        )
    return ""


def plot_budget(budget: dict[str, Any], path: Path) -> None:
    """Latency of every candidate shape against the budget (left) and, for the shapes pruned
    and scored, latency against agreement with the teacher (right); the chosen one marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = f"batch{budget['batch']}"
    rows = sorted(budget["candidates"], key=lambda r: r["latency_ms"][key])
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = ["tab:green" if r["within_budget"] else "tab:gray" for r in rows]
    left.barh([r["shape"] for r in rows], [r["latency_ms"][key] for r in rows], color=colors)
    left.axvline(budget["budget_ms"], color="tab:red", linestyle="--", label=f"budget {budget['budget_ms']:.2f} ms")
    left.axvline(budget["teacher_ms"][key], color="black", linestyle=":", label="teacher")
    left.set_xlabel(f"ms per call, batch {budget['batch']}, {budget['runtime']}")
    left.legend(loc="lower right")
    left.tick_params(axis="y", labelsize=7)
    scored = [r for r in rows if r.get("score", r["agreement"]) is not None]
    right.scatter(
        [r["latency_ms"][key] for r in scored], [r.get("score", r["agreement"]) for r in scored], color="tab:blue"
    )
    for r in scored:
        right.annotate(
            r["shape"] + (" (chosen)" if r["chosen"] else ""), (r["latency_ms"][key], r.get("score", r["agreement"]))
        )
    right.axvline(budget["budget_ms"], color="tab:red", linestyle="--")
    right.set_xlabel("ms per call")
    right.set_ylabel("closeness to the teacher after pruning (score)")
    fig.suptitle("student shapes: measured latency and accuracy signal")
    fig.tight_layout()
    try:
        atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    finally:
        plt.close(fig)


def pareto_notes(rows: list[dict], metric: str, batch_sizes: tuple[int, ...], greater_is_better: bool) -> list[str]:
    """Say plainly, per batch size, which student paths are dominated by a teacher path (at
    least as accurate and at least as fast)."""
    notes = []
    for bs in batch_sizes:
        key = f"batch{bs}"
        for s in (r for r in rows if r["model"].startswith("student")):
            s_m, s_t = s["metrics"][metric], s["latency_ms"][key]["p50"]
            for t in (r for r in rows if r["model"].startswith("teacher")):
                t_m, t_t = t["metrics"][metric], t["latency_ms"][key]["p50"]
                better_or_equal = t_m >= s_m if greater_is_better else t_m <= s_m
                if better_or_equal and t_t <= s_t:
                    notes.append(
                        f"batch {bs}: {s['model']} is NOT on the accuracy/latency Pareto front: {t['model']} is "
                        f"as accurate ({t_m:.4f} vs {s_m:.4f}) and as fast ({t_t:.2f} vs {s_t:.2f} ms)"
                    )
                    break
            else:
                notes.append(f"batch {bs}: {s['model']} is on the Pareto front against every teacher path")
    return notes


def block_speedups(blocks: list[dict[str, dict[str, dict[str, float]]]]) -> list[dict[str, dict[str, float]]]:
    """Per block and batch size: the deployed student's and teacher's fastest export (p50 ms) and
    the speed-up between them; empty where only one of the two was exported."""
    out = []
    for block in blocks:
        per_batch: dict[str, dict[str, float]] = {}
        for key in next(iter(block.values()), {}):
            best = {}
            for who in ("teacher", "student"):
                times = [t[key]["p50"] for name, t in block.items() if name.startswith(who)]
                if times:
                    best[who] = min(times)
            if len(best) == 2:
                per_batch[key] = {
                    "teacher_ms": best["teacher"], "student_ms": best["student"],
                    "speedup": round(best["teacher"] / best["student"], 2),
                }  # fmt: skip
        if per_batch:
            out.append(per_batch)
    return out


def fastest_paths(rows: list[dict], metric: str, batch_sizes: tuple[int, ...]) -> dict[str, dict[str, Any]]:
    """Per batch size: the student's and the teacher's fastest path (by p50), their metrics and
    the speed ratio between them -- the comparison a user deploying either one would make."""
    out = {}
    for bs in batch_sizes:
        key = f"batch{bs}"

        def fastest(who: str, key: str = key) -> dict:
            return min((r for r in rows if r["model"].startswith(who)), key=lambda r: r["latency_ms"][key]["p50"])

        s, t = fastest("student"), fastest("teacher")
        s_ms, t_ms = s["latency_ms"][key]["p50"], t["latency_ms"][key]["p50"]
        out[f"batch{bs}"] = {
            "student": s["model"],
            "student_p50_ms": s_ms,
            "student_metric": s["metrics"][metric],
            "teacher": t["model"],
            "teacher_p50_ms": t_ms,
            "teacher_metric": t["metrics"][metric],
            "speedup": round(t_ms / s_ms, 2),
        }
    return out


def _block_lines(blocks: list[dict[str, dict[str, float]]], pause_s: float | None) -> list[str]:
    """The report's sentence on the deployed pair's spaced timing blocks (``pause_s`` apart, as
    recorded when they were timed; None in reports written before it was recorded)."""
    if not blocks:
        return []
    per_batch = []
    for key in blocks[0]:
        ups = [b[key]["speedup"] for b in blocks if key in b]
        per_batch.append(f"batch {key[5:]} " + ", ".join(f"{u:.2f}x" for u in ups))
    return [
        "",
        f"The deployed exports were timed in {len(blocks)} blocks "
        + ("spaced apart" if pause_s is None else f"{pause_s:g} s apart")
        + " and each path "
        "is quoted at its median over them (the machine's speed can change between blocks); the deployed "
        "student against the deployed teacher, block by block: " + "; ".join(per_batch) + ".",
    ]


def render_report(report: dict[str, Any], surgery_table: str | None = None) -> str:
    """The markdown report: the comparison table first, then what each lossy step lost."""
    metric = report["main_metric"]
    bss = sorted({int(k.split("_")[0][5:]) for r in report["rows"] for k in r["latency_ms"]})
    head = ["model", metric, "parameters", "GFLOPs@128", "file MB"]
    for bs in bss:
        head += [f"p50 ms b{bs}", f"speedup b{bs}"]
    lines = [
        f"# squeeze report: {report['task']}",
        "",
        f"Teacher `{report['teacher']}`; construction {report['construction']}; "
        f"{report['num_train_examples']} training and {report['num_dev_examples']} dev examples; "
        f"latency on the training texts' own lengths (p50 {report['lengths']['p50']:.0f}, p90 "
        f"{report['lengths']['p90']:.0f} tokens; batch 1: one text per call, batch B: B texts padded to the "
        f"longest), {report['threads']} threads, median of interleaved runs; speedup is against the teacher in fp32.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in report["rows"]:
        cells = [
            r["model"],
            f"{r['metrics'][metric]:.4f}",
            f"{r['parameters']:,}" if r["parameters"] else "",
            f"{r['flops_seq128'] / 1e9:.2f}",
            f"{r['file_bytes'] / 1e6:.1f}" if r["file_bytes"] else "",
        ]
        for bs in bss:
            cells += [
                f"{r['latency_ms'][f'batch{bs}']['p50']:.2f}",
                f"{r['speedup_vs_teacher_fp32'][f'batch{bs}']:.2f}x",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Student {metric} right after construction (before any training): "
        f"{report['student_after_construction'][metric]:.4f}; after distillation: "
        f"{report['student_metrics'][metric]:.4f}; teacher: {report['teacher_metrics'][metric]:.4f}.",
        "",
        "## Fastest path against fastest path",
        "",
        *[
            f"- batch {k[5:]}: {f['student']} {f['student_p50_ms']:.2f} ms ({metric} {f['student_metric']:.4f}) vs "
            f"{f['teacher']} {f['teacher_p50_ms']:.2f} ms ({f['teacher_metric']:.4f}): **{f['speedup']:.2f}x**"
            for k, f in report.get("fastest", {}).items()
        ],
        *_block_lines(report.get("deployed_blocks") or [], report.get("deployed_block_pause_s")),
        "",
        "## Pareto",
        "",
        *[f"- {n}" for n in report["pareto"]],
    ]
    budget = report.get("budget")
    if budget:
        key = f"batch{budget['batch']}"
        target = f"{budget['speedup']}x the teacher" if budget.get("speedup") else "the given budget"
        lines += [
            "",
            "## Shape chosen by measured latency",
            "",
            f"Budget {budget['budget_ms']:.2f} ms per call at batch {budget['batch']} ({target}; teacher "
            f"{budget['teacher_ms'][key]:.2f} ms"
            + (
                f" as deployed, {budget['teacher_path']}; its random-weight twin in the table "
                f"{budget['teacher_twin_ms'][key]:.2f} ms"
                if budget.get("teacher_path", "").startswith("teacher ")
                else ""
            )
            + f"), every shape timed through {budget['runtime']}"
            + _recipe_words(budget.get("recipe"), budget.get("recipe_why"))
            + " on "
            f"{budget['threads']} threads on the training texts' own lengths. Milliseconds are fitted (a per-call "
            "cost plus a per-layer cost for each width, least squares on relative error; largest residual "
            + (", ".join(f"{k} {v:.0%}" for k, v in budget.get("fit_residual", {}).items()) or "n/a: not fitted")
            + f"); the raw medians are in brackets. Accuracy signal: {budget['signal']}. Plot: `{REPORT_PNG}`.",
            "",
            "| shape | parameters | " + " | ".join(f"ms {k}" for k in budget["teacher_ms"]) + " | within budget | "
            "agreement after pruning | score |",
            "|---|---|" + "---|" * len(budget["teacher_ms"]) + "---|---|---|",
        ]
        for c in budget["candidates"]:
            name = f"**{c['shape']}** (chosen)" if c["chosen"] else c["shape"]
            agreement = "" if c["agreement"] is None else f"{c['agreement']:.4f}"
            score = "" if c.get("score") is None else f"{c['score']:.4f}"
            raw = c.get("measured_ms") or c["latency_ms"]
            ms = " | ".join(f"{c['latency_ms'][k]:.2f} ({raw[k]:.2f})" for k in budget["teacher_ms"])
            lines.append(
                f"| {name} | {c['parameters']:,} | {ms} | {'yes' if c['within_budget'] else 'no'} | {agreement} | "
                f"{score} |"
            )
        if budget.get("confirmation"):
            lines += [
                "",
                "Re-timed alone with the teacher before training (the table times every shape at once, with random "
                "weights): " + "; then ".join(retiming_words(c) for c in budget["confirmation"]) + ".",
            ]
        chosen = budget.get("chosen", {})
        check = chosen.get("block_check")
        if chosen.get("blocks"):
            lines += [
                "",
                f"The chosen depth is reached by removing blocks, not layers: every layer is kept and "
                f"{chosen['blocks']} of the teacher's {chosen['teacher_blocks']} attention and FFN blocks remain "
                f"(`--prune-unit blocks`; timed beside the whole-layer shape at {check['ratio_to_layers']:.2f}x its "
                f"time, {check['latency_ms']:.2f} ms; the removed ones are listed under *What pruning lost*).",
            ]
        met = report.get("budget_met")
        if met is not None:
            lines += [
                "",
                f"The distilled student's deployed path ({met['path']}) runs at {met['ms']:.2f} ms per call at batch "
                f"{budget['batch']}, {met['speedup']:.2f}x the teacher's fastest path ({met['teacher_path']}, "
                f"{met['teacher_ms']:.2f} ms) in the same run: "
                + (
                    f"{'within' if met['within'] else 'NOT within'} the {budget['speedup']}x asked for."
                    if budget.get("speedup")
                    else f"{'within' if met['within'] else 'NOT within'} the budget of {budget['budget_ms']:.2f} ms."
                ),
            ]
    if report.get("pruning"):
        lines += ["", "## What pruning lost", "", report["pruning"]["table"]]
    if surgery_table:
        lines += ["", "## What each lossy step lost", "", surgery_table]
    if report.get("cost_s"):
        total = sum(report["cost_s"].values())
        lines += ["", f"## Where the squeeze spent its time ({total / 60:.1f} min)", "", "| phase | seconds | share |",
                  "|---|---|---|"]  # fmt: skip
        for phase, secs in sorted(report["cost_s"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {phase} | {secs:.1f} | {secs / max(total, 1e-9):.0%} |")
    if report["notes"]:
        lines += ["", "## Notes", "", *[f"- {n}" for n in report["notes"]]]
    return "\n".join(lines) + "\n"


__all__ = [
    "REPORT_JSON",
    "REPORT_MD",
    "REPORT_PNG",
    "block_speedups",
    "fastest_paths",
    "pareto_notes",
    "plot_budget",
    "render_report",
    "retiming_words",
]
