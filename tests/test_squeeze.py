"""The squeeze workflow end to end on tiny models: student, report, pretrained students, errors."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from squeezebert import shape_choice, squeeze_report
from squeezebert import squeeze as sq
from squeezebert.checkpoint import load, save_checkpoint, save_hf
from squeezebert.cli import main as cli_main
from squeezebert.config import preset
from squeezebert.data import TaskSource
from squeezebert.distill import DistillConfig
from squeezebert.model import SqueezeBert
from squeezebert.squeeze import squeeze
from squeezebert.surgery import StudentSpec
from squeezebert.tokenizer import Tokenizer
from squeezebert.train import TrainConfig, TrainingError

DENSE = dict(q_groups=1, k_groups=1, v_groups=1, post_attention_groups=1, intermediate_groups=1, output_groups=1)
WORDS_POS = ["good", "great", "fine", "lovely", "superb"]
WORDS_NEG = ["bad", "awful", "poor", "dull", "terrible"]


@pytest.fixture(scope="module")
def task_files(tmp_path_factory):
    rng = random.Random(0)
    d = tmp_path_factory.mktemp("data")
    for split, n in (("train", 48), ("dev", 16)):
        rows = ["text,label"]
        for i in range(n):
            label = "pos" if i % 2 else "neg"
            word = rng.choice(WORDS_POS if label == "pos" else WORDS_NEG)
            rows.append(f"the film was {word} and the cast was {rng.choice(['young', 'old', 'new'])},{label}")
        (d / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return d


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, minilm_path):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher")
    model = SqueezeBert(preset("tiny", id2label={0: "neg", 1: "pos"}, **DENSE))
    save_checkpoint(model, path, tokenizer=Tokenizer.from_dir(minilm_path))
    return path


@pytest.fixture(autouse=True)
def _int8_native(monkeypatch) -> None:
    # Where the CPU has no VNNI the deploy step times int8 against fp32 and keeps the faster, a
    # choice by real timings; these tests follow the int8-first ladder whatever CPU runs them,
    # and test_on_a_cpu_without_vnni_... tests the comparison with a fake timer.
    from squeezebert import quantize

    monkeypatch.setattr(quantize, "native_int8", lambda: True)


@pytest.fixture
def any_agreement(monkeypatch) -> None:
    """OpenVINO exports that pass whatever their agreement. The tiny random teacher's logits nearly
    tie, so int8 may flip some of 16 dev labels: the agreement bar is the export's own business
    (tests/test_export_openvino.py), not these tests'."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from squeezebert import export_openvino

    export_model = export_openvino.export_model
    monkeypatch.setattr(export_openvino, "export_model", lambda *a, **k: export_model(*a, **k, min_agreement=0.0))


def run(teacher_dir, task_files, out, lr=1e-3, **kwargs):
    return squeeze(
        teacher_dir,
        out,
        TaskSource(train_file=task_files / "train.csv", dev_file=task_files / "dev.csv"),
        config=TrainConfig(epochs=1, batch_size=8, lr=lr, max_length=32, log_every=2),
        calibration_samples=32,
        bench_repeats=2,
        bench_batch_sizes=(1, 4),
        **{"openvino": False, **kwargs},
    )


def test_squeeze_writes_student_and_a_complete_report(teacher_dir, task_files, tmp_path) -> None:
    report = run(teacher_dir, task_files, tmp_path / "out", int8=True, bf16=True)
    out = tmp_path / "out"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "report.md", "report.json"):
        assert (out / name).is_file(), name
    student = load(out).model
    assert student.config.ranks and student.config.labels == ["neg", "pos"]
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report, default=str))
    names = [r["model"] for r in report["rows"]]
    assert names == ["teacher fp32", "student fp32", "teacher int8", "student int8", "teacher bf16", "student bf16"]
    rows = {r["model"]: r for r in report["rows"]}
    for row in report["rows"]:
        assert set(row["latency_ms"]) == {"batch1", "batch4"}
        assert {"p50", "p90", "p99"} <= set(row["latency_ms"]["batch1"])
        assert "accuracy" in row["metrics"] and row["flops_seq128"] > 0
        for precision in ("fp32", "int8", "bf16"):
            assert set(row[f"speedup_vs_teacher_{precision}"]) == {"batch1", "batch4"}
            # each ratio is the same-precision teacher's p50 over this row's p50
            t = rows[f"teacher {precision}"]["latency_ms"]["batch4"]["p50"]
            expected = t / row["latency_ms"]["batch4"]["p50"]
            assert row[f"speedup_vs_teacher_{precision}"]["batch4"] == pytest.approx(expected, abs=0.006)
    # the fastest path of each side, named and compared
    for bs in (1, 4):
        f = report["fastest"][f"batch{bs}"]
        key = f"batch{bs}"
        s_best = min(
            (r for r in report["rows"] if r["model"].startswith("student")), key=lambda r: r["latency_ms"][key]["p50"]
        )
        t_best = min(
            (r for r in report["rows"] if r["model"].startswith("teacher")), key=lambda r: r["latency_ms"][key]["p50"]
        )
        assert (f["student"], f["teacher"]) == (s_best["model"], t_best["model"])
        assert f["speedup"] == pytest.approx(f["teacher_p50_ms"] / f["student_p50_ms"], abs=0.006)
        assert f["student_metric"] == s_best["metrics"]["accuracy"]
    assert "## Fastest path against fastest path" in (out / "report.md").read_text()
    student_row = report["rows"][1]
    assert student_row["flops_seq128"] < report["rows"][0]["flops_seq128"]
    assert student_row["parameters"] < report["rows"][0]["parameters"]
    assert len(report["pareto"]) == 6 and all("Pareto front" in n for n in report["pareto"])
    assert "accuracy" in report["student_after_construction"]
    md = (out / "report.md").read_text()
    assert "| teacher int8 |" in md and "What each lossy step lost" in md


def test_openvino_int8_paths_are_scored_timed_and_the_student_deployed(
    teacher_dir, task_files, tmp_path, monkeypatch, any_agreement
) -> None:
    from squeezebert import budget
    from squeezebert.infer import Classifier

    timed_together, time_forwards = [], budget.time_forwards

    def record(forwards, *a, **k):
        timed_together.append(sorted(forwards))
        return time_forwards(forwards, *a, **k)

    monkeypatch.setattr(budget, "time_forwards", record)
    report = run(teacher_dir, task_files, tmp_path / "out", int8=False, bf16=False, openvino=True)
    names = [r["model"] for r in report["rows"]]
    assert names == ["teacher fp32", "student fp32", "teacher openvino-int8", "student openvino-int8"]
    # the exports are timed apart from the torch paths (whose threads spin after each call), in
    # spaced blocks
    exported = ["student openvino-int8", "teacher openvino-int8"]
    assert timed_together[-1 - sq.REPORT_BLOCKS :] == [["student fp32", "teacher fp32"]] + [exported] * sq.REPORT_BLOCKS
    assert len(report["deployed_blocks"]) == sq.REPORT_BLOCKS
    rows = {r["model"]: r for r in report["rows"]}
    deploy = tmp_path / "out" / "deploy"
    assert {"model.xml", "model.bin", "config.json", "tokenizer.json"} <= {p.name for p in deploy.iterdir()}
    assert rows["student openvino-int8"]["file_bytes"] == sum(p.stat().st_size for p in deploy.iterdir())
    assert set(rows["student fp32"]["speedup_vs_teacher_openvino-int8"]) == {"batch1", "batch4"}
    # the export's dev score is the one the report shows
    direct = Classifier.from_pretrained(deploy)
    assert (direct.backend, direct.precision) == ("openvino", "int8")
    # predict / serve on the squeeze output use the deployable export
    assert Classifier.from_pretrained(tmp_path / "out").backend == "openvino"
    assert Classifier.from_pretrained(tmp_path / "out", backend="torch").backend == "torch"


