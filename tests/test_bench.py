"""Benchmark: report shape and bookkeeping only, never timing values."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from squeezebert import bench
from squeezebert.bench import (
    CANDIDATES,
    DEFAULT_CANDIDATES,
    read_texts,
    run_bench,
    run_workload,
    select_candidates,
)
from squeezebert.bench_report import format_report
from squeezebert.cli import main
from squeezebert.config import preset
from squeezebert.model import SqueezeBert
from squeezebert.runtime import RuntimeOptions
from squeezebert.timing import EnergyMeter

# --------------------------------------------------------------------------- the side-by-side benchmark
NO_RAPL = "/nonexistent/intel-rapl:*/energy_uj"
CELL_FIELDS = {
    "batch_size",
    "seq_len",
    "latency_ms",
    "throughput_texts_per_s",
    "gops",
    "peak_gops",
    "peak_fraction",
    "int8_peak_fraction",
    "cpu_s_per_call",
    "energy_j_per_1000_texts",
    "energy_source",
    "speedup_vs_baseline",
}


#: The quick run's candidates: every default one of torch and ONNX Runtime, and each code path of
#: the OpenVINO and CTranslate2 ones: our bf16 export and our int8 export (bf16 hint), both peers'
#: conversion and NNCF int8, the fp32 IR with its check, CTranslate2. All the defaults convert six
#: more models, which doubles the run for no new path.
QUICK_CANDIDATES = [n for n in DEFAULT_CANDIDATES if CANDIDATES[n].backend in ("torch", "onnxruntime")] + [
    "ours-openvino-bf16",
    "ours-openvino-int8-bf16",
    "hf-squeezebert-openvino-int8",
    "hf-bert-openvino-fp32",
    "hf-bert-openvino-int8-bf16",
    "hf-bert-ctranslate2-int8",
]


def _has_bf16() -> bool:
    try:
        from squeezebert.infer import openvino_has_bf16

        return openvino_has_bf16()
    except ImportError:
        return False


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    report = run_bench(
        quick=True,
        candidates=QUICK_CANDIDATES,
        threads=1,
        metrics={"ours-torch-int8": 0.9, "hf-bert-torch-fp32": 0.92},
        json_path=out / "bench.json",
        markdown_path=out / "bench.md",
        plot_path=out / "bench.png",
        rapl_glob=NO_RAPL,
    )
    return report, out


def test_quick_bench_reports_every_field_for_every_candidate(quick_report: tuple[dict, Path]) -> None:
    report, _ = quick_report
    assert [c["name"] for c in report["candidates"]] == select_candidates(QUICK_CANDIDATES)
    for c in report["candidates"]:
        assert c["status"] in ("ok", "skipped")
        if c["status"] == "skipped":  # a peer may be missing here; then it says why
            assert c["note"].startswith("skipped") and c["cells"] == []
            continue
        assert c["parameters"] > 0 and c["file_bytes"] > 0 and c["rss_load_mb"] is not None
        assert set(c["flops_per_text"]) == {"8"} and c["flops_per_text"]["8"] > 0
        assert c["rss_run_peak_mb"] is not None  # measured on the first (largest) cell's warm-up
        assert {(cell["batch_size"], cell["seq_len"]) for cell in c["cells"]} == {(1, 8), (2, 8)}
        for cell in c["cells"]:
            assert set(cell) == CELL_FIELDS
            lat = cell["latency_ms"]
            assert lat["p50"] <= lat["p90"] <= lat["p99"] and lat["n"] == 2
            assert cell["energy_source"] == "estimate" and cell["energy_j_per_1000_texts"] >= 0
    assert set(report["matmul_peak_gops"]) == {"fp32", "bf16", "int8"}
    assert report["candidates"][2]["accuracy"] == 0.9  # ours-torch-int8 from metrics
    env = report["environment"]
    assert env["cpu"] and env["threads"] == 1 and env["versions"]["torch"] and env["date"]
    assert "malloc_trim" in report["memory_method"] and report["process_peak_rss_mb"] > 0


def test_openvino_and_ctranslate2_candidates_run_or_say_why_not(quick_report: tuple[dict, Path]) -> None:
    report, _ = quick_report
    by_name = {c["name"]: c for c in report["candidates"]}
    new = [n for n in QUICK_CANDIDATES if CANDIDATES[n].backend in ("openvino", "ctranslate2")]
    for name in new:
        c, spec = by_name[name], CANDIDATES[name]
        package = "ctranslate2" if spec.backend == "ctranslate2" else "openvino"
        if importlib.util.find_spec(package) is None:
            assert c["status"] == "skipped" and f"{package} is not installed" in c["note"]
        elif spec.backend == "openvino" and "bf16" in (spec.precision, spec.inference_precision) and not _has_bf16():
            assert c["status"] == "skipped" and "no native bf16" in c["note"]
        else:
            assert c["status"] == "ok", c["note"]
            assert c["cells"] and c["file_bytes"] > 0
    assert by_name["hf-bert-openvino-int8-bf16"]["inference_precision"] == "bf16"
    assert by_name["hf-bert-openvino-fp32"]["inference_precision"] == "fp32"
    assert by_name["hf-bert-ctranslate2-int8"]["inference_precision"] is None
    if by_name["hf-bert-openvino-fp32"]["status"] == "ok":  # the converted graph computes what torch does
        assert float(by_name["hf-bert-openvino-fp32"]["note"].rsplit(" ", 1)[1]) < 1e-4
    for name in ("ours-openvino-int8-bf16", "hf-squeezebert-openvino-int8"):
        assert "random-id batches (timing only" in by_name[name]["how"]


def test_summary_sets_our_best_against_the_best_peer_per_cell(quick_report: tuple[dict, Path]) -> None:
    report, _ = quick_report
    measured = [c for c in report["candidates"] if c["status"] == "ok"]
    assert [(s["batch_size"], s["seq_len"]) for s in report["summary"]] == [(1, 8), (2, 8)]
    for s in report["summary"]:
        p50 = {
            c["name"]: cell["latency_ms"]["p50"]
            for c in measured
            for cell in c["cells"]
            if (cell["batch_size"], cell["seq_len"]) == (s["batch_size"], s["seq_len"])
        }
        ours = {n: t for n, t in p50.items() if n.startswith("ours-")}
        peers = {n: t for n, t in p50.items() if not n.startswith("ours-")}
        assert s["best_ours"] == min(ours, key=ours.get) and s["best_peer"] == min(peers, key=peers.get)
        assert s["ratio"] == pytest.approx(peers[s["best_peer"]] / ours[s["best_ours"]], rel=1e-2)
        assert 0 < s["floor_ms"] and s["floor_ratio"] == pytest.approx(s["floor_ms"] / s["best_ours_p50_ms"], rel=1e-2)
    int8_peak = report["matmul_peak_gops"]["int8"]
    for c in measured:
        for cell in c["cells"]:
            assert cell["int8_peak_fraction"] == pytest.approx(cell["gops"] / int8_peak, rel=1e-2, abs=1e-4)


def test_summarize_picks_the_fastest_on_each_side_and_the_int8_floor() -> None:
    def candidate(name: str, family: str, p50: float) -> dict:
        cell = {"batch_size": 2, "seq_len": 8, "latency_ms": {"p50": p50}}
        return {"name": name, "family": family, "flops_per_text": {"8": 5e9}, "cells": [cell]}

    rows = [
        candidate("ours-a", "ours", 20.0),
        candidate("ours-b", "ours", 10.0),
        candidate("hf-x", "bert", 30.0),
        candidate("hf-y", "squeezebert", 25.0),
    ]
    (s,) = bench.summarize(rows, int8_peak=1000.0)  # 1000 GOP/s: 2 x 5 GOP take 10 ms at best
    assert (s["best_ours"], s["best_ours_p50_ms"], s["best_peer"], s["best_peer_p50_ms"]) == (
        "ours-b",
        10.0,
        "hf-y",
        25.0,
    )
    assert s["ratio"] == 2.5 and s["floor_ms"] == 10.0 and s["floor_ratio"] == 1.0
    (alone,) = bench.summarize(rows[:2], int8_peak=None)  # no peer measured, no int8 peak
    assert alone["best_peer"] is None and alone["ratio"] is None and alone["floor_ratio"] is None


def test_ctranslate2_converts_a_bert_directory_whose_config_lacks_position_embedding_type(tmp_path: Path) -> None:
    # transformers 5's BertConfig dropped the attribute CTranslate2's BERT loader asserts on
    pytest.importorskip("ctranslate2")
    from squeezebert.checkpoint import save_hf

    config = preset("tiny", num_labels=2, q_groups=1, k_groups=1, v_groups=1, intermediate_groups=1, output_groups=1)
    hf_dir = save_hf(SqueezeBert(config), tmp_path / "hf", None, arch="bert")
    hf_config = json.loads((hf_dir / "config.json").read_text())
    hf_config.pop("position_embedding_type", None)
    (hf_dir / "config.json").write_text(json.dumps(hf_config))
    bench._convert_ctranslate2(hf_dir, tmp_path / "ct2")
    assert (tmp_path / "ct2" / "model.bin").is_file()


def test_quick_bench_writes_json_markdown_and_png(quick_report: tuple[dict, Path]) -> None:
    report, out = quick_report
    assert json.loads((out / "bench.json").read_text())["candidates"][0]["name"] == "ours-torch-fp32"
    markdown = (out / "bench.md").read_text()
    assert "| ours-torch-int8 |" in markdown and "J/1k texts (est.)" in markdown and "- CPU: " in markdown
    assert "% int8 peak" in markdown and "### best of ours vs the best peer" in markdown
    assert json.loads((out / "bench.json").read_text())["summary"] == report["summary"]
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = format_report(report)
    assert "hf-bert-torch-fp32" in text and "p50 ms" in text and "peer/ours" in text and "floor/ours" in text


def test_without_rapl_energy_is_labelled_an_estimate(quick_report: tuple[dict, Path]) -> None:
    report, _ = quick_report
    assert report["energy"]["source"] == "estimate"
    assert report["energy"]["note"].startswith("estimate") and "W per busy core" in report["energy"]["note"]
    meter = EnergyMeter(watts_per_core=12.0, rapl_glob=NO_RAPL)
    assert meter.read() is None and meter.joules(None, None, cpu_seconds=0.5) == pytest.approx(6.0)


def test_missing_peer_package_is_skipped_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now fails
    report = run_bench(quick=True, threads=1, candidates=["ours-torch-fp32", "hf-bert-*"], repeats=1, rapl_glob=NO_RAPL)
    by_name = {c["name"]: c for c in report["candidates"]}
    assert set(by_name) >= {
        "ours-torch-fp32",
        "hf-bert-torch-fp32",
        "hf-bert-torch-int8",
        "hf-bert-onnx-fp32",
        "hf-bert-onnx-int8",
        "hf-bert-openvino-int8",
        "hf-bert-ctranslate2-int8",
    }
    assert by_name["ours-torch-fp32"]["status"] == "ok" and by_name["ours-torch-fp32"]["cells"]
    for name in by_name:
        if name.startswith("hf-"):
            c = by_name[name]
            assert c["status"] == "skipped" and "transformers is not installed" in c["note"] and c["cells"] == []
    assert report["baseline"] == "ours-torch-fp32"  # the default baseline was not measured


@pytest.mark.parametrize("blocked", ["openvino", "nncf"])
def test_missing_openvino_or_nncf_is_skipped_with_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, blocked: str
) -> None:
    for module in (blocked, "ctranslate2"):
        monkeypatch.setitem(sys.modules, module, None)
    wanted = ["ours-torch-fp32", "*openvino*" if blocked == "openvino" else "*openvino-int8*", "*ctranslate2*"]
    report = run_bench(quick=True, threads=1, candidates=wanted, repeats=1, rapl_glob=NO_RAPL)
    by_name = {c["name"]: c for c in report["candidates"]}
    assert by_name.pop("ours-torch-fp32")["status"] == "ok"
    assert by_name.pop("hf-bert-ctranslate2-int8")["note"] == (
        "skipped: ctranslate2 is not installed (pip install ctranslate2)"
    )
    assert len(by_name) == (12 if blocked == "openvino" else 6)
    for c in by_name.values():
        assert c["status"] == "skipped" and c["cells"] == []
        assert c["note"] == f"skipped: {blocked} is not installed (pip install 'squeezebert[openvino]')"


def test_openvino_bf16_without_native_bf16_is_skipped_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("openvino")
    monkeypatch.setattr(bench, "_openvino_bf16", lambda: False)
    report = run_bench(quick=True, threads=1, candidates=["ours-torch-fp32", "*bf16"], repeats=1, rapl_glob=NO_RAPL)
    by_name = {c["name"]: c for c in report["candidates"]}
    assert by_name.pop("ours-torch-fp32")["status"] == "ok"
    assert set(by_name) == {
        "ours-torch-bf16",
        "ours-openvino-bf16",
        "ours-openvino-int8-bf16",
        "hf-squeezebert-openvino-bf16",
        "hf-squeezebert-openvino-int8-bf16",
        "hf-bert-openvino-bf16",
        "hf-bert-openvino-int8-bf16",
    }
    assert by_name.pop("ours-torch-bf16")["status"] == "ok"  # torch's bf16 runs anywhere
    for c in by_name.values():
        assert c["status"] == "skipped" and "no native bf16" in c["note"]


def test_grid_rounds_run_in_a_fresh_order(monkeypatch: pytest.MonkeyPatch) -> None:
    orders: list[list[str]] = []
    measure = bench.measure

    def spy(calls: dict, *args: object, **kwargs: object) -> object:
        if not all(name.startswith("ours-") for name in calls):  # the matmul peak is timed through it too
            return measure(calls, *args, **kwargs)
        logged = {name: (lambda n=name, fn=fn: (orders[-1].append(n), fn())) for name, fn in calls.items()}
        orders.append([])
        return measure(logged, *args, **kwargs)

    monkeypatch.setattr(bench, "measure", spy)
    report = run_bench(
        quick=True, threads=1, candidates=["ours-torch-*"], batch_sizes=[1], warmup=0, repeats=8, rapl_glob=NO_RAPL
    )
    (calls,) = orders
    rounds = [tuple(calls[i : i + 3]) for i in range(0, len(calls), 3)]
    assert len(rounds) == 8 and all(sorted(r) == sorted(rounds[0]) for r in rounds)
    assert len(set(rounds)) > 1
    assert "fresh (seeded) order each timed round" in report["settings"]["order"]


def test_select_candidates_takes_names_and_patterns() -> None:
    assert select_candidates(None) == list(DEFAULT_CANDIDATES)
    assert select_candidates(["ours-onnx-*", "hf-bert-torch-fp32"]) == [
        "ours-onnx-fp32",
        "ours-onnx-int8",
        "hf-bert-torch-fp32",
    ]
    assert "hf-bert-onnx-fp32" in CANDIDATES and "hf-bert-onnx-fp32" not in DEFAULT_CANDIDATES
    # the peers users actually have, and our OpenVINO paths, are measured by default
    for family in ("squeezebert", "bert"):
        for variant in ("fp32", "bf16", "int8", "int8-bf16"):
            assert f"hf-{family}-openvino-{variant}" in DEFAULT_CANDIDATES
            assert f"ours-openvino-{variant}" in DEFAULT_CANDIDATES
    assert "hf-bert-ctranslate2-int8" in DEFAULT_CANDIDATES
    assert select_candidates(["*openvino-int8*"]) == [
        "ours-openvino-int8",
        "ours-openvino-int8-bf16",
        "hf-squeezebert-openvino-int8",
        "hf-squeezebert-openvino-int8-bf16",
        "hf-bert-openvino-int8",
        "hf-bert-openvino-int8-bf16",
    ]
    with pytest.raises(ValueError, match="unknown candidate 'gpt'"):
        select_candidates(["gpt"])


def test_bad_metrics_file_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "m.json"
    bad.write_text('{"ours-torch-fp32": "high"}')
    with pytest.raises(ValueError, match="m.json: 'ours-torch-fp32': expected a number"):
        run_bench(quick=True, metrics=bad)


# --------------------------------------------------------------------------- the real-workload mode
def test_read_texts_plain_lines_and_glue_tsv(tmp_path: Path) -> None:
    plain = tmp_path / "texts.txt"
    plain.write_text("good film\n\nbad film\n")
    assert read_texts(plain) == ["good film", "bad film"]
    tsv = tmp_path / "dev.tsv"
    tsv.write_text("sentence\tlabel\nit 's charming . \t1\nbleak \t0\n")
    assert read_texts(tsv) == ["it 's charming . ", "bleak "]
    assert read_texts(tsv, max_texts=1) == ["it 's charming . "]
    no_column = tmp_path / "other.tsv"
    no_column.write_text("text\tlabel\nx\t1\n")
    with pytest.raises(ValueError, match="line 1: a .tsv workload needs a 'sentence' column"):
        read_texts(no_column)


def test_workload_mode_reports_speed_and_label_agreement(tmp_path: Path, minilm_path: Path) -> None:
    texts = tmp_path / "ten.txt"
    texts.write_text("\n".join(f"sentence number {i} is {'good' if i % 2 else 'bad'}" for i in range(10)) + "\n")
    report = run_workload(
        texts,
        "tiny",  # random 2-label head; the same weights on both sides
        threads=1,
        batch_sizes=(1, 4),
        repeats=1,
        json_path=tmp_path / "w.json",
        markdown_path=tmp_path / "w.md",
        plot_path=tmp_path / "w.png",
    )
    assert report["settings"]["num_texts"] == 10
    rows = {(r["implementation"], r["batch_size"]): r for r in report["rows"]}
    assert set(rows) == {("ours", 1), ("transformers", 1), ("ours", 4), ("transformers", 4)}
    for r in rows.values():
        assert r["texts_per_s"] > 0 and r["speedup_vs_transformers"] > 0
        assert 0.0 <= r["label_agreement"] <= 1.0
    assert rows[("transformers", 1)]["speedup_vs_transformers"] == 1.0
    # Same weights and tokenizer: labels agree (random logits can tie only by a float hair).
    assert rows[("ours", 4)]["label_agreement"] >= 0.9
    assert json.loads((tmp_path / "w.json").read_text())["kind"] == "workload"
    assert "label agreement" in (tmp_path / "w.md").read_text()
    assert (tmp_path / "w.png").read_bytes()[:4] == b"\x89PNG"


def test_workload_on_openvino_with_a_teacher_reports_the_students_speedup(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    texts = tmp_path / "ten.txt"
    texts.write_text("\n".join(f"sentence number {i} is {'good' if i % 2 else 'bad'}" for i in range(10)) + "\n")
    report = run_workload(
        texts,
        "tiny",
        RuntimeOptions(backend="openvino"),
        teacher="tiny",
        threads=1,
        batch_sizes=(1, 4),
        repeats=1,
        warmup=0,
    )
    rows = {(r["implementation"], r["batch_size"]): r for r in report["rows"]}
    assert set(rows) == {(who, b) for who in ("ours", "teacher", "transformers") for b in (1, 4)}
    assert "backend openvino" in report["settings"]["ours"] and report["settings"]["teacher"] == "tiny"
    for b in (1, 4):
        teacher = rows[("teacher", b)]
        assert teacher["student_speedup"] > 0 and 0.0 <= teacher["student_agreement"] <= 1.0
        assert "student_speedup" not in rows[("ours", b)]
    # same weights on the OpenVINO fp32 side and the pipeline's: the labels agree
    assert rows[("ours", 4)]["label_agreement"] >= 0.9
    assert "student speedup" in format_report(report)


# --------------------------------------------------------------------------- CLI
def test_cli_bench_prints_the_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    code = main(
        ["bench", "--quick", "--threads", "1", "--candidates", "ours-torch-*", "--repeats", "1", "--json", str(out)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "ours-torch-bf16" in printed and "p50 ms" in printed and f"wrote {out}" in printed
    assert [c["name"] for c in json.loads(out.read_text())["candidates"]] == [
        "ours-torch-fp32",
        "ours-torch-bf16",
        "ours-torch-int8",
    ]


def test_cli_bench_workload_without_model_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = tmp_path / "t.txt"
    texts.write_text("hello\n")
    assert main(["bench", "--workload", str(texts)]) == 2
    assert "--workload needs --model" in capsys.readouterr().err
