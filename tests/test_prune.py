"""Per-layer shapes and structured pruning on tiny random models: shapes stay consistent, outputs
are exact where nothing is removed, errors are reported, and every format keeps working."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from squeezebert.checkpoint import load, save_checkpoint
from squeezebert.config import ModelConfig, preset
from squeezebert.model import SqueezeBert
from squeezebert.prune import (
    PruningError,
    _divergence,
    choose_layers,
    construct_student,
    magnitude_importance,
    prune,
    prune_model,
)
from squeezebert.quantize import optimize
from squeezebert.surgery import StudentSpec, build_student, collect_input_stats

DENSE = dict(q_groups=1, k_groups=1, v_groups=1, post_attention_groups=1, intermediate_groups=1, output_groups=1)


def tiny(**overrides) -> SqueezeBert:
    torch.manual_seed(0)
    cfg = preset("tiny", num_labels=3, num_hidden_layers=3, **{**DENSE, **overrides})
    return SqueezeBert(cfg).eval()


def batches(n: int = 4, b: int = 8, t: int = 12, labels: int = 3, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(1000, 5000, (b, t), generator=g)
        mask = torch.ones_like(ids)
        mask[: b // 2, t // 2 :] = 0  # some padding
        out.append(
            {
                "input_ids": ids,
                "attention_mask": mask,
                "token_type_ids": torch.zeros_like(ids),
                "labels": torch.randint(0, labels, (b,), generator=g),
            }
        )
    return out


def logits(model: SqueezeBert, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])


# --------------------------------------------------------------------------- per-layer shapes
def test_per_layer_shapes_validate_with_messages_that_say_what_to_change() -> None:
    with pytest.raises(ValueError, match="layer_heads has 1 entries but num_hidden_layers=2"):
        preset("tiny", layer_heads=[2])
    with pytest.raises(ValueError, match=r"layer_intermediate_sizes\[1\] must be a non-negative integer"):
        preset("tiny", layer_intermediate_sizes=[64, -1])
    # the tiny preset's 4 FFN groups cannot split a layer of 30 neurons
    with pytest.raises(ValueError, match="intermediate_groups=4 must divide .* in layer 1"):
        preset("tiny", layer_intermediate_sizes=[64, 30])
    cfg = preset("tiny", **DENSE, layer_heads=[1, 3], layer_intermediate_sizes=[40, 64])
    assert cfg.projection_shape("query", 0) == (64, 16) and cfg.projection_shape("post_attention", 1) == (48, 64)
    assert cfg.projection_shape("output", 0) == (40, 64) and cfg.projection_shape("intermediate") == (64, 256)
    # one head (16 channels) in layer 0: a query rank of 20 cannot be
    with pytest.raises(ValueError, match=r"ranks\['query'\]=20 is larger than the full rank 16 .* in layer 0"):
        cfg.replace(ranks={"query": 20})
    # 0 removes a whole block: no projection there, and a per-layer rank for it is refused
    cut = preset("tiny", **DENSE, layer_heads=[0, 3], layer_intermediate_sizes=[40, 0], ranks={"query": 4})
    assert cut.removed_blocks == [(0, "attention"), (1, "ffn")] and cut.projection_shape("query", 0) == (64, 0)
    with pytest.raises(ValueError, match=r"ranks\['1.output'\]: layer 1 has no output projection"):
        cut.replace(ranks={"1.output": 4})


def test_keep_layers_carries_per_layer_shapes_and_ranks() -> None:
    cfg = preset("tiny", **DENSE, num_hidden_layers=3, layer_heads=[1, 2, 4], ranks={"2.output": 8, "query": 4})
    kept = cfg.keep_layers([2, 0])
    assert kept.num_hidden_layers == 2 and kept.layer_heads == [4, 1]
    assert kept.ranks == {"0.output": 8, "query": 4}
    with pytest.raises(ValueError, match="layers must be indices in 0..2"):
        cfg.keep_layers([3])


#: per-layer shapes the format tests run on: narrowed layers, and layers with a whole block removed
SHAPES = {
    "narrowed": dict(layer_heads=[1, 2, 3], layer_intermediate_sizes=[32, 96, 64]),
    "blocks removed": dict(layer_heads=[1, 0, 3], layer_intermediate_sizes=[32, 96, 0]),
}


def with_constants(model: SqueezeBert) -> SqueezeBert:
    """Non-zero constants in the removed blocks, so a test sees whether they are carried."""
    torch.manual_seed(1)
    with torch.no_grad():
        for layer in model.encoder.layers:
            for block in (layer.post_attention, layer.output):
                if block.conv1d.in_features == 0:
                    block.conv1d.bias.normal_()
    return model


@pytest.mark.parametrize("shape", SHAPES)
def test_a_pruned_model_round_trips_through_save_load_and_the_fast_copies(tmp_path, shape) -> None:
    model = with_constants(tiny(**SHAPES[shape], ranks={"1.intermediate": 8}))
    batch = batches(1)[0]
    ref = logits(model, batch)
    save_checkpoint(model, tmp_path)
    again = load(tmp_path).model.eval()
    assert again.config == model.config
    torch.testing.assert_close(logits(again, batch), ref, rtol=0, atol=0)
    torch.testing.assert_close(logits(optimize(model, "int8"), batch), ref, rtol=0.05, atol=0.05)
    torch.testing.assert_close(logits(optimize(model, "bf16"), batch), ref, rtol=0.05, atol=0.05)
    out = model.encode(batch["input_ids"], batch["attention_mask"], output_attentions=True)
    assert [a.shape[1] if a is not None else 0 for a in out.attentions] == SHAPES[shape]["layer_heads"]
    assert model.flops(16) < tiny().flops(16)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_pruned_model_exports_to_onnx_with_the_same_logits(tmp_path, shape) -> None:
    ort = pytest.importorskip("onnxruntime")
    from squeezebert.export import export_model

    model = with_constants(tiny(**SHAPES[shape]))
    export_model(model, tmp_path / "onnx")
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    batch = batches(1)[0]
    got = session.run(None, {k: batch[k].numpy() for k in ("input_ids", "attention_mask", "token_type_ids")})[0]
    torch.testing.assert_close(torch.from_numpy(got), logits(model, batch), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- pruning
def test_pruning_nothing_is_exact_and_dropping_layers_keeps_the_rest() -> None:
    model = tiny()
    batch = batches(1)[0]
    same, rows = prune(model)
    assert rows == []
    torch.testing.assert_close(logits(same, batch), logits(model, batch), rtol=0, atol=0)
    two, _ = prune(model, layers=[2, 0])
    assert two.config.num_hidden_layers == 2
    assert torch.equal(two.encoder.layers[0].attention.query.weight, model.encoder.layers[2].attention.query.weight)


def test_pruned_shapes_are_consistent_and_each_step_reports_its_error() -> None:
    model = tiny()
    cal = batches(4)
    stats = collect_input_stats(model, cal)
    pruned, rows = prune(model, heads=2, ffn=64, importance="magnitude", stats=stats)
    cfg = pruned.config
    assert cfg.layer_heads == [2, 2, 2] and cfg.layer_intermediate_sizes == [64, 64, 64]
    for layer in pruned.encoder.layers:
        assert layer.attention.query.weight.shape == (2 * cfg.head_size, cfg.hidden_size)
        assert layer.post_attention.conv1d.weight.shape == (cfg.hidden_size, 2 * cfg.head_size)
        assert layer.intermediate.conv1d.weight.shape == (64, cfg.hidden_size)
        assert layer.output.conv1d.weight.shape == (cfg.hidden_size, 64)
    assert [(r.block, r.kept, r.total) for r in rows] == [("attention", 2, 4), ("ffn", 64, 256)] * 3
    for r in rows:  # the least-squares refit never makes the output error worse
        assert 0 < r.error_after_refit <= r.error_before_refit + 1e-9
    logits(pruned, cal[0])  # runs


def test_magnitude_importance_prunes_a_silent_head_and_neuron_first() -> None:
    model = tiny()
    hd = model.config.head_size
    with torch.no_grad():  # head 1 of layer 0 and neuron 5 of layer 1 are never read
        model.encoder.layers[0].post_attention.conv1d.weight[:, hd : 2 * hd] = 0
        model.encoder.layers[1].output.conv1d.weight[:, 5] = 0
    stats = collect_input_stats(model, batches(2))
    heads, neurons = magnitude_importance(model, stats)
    assert heads[0].argmin().item() == 1 and neurons[1].argmin().item() == 5
    pruned, _ = prune(model, heads=3, ffn=255, importance="magnitude", stats=stats, refit=False)
    # removing what was never read changes nothing in those layers' outputs: the logits are the
    # model's own wherever only silent channels went (checked on layer 0's attention block)
    q_kept = pruned.encoder.layers[0].attention.query.weight
    q_full = model.encoder.layers[0].attention.query.weight
    assert torch.equal(q_kept, torch.cat([q_full[:hd], q_full[2 * hd :]]))


def test_taylor_importance_needs_labels_and_gives_one_score_per_head_and_neuron() -> None:
    model = tiny()
    pruned, rows = prune(model, heads=3, ffn=128, importance="taylor", batches=batches(2))
    assert pruned.config.layer_heads == [3, 3, 3] and len(rows) == 6
    unlabeled = [{k: v for k, v in b.items() if k != "labels"} for b in batches(1)]
    with pytest.raises(PruningError, match="labelled calibration batches"):
        prune(model, heads=3, importance="taylor", batches=unlabeled)


def test_layers_are_dropped_by_measured_output_change() -> None:
    model = tiny()
    cal = batches(3)
    kept, steps = choose_layers(model, 2, cal)
    ref = torch.cat([logits(model, b) for b in cal])

    def change(layers: list[int]) -> float:
        trial, _ = prune(model, layers=layers)
        got = torch.cat([logits(trial, b) for b in cal])
        return F.kl_div(got.log_softmax(-1), ref.log_softmax(-1), log_target=True, reduction="batchmean").item()

    changes = {drop: change([i for i in range(3) if i != drop]) for drop in range(3)}
    assert steps[0]["dropped"] == min(changes, key=changes.get)
    assert steps[0]["divergence"] == pytest.approx(changes[steps[0]["dropped"]], rel=1e-4)
    assert len(kept) == 2 and kept == sorted(kept)


def test_prune_model_reports_teacher_layers_and_refuses_grouped_models() -> None:
    model = tiny()
    pruned, report = prune_model(model, batches(3), num_layers=2, heads=2, ffn=64)
    assert pruned.config.num_hidden_layers == 2 and len(report.layers) == 2
    assert {r.teacher_layer for r in report.rows} == set(report.layers)
    assert "error, refit" in report.table() and "layer dropped" in report.table()
    grouped = SqueezeBert(preset("tiny", num_labels=3))
    with pytest.raises(PruningError, match="prune first, then group or factorize"):
        prune_model(grouped, batches(1), heads=2)
    with pytest.raises(PruningError, match="keep between 1 and 4"):
        prune(model, heads=5)


def test_the_report_names_the_teacher_heads_each_kept_head_came_from() -> None:
    model = tiny(initializer_range=0.3)
    cal = batches(3)
    pruned, report = prune_model(model, cal, layers=[0, 2], heads=2, ffn=64)
    assert len(report.heads) == 2 and all(len(h) == 2 and h == sorted(set(h)) for h in report.heads)
    assert report.to_dict()["heads"] == report.heads
    b = cal[0]
    args = (b["input_ids"], b["attention_mask"], b["token_type_ids"])
    with torch.no_grad():
        t = model.encode(*args, output_attentions=True).attentions
        s = pruned.encode(*args, output_attentions=True).attentions
    # layer 0 sees the same embeddings in both: a kept head's Q/K rows are copied, so its map is the teacher head's
    torch.testing.assert_close(s[0], t[0][:, report.heads[0]])
    other = [h for h in range(4) if h not in report.heads[0]][:2]
    assert not torch.allclose(s[0], t[0][:, other])
    # whole attention blocks removed afterwards: those layers keep no heads, the others theirs
    _, blocked = prune_model(model, cal, heads=2, ffn=128, blocks=2)
    for i, heads in enumerate(blocked.heads):
        removed = any(st["layer"] == i and st["block"] == "attention" for st in blocked.block_steps)
        assert (heads == []) == removed and len(heads) in (0, 2)


def test_blocks_are_removed_by_measured_output_change_with_attention_limited() -> None:
    model = tiny(initializer_range=0.3)  # outputs that vary: output changes well above rounding
    cal = batches(4)
    pruned, report = prune_model(model, cal, heads=2, ffn=128, blocks=2)  # 4 of the 6 blocks go
    cfg = pruned.config
    removed = cfg.removed_blocks
    assert len(removed) == 4 and sum(k == "attention" for _, k in removed) <= 1  # a third of 4, rounded down
    assert sorted((s["layer"], s["block"]) for s in report.block_steps) == sorted(removed)
    assert len(report.block_steps) == 4 and "block removed from layer" in report.table()
    for i, kind in removed:  # only the constant is left, and the rows say what each removal lost
        layer = pruned.encoder.layers[i]
        assert (layer.attention if kind == "attention" else layer.intermediate) is None
        row = next(r for r in report.rows if (r.layer, r.block, r.kept) == (i, kind, 0))
        assert 0 < row.error_after_refit <= row.error_before_refit + 1e-9
    # the removed block's constant is its mean output: the model runs as the choice scored it
    before, _ = prune_model(model, cal, heads=2, ffn=128)
    stats = collect_input_stats(before, cal)
    for i, kind in removed:
        name = f"encoder.layers.{i}.{'post_attention' if kind == 'attention' else 'output'}.conv1d"
        reader = before.get_submodule(name)
        mean = reader.weight.double() @ stats[name].mean + reader.bias.double()
        torch.testing.assert_close(pruned.get_submodule(name).bias.double(), mean, rtol=1e-5, atol=1e-6)
    # the output change the last step scored is the one the pruned model shows
    ref = torch.cat([logits(before, b) for b in cal])
    change, agreement = _divergence(ref, torch.cat([logits(pruned, b) for b in cal]), regression=False)
    assert change == pytest.approx(report.block_steps[-1]["divergence"], rel=1e-4)
    assert agreement == report.block_steps[-1]["agreement"]
    free, _ = prune_model(model, cal, blocks=1, heads=2, ffn=128)
    # 5 removals: all 3 FFN blocks and, beyond the third allowed, as many attention blocks as it takes
    assert len(free.config.removed_blocks) == 5 and sum(k == "attention" for _, k in free.config.removed_blocks) == 2
    with pytest.raises(PruningError, match="keep between 1 and 6"):
        prune_model(model, cal, blocks=7)
    with pytest.raises(PruningError, match="needs calibration statistics"):
        prune(model, heads=[0, 4, 4])


def test_a_student_without_some_blocks_distils_and_combines_with_low_rank() -> None:
    from squeezebert.distill import DistillationLoss, DistillConfig

    teacher = tiny()
    cal = batches(3)
    stats = collect_input_stats(teacher, cal)
    student, _ = prune(teacher, heads=[4, 0, 4], ffn=[256, 256, 0], stats=stats)
    config = DistillConfig(hidden_weight=1.0, attention_weight=1.0)
    out = DistillationLoss(teacher, student.train(), config)(student, cal[0])
    out["loss"].backward()  # layers 0 and 2 match the teacher's attention, layer 1 has none
    assert torch.isfinite(out["loss"]) and out["attention"] > 0
    headless, _ = prune(teacher, heads=[0, 0, 0], stats=stats)
    out = DistillationLoss(teacher, headless.train(), config)(headless, cal[0])
    assert "attention" not in out and torch.isfinite(out["loss"])
    # blocks are removed before grouping and rank; a removed block gets no rank
    spec = StudentSpec.from_construction("lowrank", blocks=4)
    low, surgery, pruning = construct_student(teacher, spec, cal)
    removed = low.config.removed_blocks
    assert len(removed) == 2 and len(pruning.block_steps) == 2 and low.config.ranks
    gone = {(i, p) for i, k in removed for p in (("query", "key", "value") if k == "attention" else ("intermediate",))}
    assert gone and not gone & {(r.layer, r.projection) for r in surgery.rows}
    assert all(not gone & {(int(key.split(".")[0]), key.split(".")[1])} for key in low.config.ranks if "." in key)
    logits(low, cal[0])


def test_pruning_combines_with_low_rank_and_grouping() -> None:
    model = tiny()
    cal = batches(3)
    spec = StudentSpec.from_construction("lowrank", num_layers=2, heads=2, ffn=128)
    student, surgery, pruning = construct_student(model, spec, cal)
    cfg = student.config
    assert cfg.num_hidden_layers == 2 and cfg.layer_heads == [2, 2] and cfg.ranks
    assert all(k.split(".")[0] in ("0", "1") for k in cfg.ranks)  # per layer: the widths differ from uniform
    assert surgery is not None and pruning is not None
    spec = StudentSpec.from_construction("grouped", heads=2, ffn=128)
    student, _, _ = construct_student(model, spec, cal)
    assert student.config.groups("intermediate") == 4 and student.config.layer_intermediate_sizes == [128] * 3
    logits(student, cal[0])
    with pytest.raises(ValueError, match="num_layers .* or layers .* not both"):
        StudentSpec.from_construction("pruned", layers=[0], num_layers=1)
    # only a student made of the teacher's own weights counts as only pruned (squeeze then
    # distils logits only by default); pruning combined with rank or groups does not
    assert StudentSpec.from_construction("pruned", heads=2).only_prunes
    assert StudentSpec.from_construction("pruned", layers=[0, 2]).only_prunes
    assert not StudentSpec.from_construction("lowrank", num_layers=2, heads=2, ffn=128).only_prunes
    assert not StudentSpec.from_construction("grouped", heads=2).only_prunes
    assert not StudentSpec.from_construction("pruned", heads=2, embedding_size=64).only_prunes
    assert not StudentSpec.from_construction("pruned", heads=2, rank=8).only_prunes


def test_build_student_keeps_a_pruned_teachers_shapes() -> None:
    model = tiny(layer_heads=[1, 2, 4], layer_intermediate_sizes=[32, 96, 256])
    student, _ = build_student(model, StudentSpec.from_construction("pruned", layers=[2, 1]))
    assert student.config.layer_heads == [4, 2] and student.config.layer_intermediate_sizes == [256, 96]
    assert isinstance(student.config, ModelConfig)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_pruned_model_refuses_the_stock_hf_format_with_a_clear_error(tmp_path, shape) -> None:
    from squeezebert.checkpoint import CheckpointError, save_hf

    model = tiny(**SHAPES[shape])
    removed = "2 attention/FFN blocks removed" if shape == "blocks removed" else "per layer"
    with pytest.raises(CheckpointError, match=f"structurally pruned model .*{removed}.* no stock Hugging Face class"):
        save_hf(model, tmp_path / "hf")
    assert not (tmp_path / "hf" / "model.safetensors").exists()


@pytest.mark.parametrize("shape", SHAPES)
def test_a_pruned_model_exports_to_openvino_with_the_same_logits(tmp_path, shape) -> None:
    pytest.importorskip("openvino")
    from squeezebert.export_openvino import export_model
    from squeezebert.infer import OpenVinoForward

    model = with_constants(tiny(**SHAPES[shape]))
    export_model(model, tmp_path / "ov", precision="fp32")
    forward = OpenVinoForward(tmp_path / "ov" / "model.xml", num_threads=1)
    batch = batches(1)[0]
    got = forward({k: batch[k].numpy() for k in ("input_ids", "attention_mask", "token_type_ids")})
    torch.testing.assert_close(torch.from_numpy(got), logits(model, batch), rtol=1e-4, atol=1e-4)


def test_the_latency_table_times_static_int8_calibrated_on_the_texts_else_run_time_scales() -> None:
    pytest.importorskip("nncf")
    from squeezebert.backends import OpenVinoForward
    from squeezebert.budget import fast_forward

    model = tiny(layer_heads=[1, 2, 3], layer_intermediate_sizes=[32, 96, 64])
    inputs = [{k: v[i : i + 1].numpy() for k, v in b.items() if k != "labels"} for b in batches(2) for i in range(8)]
    static = fast_forward(model, "openvino-int8", 1, calibration=inputs)
    dynamic = fast_forward(model, "openvino-int8", 1)
    assert isinstance(static, OpenVinoForward) and isinstance(dynamic, OpenVinoForward)

    # static int8 quantizes activations with calibrated FakeQuantize nodes; the run-time recipe
    # has none (int8 weights only, activations quantized per token by the plugin)
    def fake_quantize(f: OpenVinoForward) -> int:
        return sum(op.get_type_name() == "FakeQuantize" for op in f._model.get_ordered_ops())

    fp32 = fast_forward(model, "openvino-int8", 1, fp32=True)
    assert fake_quantize(static) > 0 and fake_quantize(dynamic) == 0 and fake_quantize(fp32) == 0
    torch.testing.assert_close(torch.from_numpy(fp32(inputs[0])), logits(model, batches(1)[0])[:1], rtol=0, atol=1e-4)
    for f in (static, dynamic):
        got = f(inputs[0])
        assert got.shape == (1, 3)
        torch.testing.assert_close(torch.from_numpy(got), logits(model, batches(1)[0])[:1], rtol=0, atol=0.2)
    with pytest.raises(ValueError, match="unknown runtime"):
        fast_forward(model, "tensorrt", 1)


def test_the_latency_table_times_candidates_through_the_recipe_it_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from squeezebert import budget

    seen: list[tuple[str, object]] = []

    def fake_forward(model, runtime, threads, calibration=None, fp32=False):
        seen.append((runtime, calibration, fp32))
        return lambda batch: None

    monkeypatch.setattr(budget, "fast_forward", fake_forward)
    monkeypatch.setattr(budget, "time_forwards", lambda forwards, batches, repeats: {
        name: {"batch1": {"p50": 1.0}} for name in forwards
    })  # fmt: skip
    cfg = tiny().config
    single = [{k: v[i : i + 1].numpy() for k, v in batches(1)[0].items() if k != "labels"} for i in range(4)]
    assert budget.TABLE_RECIPE == "dynamic"
    budget.measure_configs({"a": cfg}, {1: single}, "openvino-int8", 1)
    assert seen == [("openvino-int8", None, False)]  # no calibration: run-time activation scales
    budget.measure_configs({"a": cfg}, {1: single}, "openvino-int8", 1, recipe="static", calibration_texts=2)
    assert seen[1][1:] == (single[:2], False)
    budget.measure_configs({"a": cfg}, {1: single}, "openvino-int8", 1, recipe="fp32")
    assert seen[2] == ("openvino-int8", None, True)  # the teacher deployed in fp32: timed in fp32
    with pytest.raises(ValueError, match="recipe must be"):
        budget.measure_configs({"a": cfg}, {1: single}, "openvino-int8", 1, recipe="auto")


def test_a_re_timing_in_blocks_quotes_each_path_at_its_median_over_spaced_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    from squeezebert import budget

    compiled: list[str] = []
    monkeypatch.setattr(budget, "fast_forward", lambda m, *a, **k: compiled.append("x") or (lambda batch: None))
    # the second block lands in a slow state that slows the student more than the teacher
    student, teacher = iter([1.0, 1.6, 1.1]), iter([3.3, 4.6, 3.2])
    monkeypatch.setattr(budget, "time_forwards", lambda forwards, batches, repeats: {
        "s": {"batch1": {"p50": next(student)}}, "teacher": {"batch1": {"p50": next(teacher)}}
    })  # fmt: skip
    pauses: list[float] = []
    monkeypatch.setattr(time, "sleep", pauses.append)
    single = [{k: v[:1].numpy() for k, v in batches(1)[0].items() if k != "labels"}]
    ms = budget.measure_models({"s": tiny()}, {1: single}, "openvino-int8", 1, extra={"teacher": None},
                               blocks=3, pause_s=10.0)  # fmt: skip
    assert ms == {"s": {"batch1": 1.1}, "teacher": {"batch1": 3.3}}  # medians, not the slow block's 1.6 / 4.6
    assert pauses == [10.0, 10.0] and compiled == ["x"]  # compiled once, timed three times, pauses between
    with pytest.raises(ValueError, match="blocks must be"):
        budget.measure_models({"s": tiny()}, {1: single}, "openvino-int8", 1, blocks=0)


def test_the_table_recipe_follows_the_teachers_unless_given() -> None:
    from squeezebert.budget import table_recipe

    assert table_recipe("auto", "static")[0] == "static"  # the teacher passed static: like with like
    assert table_recipe("auto", "dynamic")[0] == "dynamic"
    assert table_recipe("auto", None)[0] == "dynamic"  # the teacher deployed bf16: the fallback
    assert table_recipe("auto", None, "bf16")[0] == "dynamic"
    assert table_recipe("auto", None, "fp32")[0] == "fp32"  # fp32 ran faster than its int8 (no VNNI)
    assert table_recipe("dynamic", None, "fp32") == ("dynamic", "as given")
    assert table_recipe("dynamic", "static") == ("dynamic", "as given")
    assert table_recipe("static", "dynamic") == ("static", "as given")
    with pytest.raises(ValueError, match="budget recipe must be one of"):
        table_recipe("fast", "static")