def test_the_deployed_pair_is_quoted_at_its_median_over_spaced_blocks_and_every_block_is_listed(
    teacher_dir, task_files, tmp_path, monkeypatch, any_agreement
) -> None:
    from squeezebert import budget

    monkeypatch.setattr(sq, "REPORT_BLOCKS", 3)
    monkeypatch.setattr(sq, "REPORT_BLOCK_PAUSE_S", 7.0)
    student_ms = iter([0.5, 1.0, 0.4])  # the second block lands in a slow state of the machine
    pauses: list[float] = []
    monkeypatch.setattr(sq.time, "sleep", pauses.append)

    def fake_timer(forwards, batches, repeats=5, max_seconds=None):
        ms = dict.fromkeys(forwards, 9.0)  # the torch paths, and anything else
        if {"teacher openvino-int8", "student openvino-int8"} <= set(forwards):  # a block of the deployed pair
            ms.update({"teacher openvino-int8": 1.5, "student openvino-int8": next(student_ms)})
        stats = ("p50", "p90", "p99", "mean")
        return {n: {f"batch{bs}": dict.fromkeys(stats, ms[n]) for bs in batches} for n in forwards}

    monkeypatch.setattr(budget, "time_forwards", fake_timer)
    report = run(teacher_dir, task_files, tmp_path / "out", int8=False, bf16=False, openvino=True)
    rows = {r["model"]: r for r in report["rows"]}
    assert rows["student openvino-int8"]["latency_ms"]["batch1"]["p50"] == 0.5  # the median, not the last block
    assert report["fastest"]["batch1"]["speedup"] == 3.0
    assert [b["batch1"]["speedup"] for b in report["deployed_blocks"]] == [3.0, 1.5, 3.75]
    assert pauses.count(7.0) == 2  # between the blocks, not after the last
    md = (tmp_path / "out" / "report.md").read_text()
    assert "timed in 3 blocks 7 s apart" in md and "batch 1 3.00x, 1.50x, 3.75x" in md
    monkeypatch.setattr(sq, "REPORT_BLOCK_PAUSE_S", 99.0)  # re-rendered later: the pause it was timed with
    assert "timed in 3 blocks 7 s apart" in squeeze_report.render_report(report)


def test_a_student_int8_refuses_is_deployed_at_the_next_precision_that_passes(
    teacher_dir, task_files, tmp_path, monkeypatch
) -> None:
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from squeezebert import export_openvino
    from squeezebert.export import ExportError
    from squeezebert.infer import Classifier, openvino_has_bf16

    export_model = export_openvino.export_model

    def refuse_student_int8(model, out, *a, **k):
        if k.get("precision") == "int8" and Path(out).name == "deploy":
            raise ExportError("agrees on 98.44% of 256 texts, below the 99% required")
        return export_model(model, out, *a, **k, min_agreement=0.0)

    monkeypatch.setattr(export_openvino, "export_model", refuse_student_int8)
    report = run(teacher_dir, task_files, tmp_path / "out", int8=False, bf16=False, openvino=True)
    fallback = "bf16" if openvino_has_bf16() else "fp32"
    names = [r["model"] for r in report["rows"]]
    assert names == ["teacher fp32", "student fp32", "teacher openvino-int8", f"student openvino-{fallback}"]
    missed = f"student openvino-{fallback}: the faster exports missed"
    assert any(missed in n and "98.44%" in n for n in report["notes"])
    deployed = Classifier.from_pretrained(tmp_path / "out")
    assert (deployed.backend, deployed.precision) == ("openvino", fallback)


@pytest.mark.parametrize("faster", ["bf16", "int8"])
def test_after_static_int8_is_refused_the_faster_of_run_time_int8_and_bf16_is_deployed(
    teacher_dir, task_files, tmp_path, monkeypatch, faster
) -> None:
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from squeezebert import budget, export_openvino
    from squeezebert.infer import Classifier, openvino_has_bf16

    if not openvino_has_bf16():
        pytest.skip("this CPU has no native bf16")
    export_model = export_openvino.export_model
    timed: list[set] = []

    def refuse_static(model, out, *a, **k):
        if k.get("int8_recipe", "auto") != "dynamic" and k.get("precision") == "int8":
            # what the ladder does when static misses the bar: falls back to run-time scales
            k = {**k, "int8_recipe": "dynamic"}
            report = export_model(model, out, *a, **k, min_agreement=0.0)
            report.attempts.append({"recipe": "static", "dev": 0.98})
            return report
        return export_model(model, out, *a, **k, min_agreement=0.0)

    def fake_timer(forwards, batches, repeats=5, max_seconds=None):
        # no timing assertions: each fallback pair reads as the parameter says, the rest 1 ms
        timed.append(set(forwards))
        slow = {"int8": 2.0, "bf16": 3.0} if faster == "int8" else {"int8": 3.0, "bf16": 2.0}
        return {
            name: {f"batch{bs}": dict.fromkeys(("p50", "p90", "p99", "mean"), slow.get(name, 1.0)) for bs in batches}
            for name in forwards
        }

    monkeypatch.setattr(export_openvino, "export_model", refuse_static)
    monkeypatch.setattr(budget, "time_forwards", fake_timer)
    report = run(teacher_dir, task_files, tmp_path / "out", int8=False, bf16=False, openvino=True)
    assert {"int8", "bf16"} in timed  # both fallbacks were timed against each other
    names = [r["model"] for r in report["rows"]]
    assert names == ["teacher fp32", "student fp32", f"teacher openvino-{faster}", f"student openvino-{faster}"]
    chose = [n for n in report["notes"] if "so int8 (dynamic) and bf16 were both exported" in n]
    assert len(chose) == 2 and all(f"deployed {faster}, the faster at batch 1" in n for n in chose)
    assert all("int8 (dynamic) 3.00 ms" in n or "int8 (dynamic) 2.00 ms" in n for n in chose)
    deployed = Classifier.from_pretrained(tmp_path / "out")
    assert (deployed.backend, deployed.precision) == ("openvino", faster)
    config = json.loads((tmp_path / "out" / "deploy" / "config.json").read_text())
    assert config["openvino"]["precision"] == faster
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".squeezebert-")]  # nothing staged left


@pytest.mark.parametrize("faster", ["fp32", "int8"])
def test_on_a_cpu_without_vnni_int8_and_fp32_are_timed_and_the_faster_deployed(
    teacher_dir, task_files, tmp_path, monkeypatch, any_agreement, faster
) -> None:
    from squeezebert import budget, quantize
    from squeezebert.infer import Classifier

    monkeypatch.setattr(quantize, "native_int8", lambda: False)
    timed: list[set] = []

    def fake_timer(forwards, batches, repeats=5, max_seconds=None):
        # no timing assertions: the pair being compared reads as the parameter says, the rest 1 ms
        timed.append(set(forwards))
        slow = {"int8": 3.0, "fp32": 2.0} if faster == "fp32" else {"int8": 2.0, "fp32": 3.0}
        stats = ("p50", "p90", "p99", "mean")
        return {n: {f"batch{bs}": dict.fromkeys(stats, slow.get(n, 1.0)) for bs in batches} for n in forwards}

    monkeypatch.setattr(budget, "time_forwards", fake_timer)
    report = run(teacher_dir, task_files, tmp_path / "out", int8=False, bf16=False, openvino=True)
    assert {"int8", "fp32"} in timed
    names = [r["model"] for r in report["rows"]]
    assert names == ["teacher fp32", "student fp32", f"teacher openvino-{faster}", f"student openvino-{faster}"]
    chose = [n for n in report["notes"] if "this CPU has no VNNI" in n]
    assert len(chose) == 2 and all(f"deployed {faster}, the faster at batch 1" in n for n in chose)
    deployed = Classifier.from_pretrained(tmp_path / "out")
    assert (deployed.backend, deployed.precision) == ("openvino", faster)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".squeezebert-")]  # nothing staged left


@pytest.mark.parametrize("onednn", [True, False])
def test_torch_int8_is_timed_by_default_only_where_onednn_runs_it(
    teacher_dir, task_files, tmp_path, monkeypatch, onednn
) -> None:
    from squeezebert import quantize

    monkeypatch.setattr(quantize, "onednn_int8_ok", lambda: onednn)
    report = run(teacher_dir, task_files, tmp_path / "out", bf16=False)
    names = [r["model"] for r in report["rows"]]
    assert names == ["teacher fp32", "student fp32"] + (["teacher int8", "student int8"] if onednn else [])
    assert any("torch int8 left out of the report" in n for n in report["notes"]) is not onednn


def test_grouped_construction_and_layer_drop(teacher_dir, task_files, tmp_path) -> None:
    spec = StudentSpec.from_construction("grouped", layers=[1])
    report = run(teacher_dir, task_files, tmp_path / "out", spec=spec, int8=False, bf16=False)
    student = load(tmp_path / "out").model
    assert student.config.num_hidden_layers == 1 and student.config.groups("query") == 4
    assert [r["model"] for r in report["rows"]] == ["teacher fp32", "student fp32"]
    assert all(r["teacher_layer"] == 1 for r in report["surgery"])


def test_pretrained_student_without_surgery(teacher_dir, task_files, tmp_path, minilm_path) -> None:
    # a random-weight HF SqueezeBERT checkpoint of the tiny shape stands in for the Hub's
    student = SqueezeBert(preset("tiny", num_hidden_layers=1))
    save_hf(student, tmp_path / "hf-student", Tokenizer.from_dir(minilm_path))
    report = run(
        teacher_dir, task_files, tmp_path / "out", student_src=str(tmp_path / "hf-student"), int8=False, bf16=False
    )
    assert report["construction"].startswith("pretrained student")
    assert report["surgery"] is None
    assert load(tmp_path / "out").model.config.labels == ["neg", "pos"]


