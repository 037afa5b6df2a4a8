"""OpenVINO export: parity with PyTorch for every model shape, int8 calibrated on real text only,
agreement checks that refuse to write, self-contained directories, and the export used by predict
and evaluate without a backend flag (predict and the Classifier with torch blocked; serve is in
tests/test_serve.py)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

ov = pytest.importorskip("openvino")
pytest.importorskip("nncf")

from squeezebert import backends  # noqa: E402
from squeezebert.checkpoint import save_checkpoint  # noqa: E402
from squeezebert.cli import main  # noqa: E402
from squeezebert.config import preset  # noqa: E402
from squeezebert.export import ExportError, sample_inputs  # noqa: E402
from squeezebert.export_openvino import (  # noqa: E402
    CALIBRATION_SIZE,
    CHECK_SIZE,
    MIN_CALIBRATION_SIZE,
    CalibrationError,
    TextSample,
    _split_calibration,
    export,
    export_model,
    recorded_data,
)
from squeezebert.infer import Classifier, OpenVinoForward, export_backend, openvino_has_bf16  # noqa: E402
from squeezebert.model import SqueezeBert  # noqa: E402
from squeezebert.tokenizer import Tokenizer  # noqa: E402

FILLER = "the a movie film plot it was is very quite really story acting and but this that".split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", *FILLER]
DENSE = dict(q_groups=1, k_groups=1, v_groups=1, post_attention_groups=1, intermediate_groups=1, output_groups=1)
SHAPES = {
    "dense": DENSE,
    "grouped": {},
    "low-rank": {"ranks": {"query": 4, "1.intermediate": 8}},
    "fewer-layers": {"num_hidden_layers": 1},
    "factorized-embeddings": {"embedding_size": 32},
}


def tiny_model(**overrides: object) -> SqueezeBert:
    base = dict(vocab_size=len(VOCAB), max_position_embeddings=64, num_labels=2, id2label={0: "neg", 1: "pos"})
    base.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return SqueezeBert(preset("tiny", **{**base, **overrides})).eval()


def sentences(n: int, seed: int) -> list[tuple[str, str]]:
    """Filler words with one 'good' (pos) or 'bad' (neg) somewhere: trivially separable."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = rng.choices(FILLER, k=rng.randint(2, 12))
        label = rng.randint(0, 1)
        words.insert(rng.randint(0, len(words)), ("bad", "good")[label])
        out.append((" ".join(words), ("neg", "pos")[label]))
    return out


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return Tokenizer.from_vocab(vocab)


