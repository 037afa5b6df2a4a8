"""The squeeze report's words, summaries and plot, from hand-made measurement dictionaries."""

from __future__ import annotations

import subprocess
import sys

import pytest

from squeezebert import squeeze_report as sr


def _row(model: str, acc: float, ms1: float, ms32: float) -> dict:
    return {
        "model": model,
        "metrics": {"accuracy": acc},
        "parameters": 1000 if "fp32" in model else None,
        "flops_seq128": 2e9,
        "file_bytes": 4e6,
        "latency_ms": {"batch1": {"p50": ms1}, "batch32": {"p50": ms32}},
        "speedup_vs_teacher_fp32": {"batch1": 6.0 / ms1, "batch32": 60.0 / ms32},
    }


ROWS = [
    _row("teacher fp32", 0.90, 6.0, 60.0),
    _row("teacher openvino-int8", 0.89, 3.0, 30.0),
    _row("student fp32", 0.88, 2.0, 12.0),
    _row("student openvino-int8", 0.87, 1.0, 8.0),
]


def test_the_module_renders_without_torch() -> None:
    script = "import sys; import squeezebert.squeeze_report; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_fastest_paths_compares_each_side_at_its_fastest() -> None:
    fastest = sr.fastest_paths(ROWS, "accuracy", (1, 32))
    assert fastest["batch1"]["student"] == "student openvino-int8" and fastest["batch1"]["speedup"] == 3.0
    assert fastest["batch32"]["teacher"] == "teacher openvino-int8" and fastest["batch32"]["speedup"] == 3.75
    assert fastest["batch1"]["teacher_metric"] == 0.89


def test_pareto_notes_name_the_teacher_path_that_dominates_a_student_path() -> None:
    slow_student = [*ROWS[:2], _row("student bf16", 0.85, 4.0, 40.0)]
    notes = sr.pareto_notes(slow_student, "accuracy", (1,), greater_is_better=True)
    assert notes == [
        "batch 1: student bf16 is NOT on the accuracy/latency Pareto front: teacher openvino-int8 is as accurate "
        "(0.8900 vs 0.8500) and as fast (3.00 vs 4.00 ms)"
    ]
    assert sr.pareto_notes(ROWS, "accuracy", (1,), True) == [
        f"batch 1: {r['model']} is on the Pareto front against every teacher path" for r in ROWS[2:]
    ]


def test_block_speedups_skip_a_block_where_one_side_was_not_timed() -> None:
    blocks = [
        {"teacher openvino-int8": {"batch1": {"p50": 3.0}}, "student openvino-int8": {"batch1": {"p50": 1.5}}},
        {"student openvino-int8": {"batch1": {"p50": 1.0}}},
    ]
    assert sr.block_speedups(blocks) == [{"batch1": {"teacher_ms": 3.0, "student_ms": 1.5, "speedup": 2.0}}]


def _report() -> dict:
    return {
        "task": "sst2",
        "teacher": "runs/teacher",
        "construction": "pruned",
        "main_metric": "accuracy",
        "num_train_examples": 100,
        "num_dev_examples": 20,
        "lengths": {"p50": 10.0, "p90": 27.0},
        "threads": 2,
        "rows": ROWS,
        "student_after_construction": {"accuracy": 0.5},
        "student_metrics": {"accuracy": 0.88},
        "teacher_metrics": {"accuracy": 0.90},
        "fastest": sr.fastest_paths(ROWS, "accuracy", (1, 32)),
        "deployed_blocks": [{"batch1": {"speedup": 3.0}}, {"batch1": {"speedup": 2.5}}],
        "deployed_block_pause_s": 10.0,
        "pareto": sr.pareto_notes(ROWS, "accuracy", (1,), True),
        "budget": None,
        "cost_s": {"distillation": 90.0, "report": 30.0},
        "notes": ["a note"],
    }


def test_render_report_states_the_comparison_the_blocks_and_the_cost() -> None:
    md = sr.render_report(_report(), surgery_table="| step | error |")
    assert md.startswith("# squeeze report: sst2\n")
    assert "| student openvino-int8 | 0.8700 |  | 2.00 | 4.0 | 1.00 | 6.00x | 8.00 | 7.50x |" in md
    assert "teacher openvino-int8 3.00 ms (0.8900): **3.00x**" in md
    assert "timed in 2 blocks 10 s apart" in md and "batch 1 3.00x, 2.50x." in md
    assert "## Shape chosen by measured latency" not in md  # no budget was asked for
    assert "## Where the squeeze spent its time (2.0 min)" in md
    assert md.index("| distillation | 90.0 | 75% |") < md.index("| report | 30.0 | 25% |")
    assert md.rstrip().endswith("- a note") and "| step | error |" in md


def test_render_report_shows_the_budget_table_and_its_verdict() -> None:
    report = _report()
    candidate = {
        "shape": "4L-2h-192f",
        "parameters": 500,
        "latency_ms": {"batch1": 1.1},
        "measured_ms": {"batch1": 1.2},
    }
    report["budget"] = {
        "batch": 1, "speedup": 3.0, "budget_ms": 2.0, "teacher_ms": {"batch1": 6.0}, "runtime": "openvino-fp32",
        "recipe": "fp32", "recipe_why": "the teacher deployed in fp32", "threads": 2, "signal": "KL",
        "candidates": [{**candidate, "within_budget": True, "agreement": 0.9, "score": -0.1, "chosen": True}],
        "confirmation": [{"shape": "4L-2h-192f", "ms": 1.9, "teacher_ms": 6.0, "speedup": 3.16, "within": True}],
    }  # fmt: skip
    report["budget_met"] = {
        "path": "student openvino-int8", "ms": 1.0, "speedup": 3.0, "teacher_path": "teacher openvino-int8",
        "teacher_ms": 3.0, "within": True,
    }  # fmt: skip
    md = sr.render_report(report)
    assert "every shape timed through openvino-fp32 (the teacher deployed in fp32) on 2 threads" in md
    assert "| **4L-2h-192f** (chosen) | 500 | 1.10 (1.20) | yes | 0.9000 | -0.1000 |" in md
    assert "4L-2h-192f 1.90 ms against the teacher's 6.00 ms, 3.16x (within the budget)" in md
    assert "3.00x the teacher's fastest path (teacher openvino-int8, 3.00 ms) in the same run: within the 3.0x" in md
    report["budget_met"]["within"] = False
    assert "NOT within the 3.0x asked for." in sr.render_report(report)


def test_plot_budget_writes_a_png_in_place(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    budget = {
        "batch": 1, "budget_ms": 2.0, "teacher_ms": {"batch1": 6.0}, "runtime": "openvino-fp32",
        "candidates": [
            {"shape": "4L", "latency_ms": {"batch1": 1.5}, "within_budget": True, "agreement": 0.9, "chosen": True},
            {"shape": "6L", "latency_ms": {"batch1": 2.5}, "within_budget": False, "agreement": None, "chosen": False},
        ],
    }  # fmt: skip
    sr.plot_budget(budget, tmp_path / sr.REPORT_PNG)
    assert (tmp_path / sr.REPORT_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == [sr.REPORT_PNG]  # no temporary left behind