def test_cli_squeeze_end_to_end(teacher_dir, task_files, tmp_path, capsys) -> None:
    code = cli_main(
        [
            "squeeze", "--teacher", str(teacher_dir), "--train", str(task_files / "train.csv"),
            "--dev", str(task_files / "dev.csv"), "--out", str(tmp_path / "cli"), "--epochs", "1",
            "--batch-size", "8", "--max-length", "32", "--groups", "4,4,4,1,4,4", "--rank", "2",
            "--calibration-samples", "16", "--bench-repeats", "1", "--no-int8", "--no-bf16", "--no-openvino",
        ]
    )  # fmt: skip
    assert code == 0
    assert "squeeze report" in capsys.readouterr().out
    report = json.loads((tmp_path / "cli" / "report.json").read_text())
    assert [r["model"] for r in report["rows"]] == ["teacher fp32", "student fp32"]
    # augment defaults to auto: 48 training examples get 3 copies each (the most), and the report says it chose so
    assert report["num_train_examples"] == 48 * 4
    assert any("144 perturbed copies (3 per example, chosen by augment=auto;" in n for n in report["notes"])
    # ... their replacement words drawn from the training words
    assert report["distill"]["augment_words"] == "random"
    assert any("replacement words: training words at random" in n for n in report["notes"])
    # ... and hidden_weight defaults to auto: on, because the data was augmented
    assert report["distill"]["hidden_weight"] == 1.0
    assert any("chosen by hidden_weight=auto" in n for n in report["notes"])
    cfg = load(tmp_path / "cli").model.config
    assert cfg.groups("intermediate") == 4 and cfg.rank(0, "intermediate") == 2


def test_teacher_without_head_is_refused(task_files, tmp_path, minilm_path) -> None:
    save_checkpoint(SqueezeBert(preset("tiny")), tmp_path / "headless", tokenizer=Tokenizer.from_dir(minilm_path))
    with pytest.raises(ValueError, match="no classification head"):
        run(tmp_path / "headless", task_files, tmp_path / "out")


def test_labels_the_teacher_never_saw_fail_early(teacher_dir, tmp_path) -> None:
    (tmp_path / "train.csv").write_text("text,label\nsome text,neutral\nmore text,neg\n")
    with pytest.raises(ValueError, match="neutral"):
        squeeze(
            teacher_dir,
            tmp_path / "out",
            TaskSource(train_file=tmp_path / "train.csv", dev_file=tmp_path / "train.csv"),
        )


def test_bad_cli_flags_are_one_line_errors(teacher_dir, task_files, tmp_path, capsys) -> None:
    args = ["squeeze", "--teacher", str(teacher_dir), "--train", str(task_files / "train.csv"), "--out", str(tmp_path)]
    assert cli_main([*args, "--groups", "4,4"]) == 2
    assert "--groups takes 6 numbers" in capsys.readouterr().err
    assert cli_main([*args, "--rank", "2", "--rank-energy", "0.9"]) == 2
    assert "at most one of" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli_main([*args, "--augment", "many"])
    assert exit_info.value.code == 2 and "expected 'auto' or a number of copies" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli_main([*args, "--hidden-weight", "-1"])
    assert exit_info.value.code == 2 and "expected 'auto' or a weight >= 0, got '-1'" in capsys.readouterr().err


def test_augmented_distillation_data_is_labelled_by_the_teacher(teacher_dir, task_files, tmp_path) -> None:
    distill = DistillConfig(augment=2, augment_words="neighbours", teacher_precision="fp32")
    report = run(teacher_dir, task_files, tmp_path / "aug", distill=distill, int8=False, bf16=False)
    assert report["num_train_examples"] == 48 * 3
    assert report["teacher_precision"] == {"chosen": "fp32", "reason": "as given"}
    assert "teacher forward while distilling (hidden-state targets): fp32 (as given)" in report["notes"]
    assert report["distill"]["augment"] == 2
    # replacements from the teacher's embeddings, for the words its vocabulary holds whole
    note = next(n for n in report["notes"] if "96 perturbed copies" in n)
    covered = re.search(r"embedding neighbours of (\d+) training words", note)
    assert covered and int(covered.group(1)) > 0


def test_hidden_weight_auto_is_off_without_augmentation(teacher_dir, task_files, tmp_path) -> None:
    report = run(teacher_dir, task_files, tmp_path / "plain", distill=DistillConfig(augment=0), int8=False, bf16=False)
    assert report["num_train_examples"] == 48
    assert report["distill"]["hidden_weight"] == 0.0
    assert not any("hidden_weight=auto" in n for n in report["notes"])
    assert report["teacher_precision"] is None  # the teacher does not run while distilling


def test_teacher_labels_of_augmented_examples(teacher_dir) -> None:
    from squeezebert.data import EncodedDataset
    from squeezebert.squeeze import _with_teacher_labels
    from squeezebert.train import predict

    teacher = load(teacher_dir).model
    base = EncodedDataset([[101, 7, 102]], [[0, 0, 0]], [1], [3])
    extra = EncodedDataset([[101, 8, 9, 102], [101, 10, 102]], [[0] * 4, [0] * 3], None, [4, 3])
    logits = predict(teacher, extra, 8)
    merged = _with_teacher_labels(base, extra, logits)
    want = logits.argmax(-1).tolist()
    assert merged.labels == [1, *want] and merged.lengths == [3, 4, 3] and len(merged) == 3


# --------------------------------------------------------------------------- latency budget
def fake_measure(configs):
    """Milliseconds from the shape alone (no timing): proportional to the encoder's parameters."""
    from squeezebert.budget import Shape  # noqa: F401  (the shapes the squeeze builds)

    out = {}
    for name, cfg in configs.items():
        params = sum(p.numel() for n, p in SqueezeBert(cfg).named_parameters() if n.startswith("encoder."))
        out[name] = {"batch1": params / 1e4, "batch4": params / 2.5e3}
    return out


@pytest.fixture
def fake_timer(monkeypatch):
    from squeezebert import budget

    calls = []
    teacher_ms: dict = {}  # the table's teacher twin, for the deployed teacher re-timed later

    def measure(configs, batches, runtime, threads, repeats=5, recipe="dynamic", extra=None):
        calls.append((sorted(batches), runtime, recipe))
        out = fake_measure(configs)
        teacher_ms.update(out.get("teacher", {}))
        for name in extra or {}:  # a real model as deployed: here, twice its random-weight twin
            out[name] = {k: 2 * v for k, v in teacher_ms.items()}
        return out

    def measure_models(models, batches, runtime, threads, repeats=5, recipe="dynamic", extra=None, **blocks):
        # the choice re-timed alone: pruned weights time like their config, the teacher as in the table
        calls.append((sorted(batches), runtime, recipe))
        out = fake_measure({name: m.config for name, m in models.items()})
        for name in extra or {}:
            out[name] = {k: 2 * v for k, v in teacher_ms.items()}
        return out

    monkeypatch.setattr(budget, "measure_configs", measure)
    monkeypatch.setattr(budget, "measure_models", measure_models)
    return calls


@pytest.mark.parametrize("asked", ["auto", "dynamic"])
def test_the_table_times_shapes_through_the_teachers_int8_recipe_and_says_when_the_student_missed_it(
    teacher_dir, task_files, tmp_path, monkeypatch, fake_timer, asked
) -> None:
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from squeezebert import export_openvino

    export_model = export_openvino.export_model

    def teacher_static_student_not(model, out, *a, **k):
        if k.get("precision") == "int8":
            if Path(out).name != "deploy":  # the teacher (a temporary directory): static passes
                return export_model(model, out, *a, **{**k, "int8_recipe": "static"}, min_agreement=0.0)
            # the student: static misses the bar, the ladder falls back to run-time scales
            report = export_model(model, out, *a, **{**k, "int8_recipe": "dynamic"}, min_agreement=0.0)
            report.attempts.append({"recipe": "static", "dev": 0.98})
            return report
        return export_model(model, out, *a, **k, min_agreement=0.0)

    monkeypatch.setattr(export_openvino, "export_model", teacher_static_student_not)
    report = run(
        teacher_dir, task_files, tmp_path / "out", speedup=2.0, int8=False, bf16=False, openvino=True,
        budget_recipe=asked,
    )  # fmt: skip
    budget = report["budget"]
    want = "static" if asked == "auto" else "dynamic"
    assert budget["teacher_recipe"] == "static" and budget["recipe"] == want
    assert {call[2] for call in fake_timer} == {want}  # every table measurement used it
    assert report["budget_met"]["recipe"] != "static"
    missed = [n for n in report["notes"] if "the student's static int8 missed the agreement bar" in n]
    assert len(missed) == (1 if want == "static" else 0)
    assert all("--budget-recipe dynamic" in n for n in missed)
    md = (tmp_path / "out" / "report.md").read_text()
    assert ("static int8 calibrated on the training texts" in md) == (want == "static")
    assert ("run-time activation scales" in md) == (want == "dynamic")