@pytest.fixture(scope="module")
def trained(tokenizer: Tokenizer, tmp_path_factory: pytest.TempPathFactory) -> tuple[SqueezeBert, Path]:
    """A tiny dense model trained for 40 steps on good/bad sentences, saved with a train_args.json
    that records its custom train and dev files, as ``squeezebert finetune`` writes it."""
    torch.manual_seed(0)
    model = tiny_model(**DENSE)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for step in range(40):
        data = sentences(32, seed=step)
        batch = {k: torch.from_numpy(v) for k, v in tokenizer([t for t, _ in data]).items()}
        target = torch.tensor([model.config.label2id[y] for _, y in data])
        loss = torch.nn.functional.cross_entropy(model(**batch), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, save_with_task_files(model, tokenizer, tmp_path_factory.mktemp("trained"), lambda y: y)


def save_with_task_files(model: SqueezeBert, tokenizer: Tokenizer, root: Path, label: Callable[[str], str]) -> Path:
    """``model`` saved under ``root/ckpt`` beside custom train.csv / dev.csv files of good/bad
    sentences (``label`` maps "neg"/"pos" to what the file holds), with the train_args.json that
    ``squeezebert finetune`` would write for them."""
    for name, n, seed in (("train.csv", 600, 1), ("dev.csv", 120, 2)):
        rows = "".join(f'"{t}",{label(y)}\n' for t, y in sentences(n, seed))
        (root / name).write_text("text,label\n" + rows, encoding="utf-8")
    path = save_checkpoint(model, root / "ckpt", tokenizer)
    args = {"task": "custom", "train_file": str(root / "train.csv"), "dev_file": str(root / "dev.csv")}
    args.update(text_column="text", text_pair_column=None, label_column="label", max_length=32)
    (path / "train_args.json").write_text(json.dumps(args), encoding="utf-8")
    return path


def run_torch(model: SqueezeBert, inputs: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).numpy()


# --------------------------------------------------------------------------- fp32 parity
@pytest.mark.parametrize("shape", SHAPES)
def test_fp32_export_of_every_model_shape_matches_pytorch(shape: str, tmp_path: Path) -> None:
    model = tiny_model(**SHAPES[shape])
    report = export_model(model, tmp_path, precision="fp32")
    assert list(report.max_abs_diff) == ["1x7", "3x19"] and max(report.max_abs_diff.values()) <= 1e-4
    # and at a shape the export did not check: batch and sequence are both dynamic
    forward = OpenVinoForward(tmp_path / "model.xml", num_threads=1)
    inputs = sample_inputs(model.config, batch=5, seq=23, seed=9)
    np.testing.assert_allclose(forward(inputs), run_torch(model, inputs), rtol=0, atol=1e-4)


def test_single_texts_get_static_models_for_frequent_lengths_and_the_same_logits(tmp_path: Path) -> None:
    model = tiny_model(**DENSE)
    export_model(model, tmp_path, precision="fp32")
    dynamic = OpenVinoForward(tmp_path / "model.xml", num_threads=1, static_shapes=0)
    static = OpenVinoForward(tmp_path / "model.xml", num_threads=1, static_shapes=2)
    step, after = backends.STATIC_LENGTH_STEP, backends.STATIC_PROMOTE_AFTER

    def single(length: int, seed: int) -> dict[str, np.ndarray]:
        inputs = sample_inputs(model.config, batch=1, seq=length, seed=seed)
        inputs["attention_mask"][:] = 1  # one unpadded text, as the classifier passes it
        return inputs

    # Lengths in three buckets (two in the first), each asked for often enough; only the first two
    # buckets to reach the count get a static model.
    lengths = [step + 1, step + 3, 2 * step + 1, 3 * step + 2] * after
    for i, length in enumerate(lengths):
        inputs = single(length, seed=i)
        got = static(inputs)
        assert got.shape == (1, 2)
        np.testing.assert_allclose(got, dynamic(inputs), rtol=0, atol=1e-5)
        np.testing.assert_allclose(got, run_torch(model, inputs), rtol=0, atol=1e-4)
    assert sorted(static.static) == [2 * step, 3 * step]
    # Batches of several texts always run on the dynamic model.
    for _ in range(after + 1):
        static(sample_inputs(model.config, batch=2, seq=step + 2, seed=0))
    assert sorted(static.static) == [2 * step, 3 * step]
    assert dynamic.static == {}
    with pytest.raises(ValueError, match="static_shapes"):
        OpenVinoForward(tmp_path / "model.xml", static_shapes=-1)
    # The padding step is the forward's own: 5 tokens here, whatever the module's default.
    five = OpenVinoForward(tmp_path / "model.xml", num_threads=1, static_shapes=1, static_step=5)
    for i in range(after):
        np.testing.assert_allclose(five(single(7, seed=i)), dynamic(single(7, seed=i)), rtol=0, atol=1e-5)
    assert sorted(five.static) == [10]
    with pytest.raises(ValueError, match="static_step"):
        OpenVinoForward(tmp_path / "model.xml", static_step=0)
    # Compiled ahead (a server's warm-up): the shortest buckets up to the cap, then the first call
    # at such a length runs static at once, with the same logits.
    ahead = OpenVinoForward(tmp_path / "model.xml", num_threads=1, static_shapes=2)
    assert ahead.compile_static(4 * step) == [step, 2 * step] and ahead._seen == {}
    inputs = single(step - 1, seed=3)
    np.testing.assert_allclose(ahead(inputs), dynamic(inputs), rtol=0, atol=1e-5)
    assert sorted(ahead.static) == [step, 2 * step] and ahead._seen == {}
    assert OpenVinoForward(tmp_path / "model.xml", static_shapes=0).compile_static(64) == []


def test_inputs_are_named_int64_with_dynamic_batch_and_sequence(tmp_path: Path) -> None:
    export_model(tiny_model(), tmp_path)
    ir = ov.Core().read_model(str(tmp_path / "model.xml"))
    assert [i.get_any_name() for i in ir.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    for i in ir.inputs:
        assert i.get_element_type() == ov.Type.i64 and i.get_partial_shape().is_dynamic
        assert all(d.is_dynamic for d in i.get_partial_shape())
    assert ir.outputs[0].get_names() == {"logits"}


def test_headless_model_exports_hidden_states(tmp_path: Path) -> None:
    model = tiny_model(num_labels=0, id2label={})
    report = export_model(model, tmp_path)
    assert max(report.max_abs_diff.values()) <= 1e-4
    ir = ov.Core().read_model(str(tmp_path / "model.xml"))
    assert ir.outputs[0].get_names() == {"last_hidden_state"}


# --------------------------------------------------------------------------- int8 and bf16
@pytest.mark.parametrize(
    ("texts", "calibrated", "checked"),
    [
        (CALIBRATION_SIZE + CHECK_SIZE + 500, CALIBRATION_SIZE, CHECK_SIZE),  # enough for both
        (MIN_CALIBRATION_SIZE + CHECK_SIZE + 200, MIN_CALIBRATION_SIZE + 200, CHECK_SIZE),  # the check keeps its size
        (MIN_CALIBRATION_SIZE + 300, MIN_CALIBRATION_SIZE, 300),  # the check gets what is left
    ],
)
def test_calibration_gives_way_to_the_held_out_check_down_to_its_minimum(texts, calibrated, checked) -> None:
    sample = TextSample([f"text {i}" for i in range(texts)], "train.tsv")
    calib, held = _split_calibration(sample, CALIBRATION_SIZE, CHECK_SIZE)
    assert (len(calib.inputs), len(held.inputs)) == (calibrated, checked)
    assert not set(calib.inputs) & set(held.inputs) and held.source == "train.tsv (held out)"
    # bf16 exports check on held-out texts without calibrating
    assert len(_split_calibration(sample, 0, CHECK_SIZE)[1].inputs) == min(texts, CHECK_SIZE)


def test_int8_calibrates_on_the_recorded_training_texts_and_agrees_with_fp32(trained, tmp_path: Path) -> None:
    model, path = trained
    report = export(path, tmp_path / "int8", precision="int8")
    assert report.calibration["source"].endswith("train.csv") and report.calibration["texts"] == 300
    assert report.calibration["max_length"] == 32  # the length the checkpoint was trained at
    # every training text the calibration did not use (300 of 600: fewer than CHECK_SIZE)
    assert report.sample_source.endswith("train.csv (held out)") and report.sample_size == 300
    assert report.agreement >= 0.99
    assert report.dev["source"].endswith("dev.csv") and report.dev["examples"] == 120
    assert report.dev["agreement"] >= 0.99 and report.dev["accuracy_export"] >= report.dev["accuracy_fp32"] - 0.01
    # the IR holds int8 weights and quantize/dequantize pairs around the projections
    ir = ov.Core().read_model(str(tmp_path / "int8" / "model.xml"))
    ops = [op.get_type_name() for op in ir.get_ordered_ops()]
    assert ops.count("FakeQuantize") >= 12
    int8_constants = [
        op for op in ir.get_ordered_ops() if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8
    ]
    assert any(list(op.get_output_shape(0)) == [len(VOCAB), 64] for op in int8_constants), "word embeddings int8"
    # the numbers are stored in the export's config.json
    section = json.loads((tmp_path / "int8" / "config.json").read_text())["openvino"]
    assert section["precision"] == "int8" and section["agreement"] == report.agreement
    assert section["dev"]["agreement"] == report.dev["agreement"] and section["max_length"] == 32


def test_a_regression_export_is_held_to_the_correlation_of_its_scores(
    trained, tmp_path: Path, tokenizer: Tokenizer
) -> None:
    # STS-B-like: one output; the bar is the correlation with PyTorch fp32's scores (a squeeze of
    # STS-B crashed in this summary once, when regression exports carried no agreement at all).
    # The score: the trained classifier's logit margin, so that the outputs have a real spread.
    classifier, _ = trained
    model = tiny_model(num_labels=1, id2label={0: "score"}, **DENSE)
    state = {k: v for k, v in classifier.state_dict().items() if not k.startswith("classifier.")}
    w, b = classifier.classifier.weight.detach(), classifier.classifier.bias.detach()
    state.update({"classifier.weight": (w[1] - w[0])[None], "classifier.bias": (b[1] - b[0])[None]})
    model.load_state_dict(state)
    path = save_with_task_files(model, tokenizer, tmp_path, lambda y: "3.75" if y == "pos" else "1.25")
    report = export(path, tmp_path / "int8", precision="int8")
    assert 0.99 <= report.agreement <= 1.0 and 0.99 <= report.dev["agreement"] <= 1.0
    assert "dev set" in report.summary() and "agreement" in report.summary()
    with pytest.raises(ExportError, match="below the 101% required"):
        export(path, tmp_path / "refused", precision="int8", min_agreement=1.01)


def test_int8_without_real_text_is_refused_and_writes_nothing(tmp_path: Path, tokenizer: Tokenizer) -> None:
    bare = save_checkpoint(tiny_model(), tmp_path / "bare", tokenizer)  # no train_args.json
    with pytest.raises(CalibrationError, match="--calibration FILE"):
        export(bare, tmp_path / "out", precision="int8")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    with pytest.raises(CalibrationError, match="real text"):
        export_model(tiny_model(), tmp_path / "out2", tokenizer, precision="int8", calibration=None)
    args = ["export", str(bare), "--out", str(tmp_path / "cli"), "--format", "openvino", "--precision", "int8"]
    assert main(args) == 2


def test_int8_calibrates_on_a_given_file(trained, tmp_path: Path) -> None:
    _, path = trained
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(t for t, _ in sentences(150, seed=7)) + "\n", encoding="utf-8")
    report = export(path, tmp_path / "out", precision="int8", calibration=texts)
    assert report.calibration == {"source": str(texts), "texts": 150, "max_length": 32}
    assert report.agreement >= 0.99


def test_an_export_below_the_agreement_bar_raises_and_writes_nothing(trained, tmp_path: Path) -> None:
    _, path = trained
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ExportError, match="below the 101% required; nothing was written"):
        export(path, out, precision="int8", min_agreement=1.01)
    assert sorted(os.listdir(out)) == ["keep.txt"]  # no model, no config, no staging directory


