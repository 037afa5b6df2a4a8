"""Checkpoint directories: round trips, HF conversion both ways, the real MiniLM weights, bad files."""

from __future__ import annotations

import json
import logging
import pickle
import sys
import types

import pytest
import torch
from safetensors.torch import save_file
from torch.testing import assert_close

from squeezebert.checkpoint import CheckpointError, from_pretrained, load, save_checkpoint, save_hf
from squeezebert.cli import main as cli_main
from squeezebert.config import preset
from squeezebert.model import SqueezeBert

transformers = pytest.importorskip("transformers")

TOL = dict(rtol=0, atol=1e-5)
TINY = dict(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
SQUEEZE_GROUPS = dict(
    q_groups=4, k_groups=4, v_groups=4, post_attention_groups=1, intermediate_groups=4, output_groups=4
)


def batch(vocab: int = 120) -> dict[str, torch.Tensor]:
    ids = torch.randint(1, vocab, (3, 11))
    mask = torch.ones_like(ids)
    mask[2, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def outputs(model: torch.nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        out = model(**b)
    return out.logits if hasattr(out, "logits") else getattr(out, "last_hidden_state", out)


# --------------------------------------------------------------------------- round trips
def test_ours_save_load_round_trip_is_exact(tmp_path) -> None:
    cfg = preset("tiny", id2label={0: "neg", 1: "pos"}, embedding_size=16, ranks={"query": 4, "1.output": 8})
    model = SqueezeBert(cfg).eval()
    save_checkpoint(model, tmp_path / "ckpt")
    again = from_pretrained(tmp_path / "ckpt")
    assert again.config == cfg
    b = batch()
    assert torch.equal(outputs(model, b), outputs(again, b))
    names = ["config.json", "model.safetensors", "modeling_squeezebert_toolkit.py"]  # the last for transformers
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == names


@pytest.mark.parametrize("hf_cls_name", ["SqueezeBertForSequenceClassification", "BertForSequenceClassification"])
def test_hf_to_ours_to_hf_gives_identical_outputs(hf_cls_name: str, tmp_path) -> None:
    if "SqueezeBert" in hf_cls_name:
        cfg = transformers.SqueezeBertConfig(**TINY, embedding_size=64, num_labels=3, **SQUEEZE_GROUPS)
    else:
        cfg = transformers.BertConfig(**TINY, num_labels=3)
    cfg.id2label = {0: "contradiction", 1: "entailment", 2: "neutral"}
    cfg.label2id = {v: k for k, v in cfg.id2label.items()}
    hf = getattr(transformers, hf_cls_name)(cfg).eval()
    hf.save_pretrained(tmp_path / "hf")
    assert cli_main(["convert", str(tmp_path / "hf"), str(tmp_path / "ours"), "--to", "squeezebert"]) == 0
    ours = load(tmp_path / "ours")
    assert ours.format == "squeezebert"
    assert ours.model.config.labels == ["contradiction", "entailment", "neutral"]
    assert cli_main(["convert", str(tmp_path / "ours"), str(tmp_path / "back"), "--to", "hf"]) == 0
    back = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "back").eval()
    assert type(back).__name__ == hf_cls_name
    assert back.config.id2label == cfg.id2label
    b = batch()
    assert_close(outputs(back, b), outputs(hf, b), **TOL)
    assert_close(outputs(ours.model, b), outputs(hf, b), **TOL)


def test_low_rank_model_exports_to_hf_with_same_outputs(tmp_path) -> None:
    cfg = preset("tiny", num_labels=2, embedding_size=32, ranks={"intermediate": 6})
    model = SqueezeBert(cfg).eval()
    save_hf(model, tmp_path / "hf")
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == "SqueezeBertForSequenceClassification"
    b = batch(1000)
    assert_close(outputs(hf, b), outputs(model, b), **TOL)


def test_headless_model_exports_to_hf_automodel(tmp_path) -> None:
    model = SqueezeBert(preset("tiny", q_groups=1, k_groups=1, v_groups=1, intermediate_groups=1, output_groups=1))
    save_hf(model.eval(), tmp_path / "hf")
    hf = transformers.AutoModel.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == "BertModel"
    b = batch(1000)
    assert_close(outputs(hf, b), outputs(model, b), **TOL)


def test_hf_squeezebert_fp16_weights_and_legacy_buffer_load(tmp_path, caplog) -> None:
    cfg = transformers.SqueezeBertConfig(**TINY, embedding_size=64, **SQUEEZE_GROUPS)
    hf = transformers.SqueezeBertModel(cfg).eval()
    sd = {f"transformer.{k}": v.half() for k, v in hf.state_dict().items()}
    sd["transformer.embeddings.position_ids"] = torch.arange(512)[None]
    sd["cls.predictions.bias"] = torch.zeros(120)  # MLM head of the pretraining checkpoint
    save_file(sd, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    model = load(tmp_path).model
    assert model.config.num_labels == 0
    assert model.embeddings.word_embeddings.weight.dtype == torch.float32
    hf32 = hf.half().float()
    b = batch()
    assert_close(outputs(model, b), outputs(hf32, b), rtol=1e-4, atol=1e-4)
    with caplog.at_level(logging.WARNING):
        with_head = load(tmp_path, num_labels=3).model
    assert with_head.config.num_labels == 3
    assert "classifier.bias, classifier.weight freshly initialized" in caplog.text


def test_pytorch_bin_weights_load_through_weights_only(tmp_path) -> None:
    cfg = transformers.BertConfig(**TINY)
    hf = transformers.BertModel(cfg).eval()
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    b = batch()
    assert_close(outputs(load(tmp_path).model, b), outputs(hf, b), **TOL)


# --------------------------------------------------------------------------- real weights
def test_minilm_real_weights_match_transformers(minilm_path) -> None:
    ours = load("minilm-l6")
    hf = transformers.BertModel.from_pretrained(minilm_path).eval()
    texts = ["The quick brown fox.", "A much longer sentence about nothing in particular, with commas."]
    pairs = ["Is it quick?", "Nothing at all."]
    for b in (ours.tokenizer(texts), ours.tokenizer(texts, pairs)):
        tb = {k: torch.from_numpy(v) for k, v in b.items()}
        with torch.no_grad():
            expected = hf(**tb).last_hidden_state
            got = ours.model(**tb)
        # Real tokens only: outputs at padding positions are arbitrary (transformers' own eager
        # and SDPA paths differ there by ~5e-5 on these weights).
        real = tb["attention_mask"].bool()
        assert_close(got[real], expected[real], **TOL)


# --------------------------------------------------------------------------- Hub ids
def test_hub_id_downloads_through_huggingface_hub(tmp_path, monkeypatch) -> None:
    pytest.importorskip("huggingface_hub")
    import huggingface_hub

    hf = transformers.BertForSequenceClassification(transformers.BertConfig(**TINY, num_labels=2)).eval()
    hf.save_pretrained(tmp_path / "snapshot")
    calls = []

    def fake_snapshot_download(repo_id: str, revision=None, allow_patterns=None) -> str:
        calls.append((repo_id, allow_patterns))
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    model = load("some-org/some-bert").model
    assert calls and calls[0][0] == "some-org/some-bert"
    assert "*.safetensors" in calls[0][1]
    b = batch()
    assert_close(outputs(model, b), outputs(hf, b), **TOL)


def test_hub_id_failure_is_one_clear_error(monkeypatch) -> None:
    pytest.importorskip("huggingface_hub")
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(CheckpointError, match="could not download 'org/model'.*network unreachable"):
        load("org/model")


def test_hub_id_without_huggingface_hub_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    with pytest.raises(CheckpointError, match=r"squeezebert\[hub\]"):
        load("org/model")


# --------------------------------------------------------------------------- bad input
@pytest.fixture
def good_checkpoint(tmp_path):
    path = tmp_path / "good"
    save_checkpoint(SqueezeBert(preset("tiny", num_labels=2)), path)
    return path


def test_missing_directory_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        load(tmp_path / "nope")


def test_missing_weights_file(good_checkpoint) -> None:
    (good_checkpoint / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load(good_checkpoint)


def test_invalid_config_json(good_checkpoint) -> None:
    (good_checkpoint / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: cannot read"):
        load(good_checkpoint)


def test_truncated_safetensors_is_reported(good_checkpoint) -> None:
    f = good_checkpoint / "model.safetensors"
    f.write_bytes(f.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load(good_checkpoint)


def test_wrong_shapes_are_named(good_checkpoint) -> None:
    cfg = json.loads((good_checkpoint / "config.json").read_text())
    cfg["intermediate_size"] = 512
    (good_checkpoint / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"mis-shaped: .*encoder\.layers\.0\.intermediate\.conv1d\.weight"):
        load(good_checkpoint)


def test_unknown_and_missing_keys_are_named_and_can_be_allowed(good_checkpoint) -> None:
    from safetensors.torch import load_file

    sd = load_file(str(good_checkpoint / "model.safetensors"))
    sd["encoder.layers.0.surprise"] = torch.zeros(3)
    del sd["encoder.layers.1.output.layernorm.bias"]
    save_file(sd, str(good_checkpoint / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"1 missing: encoder\.layers\.1\.output\.layernorm\.bias.*1 unexpected"):
        load(good_checkpoint)
    assert load(good_checkpoint, strict=False).model.config.num_labels == 2


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_with_code_is_refused(tmp_path, capsys) -> None:
    cfg = transformers.BertConfig(**TINY)
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    with open(tmp_path / "pytorch_model.bin", "wb") as f:
        pickle.dump({"x": _Evil()}, f, protocol=2)
    with pytest.raises(CheckpointError, match="refused to load: not a plain tensor file"):
        load(tmp_path)
    assert "pwned" not in capsys.readouterr().out


def test_unsupported_hf_model_type(tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    save_file({"x": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="unsupported Hugging Face model_type 'gpt2'"):
        load(tmp_path)


def test_save_leaves_no_temporary_files_and_overwrites_atomically(good_checkpoint) -> None:
    model = load(good_checkpoint).model
    save_checkpoint(model, good_checkpoint, extra_json={"metrics.json": {"accuracy": 0.5}})
    names = sorted(p.name for p in good_checkpoint.iterdir())
    assert names == ["config.json", "metrics.json", "model.safetensors", "modeling_squeezebert_toolkit.py"]


# --------------------------------------------------------------------------- CLI
def test_cli_info_prints_size_and_flops(good_checkpoint, capsys) -> None:
    assert cli_main(["info", str(good_checkpoint)]) == 0
    out = capsys.readouterr().out
    n = SqueezeBert(preset("tiny", num_labels=2)).num_parameters()
    assert f"{n:,}" in out
    assert "FLOPs at seq 128" in out and "4/4/4/1/4/4" in out


def test_cli_bad_checkpoint_exits_2_with_one_line(tmp_path, capsys) -> None:
    assert cli_main(["info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such checkpoint directory" in err[0]


def test_preset_loads_with_random_weights() -> None:
    ckpt = load("tiny", num_labels=3)
    assert ckpt.format == "preset" and ckpt.model.config.num_labels == 3


def test_module_is_importable_without_side_effects() -> None:
    # The CLI must not read sys.argv at import time.
    mod = types.ModuleType("probe")
    exec("import squeezebert.cli", mod.__dict__)


def test_saved_files_get_the_usual_permissions(good_checkpoint) -> None:
    import os

    umask = os.umask(0)
    os.umask(umask)
    for f in good_checkpoint.iterdir():
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f.name


# --------------------------------------------------------------------------- issue 16: bad input and faults
def _mismatched_checkpoint(tmp_path) -> tuple:
    """A classifier with an 8-row embedding table saved with a 12-token tokenizer."""
    from squeezebert.tokenizer import Tokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "the", "a", "it", "was"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = Tokenizer.from_vocab(tmp_path / "vocab.txt")
    model = SqueezeBert(preset("tiny", vocab_size=8, id2label={0: "neg", 1: "pos"}))
    save_checkpoint(model, tmp_path / "ckpt", tokenizer)
    return tmp_path / "ckpt", model


def test_a_tokenizer_with_ids_beyond_the_vocabulary_is_refused_at_load_time(tmp_path, capsys) -> None:
    path, _ = _mismatched_checkpoint(tmp_path)
    message = r"tokenizer has 12 token ids \(0\.\.11\) but the model's vocab_size is 8"
    with pytest.raises(CheckpointError, match=message):
        load(path)
    assert cli_main(["predict", str(path), "--input", str(tmp_path / "vocab.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "vocab_size is 8" in err


def test_an_onnx_export_whose_tokenizer_exceeds_the_vocabulary_is_refused_at_load_time(tmp_path) -> None:
    from squeezebert.infer import Classifier

    path, model = _mismatched_checkpoint(tmp_path)
    (path / "model.safetensors").unlink()
    (path / "model.onnx").write_bytes(b"not read: the check comes first")
    with pytest.raises(ValueError, match=r"12 token ids .* vocab_size is 8"):
        Classifier.from_pretrained(path, backend="onnx")


def test_a_missing_relative_path_that_looks_like_a_hub_id_names_both_readings(tmp_path, monkeypatch) -> None:
    import squeezebert.checkpoint as checkpoint

    monkeypatch.chdir(tmp_path)
    tried: list[str] = []

    def offline(repo_id: str, revision=None):
        tried.append(repo_id)
        raise CheckpointError(f"could not download {repo_id!r} from the Hugging Face Hub (offline)")

    monkeypatch.setattr(checkpoint, "download_from_hub", offline)
    with pytest.raises(CheckpointError) as e:
        load("runs/bse")
    message = str(e.value)
    assert f"runs/bse: no such local directory ({tmp_path / 'runs' / 'bse'})" in message
    assert "as a Hugging Face Hub id: could not download 'runs/bse'" in message
    # Not org/name: never sent to the Hub, and the error says what was expected.
    for src in ("runs/bse/best", "./runs/bse", "runs/bse/"):
        with pytest.raises(CheckpointError, match="no such checkpoint directory"):
            load(src)
    assert tried == ["runs/bse"]