def test_where_the_teacher_deploys_fp32_the_table_times_the_shapes_in_fp32(
    teacher_dir, task_files, tmp_path, monkeypatch, fake_timer, any_agreement
) -> None:
    from squeezebert import budget, quantize

    monkeypatch.setattr(quantize, "native_int8", lambda: False)  # no VNNI: int8 is compared with fp32

    def fp32_faster(forwards, batches, repeats=5, max_seconds=None):
        ms = {"int8": 3.0, "fp32": 2.0}
        return {n: {f"batch{bs}": dict.fromkeys(("p50", "p90", "p99", "mean"), ms.get(n, 1.0)) for bs in batches}
                for n in forwards}  # fmt: skip

    monkeypatch.setattr(budget, "time_forwards", fp32_faster)
    report = run(teacher_dir, task_files, tmp_path / "out", speedup=2.0, int8=False, bf16=False, openvino=True)
    assert report["budget"]["teacher_path"] == "teacher openvino-fp32" and report["budget"]["recipe"] == "fp32"
    assert {call[2] for call in fake_timer} == {"fp32"}  # the table and the re-timing alike
    assert report["budget"]["runtime"] == "openvino-fp32"  # named as timed, not as the int8 family
    assert "timed through openvino-fp32 (the teacher deployed in fp32" in (tmp_path / "out" / "report.md").read_text()


def test_candidate_shapes_and_the_frontier_within_a_budget() -> None:
    from squeezebert.budget import Candidate, Shape, candidate_shapes, frontier

    cfg = preset("tiny", num_hidden_layers=3, **DENSE)
    shapes = candidate_shapes(cfg)
    assert {s.layers for s in shapes} == {1, 2} and Shape(2, 4, 256) in shapes and Shape(1, 1, 64) in shapes
    # widths between the halves and below them: 3/8 (2 of 4 heads, 96 of 256 neurons), 1/8 (1 head, 32)
    assert Shape(2, 2, 96) in shapes and Shape(1, 1, 32) in shapes and len(shapes) == len(set(shapes)) == 10
    rows = [Candidate(s, s.layers * s.ffn, {"batch1": s.layers * s.ffn / 100}) for s in shapes]
    front = frontier(rows, 2.6, "batch1")
    # per layer count the widest shape within 2.6 ms: 2 layers x 128 (2.56), 1 layer x 256 (2.56)
    assert [(r.shape.layers, r.shape.ffn) for r in front] == [(2, 128), (1, 256)]
    assert all(r.within_budget == (r.latency_ms["batch1"] <= 2.6) for r in rows)


def test_the_latency_fit_smooths_noise_into_a_per_call_plus_per_layer_cost() -> None:
    from squeezebert.budget import Shape, fit_latency

    rng = np.random.default_rng(0)
    per_layer = {(12, 1536): 0.45, (6, 768): 0.2, (3, 384): 0.12}
    shapes = {
        f"s{i}": Shape(n, h, f) for i, (n, (h, f)) in enumerate((n, w) for n in (6, 5, 4, 3, 2, 1) for w in per_layer)
    }
    truth = {k: 0.35 + s.layers * per_layer[(s.heads, s.ffn)] for k, s in shapes.items()}
    noisy = {k: {"batch1": v * float(rng.uniform(0.8, 1.25))} for k, v in truth.items()}
    fitted, residual = fit_latency(noisy, shapes)
    err_raw = max(abs(noisy[k]["batch1"] - v) / v for k, v in truth.items())
    err_fit = max(abs(fitted[k]["batch1"] - v) / v for k, v in truth.items())
    assert err_fit < err_raw / 2 and 0 < residual["batch1"] < 0.3
    # within a layer count a wider shape is never fitted faster, whatever the noise said
    for n in range(1, 7):
        row = sorted((s.ffn, fitted[k]["batch1"]) for k, s in shapes.items() if s.layers == n)
        assert [ms for _, ms in row] == sorted(ms for _, ms in row)
    # too few shapes to determine the fit: the measurements stand, and no residual is claimed
    few = {k: shapes[k] for k in list(shapes)[:4]}
    kept, none = fit_latency({k: noisy[k] for k in few}, few)
    assert kept == {k: noisy[k] for k in few} and none == {}


def test_closeness_ranks_collapsed_candidates_by_kl_not_by_tied_agreement() -> None:
    from squeezebert.shape_choice import closeness as _closeness

    teacher = np.array([[2.0, 0.0], [1.5, 0.0], [0.0, 1.0], [3.0, 0.0]])
    # both candidates always answer label 0 (agree on 3 of 4), one is much closer in distribution
    near = np.array([[1.8, 0.0], [1.2, 0.0], [0.2, 0.0], [2.5, 0.0]])
    far = np.array([[9.0, 0.0], [9.0, 0.0], [9.0, 0.0], [9.0, 0.0]])
    (a_near, s_near), (a_far, s_far) = _closeness(near, teacher), _closeness(far, teacher)
    assert a_near == a_far == 0.75 and s_near > s_far and s_near < 0
    assert _closeness(teacher, teacher) == (1.0, pytest.approx(0.0, abs=1e-12))
    # regression: 1 - relative squared error, the same number for both
    y = np.array([[1.0], [2.0], [3.0]])
    assert _closeness(y, y) == (1.0, 1.0) and _closeness(np.full((3, 1), 2.0), y)[1] == pytest.approx(0.0)


def test_a_smaller_budget_picks_a_smaller_student(teacher_dir, task_files, tmp_path, fake_timer) -> None:
    from squeezebert.data import encode
    from squeezebert.prune import construct_student
    from squeezebert.shape_choice import choose_shape
    from squeezebert.squeeze import _calibration_batches
    from squeezebert.tables import read_table

    ckpt = load(teacher_dir)
    teacher, tok = ckpt.model, ckpt.tokenizer
    train = encode(tok, read_table(task_files / "train.csv", "text", None, "label"), 32, teacher.config.label2id)
    cal = _calibration_batches(train, tok, 32, 0, batch_size=8)
    teacher_ms = fake_measure({"t": teacher.config})["t"]["batch1"]
    chosen = []
    for budget in (0.6 * teacher_ms, 0.4 * teacher_ms, 0.2 * teacher_ms):
        spec, report = choose_shape(teacher, train, tok, cal, None, "openvino-int8", 2, budget, None, 1, 0)
        assert report["budget_ms"] == budget and report["met"]
        assert report["chosen"]["latency_ms"]["batch1"] <= budget
        student, _, _ = construct_student(teacher, spec, cal)
        chosen.append(student.num_parameters())
        assert sum(c["chosen"] for c in report["candidates"]) == 1
    assert chosen[0] > chosen[1] > chosen[2]
    # no shape fits an impossible budget: said plainly, and the fastest shape is used
    _, report = choose_shape(teacher, train, tok, cal, None, "torch-int8", 2, 1e-6, None, 1, 0)
    assert not report["met"] and "NO candidate shape met the budget" in report["notes"][0]


