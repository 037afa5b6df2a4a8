"""The model against transformers' SqueezeBERT and BERT on random weights, and its building blocks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from squeezebert.checkpoint import load
from squeezebert.config import ModelConfig, preset
from squeezebert.model import GroupedLinear, LowRankLinear, SqueezeBert, encoder_flops

transformers = pytest.importorskip("transformers")

TOL = dict(rtol=0, atol=1e-5)
TINY = dict(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
SQUEEZE_GROUPS = dict(
    q_groups=4, k_groups=4, v_groups=4, post_attention_groups=1, intermediate_groups=4, output_groups=4
)


def inputs(batch: int, seq: int, vocab: int, pairs: bool = True) -> dict[str, torch.Tensor]:
    """Random ids with varied padding (row i keeps seq - i*2 tokens) and a second segment."""
    ids = torch.randint(1, vocab, (batch, seq))
    mask = torch.ones(batch, seq, dtype=torch.long)
    for i in range(batch):
        mask[i, max(2, seq - 2 * i) :] = 0
    ids = ids.masked_fill(mask == 0, 0)
    types = torch.zeros_like(ids)
    if pairs:
        types[:, seq // 2 :] = 1
        types = types * mask
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def hf_and_ours(hf_cls: type, hf_config: object, tmp_path) -> tuple[torch.nn.Module, SqueezeBert]:
    hf = hf_cls(hf_config).eval()
    hf.save_pretrained(tmp_path)
    return hf, load(tmp_path).model


def hf_output(hf: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    out = hf(**batch)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@pytest.mark.parametrize("batch,seq", [(1, 7), (4, 7), (1, 128), (4, 128)])
@pytest.mark.parametrize(
    "hf_cls_name,kind",
    [
        ("SqueezeBertForSequenceClassification", "squeezebert"),
        ("SqueezeBertModel", "squeezebert"),
        ("BertForSequenceClassification", "bert"),
        ("BertModel", "bert"),
    ],
)
def test_tiny_parity_with_transformers(hf_cls_name: str, kind: str, batch: int, seq: int, tmp_path) -> None:
    if kind == "squeezebert":
        cfg = transformers.SqueezeBertConfig(**TINY, embedding_size=64, num_labels=3, **SQUEEZE_GROUPS)
    else:
        cfg = transformers.BertConfig(**TINY, num_labels=3)
    hf, ours = hf_and_ours(getattr(transformers, hf_cls_name), cfg, tmp_path)
    batch_inputs = inputs(batch, seq, TINY["vocab_size"])
    with torch.no_grad():
        expected = hf_output(hf, batch_inputs)
        got = ours(**batch_inputs)
    assert got.shape == expected.shape
    assert_close(got, expected, **TOL)


def test_regression_head_parity(tmp_path) -> None:
    cfg = transformers.BertConfig(**TINY, num_labels=1)
    hf, ours = hf_and_ours(transformers.BertForSequenceClassification, cfg, tmp_path)
    assert ours.config.problem_type == "regression"
    batch = inputs(4, 16, TINY["vocab_size"])
    with torch.no_grad():
        assert_close(ours(**batch), hf(**batch).logits, **TOL)


@pytest.mark.parametrize("hf_cls_name", ["SqueezeBertForSequenceClassification", "SqueezeBertModel"])
def test_full_size_squeezebert_parity(hf_cls_name: str, tmp_path) -> None:
    ours_cfg = preset("squeezebert-uncased")
    hf_cfg = transformers.SqueezeBertConfig(
        vocab_size=ours_cfg.vocab_size, embedding_size=768, num_labels=2, **SQUEEZE_GROUPS
    )
    hf, ours = hf_and_ours(getattr(transformers, hf_cls_name), hf_cfg, tmp_path)
    assert ours.config.groups("query") == 4 and ours.config.hidden_size == 768
    for batch, seq in [(1, 128), (4, 7)]:
        batch_inputs = inputs(batch, seq, ours_cfg.vocab_size)
        with torch.no_grad():
            assert_close(ours(**batch_inputs), hf_output(hf, batch_inputs), **TOL)


def test_hidden_states_and_attentions_match_transformers(tmp_path) -> None:
    cfg = transformers.BertConfig(**TINY)
    hf, ours = hf_and_ours(transformers.BertModel, cfg, tmp_path)
    batch = inputs(3, 12, TINY["vocab_size"])
    with torch.no_grad():
        expected = hf(**batch, output_hidden_states=True, output_attentions=True)
        got = ours.encode(**batch, output_hidden_states=True, output_attentions=True)
    assert len(got.hidden_states) == len(expected.hidden_states) == 3
    for a, b in zip(got.hidden_states, expected.hidden_states):
        assert_close(a, b, **TOL)
    mask = batch["attention_mask"].bool()[:, None, :, None]  # compare rows of real query tokens
    for a, b in zip(got.attentions, expected.attentions):
        assert_close(a * mask, b * mask, **TOL)


def test_padding_does_not_change_logits() -> None:
    model = SqueezeBert(preset("tiny", num_labels=2)).eval()
    ids = torch.randint(1, 1000, (1, 9))
    padded = torch.cat([ids, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 9), torch.zeros(1, 5)], dim=1).long()
    with torch.no_grad():
        assert_close(model(padded, mask), model(ids), **TOL)


def test_explicit_attention_path_equals_sdpa_path() -> None:
    model = SqueezeBert(preset("tiny")).eval()
    batch = inputs(3, 10, 1000)
    with torch.no_grad():
        fast = model.encode(**batch).last_hidden_state
        explicit = model.encode(**batch, output_attentions=True).last_hidden_state
    assert_close(fast, explicit, **TOL)


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_grouped_linear_equals_grouped_conv1d(groups: int) -> None:
    layer = GroupedLinear(32, 48, groups)
    torch.nn.init.normal_(layer.weight)
    torch.nn.init.normal_(layer.bias)
    conv = torch.nn.Conv1d(32, 48, 1, groups=groups)
    with torch.no_grad():
        conv.weight.copy_(layer.weight.unsqueeze(-1))
        conv.bias.copy_(layer.bias)
    x = torch.randn(3, 5, 32)  # (B, T, C)
    expected = conv(x.transpose(1, 2)).transpose(1, 2)
    assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)  # training path (autograd)
    with torch.no_grad():
        assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)  # inference path (out=)
    assert_close(F.linear(x, layer.dense_weight(), layer.bias), expected, rtol=1e-5, atol=1e-5)


def test_grouped_linear_gradients_match_conv1d() -> None:
    layer = GroupedLinear(16, 8, 4)
    torch.nn.init.normal_(layer.weight)
    conv = torch.nn.Conv1d(16, 8, 1, groups=4)
    with torch.no_grad():
        conv.weight.copy_(layer.weight.unsqueeze(-1))
        conv.bias.copy_(layer.bias)
    x = torch.randn(2, 3, 16)
    layer(x).square().sum().backward()
    conv(x.transpose(1, 2)).square().sum().backward()
    assert_close(layer.weight.grad, conv.weight.grad.squeeze(-1), rtol=1e-5, atol=1e-5)
    assert_close(layer.bias.grad, conv.bias.grad, rtol=1e-5, atol=1e-5)


def test_low_rank_forward_equals_its_dense_weight() -> None:
    layer = LowRankLinear(32, 64, groups=4, rank=3)
    for p in layer.parameters():
        torch.nn.init.normal_(p)
    x = torch.randn(2, 5, 32)
    assert_close(layer(x), F.linear(x, layer.dense_weight(), layer.bias), rtol=1e-4, atol=1e-4)
    assert torch.linalg.matrix_rank(layer.dense_weight()) == 4 * 3


def test_low_rank_and_factorized_embedding_configs_build_and_run() -> None:
    cfg = preset("tiny", num_labels=2, embedding_size=16, ranks={"query": 4, "1.intermediate": 8})
    model = SqueezeBert(cfg).eval()
    assert isinstance(model.encoder.layers[0].attention.query, LowRankLinear)
    assert isinstance(model.encoder.layers[0].intermediate.conv1d, GroupedLinear)
    assert isinstance(model.encoder.layers[1].intermediate.conv1d, LowRankLinear)
    assert model.embeddings.word_embeddings.weight.shape == (30522, 16)
    assert model(torch.randint(0, 100, (2, 6))).shape == (2, 2)


def test_flops_count_matches_hand_count() -> None:
    cfg = ModelConfig(**TINY, **SQUEEZE_GROUPS)
    t, h, i = 10, 64, 128
    per_layer = 2 * t * (3 * h * h // 4 + h * h + h * i // 4 + i * h // 4) + 4 * t * t * h
    assert encoder_flops(cfg, t) == 2 * per_layer + 2 * h * h
    # BERT-base at seq 128: ~22.3 GFLOPs by the usual count of matmul FLOPs.
    assert abs(encoder_flops(preset("bert-base"), 128) / 1e9 - 22.3) < 0.2


@pytest.mark.parametrize(
    "changes,message",
    [
        (dict(num_attention_heads=5), "num_attention_heads=5 must divide hidden_size=64"),
        (dict(q_groups=3), "q_groups=3 must divide"),
        (dict(intermediate_groups=0), "intermediate_groups must be a positive integer"),
        (dict(ranks={"query": 99}), "larger than the full rank"),
        (dict(ranks={"attention": 4}), "projection must be one of"),
        (dict(ranks={"7.query": 4}), "layer must be an index below"),
        (dict(embedding_size=128), "must not exceed hidden_size"),
        (dict(hidden_act="swish"), "hidden_act"),
        (dict(num_labels=2, id2label={0: "a"}), "id2label has 1 entries"),
    ],
)
def test_invalid_config_says_what_to_change(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**TINY, **changes})


def test_config_json_round_trip(tmp_path) -> None:
    cfg = preset("tiny", id2label={0: "neg", 1: "pos"}, ranks={"0.query": 2})
    cfg.save(tmp_path / "config.json")
    again = ModelConfig.load(tmp_path / "config.json")
    assert again == cfg
    assert again.label2id == {"neg": 0, "pos": 1}
