"""ONNX export: parity with PyTorch at several shapes, MatMul-only graphs for grouped projections,
int8 graphs built on integer MatMuls, self-contained directories, and failures that write nothing."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from squeezebert import export as export_module
from squeezebert.checkpoint import save_checkpoint
from squeezebert.cli import main
from squeezebert.config import preset
from squeezebert.export import ExportError, export, export_model, sample_inputs
from squeezebert.model import SqueezeBert
from squeezebert.quantize import native_int8
from squeezebert.tokenizer import Tokenizer

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"good bad the a movie plot was very".split()]
DENSE = dict(q_groups=1, k_groups=1, v_groups=1, post_attention_groups=1, intermediate_groups=1, output_groups=1)
CONFIGS = {
    "grouped": {},
    "dense": DENSE,
    "low-rank": {"ranks": {"query": 4}},
    "factorized-embeddings": {"embedding_size": 32},
}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return Tokenizer.from_vocab(vocab)


def tiny_model(**overrides: object) -> SqueezeBert:
    labels = {"num_labels": 3, "id2label": {0: "a", 1: "b", 2: "c"}}
    config = preset("tiny", vocab_size=len(VOCAB), max_position_embeddings=64, **{**labels, **overrides})
    return SqueezeBert(config).eval()


def op_types(path: Path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def run_onnx(path: Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)[0]


def run_torch(model: SqueezeBert, inputs: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).numpy()


@pytest.mark.parametrize("kind", CONFIGS)
def test_fp32_export_matches_pytorch_at_several_shapes(kind: str, tmp_path: Path) -> None:
    model = tiny_model(**CONFIGS[kind])
    report = export_model(model, tmp_path, precision="fp32")
    assert len(report.max_abs_diff) == 2 and max(report.max_abs_diff.values()) <= 1e-4
    # and at a shape the export itself did not check (batch and sequence both dynamic)
    inputs = sample_inputs(model.config, batch=5, seq=23, seed=9)
    np.testing.assert_allclose(run_onnx(tmp_path / "model.onnx", inputs), run_torch(model, inputs), rtol=0, atol=1e-4)


def test_inputs_have_dynamic_batch_and_sequence_axes(tmp_path: Path) -> None:
    export_model(tiny_model(), tmp_path)
    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    for tensor in graph.input:
        dims = tensor.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "sequence"]
    assert graph.output[0].name == "logits"


@pytest.mark.parametrize("kind", ["grouped", "low-rank"])
def test_grouped_projections_export_as_matmul_without_conv(kind: str, tmp_path: Path) -> None:
    export_model(tiny_model(**CONFIGS[kind]), tmp_path)
    ops = op_types(tmp_path / "model.onnx")
    assert ops["MatMul"] >= 12 and not any("Conv" in op for op in ops)
    # grouped weights are constant (G, in/G, out/G) initializers: visible to the int8 quantizer
    model = onnx.load(str(tmp_path / "model.onnx"))
    inits = {init.name: tuple(init.dims) for init in model.graph.initializer}
    grouped = [inits[n.input[1]] for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in inits]
    assert (4, 16, 16) in grouped and (4, 16, 64) in grouped and (4, 64, 16) in grouped


def test_attention_exports_as_one_fused_op_per_layer(tmp_path: Path) -> None:
    from squeezebert.export import _fused_attention

    model = tiny_model()
    export_model(model, tmp_path)  # its fp32 check compares with PyTorch on padded batches
    ops = op_types(tmp_path / "model.onnx")
    assert ops["MultiHeadAttention"] == model.config.num_hidden_layers and ops["Softmax"] == 0
    # the export-time forward is the model's own again afterwards
    with _fused_attention(model):
        assert "forward" in vars(model.encoder.layers[0].attention)
    assert "forward" not in vars(model.encoder.layers[0].attention)


@pytest.mark.parametrize("activations", ["per-token", "per-tensor"])
@pytest.mark.parametrize("kind", ["grouped", "dense", "low-rank"])
def test_int8_export_uses_integer_matmuls_and_no_convinteger(kind: str, activations: str, tmp_path: Path) -> None:
    model = tiny_model(**CONFIGS[kind])
    report = export_model(model, tmp_path, precision="int8", int8_activations=activations)
    ops = op_types(tmp_path / "model.onnx")
    projections = 12 + (2 if kind == "low-rank" else 0)  # the low-rank query is two MatMuls per layer
    if activations == "per-token":  # a range per token (ReduceMin/Max), then ORT's fused int8 kernel
        assert ops["DynamicQuantizeMatMul"] == projections
        assert ops["ReduceMin"] == ops["ReduceMax"] == projections
        assert ops["MatMulInteger"] == 0 and ops["DynamicQuantizeLinear"] == 0
    else:
        assert ops["MatMulInteger"] == projections and ops["DynamicQuantizeLinear"] >= 1
    assert not any("Conv" in op for op in ops)
    # fp32: attention, one fused op per layer, pooler and classifier (Gemm, or the MatMul ONNX
    # Runtime's quantizer rewrites a Gemm into)
    assert ops["MultiHeadAttention"] == 2 and ops["MatMul"] + ops["Gemm"] == 2
    assert report.int8_agreement is not None and report.int8_agreement >= 0.9
    inputs = sample_inputs(model.config, batch=4, seq=12, seed=5)
    np.testing.assert_allclose(run_onnx(tmp_path / "model.onnx", inputs), run_torch(model, inputs), rtol=0, atol=0.02)


def one_projection(weight: np.ndarray) -> onnx.ModelProto:
    """x -> MatMul(weight) -> y: one projection, dense (in, out) or grouped (G, in/G, out/G)."""
    from onnx import TensorProto, helper, numpy_helper

    dims = ["g", "n", weight.shape[-2]] if weight.ndim == 3 else ["n", weight.shape[-2]]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], "/layers.0/output/conv1d/MatMul")],
        "one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [*dims[:-1], weight.shape[-1]])],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def reference_int8(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The specification in numpy: weights symmetric int8 per (group and) output column; each
    token's row mapped onto [0, 1] by its own minimum and range, then quantized with ONNX's
    DynamicQuantizeLinear rule over the whole tensor, multiplied in integers, and mapped back."""
    token_axes = (0, 2) if x.ndim == 3 else (-1,)
    w_scale = np.maximum(np.abs(w).max(axis=-2, keepdims=True), 1e-12) / 127
    w_q = np.clip(np.round(w / w_scale), -127, 127)
    # float32 up to the rounding, as in the graph: a float64 u would round a few ties differently
    f32 = np.float32
    lo = x.min(axis=token_axes, keepdims=True)
    span = np.maximum(x.max(axis=token_axes, keepdims=True) - lo, f32(1e-12))
    u = (x - lo) / span  # every row on [0, 1]
    u_scale = max(u.max(), f32(0)) / f32(255)  # the whole tensor's range, [0, 1]: one grid for all
    u_q = np.clip(np.round(u / u_scale), 0, 255).astype(np.float64)
    return (u_q @ w_q) * u_scale * w_scale * span + lo * (w_q * w_scale).sum(axis=-2, keepdims=True)