def test_a_choice_that_falls_short_when_re_timed_alone_steps_down_to_a_shape_the_table_put_faster(
    teacher_dir, task_files, tmp_path, fake_timer, monkeypatch
) -> None:
    from squeezebert import budget as b
    from squeezebert.data import encode
    from squeezebert.tables import read_table

    ckpt = load(teacher_dir)
    torch.manual_seed(0)
    teacher = SqueezeBert(preset("tiny", id2label={0: "neg", 1: "pos"}, num_hidden_layers=3, **DENSE)).eval()
    tok = ckpt.tokenizer
    train = encode(tok, read_table(task_files / "train.csv", "text", None, "label"), 32, teacher.config.label2id)
    cal = sq._calibration_batches(train, tok, 32, 0, batch_size=8)
    # the accuracy signal ranks deeper candidates first (deterministic here): the table's choice is 2 layers
    depth: list[int] = []
    real_predict = shape_choice.predict
    monkeypatch.setattr(
        shape_choice,
        "predict",
        lambda m, *a, **k: depth.append(m.config.num_hidden_layers) or real_predict(m, *a, **k),
    )
    monkeypatch.setattr(shape_choice, "closeness", lambda got, ref: (1.0, float(depth[-1])))
    budget = 0.8 * fake_measure({"t": teacher.config})["t"]["batch1"]
    args = (teacher, train, tok, cal, None, "openvino-int8", 2, budget, None, 1, 0)
    _, report = shape_choice.choose_shape(*args)
    assert report["chosen"]["layers"] == 2 and report["met"]
    assert [(c["shape"], c["within"]) for c in report["confirmation"]] == [(report["chosen"]["shape"], True)]
    first = report["chosen"]["shape"]
    assert [b["shape"] for b in report["confirmation"][0]["beside"]]  # the faster scored shapes, timed beside it
    fake = b.measure_models

    def slow(keep_layers: int, factor: float):
        def measure(models, *a, **k):
            out = fake(models, *a, **k)
            for name, m in models.items():  # runs slower alone than the table said
                if name != "teacher" and m.config.num_hidden_layers > keep_layers:
                    out[name] = {key: factor * v for key, v in out[name].items()}
            return out

        return measure

    # no tolerance: a few percent slower alone than the budget is short of it
    monkeypatch.setattr(b, "measure_models", slow(1, 1.3))
    _, noisy = shape_choice.choose_shape(*args)
    assert not noisy["confirmation"][0]["within"] and noisy["met"]
    assert noisy["chosen"]["shape"] != first

    monkeypatch.setattr(b, "measure_models", slow(1, 1.5))  # a third short: the budget shrinks by that
    _, stepped = shape_choice.choose_shape(*args)
    conf = stepped["confirmation"]
    assert [c["shape"] for c in conf][0] == first and not conf[0]["within"] and conf[-1]["within"]
    assert stepped["met"] and len(conf) == 2  # a narrower shape the table put a third faster meets it
    table = {c["shape"]: c["latency_ms"]["batch1"] for c in stepped["candidates"]}
    assert table[stepped["chosen"]["shape"]] < table[first] and stepped["chosen"]["layers"] == 2
    # the next choice came from the shapes the table put within the budget shrunk by the shortfall
    assert conf[0]["next_budget_ms"] == pytest.approx(table[first] * budget / conf[0]["ms"])
    assert table[stepped["chosen"]["shape"]] <= conf[0]["next_budget_ms"]
    assert any(f"the table's choice {first}" in n and "was distilled instead" in n for n in stepped["notes"])
    assert all(c["within_budget"] == (c["latency_ms"]["batch1"] <= budget) for c in stepped["candidates"])
    assert "re-timing the choice alone" in stepped["seconds"]

    # ten times slower: nothing with two layers fits the shrunk budget; the one-layer shape timed
    # beside the choice met the budget in that same re-timing, and is taken without another
    monkeypatch.setattr(b, "measure_models", slow(1, 10.0))
    _, fallback = shape_choice.choose_shape(*args)
    conf = fallback["confirmation"]
    assert fallback["met"] and fallback["chosen"]["layers"] == 1 and len(conf) == 1
    assert conf[0]["then"] == fallback["chosen"]["shape"]
    assert {b["shape"]: b["within"] for b in conf[0]["beside"]}[fallback["chosen"]["shape"]]

    # over twice as fast alone as the table said: the budget grows by that (less the headroom) once,
    # and the wider shape the table had put over the budget is chosen, re-timed, and meets it
    monkeypatch.setattr(b, "measure_models", slow(0, 0.45))
    small = 0.35 * budget / 0.8
    _, grown = shape_choice.choose_shape(*args[:7], small, *args[8:])
    _, plain = shape_choice.choose_shape(*args[:7], 2 * small, *args[8:])  # the table's own choice at twice that
    conf = grown["confirmation"]
    table = {c["shape"]: c["latency_ms"]["batch1"] for c in grown["candidates"]}
    # the table's choice re-timed at least STEP_UP inside the budget: the surplus that grows it
    assert conf[0]["within"] and grown["budget_ms"] / conf[0]["ms"] >= shape_choice.STEP_UP
    assert conf[0]["next_budget_ms"] > grown["budget_ms"]
    assert conf[0]["next_budget_ms"] == pytest.approx(
        table[conf[0]["shape"]] * grown["budget_ms"] / conf[0]["ms"] / shape_choice.STEP_UP_HEADROOM
    )
    assert grown["met"] and len(conf) == 2 and conf[1]["within"] and conf[1]["shape"] == grown["chosen"]["shape"]
    assert table[grown["chosen"]["shape"]] > grown["budget_ms"]  # over the budget by the table, within it alone
    assert table[grown["chosen"]["shape"]] > table[conf[0]["shape"]]
    assert any("budget was grown by the surplus" in n and "was distilled instead" in n for n in grown["notes"])
    assert plain["chosen"]["shape"] == grown["chosen"]["shape"]

    # the report's words for each re-timing: what was timed beside the choice, how the budget moved
    words = [squeeze_report.retiming_words(c) for c in (*stepped["confirmation"], *fallback["confirmation"])]
    shrunk = stepped["confirmation"][0]
    assert words[0].startswith(f"{shrunk['shape']} ") and "(short of the budget)" in words[0]
    assert f"the budget shrunk to {shrunk['next_budget_ms']:.2f} ms in the table" in words[0]
    assert "(within the budget)" in words[1] and "budget shrunk" not in words[1]
    assert words[-1].endswith(f"; {fallback['chosen']['shape']}, re-timed within it, chosen")
    assert f"the budget grown to {conf[0]['next_budget_ms']:.2f} ms" in squeeze_report.retiming_words(conf[0])

    def never(models, *a, **k):  # every shape re-timed alone reads ten times the budget
        out = fake(models, *a, **k)
        for name in models:
            if name != "teacher":
                out[name] = {key: 10 * budget for key in out[name]}
        return out

    monkeypatch.setattr(b, "measure_models", never)  # nothing meets it alone: said, and the last tried kept
    _, short = shape_choice.choose_shape(*args)
    assert not short["met"] and not any(c["within"] for c in short["confirmation"])
    assert 1 <= len(short["confirmation"]) <= shape_choice.RETIME_ROUNDS
    assert short["chosen"]["shape"] == short["confirmation"][-1]["shape"]
    assert any("shapes re-timed met it" in n and "the last tried, was kept" in n for n in short["notes"])


def test_with_prune_unit_blocks_the_chosen_depth_is_reached_by_removing_blocks(
    teacher_dir, task_files, tmp_path, fake_timer
) -> None:
    from squeezebert.data import encode
    from squeezebert.prune import construct_student
    from squeezebert.shape_choice import choose_shape
    from squeezebert.squeeze import _calibration_batches
    from squeezebert.tables import read_table

    ckpt = load(teacher_dir)
    teacher, tok = ckpt.model, ckpt.tokenizer
    train = encode(tok, read_table(task_files / "train.csv", "text", None, "label"), 32, teacher.config.label2id)
    cal = _calibration_batches(train, tok, 32, 0, batch_size=8)
    budget = 0.2 * fake_measure({"t": teacher.config})["t"]["batch1"]
    args = (teacher, train, tok, cal, None, "openvino-int8", 2, budget, None, 1, 0)
    by_layers, report = choose_shape(*args)
    by_blocks, blocks_report = choose_shape(*args, prune_unit="blocks")
    layers = report["chosen"]["layers"]
    assert layers < teacher.config.num_hidden_layers and blocks_report["chosen"]["shape"] == report["chosen"]["shape"]
    assert by_blocks.blocks == 2 * layers and by_blocks.layers is None and by_layers.blocks is None
    assert blocks_report["chosen"]["blocks"] == 2 * layers and report["chosen"]["blocks"] is None
    check = blocks_report["chosen"]["block_check"]
    assert check["within_budget"] and len(check["removed"]) == 2 * (teacher.config.num_hidden_layers - layers)

    def slow_blocks(configs):  # the blocks the choice removes cost more than the layers would
        out = fake_measure(configs)
        out.update({"blocks": {k: 10 * v for k, v in out["blocks"].items()}} if "blocks" in out else {})
        return out

    fallback, slow = choose_shape(*args, measure=slow_blocks, prune_unit="blocks")
    assert slow["chosen"]["block_check"]["ratio_to_layers"] == pytest.approx(10 * check["ratio_to_layers"])
    assert fallback == by_layers and slow["chosen"]["blocks"] is None  # whole layers, as without blocks
    assert "whole layers are removed" in slow["notes"][-1] and "choosing and timing the blocks" in slow["seconds"]
    student, _, pruning = construct_student(teacher, by_blocks, cal)
    assert student.config.num_hidden_layers == teacher.config.num_hidden_layers
    assert len(student.config.removed_blocks) == 2 * (teacher.config.num_hidden_layers - layers)
    assert len(pruning.block_steps) == len(student.config.removed_blocks)
    # an interrupted run resumes with the blocks it chose
    (tmp_path / "train_args.json").write_text(json.dumps({"budget_choice": blocks_report}))
    resumed, _ = choose_shape(teacher, train, tok, cal, sq._recorded_choice(tmp_path), *args[5:])
    assert resumed == by_blocks
    # ... and, killed while its intermediate student (two-step pruning) was distilled, with that run's record
    (tmp_path / "train_args.json").unlink()
    (tmp_path / "intermediate.tmp").mkdir()
    (tmp_path / "intermediate.tmp" / "train_args.json").write_text(json.dumps({"budget_choice": report}))
    resumed, _ = choose_shape(teacher, train, tok, cal, sq._recorded_choice(tmp_path), *args[5:])
    assert resumed == by_layers
    with pytest.raises(ValueError, match="prune_unit must be one of"):
        choose_shape(*args, prune_unit="heads")