@pytest.mark.skipif(not openvino_has_bf16(), reason="this CPU has no native bf16")
def test_bf16_export_agrees_with_fp32_and_runs_with_the_bf16_hint(trained, tmp_path: Path) -> None:
    _, path = trained
    report = export(path, tmp_path / "bf16", precision="bf16")
    assert report.inference_precision == "bf16" and report.agreement >= 0.99 and report.dev["agreement"] >= 0.99
    clf = Classifier.from_pretrained(tmp_path / "bf16")
    assert clf.backend == "openvino" and clf.precision == "bf16"
    assert clf._forward.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16
    fp32 = Classifier.from_pretrained(path)
    texts = [t for t, _ in sentences(20, seed=3)]
    assert [p.label for p in clf.predict(texts)] == [p.label for p in fp32.predict(texts)]


def test_recorded_data_follows_a_student_to_its_teacher(trained, tmp_path: Path, tokenizer: Tokenizer) -> None:
    _, teacher = trained
    student = save_checkpoint(tiny_model(), tmp_path / "student", tokenizer)
    (student / "train_args.json").write_text(json.dumps({"workflow": "squeeze", "teacher": str(teacher)}))
    train, dev = recorded_data(student)
    assert train is not None and train.source.endswith("train.csv") and len(train.inputs) == 600
    assert dev is not None and dev.labels is not None and len(dev.inputs) == 120