# ONNX Runtime's uint8 x int8 kernels add pairs of products in 16 bits on x86 CPUs without VNNI,
# which saturates (quantize.native_int8): its int8 results are then not the specification's.
needs_native_int8 = pytest.mark.skipif(
    not native_int8(), reason="this CPU has no VNNI: ONNX Runtime's u8*s8 kernels saturate in 16 bits"
)


@needs_native_int8
@pytest.mark.parametrize("grouped", [False, True])
def test_per_token_int8_projection_computes_its_specification(grouped: bool) -> None:
    from squeezebert.export import _quantize_matmuls_per_token

    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 24, 8) if grouped else (24, 32)).astype(np.float32)
    x = rng.normal(size=(4, 6, 24) if grouped else (6, 24)).astype(np.float32)
    token = (slice(None), 2) if grouped else (2,)
    x[token] *= 1e-3  # a quiet token next to loud ones: per-token ranges keep it
    x[(slice(None), 3) if grouped else (3,)] += 5.0  # and one far from zero: its own offset keeps it
    model = one_projection(w)
    assert _quantize_matmuls_per_token(model) == 1
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    exact = x @ w
    np.testing.assert_allclose(got, reference_int8(x, w.astype(np.float64)), rtol=1e-4, atol=1e-4 * np.abs(exact).max())
    # close to the float product, the quiet token too, relative to its own size
    assert np.abs(got - exact).max() <= 0.03 * np.abs(exact).max()
    quiet = np.abs(got[token] - exact[token]).max() / np.abs(exact[token]).max()
    assert quiet <= 0.03, quiet