def test_the_closeness_check_never_scores_on_nothing() -> None:
    from squeezebert.shape_choice import check_indices as _check_indices

    held_out = _check_indices(10, {0, 1, 2}, 5, 0)
    assert len(held_out) == 5 and not {0, 1, 2} & set(held_out)
    # the calibration took every example: score on them rather than on an empty set (nan)
    assert sorted(_check_indices(4, {0, 1, 2, 3}, 10, 0)) == [0, 1, 2, 3]


def test_a_speedup_is_taken_against_the_teacher_as_deployed(teacher_dir, task_files, tmp_path, fake_timer) -> None:
    from types import SimpleNamespace

    from squeezebert.data import encode
    from squeezebert.shape_choice import choose_shape
    from squeezebert.squeeze import _calibration_batches
    from squeezebert.tables import read_table

    ckpt = load(teacher_dir)
    teacher, tok = ckpt.model, ckpt.tokenizer
    train = encode(tok, read_table(task_files / "train.csv", "text", None, "label"), 32, teacher.config.label2id)
    cal = _calibration_batches(train, tok, 32, 0, batch_size=8)
    exported = []

    def deploy(batches):
        exported.append(sorted(batches))
        return "teacher openvino-int8", SimpleNamespace(classifier=SimpleNamespace(forward=None)), 1

    args = (teacher, train, tok, cal, None, "openvino-int8", 2, None, 3.0, 1, 0)
    _, twin = choose_shape(*args)
    _, real = choose_shape(*args, deploy_teacher=deploy)
    assert exported == [[1]] and twin["teacher_path"] == "random-weight twin through openvino-int8"
    assert real["teacher_path"] == "teacher openvino-int8"
    # the deployed teacher ran twice as slow as its twin (the fake timer): the budget doubles
    assert real["teacher_ms"]["batch1"] == pytest.approx(2 * real["teacher_twin_ms"]["batch1"])
    assert real["teacher_twin_ms"] == pytest.approx(twin["teacher_ms"])
    assert real["budget_ms"] == pytest.approx(2 * twin["budget_ms"])
    params = {c["shape"]: c["parameters"] for c in real["candidates"]}
    assert params[real["chosen"]["shape"]] > params[twin["chosen"]["shape"]]
    assert "the teacher's export" in real["seconds"] and "the teacher's export" not in twin["seconds"]
    # an export that every precision refused: the twin stands in
    _, none = choose_shape(*args, deploy_teacher=lambda batches: None)
    assert none["teacher_ms"] == pytest.approx(twin["teacher_ms"]) and none["budget_ms"] == pytest.approx(
        twin["budget_ms"]
    )


def test_squeeze_with_a_speedup_reports_the_budget_table_plot_and_cost(
    teacher_dir, task_files, tmp_path, fake_timer
) -> None:
    report = run(teacher_dir, task_files, tmp_path / "out", speedup=2.0, budget_batch=4, int8=False, bf16=False)
    out = tmp_path / "out"
    budget = report["budget"]
    assert budget["batch"] == 4 and budget["speedup"] == 2.0
    assert budget["budget_ms"] == pytest.approx(budget["teacher_ms"]["batch4"] / 2.0)
    assert fake_timer and fake_timer[0][0] == [1, 4]  # timed at batch 1 and the budget batch
    student = load(out).model
    chosen = budget["chosen"]
    assert student.config.num_hidden_layers == chosen["layers"]
    assert student.config.heads(0) == chosen["heads"] and student.config.ffn_width(0) == chosen["ffn"]
    assert (out / "latency_vs_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    met = report["budget_met"]
    assert met["path"].startswith("student") and met["teacher_path"].startswith("teacher")
    # a speed-up is judged against the teacher timed in the same run, not the table's teacher
    assert met["speedup"] == pytest.approx(met["teacher_ms"] / met["ms"], rel=0.01)
    assert met["within"] == (met["teacher_ms"] / met["ms"] >= 2.0)
    assert "the teacher's fastest path" in (out / "report.md").read_text()
    assert {"batch1", "batch4"} <= set(report["rows"][0]["latency_ms"])
    assert report["lengths"]["p50"] > 3 and report["lengths"]["texts"] == 48
    assert {"construction", "teacher outputs", "distillation (with its dev evaluations)", "report: latency"} <= set(
        report["cost_s"]
    )
    md = (out / "report.md").read_text()
    assert "## Shape chosen by measured latency" in md and "(chosen)" in md and "Where the squeeze spent" in md
    # the choice was re-timed alone with the teacher before training, and the report shows it
    assert [c["shape"] for c in budget["confirmation"]] == [chosen["shape"]] and budget["confirmation"][0]["within"]
    assert "Re-timed alone with the teacher before training (the table times every shape at once" in md
    # candidates are timed through the teacher's own int8 recipe, and the report says which
    if budget["runtime"] == "openvino-int8":
        assert budget["teacher_recipe"] in ("static", "dynamic")
        assert budget["recipe"] == budget["teacher_recipe"] and fake_timer[0][2] == budget["recipe"]
        words = {"static": "static int8 calibrated", "dynamic": "run-time activation scales"}
        assert words[budget["recipe"]] in md
    elif budget["runtime"] == "torch-int8":
        assert budget["recipe"] is None and "run-time activation scales" not in md
    else:  # the teacher deployed in fp32, faster than its int8 here
        assert budget["runtime"] == "openvino-fp32" and budget["recipe"] == "fp32"
    with pytest.raises(ValueError, match="not both"):
        run(teacher_dir, task_files, tmp_path / "x", speedup=2.0, latency_budget_ms=3.0)
    with pytest.raises(ValueError, match="chooses the student's shape itself"):
        run(teacher_dir, task_files, tmp_path / "y", speedup=2.0, spec=StudentSpec.from_construction("grouped"))


def test_unlabeled_texts_join_the_distillation_data(teacher_dir, task_files, tmp_path) -> None:
    (tmp_path / "more.txt").write_text("the plot was thin\nthe music was lovely\n\nthe ending dragged\n")
    report = run(
        teacher_dir, task_files, tmp_path / "out", unlabeled=tmp_path / "more.txt", int8=False, bf16=False,
        distill=DistillConfig(augment=0),
    )  # fmt: skip
    assert report["num_train_examples"] == 48 + 3
    assert any("3 unlabeled texts" in n for n in report["notes"])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", "", "empty.txt"),
        ("bad.jsonl", '{"text": "fine"}\n{"text": \n', r"bad.jsonl:2"),
        ("cols.csv", "sentence\nhello\n", r"cols.csv.*text"),
    ],
)
def test_bad_unlabeled_files_get_the_data_errors(teacher_dir, task_files, tmp_path, name, content, message) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=message):
        run(teacher_dir, task_files, tmp_path / "out", unlabeled=tmp_path / name, int8=False, bf16=False)
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_cli_squeeze_takes_the_budget_flags(teacher_dir, task_files, tmp_path, capsys, fake_timer) -> None:
    args = [
        "squeeze", "--teacher", str(teacher_dir), "--train", str(task_files / "train.csv"),
        "--dev", str(task_files / "dev.csv"), "--epochs", "1", "--batch-size", "8", "--max-length", "32",
        "--calibration-samples", "16", "--bench-repeats", "1", "--no-int8", "--no-bf16", "--no-openvino",
        "--augment", "0",
    ]  # fmt: skip
    assert cli_main([*args, "--out", str(tmp_path / "a"), "--latency-budget", "1e9"]) == 0
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["budget"]["budget_ms"] == 1e9 and report["budget"]["met"]
    assert cli_main([*args, "--out", str(tmp_path / "b"), "--speedup", "2", "--construction", "grouped"]) == 2
    assert "drop --construction" in capsys.readouterr().err
    assert cli_main([*args, "--out", str(tmp_path / "b"), "--speedup", "2", "--heads", "2", "--blocks", "2"]) == 2
    assert "drop --heads, --blocks" in capsys.readouterr().err  # not silently ignored
    assert cli_main([*args, "--out", str(tmp_path / "b"), "--prune-unit", "blocks"]) == 2
    assert "give --blocks N" in capsys.readouterr().err
    assert cli_main([*args, "--out", str(tmp_path / "c"), "--construction", "pruned", "--heads", "2"]) == 0
    assert load(tmp_path / "c").model.config.layer_heads == [2, 2]
    # fewer and narrower layers: two steps by default, one with --intermediate-epochs 0
    two = [*args, "--construction", "pruned", "--layers", "1", "--heads", "2"]
    assert cli_main([*two, "--out", str(tmp_path / "c2")]) == 0
    assert json.loads((tmp_path / "c2" / "report.json").read_text())["intermediate"]["epochs"] == 1
    assert "pruned in two steps" in (tmp_path / "c2" / "report.md").read_text()
    assert cli_main([*two, "--out", str(tmp_path / "c3"), "--intermediate-epochs", "0"]) == 0
    assert json.loads((tmp_path / "c3" / "report.json").read_text())["intermediate"] is None
    assert cli_main([*two, "--out", str(tmp_path / "c4"), "--intermediate-epochs", "-1"]) == 2
    assert "--intermediate-epochs must be 0 (prune in one step) or more, got -1" in capsys.readouterr().err
    assert cli_main([*two, "--out", str(tmp_path / "c5"), "--carved-lr", "2e-5"]) == 0
    assert json.loads((tmp_path / "c5" / "train_args.json").read_text())["lr"] == 2e-5
    assert "distilled on at lr 2e-05 (the intermediate: 0.0003)" in (tmp_path / "c5" / "report.md").read_text()
    assert cli_main([*two, "--out", str(tmp_path / "c6"), "--carved-lr", "-1"]) == 2
    assert "--carved-lr must be a positive learning rate, got -1.0" in capsys.readouterr().err
    assert cli_main([*two, "--out", str(tmp_path / "c7"), "--fade", "0.25"]) == 0
    assert json.loads((tmp_path / "c7" / "report.json").read_text())["intermediate"]["fade"] == 0.25
    assert "fading out over the first 25%" in (tmp_path / "c7" / "report.md").read_text()
    assert "fading out" not in (tmp_path / "c2" / "report.md").read_text()  # by default the layer is cut outright
    assert json.loads((tmp_path / "c2" / "report.json").read_text())["intermediate"]["fade"] == 0
    assert cli_main([*two, "--out", str(tmp_path / "c8"), "--fade", "2"]) == 2
    assert "--fade must be a fraction from 0 to 1, got 2.0" in capsys.readouterr().err
    # whole blocks: 2 of the 4 go, none of them attention (a third of 2, rounded down)
    assert cli_main([*args, "--out", str(tmp_path / "d"), "--construction", "pruned", "--blocks", "2"]) == 0
    cfg = load(tmp_path / "d").model.config
    assert cfg.removed_blocks == [(0, "ffn"), (1, "ffn")]
    assert "ffn block removed from layer 0" in (tmp_path / "d" / "report.md").read_text()
    capsys.readouterr()
    assert cli_main(["info", str(tmp_path / "d")]) == 0
    assert "(FFN 0/0 per layer)" in capsys.readouterr().out
    assert cli_main([*args, "--out", str(tmp_path / "e"), "--speedup", "3", "--prune-unit", "blocks"]) == 0
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    blocks = report["budget"]["chosen"]["blocks"]
    assert blocks == 2 * report["budget"]["chosen"]["layers"] < 4  # the fake timer makes 3x need one layer
    assert len(load(tmp_path / "e").model.config.removed_blocks) == 4 - blocks
    assert "removing blocks, not layers" in (tmp_path / "e" / "report.md").read_text()


