"""Distillation loss terms against hand-written references, and the loss function end to end."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from squeezebert.config import preset
from squeezebert.data import EncodedDataset
from squeezebert.distill import (
    AUTO_HIDDEN_WEIGHT,
    BF16_MAX_ERROR,
    BF16_MIN_SPEEDUP,
    PRUNED_HIDDEN_WEIGHT,
    DistillationLoss,
    DistillConfig,
    FadingLoss,
    attention_kl,
    check_compatible,
    choose_teacher_precision,
    default_layer_map,
    hidden_mse,
    logit_kd_loss,
)
from squeezebert.model import SqueezeBert
from squeezebert.train import predict


def test_logit_kd_is_zero_when_student_equals_teacher() -> None:
    logits = torch.randn(5, 3)
    assert logit_kd_loss(logits, logits.clone(), 2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_logit_kd_matches_hand_written_kl() -> None:
    s, t, temp = torch.randn(4, 3), torch.randn(4, 3), 2.0
    expected = 0.0
    for i in range(4):
        ps = [math.exp(v / temp) for v in s[i].tolist()]
        pt = [math.exp(v / temp) for v in t[i].tolist()]
        ps = [v / sum(ps) for v in ps]
        pt = [v / sum(pt) for v in pt]
        expected += sum(b * math.log(b / a) for a, b in zip(ps, pt))
    expected = expected / 4 * temp * temp
    assert logit_kd_loss(s, t, temp).item() == pytest.approx(expected, rel=1e-5)


def test_logit_kd_for_regression_is_mse() -> None:
    s, t = torch.tensor([[1.0], [2.0]]), torch.tensor([[0.0], [4.0]])
    assert logit_kd_loss(s, t, 2.0, regression=True).item() == pytest.approx((1 + 4) / 2)


def test_hidden_mse_counts_only_real_tokens() -> None:
    s, t = torch.zeros(1, 3, 2), torch.zeros(1, 3, 2)
    t[0, 0] = 1.0
    t[0, 2] = 100.0  # a padding position: ignored
    mask = torch.tensor([[1, 1, 0]])
    assert hidden_mse(s, t, mask).item() == pytest.approx(2 / 4)
    assert hidden_mse(t, t, mask).item() == 0.0


def test_attention_kl_matches_reference_and_is_zero_for_equal_maps() -> None:
    a = torch.softmax(torch.randn(2, 3, 4, 4), -1)
    b = torch.softmax(torch.randn(2, 3, 4, 4), -1)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert attention_kl(a, a, mask).item() == pytest.approx(0.0, abs=1e-6)
    rows = []
    for i in range(2):
        for h in range(3):
            for q in range(4):
                if mask[i, q]:
                    rows.append(sum(b[i, h, q, k] * math.log(b[i, h, q, k] / a[i, h, q, k]) for k in range(4)))
    assert attention_kl(a, b, mask).item() == pytest.approx(float(sum(rows) / len(rows)), rel=1e-4)


def test_attention_kl_matches_each_student_head_to_its_own_teacher_head() -> None:
    teacher = torch.softmax(torch.randn(2, 4, 5, 5), -1)
    mask = torch.ones(2, 5, dtype=torch.long)
    student = teacher[:, [3, 1]]  # a pruned student that kept heads 3 and 1
    assert attention_kl(student, teacher, mask, heads=[3, 1]).item() == pytest.approx(0.0, abs=1e-6)
    assert attention_kl(student, teacher, mask, heads=[1, 3]).item() > 0.01  # the wrong pairing
    assert attention_kl(student, teacher, mask).item() > 0  # averaged heads: not the same distributions
    with pytest.raises(ValueError, match="does not fit"):
        attention_kl(student, teacher, mask, heads=[1])
    with pytest.raises(ValueError, match="does not fit"):
        attention_kl(student, teacher, mask, heads=[1, 4])


def test_default_layer_map_spreads_student_layers_over_the_teacher() -> None:
    assert default_layer_map(3, 6) == [(0, 0), (1, 2), (2, 4), (3, 6)]
    assert default_layer_map(6, 6)[-1] == (6, 6)


def models(**student_changes):
    torch.manual_seed(0)
    teacher = SqueezeBert(preset("tiny", num_labels=2, num_hidden_layers=2)).eval()
    student = SqueezeBert(preset("tiny", num_labels=2, num_hidden_layers=2, **student_changes))
    return teacher, student


def batch():
    ids = torch.randint(1, 1000, (4, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 1, 0])}


def test_all_distillation_terms_are_zero_for_a_copy_of_the_teacher() -> None:
    teacher, _ = models()
    student = SqueezeBert(teacher.config)
    student.load_state_dict(teacher.state_dict())
    student.eval()
    loss_fn = DistillationLoss(teacher, student, DistillConfig(alpha=1.0, hidden_weight=1.0, attention_weight=1.0))
    out = loss_fn(student, batch())
    for term in ("kd", "hidden", "attention"):
        assert out[term].item() == pytest.approx(0.0, abs=1e-6), term
    assert out["loss"].item() == pytest.approx(0.0, abs=1e-6)


def test_loss_backpropagates_into_student_and_projection_not_teacher() -> None:
    teacher, student = models(hidden_size=32, num_attention_heads=2, intermediate_size=64)
    loss_fn = DistillationLoss(teacher, student, DistillConfig(alpha=0.5, hidden_weight=1.0, attention_weight=1.0))
    assert loss_fn.projection is not None  # widths differ: 32 -> 64
    out = loss_fn(student.train(), batch())
    out["loss"].backward()
    assert student.encoder.layers[0].attention.query.weight.grad is not None
    assert loss_fn.projection.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())
    assert {"kd", "task", "hidden", "attention"} <= set(out)


def test_cached_teacher_logits_give_the_same_loss_as_running_the_teacher() -> None:
    teacher, student = models()
    student.eval()
    b = batch()
    loss_fn = DistillationLoss(teacher, student, DistillConfig(hidden_weight=0.0))
    online = loss_fn(student, b)["loss"]
    # the cache as the squeeze workflow makes it: predict() over the unpadded examples
    lengths = b["attention_mask"].sum(-1).tolist()
    ids = [row[:n].tolist() for row, n in zip(b["input_ids"], lengths)]
    data = EncodedDataset(ids, [[0] * n for n in lengths], b["labels"].tolist(), lengths)
    cached = torch.from_numpy(predict(teacher, data, batch_size=2))
    with_cache = DistillationLoss(None, student, DistillConfig(hidden_weight=0.0))(
        student, {**b, "teacher_logits": cached}
    )["loss"]
    assert_close(with_cache, online, rtol=1e-5, atol=1e-6)


def test_mismatched_teacher_and_student_fail_early_saying_what_differs() -> None:
    teacher, _ = models()
    other = SqueezeBert(preset("tiny", num_labels=3, vocab_size=1000))
    with pytest.raises(ValueError, match=r"vocabulary size: teacher 30522, student 1000.*number of labels"):
        check_compatible(teacher, other)
    relabeled = SqueezeBert(preset("tiny", id2label={0: "neg", 1: "pos"}))
    with pytest.raises(ValueError, match="label maps"):
        check_compatible(teacher, relabeled)


def test_invalid_distill_config() -> None:
    with pytest.raises(ValueError, match="alpha"):
        DistillConfig(alpha=1.5)
    with pytest.raises(ValueError, match="temperature"):
        DistillConfig(temperature=0)
    with pytest.raises(ValueError, match="teacher_precision must be one of"):
        DistillConfig(teacher_precision="fp16")


def test_hidden_weight_auto_follows_the_augmentation() -> None:
    auto = DistillConfig()
    assert auto.hidden_weight == "auto"
    assert auto.resolve(copies=3).hidden_weight == AUTO_HIDDEN_WEIGHT == 1.0
    assert auto.resolve(copies=0).hidden_weight == 0.0
    assert DistillConfig(hidden_weight=0.5).resolve(copies=3).hidden_weight == 0.5  # a number stays as given
    # a pruned student distils logits only, augmented or not, unless a weight is given
    assert auto.resolve(copies=3, pruned=True).hidden_weight == PRUNED_HIDDEN_WEIGHT == 0.0
    assert DistillConfig(hidden_weight=0.5).resolve(copies=3, pruned=True).hidden_weight == 0.5
    assert not auto.resolve(copies=0).needs_teacher_activations and auto.resolve(copies=1).needs_teacher_activations
    with pytest.raises(ValueError, match="resolve"):
        auto.needs_teacher_activations  # noqa: B018 - the property raises
    for bad in (-1.0, "more", True):
        with pytest.raises(ValueError, match="hidden_weight"):
            DistillConfig(hidden_weight=bad)


def test_a_bf16_teacher_runs_its_forward_in_bf16_and_gives_nearly_the_fp32_loss() -> None:
    teacher, student = models(hidden_size=32, num_attention_heads=2, intermediate_size=64)
    seen: list[torch.dtype] = []
    teacher.encoder.layers[0].attention.query.register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    b = batch()
    losses = {}
    for precision in ("fp32", "bf16", "auto"):  # auto, unresolved: fp32
        config = DistillConfig(alpha=0.5, hidden_weight=1.0, attention_weight=1.0, teacher_precision=precision)
        torch.manual_seed(1)  # the same hidden-state projection (student 32 wide, teacher 64) each time
        out = DistillationLoss(teacher, student.eval(), config)(student, b)
        losses[precision] = out["loss"].item()
    assert seen == [torch.float32, torch.bfloat16, torch.float32]
    assert losses["auto"] == losses["fp32"]
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.02)
    # the student's own forward is untouched by the teacher's precision
    assert student.encoder.layers[0].attention.query.weight.dtype == torch.float32


def _fake_timings(monkeypatch: pytest.MonkeyPatch, fp32_ms: float, bf16_ms: float, native: bool = True) -> None:
    from squeezebert import quantize, timing

    monkeypatch.setattr(quantize, "native_bf16", lambda: native)
    monkeypatch.setattr(
        timing,
        "time_interleaved",
        lambda candidates, **kw: {
            name: timing.Timing.of([ms]) for name, ms in (("fp32", fp32_ms), ("bf16", bf16_ms)) if name in candidates
        },
    )


def test_the_teacher_precision_is_bf16_only_where_it_measures_faster_and_close(monkeypatch) -> None:
    teacher, _ = models()
    batches = [batch(), batch()]
    _fake_timings(monkeypatch, fp32_ms=100.0, bf16_ms=60.0)
    chosen, measured = choose_teacher_precision(teacher, batches)
    assert chosen == measured["chosen"] == "bf16"
    assert measured["speedup"] == pytest.approx(100 / 60, abs=0.01) and measured["batches"] == 2
    assert 0 < measured["max_relative_error"] < BF16_MAX_ERROR  # bf16 hidden states: close, not equal

    _fake_timings(monkeypatch, fp32_ms=100.0, bf16_ms=100.0 / BF16_MIN_SPEEDUP * 1.01)  # inside the noise
    assert choose_teacher_precision(teacher, batches)[0] == "fp32"
    _fake_timings(monkeypatch, fp32_ms=100.0, bf16_ms=60.0)
    monkeypatch.setattr("squeezebert.distill.BF16_MAX_ERROR", 0.0)  # faster, but its targets too far off
    assert choose_teacher_precision(teacher, batches)[0] == "fp32"
    _fake_timings(monkeypatch, fp32_ms=100.0, bf16_ms=10.0, native=False)
    chosen, measured = choose_teacher_precision(teacher, batches)
    assert chosen == "fp32" and "no native bf16" in measured["reason"]


def test_faded_layers_become_the_identity_so_removing_them_changes_nothing() -> None:
    from squeezebert.prune import prune

    torch.manual_seed(0)
    dense = dict(q_groups=1, k_groups=1, v_groups=1, post_attention_groups=1, intermediate_groups=1, output_groups=1)
    student = SqueezeBert(preset("tiny", num_labels=2, num_hidden_layers=3, **dense))  # (pruning takes dense layers)
    b = batch()
    b["teacher_logits"] = torch.randn(4, 2)
    student.eval()
    untouched = student(b["input_ids"], b["attention_mask"]).clone()
    inner = DistillationLoss(None, student, DistillConfig(hidden_weight=0.0))
    fading = FadingLoss(inner, student, [1], examples=8)
    # nothing trained yet: the layer is whole, and evaluating does not advance the fade
    assert fading.scale() == 1.0
    assert torch.equal(student(b["input_ids"], b["attention_mask"]), untouched)
    fading(student, b)
    assert fading.scale() == 1.0
    student.train()
    out = fading(student, b)  # 4 of 8 examples: half faded
    assert fading.scale() == 0.5 and out.keys() == inner(student, b).keys()
    out["loss"].backward()
    assert student.encoder.layers[1].attention.query.weight.grad is not None  # half there: still trained
    fading(student, b)
    fading(student, b)  # past the fade: it stays gone
    assert fading.scale() == 0.0
    student.eval()
    faded = student(b["input_ids"], b["attention_mask"])
    carved, _ = prune(student, [0, 2])
    assert torch.equal(carved.eval()(b["input_ids"], b["attention_mask"]), faded)
    assert not torch.equal(faded, untouched)
    # how far the fade has gone is state a resumed run restores
    state = fading.state_dict()
    assert state["seen"].item() == 12  # three training batches of 4; the evaluation counted none
    again = FadingLoss(DistillationLoss(None, student, DistillConfig(hidden_weight=0.0)), student, [1], examples=8)
    again.load_state_dict(state)
    assert again.scale() == 0.0
    fading.remove()
    again.remove()
    assert not torch.equal(student(b["input_ids"], b["attention_mask"]), faded)  # the hooks are off
    for layers, examples in (([], 8), ([3], 8), ([1], 0)):
        with pytest.raises(ValueError, match="fade"):
            FadingLoss(inner, student, layers, examples)