@needs_native_int8
@pytest.mark.parametrize("kind", ["grouped", "low-rank"])
def test_per_token_int8_export_is_as_accurate_as_torch_int8(kind: str, tmp_path: Path) -> None:
    # Close but different activation grids (optimize(model, "int8") rounds its zero point to an
    # integer), so the two agree to the int8 error, not to float rounding: errors of one size.
    from squeezebert.quantize import optimize

    torch.manual_seed(0)
    model = tiny_model(initializer_range=0.2, **CONFIGS[kind])  # large weights: a visible int8 error
    export_model(model, tmp_path, precision="int8")
    inputs = sample_inputs(model.config, batch=4, seq=20, seed=3)
    torch_inputs = {k: torch.from_numpy(v) for k, v in inputs.items()}
    with torch.no_grad():
        fp32 = model(**torch_inputs).numpy()
        torch_error = np.abs(optimize(model, "int8")(**torch_inputs).numpy() - fp32).max()
    onnx_error = np.abs(run_onnx(tmp_path / "model.onnx", inputs) - fp32).max()
    assert 0 < onnx_error <= 2 * torch_error, (onnx_error, torch_error)


@pytest.mark.parametrize("vnni", [False, True])
def test_an_int8_export_on_a_cpu_without_vnni_warns_that_its_check_measures_the_cpu(
    vnni: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from squeezebert import quantize

    monkeypatch.setattr(quantize, "native_int8", lambda: vnni)
    with caplog.at_level("WARNING", logger="squeezebert.export"):
        report = export_model(tiny_model(), tmp_path, precision="int8")
    warned = [r.getMessage() for r in caplog.records if "no VNNI" in r.getMessage()]
    assert (tmp_path / "model.onnx").is_file() and report.int8_agreement is not None  # written and checked either way
    assert len(warned) == (0 if vnni else 1)
    if warned:
        assert str(tmp_path) in warned[0] and f"agree on {100 * report.int8_agreement:.1f}%" in warned[0]


def test_int8_grouped_weights_have_a_scale_per_group_and_column(tmp_path: Path) -> None:
    export_model(tiny_model(), tmp_path, precision="int8")
    model = onnx.load(str(tmp_path / "model.onnx"))
    inits = {init.name: init for init in model.graph.initializer}
    node = next(n for n in model.graph.node if n.op_type == "DynamicQuantizeMatMul" and "intermediate" in n.name)
    weight = onnx.numpy_helper.to_array(inits[node.input[1]])
    scale = onnx.numpy_helper.to_array(inits[node.input[2]])
    assert weight.dtype == np.int8 and weight.shape == (4, 16, 64)  # 64 -> 256 in 4 groups
    assert scale.shape == (4, 1, 64)
    assert np.abs(weight).max(axis=1).min() == 127  # every (group, column) uses its full range


def test_export_writes_a_self_contained_directory(tokenizer: Tokenizer, tmp_path: Path) -> None:
    ckpt = save_checkpoint(tiny_model(), tmp_path / "ckpt", tokenizer)
    out = tmp_path / "export"
    report = export(ckpt, out, precision="int8")
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "model.onnx",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "a", "1": "b", "2": "c"}
    assert config["onnx"]["precision"] == "int8"
    assert Tokenizer.from_dir(out)(["the good movie"])["input_ids"].shape == (1, 5)
    assert report.files == ["model.onnx", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"] + [
        "config.json"
    ]
    # transformers' AutoTokenizer reads the sidecars and gives our ids, token types included
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(out))
    got = hf(["the good movie"], ["a bad plot"], return_tensors="np")
    want = Tokenizer.from_dir(out)(["the good movie"], ["a bad plot"])
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        np.testing.assert_array_equal(got[key], want[key])