@pytest.mark.parametrize(("vnni", "precision"), [(True, "int8"), (False, "fp32")])
def test_without_openvino_the_student_is_deployed_through_onnx(
    teacher_dir, task_files, tmp_path, monkeypatch, vnni, precision
) -> None:
    pytest.importorskip("onnxruntime")
    from squeezebert import infer, quantize
    from squeezebert.infer import Classifier

    installed = infer.installed
    monkeypatch.setattr(infer, "installed", lambda m: False if m in ("openvino", "nncf") else installed(m))
    monkeypatch.setattr(quantize, "native_int8", lambda: vnni)  # without VNNI ONNX Runtime's int8 saturates
    report = run(teacher_dir, task_files, tmp_path / "out", int8=False, bf16=False, openvino=None)
    names = [r["model"] for r in report["rows"]]
    assert names == ["teacher fp32", "student fp32", f"teacher onnx-{precision}", f"student onnx-{precision}"]
    assert "accuracy" in {r["model"]: r for r in report["rows"]}[f"student onnx-{precision}"]["metrics"]
    deployed = Classifier.from_pretrained(tmp_path / "out")
    assert (deployed.backend, deployed.precision) == ("onnx", precision)


def _spy_constructions(monkeypatch) -> list[SqueezeBert]:
    """The models ``squeeze`` carves students out of, in order."""

    seen: list[SqueezeBert] = []
    original = sq.construct_student

    def spy(model, spec, calibration):
        seen.append(model)
        return original(model, spec, calibration)

    monkeypatch.setattr(sq, "construct_student", spy)
    return seen


def test_a_student_losing_layers_and_width_is_carved_out_of_a_distilled_intermediate(
    teacher_dir, task_files, tmp_path, monkeypatch
) -> None:

    seen = _spy_constructions(monkeypatch)
    trained: list[SqueezeBert] = []
    layer_maps: list = []
    original_fit = sq.fit

    def spy_fit(model, loss, *args, **kwargs):
        trained.append(model)
        layer_maps.append(getattr(loss, "inner", loss).config.layer_map)
        return original_fit(model, loss, *args, **kwargs)

    monkeypatch.setattr(sq, "fit", spy_fit)
    spec = StudentSpec.from_construction("pruned", layers=[1], heads=2, ffn=64)
    # hidden states matched as well (not the pruned default): while fading, only the kept layers' are
    distill = DistillConfig(hidden_weight=1.0, teacher_precision="fp32")
    report = run(
        teacher_dir, task_files, tmp_path / "out", spec=spec, int8=False, bf16=False, intermediate_epochs=1, fade=0.5,
        distill=distill,
    )  # fmt: skip
    cfg = load(tmp_path / "out").model.config
    assert (cfg.num_hidden_layers, cfg.heads(0), cfg.ffn_width(0)) == (1, 2, 64)
    assert not (tmp_path / "out" / "intermediate.tmp").exists()  # scratch, removed at the end
    inter = report["intermediate"]
    assert inter["epochs"] == 1 and inter["shape"] == "2L-2h-64f" and "accuracy" in inter["metrics"]
    assert "accuracy" in inter["student_after_one_step"]
    assert any(n.startswith("pruned in two steps") and "teacher layers [1]" in n for n in report["notes"])
    # the layer the carve removes faded out during the step: carving it out changed nothing
    assert inter["fade"] == 0.5 and any("layers [0] fading out over the first 50%" in n for n in report["notes"])
    assert report["student_after_construction"] == inter["metrics"]
    # first the one-step student (its kept layers, its score), then the final one out of the
    # intermediate: every layer at the final width, the model the first distillation trained
    assert len(seen) == 2 and seen[0].config == load(teacher_dir).model.config
    assert seen[1].config.num_hidden_layers == 2 and seen[1].config.layer_heads == [2, 2]
    assert len(trained) == 2 and trained[0] is seen[1] and trained[1].config.num_hidden_layers == 1
    # the intermediate matched its kept layer 1 only (layer 0 faded); the carved student its one layer
    assert layer_maps == [[(0, 0), (2, 2)], [(0, 0), (1, 2)]]


