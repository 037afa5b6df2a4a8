"""optimize() (fp32 / bf16 / int8) against the reference model, and the Classifier with its torch
and ONNX backends, including the ONNX one in a process where torch cannot be imported."""

from __future__ import annotations

import copy
import json
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from squeezebert import quantize
from squeezebert.checkpoint import save_checkpoint
from squeezebert.config import preset
from squeezebert.infer import Classifier, Prediction
from squeezebert.model import GroupedLinear, SqueezeBert
from squeezebert.quantize import Int8MatmulProjection, Int8Projection, _quantize_activation, optimize
from squeezebert.tokenizer import Tokenizer

FILLER = "the a movie film plot it was is very quite really story acting and but this that".split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", *FILLER]
LABELS = {0: "negative", 1: "positive"}
DENSE = dict(q_groups=1, k_groups=1, v_groups=1, post_attention_groups=1, intermediate_groups=1, output_groups=1)


def make_tokenizer(tmp: Path) -> Tokenizer:
    (tmp / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return Tokenizer.from_vocab(tmp / "vocab.txt")


def tiny_config(**overrides: object):
    base = dict(
        vocab_size=len(VOCAB),
        max_position_embeddings=64,
        num_labels=2,
        id2label=LABELS,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return preset("tiny", **{**base, **overrides})


def sentences(n: int, seed: int) -> list[tuple[str, int]]:
    """Filler words with one 'good' (label 1) or 'bad' (label 0) somewhere: trivially separable."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = rng.choices(FILLER, k=rng.randint(2, 12))
        label = rng.randint(0, 1)
        words.insert(rng.randint(0, len(words)), ("bad", "good")[label])
        out.append((" ".join(words), label))
    return out


def random_inputs(vocab: int, batch: int = 3, seq: int = 11) -> dict[str, torch.Tensor]:
    ids = torch.randint(5, vocab, (batch, seq))
    mask = torch.ones_like(ids)
    for i in range(1, batch):
        mask[i, seq - 3 * i :] = 0
    types = torch.zeros_like(ids)
    types[:, seq // 2 :] = 1
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": types * mask}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    return make_tokenizer(tmp_path_factory.mktemp("vocab"))


@pytest.fixture(scope="module")
def trained(tokenizer: Tokenizer, tmp_path_factory: pytest.TempPathFactory) -> tuple[SqueezeBert, Path]:
    """A tiny grouped SqueezeBERT trained for 40 steps on good/bad sentences, and its checkpoint."""
    torch.manual_seed(0)
    model = SqueezeBert(tiny_config())
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for step in range(40):
        data = sentences(32, seed=step)
        batch = {k: torch.from_numpy(v) for k, v in tokenizer([t for t, _ in data]).items()}
        loss = torch.nn.functional.cross_entropy(model(**batch), torch.tensor([y for _, y in data]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    path = save_checkpoint(model, tmp_path_factory.mktemp("trained"), tokenizer)
    return model, path


@pytest.fixture(scope="module")
def held_out(tokenizer: Tokenizer) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    data = sentences(200, seed=10_000)
    batch = {k: torch.from_numpy(v) for k, v in tokenizer([t for t, _ in data]).items()}
    return batch, torch.tensor([y for _, y in data])


# --------------------------------------------------------------------------- optimize
LOW_RANK_QKV = {**DENSE, "ranks": {"query": 4, "key": 4, "value": 4}}
LOW_RANK_QKV_UNEQUAL = {**DENSE, "ranks": {"query": 4, "key": 6, "value": 4}}


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        DENSE,
        {"ranks": {"query": 4}},
        {"embedding_size": 32, "ranks": {"1.intermediate": 8}},
        LOW_RANK_QKV,
        LOW_RANK_QKV_UNEQUAL,
    ],
    ids=["grouped", "dense", "low-rank", "factorized-embeddings", "low-rank-qkv", "low-rank-qkv-unequal"],
)
def test_optimized_fp32_equals_reference(overrides: dict) -> None:
    model = SqueezeBert(tiny_config(**overrides)).eval()
    inputs = random_inputs(len(VOCAB))
    with torch.no_grad():
        expected = model(**inputs)
    assert_close(optimize(model, "fp32")(**inputs), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("overrides", [{}, DENSE, {"ranks": {"query": 4}}], ids=["grouped", "dense", "low-rank"])
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_fast_precisions_stay_close_to_fp32_on_random_weights(precision: str, overrides: dict) -> None:
    model = SqueezeBert(tiny_config(**overrides)).eval()
    inputs = random_inputs(len(VOCAB))
    with torch.no_grad():
        expected = model(**inputs)
    got = optimize(model, precision)(**inputs)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    assert_close(got, expected, rtol=0, atol=0.02)


# Where oneDNN's int8 kernels give wrong answers (x86 CPUs without VNNI: u8*s8 pairs saturate in
# 16 bits), int8 runs on torch._int_mm instead (test_int8_matmul_fallback_is_close_to_fp32); the
# tests of the oneDNN projection itself apply where the product uses it.
needs_onednn_int8 = pytest.mark.skipif(
    not quantize.onednn_int8_ok(),
    reason="oneDNN int8 gives wrong answers on this CPU (no VNNI); int8 runs on torch._int_mm here",
)

FUSION_CASES = pytest.mark.parametrize(
    ("overrides", "fusable_fp32"),
    [
        ({}, False),  # grouped: int8 only (the input quantized once for the three)
        (DENSE, True),
        (LOW_RANK_QKV, True),
        (LOW_RANK_QKV_UNEQUAL, True),
        ({"ranks": {"query": 4}}, False),  # one low-rank, two plain: left separate
        ({"q_groups": 2}, False),  # group counts differ
    ],
    ids=["grouped", "dense", "low-rank-qkv", "low-rank-qkv-unequal", "mixed-kinds", "mixed-groups"],
)


@FUSION_CASES
def test_int8_fused_qkv_computes_what_the_separate_projections_compute(overrides: dict, fusable_fp32: bool) -> None:
    model = SqueezeBert(tiny_config(**overrides)).eval()
    inputs = random_inputs(len(VOCAB))
    # grouped Q, K, V share one quantized input through oneDNN only (the torch._int_mm fallback
    # has no grouped kernel)
    fusable = fusable_fp32 or (overrides == {} and quantize.onednn_int8_ok())
    for activations in ("per-token", "per-tensor"):
        fused = optimize(model, "int8", int8_activations=activations)
        assert sum(isinstance(m, quantize.FusedQKV) for m in fused.modules()) == (2 if fusable else 0)
        separate = optimize(model, "int8", int8_activations=activations, fuse_qkv=False)
        assert not any(isinstance(m, quantize.FusedQKV) for m in separate.modules())
        # The same quantization either way (one input range for the three; each int8 low-rank
        # up factor keeps its own), so only float rounding may differ.
        assert_close(fused(**inputs), separate(**inputs), rtol=0, atol=1e-5)
    for precision in ("fp32", "bf16"):  # not fused by optimize: measured no faster
        assert not any(isinstance(m, quantize.FusedQKV) for m in optimize(model, precision).modules())


@FUSION_CASES
def test_fp32_fused_qkv_equals_the_reference(overrides: dict, fusable_fp32: bool) -> None:
    model = SqueezeBert(tiny_config(**overrides)).eval()
    inputs = random_inputs(len(VOCAB))
    with torch.no_grad():
        expected = model(**inputs)
        fused = copy.deepcopy(model)
        assert quantize.fuse_attention_projections(fused) == (2 if fusable_fp32 else 0)
        assert_close(fused(**inputs), expected, rtol=0, atol=1e-5)


def test_int8_quantizes_every_encoder_projection_and_keeps_the_head_fp32() -> None:
    model = SqueezeBert(tiny_config(embedding_size=32, ranks={"query": 4})).eval()
    fast = optimize(model, "int8").model
    assert not [name for name, m in fast.named_modules() if isinstance(m, GroupedLinear)]
    int8 = [m for m in fast.modules() if isinstance(m, (Int8Projection, Int8MatmulProjection))]
    # 6 projections x 2 layers, the low-rank query counted twice (down, up), + embedding projection
    assert len(int8) == 2 * 7 + 1
    assert isinstance(fast.classifier, torch.nn.Linear) and isinstance(fast.pooler.dense, torch.nn.Linear)
    if quantize.onednn_int8_ok():
        assert any(isinstance(m, Int8Projection) and m.groups == 4 for m in int8), "grouped kernel not used"
    else:
        assert all(isinstance(m, Int8MatmulProjection) for m in int8)


def test_optimize_copies_and_is_eval_only() -> None:
    model = SqueezeBert(tiny_config()).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimize(model, "int8")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(model.encoder.layers[0].attention.query, GroupedLinear)
    with pytest.raises(RuntimeError, match="inference only"):
        fast.train()
    fast.eval()  # allowed
    with pytest.raises(ValueError, match="precision"):
        optimize(model, "fp16")


def test_int8_matmul_fallback_is_close_to_fp32(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The path taken where oneDNN's int8 ops are missing (older torch builds) or wrong (no VNNI).
    monkeypatch.setattr(quantize, "onednn_int8_ok", lambda: False)
    model = SqueezeBert(tiny_config()).eval()
    with caplog.at_level("WARNING", logger="squeezebert.quantize"):
        fast = optimize(model, "int8")
    assert any("torch._int_mm fallback" in r.getMessage() for r in caplog.records)  # it is the slow path: said so
    assert not any(isinstance(m, Int8Projection) for m in fast.modules())
    inputs = random_inputs(len(VOCAB))
    with torch.no_grad():
        expected = model(**inputs)
    assert_close(fast(**inputs), expected, rtol=0, atol=0.02)


@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("tokens", [5, 200])  # both weight layouts of the grouped kernel
def test_int8_projection_relative_error_is_small(groups: int, tokens: int) -> None:
    lin = GroupedLinear(64, 128, groups)
    torch.nn.init.normal_(lin.weight, std=0.1)
    torch.nn.init.normal_(lin.bias, std=0.1)
    x = torch.randn(tokens, 64)
    with torch.no_grad():
        expected = lin(x)
        got = quantize.int8_projection(lin)(x)
    assert ((got - expected).norm() / expected.norm()).item() < 0.03


def test_activation_quantization_never_wraps_around() -> None:
    # The extremes of each tensor must come back within half a step (an int8 overflow would
    # turn the maximum into the minimum).
    for seed in range(50):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(40, 9, generator=g) * 10 * torch.rand(1, generator=g) + 4 * (torch.rand(1, generator=g) - 0.5)
        q, scale, zero = _quantize_activation(x)
        assert q.dtype == torch.uint8
        assert ((q.float() - zero) * scale - x).abs().max().item() <= 0.5001 * scale


def test_int8_and_bf16_agree_with_fp32_on_a_trained_model(trained, held_out) -> None:
    model, _ = trained
    batch, labels = held_out
    with torch.no_grad():
        reference = model(**batch).argmax(-1)
    assert (reference == labels).float().mean().item() == 1.0, "the tiny model did not learn the task"
    variants = {"int8": {}, "int8 per-tensor": {"int8_activations": "per-tensor"}, "bf16": {}}
    for name, options in variants.items():
        predicted = optimize(model, name.split()[0], **options)(**batch).argmax(-1)
        agreement = (predicted == reference).float().mean().item()
        assert agreement >= 0.99, f"{name} agrees with fp32 on {agreement:.1%} only"


def test_native_int8_reads_the_cpu_flags(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    for flags, native in (("fpu avx2 fma", False), ("fpu avx2 avx512f avx512_vnni", True), ("avx2 avx_vnni", True)):
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
        assert quantize.native_int8(str(cpuinfo)) is native, flags
    assert quantize.native_int8(str(tmp_path / "missing")) is True  # unknown: assumed native


@needs_onednn_int8
def test_int8_default_quantizes_activations_per_token_with_a_per_tensor_opt_out() -> None:
    model = SqueezeBert(tiny_config()).eval()
    for options, per_token in (({}, True), ({"int8_activations": "per-tensor"}, False)):
        int8 = [m for m in optimize(model, "int8", **options).modules() if isinstance(m, Int8Projection)]
        assert len(int8) == 12 and all(m.per_token is per_token for m in int8)
    with pytest.raises(ValueError, match="int8_activations"):
        optimize(model, "int8", int8_activations="per-channel")


def test_int8_keep_leaves_the_named_projections_in_fp32() -> None:
    model = SqueezeBert(tiny_config(ranks={"query": 4})).eval()
    keep = ["encoder.layers.0.output.conv1d", "*.attention.query.*"]
    fast = optimize(model, "int8", int8_keep=keep).model
    left = sorted(name for name, m in fast.named_modules() if isinstance(m, GroupedLinear))
    assert left == [
        "encoder.layers.0.attention.query.down",
        "encoder.layers.0.attention.query.up",
        "encoder.layers.0.output.conv1d",
        "encoder.layers.1.attention.query.down",
        "encoder.layers.1.attention.query.up",
    ]
    assert sum(isinstance(m, (Int8Projection, Int8MatmulProjection)) for m in fast.modules()) == 2 * 5 - 1


@needs_onednn_int8
@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("tokens", [5, 200])  # both weight layouts of the grouped kernel
def test_per_token_activations_survive_an_outlier_token(groups: int, tokens: int) -> None:
    # One token 50x larger than the rest sets a per-tensor scale that rounds the others coarsely;
    # per-token scales keep every token's relative error small.
    g = torch.Generator().manual_seed(groups * 1000 + tokens)
    lin = GroupedLinear(64, 128, groups)
    with torch.no_grad():
        lin.weight.normal_(0, 0.1, generator=g)
        lin.bias.normal_(0, 0.1, generator=g)
    x = torch.randn(tokens, 64, generator=g) + 0.5
    x[1] *= 50
    with torch.no_grad():
        expected = lin(x)
        errors = {}
        for per_token in (False, True):
            got = Int8Projection(lin.weight, lin.bias, groups, per_token)(x)
            rows = (got - expected).norm(dim=1) / expected.norm(dim=1)  # (tokens,)
            errors[per_token] = rows.max().item()
    assert errors[True] < 0.02, errors
    assert errors[False] > 3 * errors[True], errors


# --------------------------------------------------------------------------- Classifier
def test_predict_keeps_input_order_while_batching_by_length(trained) -> None:
    _, path = trained
    clf = Classifier.from_pretrained(path)
    texts = [t for t, _ in sentences(9, seed=3)] + ["good", "the movie was bad and the plot was very very bad"]
    batched = clf.predict(texts, batch_size=3)
    one_by_one = [clf.predict([t], batch_size=1)[0] for t in texts]
    assert len(batched) == len(texts)
    for a, b in zip(batched, one_by_one):
        assert a.label == b.label
        assert a.score == pytest.approx(b.score, abs=1e-5)  # padding per batch changes nothing
    # and the order is really the input's: the labels follow the words
    assert [p.label for p in batched[-2:]] == ["positive", "negative"]


def test_predictions_carry_labels_scores_and_probabilities(trained) -> None:
    _, path = trained
    (p,) = Classifier.from_pretrained(path).predict(["it was good"])
    assert isinstance(p, Prediction) and p.value is None
    assert set(p.probabilities) == {"negative", "positive"}
    assert sum(p.probabilities.values()) == pytest.approx(1.0)
    assert p.score == max(p.probabilities.values()) == p.probabilities[p.label]
    assert p.to_dict().keys() == {"label", "score", "probabilities"}


def test_predict_pairs_uses_both_segments(tokenizer: Tokenizer, tmp_path: Path) -> None:
    model = SqueezeBert(tiny_config()).eval()
    path = save_checkpoint(model, tmp_path / "ckpt", tokenizer)
    pairs = [("the movie", "was good"), ("a plot", "it is very bad and the acting is bad")]
    got = Classifier.from_pretrained(path).predict(pairs)
    batch = {k: torch.from_numpy(v) for k, v in tokenizer([a for a, _ in pairs], [b for _, b in pairs]).items()}
    assert batch["token_type_ids"].any()
    with torch.no_grad():
        expected = model(**batch).softmax(-1)
    for p, row in zip(got, expected):
        assert [p.probabilities[label] for label in LABELS.values()] == pytest.approx(row.tolist(), abs=1e-5)


def test_regression_model_returns_values(tokenizer: Tokenizer, tmp_path: Path) -> None:
    model = SqueezeBert(tiny_config(num_labels=1, id2label={})).eval()
    path = save_checkpoint(model, tmp_path / "ckpt", tokenizer)
    texts = ["good film", "the plot was bad"]
    got = Classifier.from_pretrained(path).predict(texts)
    batch = {k: torch.from_numpy(v) for k, v in tokenizer(texts).items()}
    with torch.no_grad():
        expected = model(**batch)[:, 0]
    assert all(p.label is None and p.probabilities is None for p in got)
    assert [p.value for p in got] == pytest.approx(expected.tolist(), abs=1e-5)


def test_bad_inputs_raise_clear_errors(trained) -> None:
    _, path = trained
    clf = Classifier.from_pretrained(path)
    assert clf.predict([]) == []
    # a single text (or pair) is one input now, as in transformers' pipeline
    assert clf.predict("a single string") == clf.predict(["a single string"])
    with pytest.raises(TypeError, match="not a mix"):
        clf.predict(["good", ("a", "b")])
    with pytest.raises(TypeError, match="input 1"):
        clf.predict(["good", 3])
    with pytest.raises(ValueError, match="backend"):
        Classifier.from_pretrained(path, backend="tensorrt")


def test_classifier_is_called_like_a_pipeline(trained) -> None:
    _, path = trained
    clf = Classifier.from_pretrained(path)
    (expected,) = clf.predict(["it was good"])
    assert clf("it was good") == expected
    assert clf(["it was good", "it was bad"]) == clf.predict(["it was good", "it was bad"])
    assert clf(("the movie", "was good")) == clf.predict([("the movie", "was good")])[0]
    top = clf("it was good", top_k=2)
    assert [d["label"] for d in top] == sorted(expected.probabilities, key=expected.probabilities.get, reverse=True)
    assert top[0] == {"label": expected.label, "score": expected.score}
    assert top[0]["score"] >= top[1]["score"]
    # two texts in one call are one padded batch: the same labels as one text per call, scores to
    # float rounding (a batch of two ran other GEMM kernels than one text on an AMX Xeon: 2e-7 apart)
    batched = clf(["it was good", "it was bad"], top_k=1)
    single = [[top[0]], clf("it was bad", top_k=1)]
    assert [[d["label"] for d in b] for b in batched] == [[d["label"] for d in b] for b in single]
    assert [[d["score"] for d in b] for b in batched] == [
        [pytest.approx(d["score"], abs=1e-5) for d in b] for b in single
    ]
    assert len(clf("it was good", top_k=5)) == 2  # no more labels than the model has
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="top_k"):
            clf("it was good", top_k=bad)


def test_classifier_normalizes_text_by_default_as_the_cli_does(trained) -> None:
    _, path = trained
    clf = Classifier.from_pretrained(path)
    assert clf.normalize is True
    # Cyrillic look-alikes and fullwidth letters read as the plain word once normalized
    assert clf("it was g\u043e\u043ed") == clf("it was good")
    assert clf("\uff47\uff4f\uff4f\uff44") == clf("good")
    assert Classifier.from_pretrained(path, normalize=False).normalize is False


def test_save_pretrained_writes_what_the_classifier_runs(trained, exported, tmp_path: Path) -> None:
    _, path = trained
    texts = [t for t, _ in sentences(12, seed=5)]
    fp32 = Classifier.from_pretrained(path)
    saved = fp32.save_pretrained(tmp_path / "fp32")
    assert Classifier.from_pretrained(saved)(texts) == fp32(texts)
    int8 = Classifier.from_pretrained(exported["int8"], backend="onnx")
    again = Classifier.from_pretrained(int8.save_pretrained(tmp_path / "onnx-int8"))
    assert (again.backend, again.precision) == ("onnx", "int8") and again(texts) == int8(texts)
    on_the_fly = Classifier.from_pretrained(path, backend="onnx", precision="int8")  # a temporary export
    copied = Classifier.from_pretrained(on_the_fly.save_pretrained(tmp_path / "fly"))
    assert copied.precision == "int8" and copied(texts) == on_the_fly(texts)
    with pytest.raises(ValueError, match="squeezebert export"):
        Classifier.from_pretrained(path, backend="torch", precision="int8").save_pretrained(tmp_path / "t8")
    assert not (tmp_path / "t8").exists()
    with pytest.raises(ValueError, match="not empty"):
        fp32.save_pretrained(tmp_path / "fp32")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_max_length_defaults_to_the_length_the_checkpoint_was_trained_at(trained, tmp_path: Path) -> None:
    _, path = trained
    clf = Classifier.from_pretrained(path)
    assert clf.max_length == min(128, clf.config.max_position_embeddings)  # records none: 128, capped
    run = tmp_path / "run"
    shutil.copytree(path, run)
    (run / "train_args.json").write_text(json.dumps({"max_length": 24}), encoding="utf-8")
    assert Classifier.from_pretrained(run).max_length == 24
    assert Classifier.from_pretrained(run, max_length=40).max_length == 40


def test_headless_checkpoint_is_refused(tokenizer: Tokenizer, tmp_path: Path) -> None:
    path = save_checkpoint(SqueezeBert(tiny_config(num_labels=0, id2label={})), tmp_path / "ckpt", tokenizer)
    with pytest.raises(ValueError, match="no classification head"):
        Classifier.from_pretrained(path)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("onnxruntime")
    from squeezebert.export import export

    _, path = trained
    out = {}
    for precision in ("fp32", "int8"):
        out[precision] = tmp_path_factory.mktemp(f"onnx-{precision}")
        export(path, out[precision], precision=precision)
    return out


def test_torch_and_onnx_backends_agree(trained, exported) -> None:
    _, path = trained
    texts = [t for t, _ in sentences(40, seed=77)]
    pairs = [("the movie", "was good"), ("it was bad", "the plot")]
    torch_fp32 = Classifier.from_pretrained(path)
    onnx_fp32 = Classifier.from_pretrained(exported["fp32"], backend="onnx")
    for inputs in (texts, pairs):
        for a, b in zip(torch_fp32.predict(inputs, batch_size=8), onnx_fp32.predict(inputs, batch_size=8)):
            assert a.label == b.label
            assert a.probabilities == pytest.approx(b.probabilities, abs=1e-4)
    reference = [p.label for p in torch_fp32.predict(texts)]
    for backend, source in (("onnx", exported["int8"]), ("torch", path)):
        clf = Classifier.from_pretrained(source, backend=backend, precision="int8")
        assert [p.label for p in clf.predict(texts)] == reference, backend


def test_onnx_backend_exports_a_checkpoint_on_the_fly(trained, exported) -> None:
    _, path = trained
    clf = Classifier.from_pretrained(path, backend="onnx")
    assert clf.backend == "onnx" and clf.precision == "fp32"
    assert [p.label for p in clf.predict(["so good", "bad bad"])] == ["positive", "negative"]


def test_onnx_workers_busy_wait_unless_told_not_to(trained, exported) -> None:
    # On for batch jobs (ONNX Runtime's default), off where a server needs the cores between calls.
    def spinning(clf: Classifier) -> str:
        options = clf._forward.session.get_session_options()  # type: ignore[attr-defined]
        return options.get_session_config_entry("session.intra_op.allow_spinning")

    assert spinning(Classifier.from_pretrained(exported["int8"], backend="onnx")) == "1"
    assert spinning(Classifier.from_pretrained(exported["int8"], backend="onnx", busy_wait=False)) == "0"
    _, path = trained
    assert spinning(Classifier.from_pretrained(path, backend="onnx", busy_wait=False)) == "0"  # exported on the fly


def test_export_dir_precision_must_match_the_request(exported) -> None:
    assert Classifier.from_pretrained(exported["int8"], backend="onnx").precision == "int8"
    with pytest.raises(ValueError, match="int8 export"):
        Classifier.from_pretrained(exported["int8"], backend="onnx", precision="fp32")
    with pytest.raises(ValueError, match="backend='onnx'"):
        Classifier.from_pretrained(exported["fp32"], backend="torch")


def test_onnx_classifier_runs_where_torch_cannot_be_imported(exported, trained, block_torch) -> None:
    _, path = trained
    script = block_torch + textwrap.dedent(
        f"""
        import json, sys
        import squeezebert
        from squeezebert import Classifier

        clf = Classifier.from_pretrained({str(exported["int8"])!r}, backend="onnx")
        predictions = clf.predict(["what a good film", "bad"]) + clf.predict([("the plot", "was good")])
        assert "torch" not in sys.modules and "squeezebert.model" not in sys.modules
        print(json.dumps([p.to_dict() for p in predictions]))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout.strip().splitlines()[-1])
    clf = Classifier.from_pretrained(exported["int8"], backend="onnx")
    expected = clf.predict(["what a good film", "bad"]) + clf.predict([("the plot", "was good")])
    assert [g["label"] for g in got] == [p.label for p in expected] == ["positive", "negative", "positive"]
    assert np.allclose([g["score"] for g in got], [p.score for p in expected])


def test_int8_stores_the_word_embeddings_as_int8_rows() -> None:
    torch.manual_seed(0)
    model = SqueezeBert(tiny_config()).eval()
    fast = optimize(model, "int8").model
    table = fast.embeddings.word_embeddings
    assert isinstance(table, quantize.Int8Embedding) and table.qweight.dtype == torch.int8
    ids = torch.randint(0, model.config.vocab_size, (3, 9))
    ref = model.embeddings.word_embeddings(ids)
    got = table(ids)
    # each row's error is at most half its own quantization step (row max / 127 / 2)
    step = model.embeddings.word_embeddings.weight[ids].abs().amax(-1, keepdim=True) / 127
    assert got.shape == ref.shape and bool(((got - ref).abs() <= step / 2 + 1e-7).all())
    assert not torch.equal(got, ref)  # it really is quantized
    kept = optimize(model, "int8", int8_keep=["embeddings.word_embeddings"]).model
    assert isinstance(kept.embeddings.word_embeddings, torch.nn.Embedding)