def test_export_that_disagrees_with_pytorch_raises_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = export_module.torch_outputs
    monkeypatch.setattr(export_module, "torch_outputs", lambda model, inputs: real(model, inputs) + 1e-3)
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_model(tiny_model(), tmp_path)
    assert list(tmp_path.iterdir()) == []  # no model.onnx, no temporary file left behind


def test_export_rejects_unsupported_precision_and_opset(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="precision"):
        export_model(tiny_model(), tmp_path, precision="bf16")
    with pytest.raises(ValueError, match="opset"):
        export_model(tiny_model(), tmp_path, opset=13)


def test_headless_model_exports_hidden_states(tmp_path: Path) -> None:
    model = tiny_model(num_labels=0, id2label={})
    report = export_model(model, tmp_path)
    assert onnx.load(str(tmp_path / "model.onnx")).graph.output[0].name == "last_hidden_state"
    assert max(report.max_abs_diff.values()) <= 1e-4


def test_cli_export_prints_the_report(tokenizer: Tokenizer, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = save_checkpoint(tiny_model(), tmp_path / "ckpt", tokenizer)
    assert main(["export", str(ckpt), "--out", str(tmp_path / "out"), "--precision", "int8", "--opset", "17"]) == 0
    printed = capsys.readouterr().out
    assert "int8, opset 17" in printed and "DynamicQuantizeMatMul" in printed and "agree" in printed
    assert main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2


def test_cli_export_int8_activations_opt_out_is_recorded(tokenizer: Tokenizer, tmp_path: Path) -> None:
    ckpt = save_checkpoint(tiny_model(), tmp_path / "ckpt", tokenizer)
    for activations, quantize_op in (("per-token", "ReduceMax"), ("per-tensor", "DynamicQuantizeLinear")):
        out = tmp_path / activations
        assert (
            main(["export", str(ckpt), "--out", str(out), "--precision", "int8", "--int8-activations", activations])
            == 0
        )
        config = json.loads((out / "config.json").read_text(encoding="utf-8"))
        assert config["onnx"]["int8_activations"] == activations
        assert op_types(out / "model.onnx")[quantize_op] >= 1


def test_int8_export_stores_word_embeddings_as_int8_rows(tmp_path: Path) -> None:
    model = tiny_model()
    export_model(model, tmp_path / "fp32")
    export_model(model, tmp_path / "int8", precision="int8")
    graph = onnx.load(str(tmp_path / "int8" / "model.onnx")).graph
    inits = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    assert "embeddings.word_embeddings.weight" not in inits  # no fp32 copy left behind
    rows, scale = inits["word_embeddings_int8_rows"], inits["word_embeddings_int8_scale"]
    table = model.embeddings.word_embeddings.weight.detach().numpy()
    assert rows.dtype == np.int8 and rows.shape == table.shape and scale.shape == (table.shape[0], 1)
    np.testing.assert_allclose(rows * scale, table, rtol=0, atol=float(scale.max()) / 2 + 1e-7)
    # the table is most of the tiny model: the int8 file is far smaller than the fp32 one
    fp32_bytes = (tmp_path / "fp32" / "model.onnx").stat().st_size
    assert (tmp_path / "int8" / "model.onnx").stat().st_size < fp32_bytes - 0.6 * table.nbytes


# --------------------------------------------------------------------------- standard ONNX operators
def plain_session(path: Path) -> object:
    """ONNX Runtime with every graph optimization off: it runs the file's own operators, none of
    the fused contrib kernels it would otherwise substitute."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def assert_standard_domains_only(path: Path) -> None:
    model = onnx.load(str(path))
    assert [n.op_type for n in model.graph.node if n.domain not in ("", "ai.onnx")] == []
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}
    onnx.checker.check_model(model, full_check=True)  # with shape inference over the standard schemas


@pytest.mark.parametrize("kind", ["grouped", "low-rank", "factorized-embeddings"])
def test_standard_ops_fp32_export_has_no_contrib_ops_and_matches_pytorch(kind: str, tmp_path: Path) -> None:
    model = tiny_model(**CONFIGS[kind])
    report = export_model(model, tmp_path / "out", standard_ops=True)
    path = tmp_path / "out" / "model.onnx"
    assert_standard_domains_only(path)
    assert report.standard_ops and "MultiHeadAttention" not in report.op_types
    session = plain_session(path)
    for i, (batch, seq) in enumerate(((1, 5), (4, 23))):
        inputs = sample_inputs(model.config, batch, seq, seed=10 + i)
        np.testing.assert_allclose(session.run(None, inputs)[0], run_torch(model, inputs), rtol=0, atol=1e-4)


@pytest.mark.parametrize("activations", ["per-token", "per-tensor"])
def test_standard_ops_int8_export_computes_what_the_contrib_graph_computes(activations: str, tmp_path: Path) -> None:
    model = tiny_model(ranks={"intermediate": 8})
    export_model(model, tmp_path / "contrib", precision="int8", int8_activations=activations)
    report = export_model(model, tmp_path / "std", precision="int8", int8_activations=activations, standard_ops=True)
    path = tmp_path / "std" / "model.onnx"
    assert_standard_domains_only(path)
    assert report.op_types["MatMulInteger"] >= 1 and "DynamicQuantizeMatMul" not in report.op_types
    inputs = sample_inputs(model.config, 4, 17, seed=3)
    got = plain_session(path).run(None, inputs)[0]
    # the same int8 arithmetic as the fused contrib graph, to float rounding
    np.testing.assert_allclose(got, run_onnx(tmp_path / "contrib" / "model.onnx", inputs), rtol=0, atol=1e-4)
    np.testing.assert_allclose(got, run_torch(model, inputs), rtol=0, atol=0.05)  # within int8 error of fp32


def test_standard_ops_directory_serves_and_reads_as_a_transformers_config(
    tokenizer: Tokenizer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from squeezebert.infer import Classifier

    ckpt = save_checkpoint(tiny_model(), tmp_path / "ckpt", tokenizer)
    out = tmp_path / "out"
    assert main(["export", str(ckpt), "--out", str(out), "--precision", "int8", "--standard-ops"]) == 0
    assert "standard ONNX operators only" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["onnx"]["standard_ops"] is True and "auto_map" in config
    texts = ["the good movie", "a bad plot"]
    clf = Classifier.from_pretrained(out)
    assert clf.backend == "onnx" and [p.label for p in clf.predict(texts)] == [
        p.label for p in Classifier.from_pretrained(ckpt, precision="int8", backend="onnx").predict(texts)
    ]
    transformers = pytest.importorskip("transformers")
    auto = transformers.AutoConfig.from_pretrained(str(out), trust_remote_code=True)
    assert auto.id2label == {0: "a", 1: "b", 2: "c"}
    # OpenVINO has no such option
    assert main(["export", str(ckpt), "--out", str(tmp_path / "ov"), "--format", "openvino", "--standard-ops"]) == 2


def test_optimum_loads_the_standard_ops_export(tokenizer: Tokenizer, tmp_path: Path) -> None:
    optimum_ort = pytest.importorskip("optimum.onnxruntime", reason="optimum[onnxruntime] is not installed")
    model = tiny_model()
    ckpt = save_checkpoint(model, tmp_path / "ckpt", tokenizer)
    export(ckpt, tmp_path / "out", standard_ops=True)
    ort_model = optimum_ort.ORTModelForSequenceClassification.from_pretrained(
        str(tmp_path / "out"), trust_remote_code=True
    )
    inputs = sample_inputs(model.config, 2, 9)
    got = ort_model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits
    np.testing.assert_allclose(np.asarray(got), run_torch(model, inputs), rtol=0, atol=1e-4)