@pytest.mark.parametrize("epochs", [0, 1])
def test_attention_is_distilled_head_to_head_for_pruned_students(
    teacher_dir, task_files, tmp_path, monkeypatch, epochs
) -> None:
    pruned_by: list = []  # (kwargs, report) of every prune_model the squeeze runs
    maps: list = []  # the head map of every distillation's loss
    original_prune, original_fit = sq.prune_model, sq.fit

    def spy_prune(*args, **kwargs):
        model, report = original_prune(*args, **kwargs)
        pruned_by.append((kwargs, report))
        return model, report

    def spy_fit(model, loss, *args, **kwargs):
        maps.append(getattr(loss, "inner", loss).config.head_map)  # (inside the intermediate's fade)
        return original_fit(model, loss, *args, **kwargs)

    monkeypatch.setattr(sq, "prune_model", spy_prune)
    monkeypatch.setattr(sq, "fit", spy_fit)
    spec = StudentSpec.from_construction("pruned", layers=[1], heads=2, ffn=64)
    distill = DistillConfig(attention_weight=1.0, hidden_weight=0.0, augment=0)
    report = run(
        teacher_dir, task_files, tmp_path / "out", spec=spec, int8=False, bf16=False, intermediate_epochs=epochs,
        distill=distill,
    )  # fmt: skip
    assert any("attention distilled head to head" in n for n in report["notes"])
    if epochs:  # the final student is carved out of the intermediate: its heads are the intermediate's
        inter = next(r for kw, r in pruned_by if kw.get("heads") == 2 and "layers" not in kw)
        assert len(inter.heads) == 2 and maps == [inter.heads, [inter.heads[1]]]
    else:
        assert maps == [report["pruning"]["heads"]] and len(maps[0]) == 1 and len(maps[0][0]) == 2
    assert report["distill"]["head_map"] == maps[-1]
    # no attention targets: no head map
    maps.clear()
    plain = run(teacher_dir, task_files, tmp_path / "plain", spec=spec, int8=False, bf16=False, intermediate_epochs=0)
    assert maps == [None] and plain["distill"]["head_map"] is None


def test_students_that_keep_every_layer_or_full_width_are_pruned_in_one_step(
    teacher_dir, task_files, tmp_path, monkeypatch
) -> None:
    seen = _spy_constructions(monkeypatch)
    for name, spec, epochs in (
        ("layers", StudentSpec.from_construction("pruned", layers=[1]), 1),
        ("width", StudentSpec.from_construction("pruned", heads=2, ffn=64), 1),
        ("off", StudentSpec.from_construction("pruned", layers=[1], heads=2, ffn=64), 0),
    ):
        report = run(
            teacher_dir, task_files, tmp_path / name, spec=spec, int8=False, bf16=False, intermediate_epochs=epochs
        )
        assert report["intermediate"] is None and not any("two steps" in n for n in report["notes"]), name
        # augmented (48 examples: 3 copies each), yet a pruned student distils logits only: the
        # teacher does not run while distilling
        assert report["num_train_examples"] == 48 * 4 and report["distill"]["hidden_weight"] == 0.0, name
        assert any(n.startswith("hidden-state distillation: off") for n in report["notes"]), name
        assert report["teacher_precision"] is None, name
    assert len(seen) == 3
    with pytest.raises(ValueError, match="intermediate_epochs must be a whole number"):
        run(teacher_dir, task_files, tmp_path / "bad", spec=spec, intermediate_epochs=-1)
    with pytest.raises(ValueError, match="carved_lr must be a positive learning rate"):
        run(teacher_dir, task_files, tmp_path / "bad", spec=spec, carved_lr=0.0)
    with pytest.raises(ValueError, match="fade must be a fraction of the intermediate step from 0 to 1"):
        run(teacher_dir, task_files, tmp_path / "bad", spec=spec, fade=1.5)


@pytest.mark.parametrize("fade", [0.0, 0.5])
def test_a_two_step_squeeze_interrupted_between_its_steps_resumes_to_the_uninterrupted_student(
    teacher_dir, task_files, tmp_path, monkeypatch, fade
) -> None:
    from safetensors.torch import load_file

    spec = StudentSpec.from_construction("pruned", layers=[1], heads=2, ffn=64)
    # the carved student distilled at its own learning rate: a resume must find it again; faded,
    # the intermediate restored must be the one whose layer is gone (the fade's state restored too)
    # hidden states matched too (a pruned student's default is logits only): the teacher runs while distilling
    distill = DistillConfig(hidden_weight=1.0)
    kw = dict(spec=spec, int8=False, bf16=False, intermediate_epochs=1, carved_lr=4e-5, fade=fade, distill=distill)

    def measured(chosen):  # the teacher's precision while distilling, as if timed on this machine
        speedup = 2.0 if chosen == "bf16" else 1.0
        speed = {"fp32_ms": 10.0, "bf16_ms": 10.0 / speedup, "speedup": speedup, "batches": 3}
        return lambda teacher, batches: (chosen, {"chosen": chosen, **speed, "max_relative_error": 0.004})

    monkeypatch.setattr(sq, "choose_teacher_precision", measured("bf16"))
    straight = run(teacher_dir, task_files, tmp_path / "straight", **kw)
    assert straight["distill"]["teacher_precision"] == "bf16" == straight["teacher_precision"]["chosen"]
    assert any(n.startswith("teacher forward while distilling (hidden-state targets): bf16") for n in straight["notes"])

    fits = []
    original_fit = sq.fit

    def fit_then_die(*args, **kwargs):
        fits.append(kwargs.get("resume"))
        if len(fits) == 2:  # the final distillation: the machine goes down before it starts
            raise KeyboardInterrupt
        return original_fit(*args, **kwargs)

    monkeypatch.setattr(sq, "fit", fit_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(teacher_dir, task_files, tmp_path / "killed", **kw)
    assert (tmp_path / "killed" / "intermediate.tmp" / "last").is_dir()
    # the intermediate at the run's own rate (run()'s config: 1e-3)
    assert json.loads((tmp_path / "killed" / "intermediate.tmp" / "train_args.json").read_text())["lr"] == 1e-3
    monkeypatch.setattr(sq, "fit", original_fit)
    # measured again now, fp32 would win: the resumed run keeps the bf16 its targets were made with
    monkeypatch.setattr(sq, "choose_teacher_precision", measured("fp32"))
    resumed = run(teacher_dir, task_files, tmp_path / "killed", resume=True, **kw)
    assert resumed["distill"]["teacher_precision"] == "bf16" and "kept" in resumed["teacher_precision"]["reason"]
    a, b = load_file(tmp_path / "straight" / "model.safetensors"), load_file(tmp_path / "killed" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["intermediate"]["metrics"] == straight["intermediate"]["metrics"]
    if fade:  # restored with its layer gone: the carve changed nothing, as in the uninterrupted run
        assert resumed["student_after_construction"] == resumed["intermediate"]["metrics"]
    steps = straight["intermediate"]["train"]["global_step"]
    assert steps > 0 and resumed["intermediate"]["train"]["resumed_from_step"] == steps  # restored, not redone
    assert not (tmp_path / "killed" / "intermediate.tmp").exists()
    assert json.loads((tmp_path / "killed" / "train_args.json").read_text())["lr"] == 4e-5  # the carved student's
    # resumed once more after it finished (the final state kept, the intermediate gone): not redone,
    # and the report describes the step from the record the finished run left beside the student
    seen = _spy_constructions(monkeypatch)
    again = run(teacher_dir, task_files, tmp_path / "killed", resume=True, **kw)
    assert len(seen) == 1 and again["student_metrics"] == straight["student_metrics"]
    assert again["distill"]["teacher_precision"] == "bf16"
    assert again["intermediate"] == resumed["intermediate"]
    # resumed at another carved rate (a run begun when the default was the full rate): the refusal
    # names the carved rate, not --lr
    with pytest.raises(TrainingError, match=r"--carved-lr: 4e-05 then, 5e-05 now"):
        run(teacher_dir, task_files, tmp_path / "killed", resume=True, **{**kw, "carved_lr": 5e-5})
    # ... and where the state does not record the carved rate (saved before it was a setting), with
    # --lr at the rate the state was saved at: only the shape says the carved rate applies
    state_file = sq.resume_dir(tmp_path / "killed") / "state.json"
    state = json.loads(state_file.read_text())
    state["fingerprint"] = {k: v for k, v in state["fingerprint"].items() if k != "carved_lr"}
    state_file.write_text(json.dumps(state))
    with pytest.raises(TrainingError, match=r"carved student was distilled at lr 4e-05 .* --carved-lr 4e-05"):
        run(teacher_dir, task_files, tmp_path / "killed", lr=4e-5, resume=True, **{**kw, "carved_lr": 1e-3})
    assert again["student_after_construction"] == straight["student_after_construction"]
    assert [n for n in again["notes"] if "two steps" in n] == [n for n in straight["notes"] if "two steps" in n]
    # without the record (an older run's directory) the student is the same, the section absent
    (tmp_path / "killed" / sq.INTERMEDIATE_RECORD).write_text("[]")
    bare = run(teacher_dir, task_files, tmp_path / "killed", resume=True, **kw)
    assert bare["intermediate"] is None and bare["student_metrics"] == straight["student_metrics"]