# --------------------------------------------------------------------------- the export directory
def test_export_directory_is_self_contained_and_autotokenizer_gives_our_ids(trained, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    model, path = trained
    export(path, tmp_path / "out")
    names = {"model.xml", "model.bin", "config.json", "tokenizer.json", "tokenizer_config.json"}
    assert names | {"special_tokens_map.json"} == set(os.listdir(tmp_path / "out"))
    assert export_backend(tmp_path / "out") == "openvino" and export_backend(path) is None
    ours = Classifier.from_pretrained(tmp_path / "out").tokenizer
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "out"))
    got = hf(["good movie", "the plot was bad"], ["very good", "it"], padding=True, return_tensors="np")
    want = ours(["good movie", "the plot was bad"], ["very good", "it"])
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        np.testing.assert_array_equal(got[key], want[key])


def test_classifier_finds_the_backend_by_the_files_and_refuses_a_mismatch(trained, tmp_path: Path) -> None:
    _, path = trained
    export(path, tmp_path / "out")
    clf = Classifier.from_pretrained(tmp_path / "out")
    trained_length = json.loads((tmp_path / "out" / "config.json").read_text())["openvino"]["max_length"]
    assert trained_length < 64  # the model's positions: the default is the trained length, not 128 capped
    assert (clf.backend, clf.precision, clf.max_length) == ("openvino", "fp32", trained_length)
    with pytest.raises(ValueError, match="is an openvino export; load it with backend='openvino'"):
        Classifier.from_pretrained(tmp_path / "out", backend="onnx")
    with pytest.raises(ValueError, match="holds a fp32 export"):
        Classifier.from_pretrained(tmp_path / "out", precision="int8")
    # a checkpoint with backend="openvino" is exported on the fly
    on_the_fly = Classifier.from_pretrained(path, backend="openvino")
    texts = [t for t, _ in sentences(10, seed=4)]
    assert [p.label for p in on_the_fly.predict(texts)] == [p.label for p in clf.predict(texts)]
    # one text per call, static models for the frequent lengths (the default) or none: same answers
    assert clf._forward.static_shapes == backends.OPENVINO_STATIC_SHAPES
    dynamic = Classifier.from_pretrained(tmp_path / "out", static_shapes=0)
    assert dynamic._forward.static_shapes == 0
    one_by_one = [clf.predict([t])[0] for t in texts * backends.STATIC_PROMOTE_AFTER]
    assert clf._forward.static  # the frequent lengths got their static models
    for got, want in zip(one_by_one, [dynamic.predict([t])[0] for t in texts * backends.STATIC_PROMOTE_AFTER]):
        assert got.label == want.label and got.score == pytest.approx(want.score, abs=1e-5)
    assert dynamic._forward.static == {}
    # compiled ahead, up to the classifier's length limit (the buckets that cover it)
    ahead = Classifier.from_pretrained(tmp_path / "out")
    step = ahead._forward.static_step
    buckets = list(range(step, trained_length + step, step))[: backends.OPENVINO_STATIC_SHAPES]
    assert ahead.compile_static_shapes() == buckets
    assert [ahead.predict([t])[0].label for t in texts] == [p.label for p in one_by_one[: len(texts)]]
    assert dynamic.compile_static_shapes() == [] and dynamic._forward.static == {}


def test_openvino_classifier_runs_where_torch_cannot_be_imported(trained, tmp_path: Path, block_torch: str) -> None:
    _, path = trained
    export(path, tmp_path / "int8", precision="int8")
    script = block_torch + textwrap.dedent(
        f"""
        import json, sys
        from squeezebert import Classifier

        clf = Classifier.from_pretrained({str(tmp_path / "int8")!r}, num_threads=1)
        predictions = clf.predict(["what a good film", "bad", "the plot was very good"])
        assert "torch" not in sys.modules and "squeezebert.model" not in sys.modules
        print(json.dumps([clf.backend] + [p.label for p in predictions]))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == ["openvino", "pos", "neg", "pos"]


def test_cli_predict_on_an_export_without_a_backend_flag_and_without_torch(
    trained, tmp_path: Path, block_torch: str
) -> None:
    _, path = trained
    assert main(["export", str(path), "--out", str(tmp_path / "ov"), "--format", "openvino"]) == 0
    src = tmp_path / "in.txt"
    src.write_text("good movie\nbad plot\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    prelude = "import sys\nfrom squeezebert.cli import main\n"
    check = "code = main(sys.argv[1:])\nassert 'torch' not in sys.modules, 'predict imported torch'\nsys.exit(code)\n"
    args = ["predict", str(tmp_path / "ov"), "--input", str(src), "--output", str(out)]
    result = subprocess.run(
        [sys.executable, "-c", block_torch + prelude + check, *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["line"], r["label"]) for r in rows] == [(1, "pos"), (2, "neg")]


def test_cli_evaluate_scores_an_export_through_its_runtime(trained, tmp_path: Path) -> None:
    from squeezebert.data import TaskSource
    from squeezebert.finetune import evaluate_checkpoint

    model, path = trained
    export(path, tmp_path / "ov")
    dev = path.parent / "dev.csv"
    got = evaluate_checkpoint(tmp_path / "ov", TaskSource(dev_file=dev))
    want = evaluate_checkpoint(path, TaskSource(dev_file=dev))
    assert got["backend"] == "openvino" and want["backend"] == "torch"
    assert got["metrics"] == pytest.approx(want["metrics"], abs=1e-9)  # fp32 export: the same predictions
    assert main(["evaluate", str(tmp_path / "ov"), "--dev", str(dev), "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["backend"] == "openvino"


def test_auto_int8_falls_back_to_the_dynamic_recipe_when_static_misses_the_bar(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from squeezebert import export_openvino

    _, path = trained
    real_compare = export_openvino._compare
    calls: list[int] = []

    def compare(*args, **kwargs):  # the first comparison (static, held-out sample) comes out at 50%
        calls.append(1)
        result = real_compare(*args, **kwargs)
        return {**result, "agreement": 0.5} if len(calls) == 1 else result

    monkeypatch.setattr(export_openvino, "_compare", compare)
    report = export(path, tmp_path / "out", precision="int8")
    assert report.int8_recipe == "dynamic" and report.attempts == [{"recipe": "static", "sample": 0.5}]
    assert report.agreement >= 0.99 and "int8 recipe static refused: agreement 50.00% on the sample set" in (
        report.summary()
    )
    section = json.loads((tmp_path / "out" / "config.json").read_text())["openvino"]
    assert section["int8_recipe"] == "dynamic"
    clf = Classifier.from_pretrained(tmp_path / "out")
    assert clf._forward.compiled.get_property("DYNAMIC_QUANTIZATION_GROUP_SIZE") == backends.DYNAMIC_INT8_GROUP
    ir = ov.Core().read_model(str(tmp_path / "out" / "model.xml"))
    assert not any(op.get_type_name() == "FakeQuantize" for op in ir.get_ordered_ops())  # weights-only int8

    calls.clear()
    with pytest.raises(ExportError, match=r"int8 \(static\) agrees .* on 50.00% .*; nothing was written"):
        export(path, tmp_path / "static-only", precision="int8", int8_recipe="static")
    assert not (tmp_path / "static-only" / "config.json").exists()


def test_openvino_and_nncf_run_without_their_network_telemetry() -> None:
    # openvino_telemetry forks a process that posts usage events; with no network it blocked in DNS
    # and held the interpreter at exit (a whole test run hung after its last test).
    script = textwrap.dedent(
        """
        import multiprocessing, sys
        from squeezebert.checkpoint import load
        from squeezebert.export import sample_inputs
        from squeezebert.export_openvino import convert, quantize_int8

        model = load("tiny", num_labels=2).model
        quantize_int8(convert(model), [sample_inputs(model.config, 1, 8, seed=i) for i in range(2)])
        assert sys.modules["openvino_telemetry"] is None, "the telemetry package was loaded"
        assert multiprocessing.active_children() == [], multiprocessing.active_children()
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "SQUEEZEBERT_OPENVINO_TELEMETRY"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "ok"
