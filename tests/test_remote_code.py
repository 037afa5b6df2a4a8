"""transformers loads our checkpoint directories as they are (trust_remote_code), at their own size."""

from __future__ import annotations

import ast
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from squeezebert.checkpoint import load, save_checkpoint, save_hf
from squeezebert.cli import main as cli_main
from squeezebert.config import ModelConfig, preset
from squeezebert.model import RemovedBlock, SqueezeBert
from squeezebert.remote_code import MODELING_FILE, modeling_source
from squeezebert.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")

TOL = dict(rtol=0, atol=1e-5)
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "good", "bad", "movie", "plot", "was", "a", "it"]
VOCAB += [f"w{i}" for i in range(120 - len(VOCAB))]
LABELS = {0: "neg", 1: "pos", 2: "mixed"}

#: The students transformers must load through the modeling file (tiny, random weights).
STUDENTS = {
    "low-rank": dict(ranks={"query": 4, "intermediate": 8, "1.output": 6}),
    "grouped": dict(),  # the tiny preset is grouped as SqueezeBERT is: 4/4/4/1/4/4
    "fewer-layers": dict(num_hidden_layers=1, q_groups=1, k_groups=1, v_groups=1, intermediate_groups=2),
    "factorized-embeddings": dict(embedding_size=16, ranks={"value": 8}),
    # structurally pruned: its own head count and FFN width per layer (no stock HF class holds it)
    "pruned": dict(
        q_groups=1, k_groups=1, v_groups=1, intermediate_groups=1, output_groups=1,
        layer_heads=[1, 3], layer_intermediate_sizes=[40, 96],
    ),
    # whole blocks removed: layer 0 has no attention, layer 1 no FFN (each a constant)
    "blocks-removed": dict(
        q_groups=1, k_groups=1, v_groups=1, intermediate_groups=1, output_groups=1,
        layer_heads=[0, 3], layer_intermediate_sizes=[40, 0],
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return Tokenizer.from_vocab(vocab)


def student(**overrides: object) -> SqueezeBert:
    config = preset("tiny", vocab_size=len(VOCAB), max_position_embeddings=64, id2label=LABELS, **overrides)
    model = SqueezeBert(config).eval()
    with torch.no_grad():  # a removed block's constant starts at zero: make it one a loader could lose
        for module in model.modules():
            if isinstance(module, RemovedBlock):
                module.bias.normal_()
    return model


def batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(5, len(VOCAB), (3, 11))
    mask = torch.ones_like(ids)
    mask[2, 6:] = 0
    types = torch.zeros_like(ids)
    types[:, 7:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


@pytest.mark.parametrize("kind", sorted(STUDENTS))
def test_transformers_loads_each_student_at_its_own_size_with_our_logits(
    kind: str, tokenizer: Tokenizer, tmp_path: Path
) -> None:
    ours = student(**STUDENTS[kind])
    path = save_checkpoint(ours, tmp_path / kind, tokenizer)
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "squeezebert-toolkit"
    assert config["architectures"] == ["SqueezeBertToolkitForSequenceClassification"]
    assert config["auto_map"]["AutoModelForSequenceClassification"].startswith("modeling_squeezebert_toolkit.")

    auto_config = transformers.AutoConfig.from_pretrained(str(path), trust_remote_code=True)
    assert auto_config.model_type == "squeezebert-toolkit" and auto_config.id2label == LABELS
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(str(path), trust_remote_code=True).eval()
    assert hf.num_parameters() == ours.num_parameters()  # nothing multiplied out
    b = batch()
    with torch.no_grad():
        assert_close(hf(**b).logits, ours(**b), **TOL)
    # and our own loader still reads the directory exactly
    assert load(path).model.config == ours.config


def test_transformers_automodel_loads_a_headless_encoder(tmp_path: Path) -> None:
    ours = SqueezeBert(preset("tiny", vocab_size=len(VOCAB), ranks={"key": 4})).eval()
    path = save_checkpoint(ours, tmp_path / "encoder")
    assert json.loads((path / "config.json").read_text())["architectures"] == ["SqueezeBertToolkitModel"]
    hf = transformers.AutoModel.from_pretrained(str(path), trust_remote_code=True).eval()
    b = batch()
    with torch.no_grad():
        got = hf(**b, output_hidden_states=True)
        want = ours(**b)
    assert_close(got.last_hidden_state, want, **TOL)
    assert len(got.hidden_states) == ours.config.num_hidden_layers + 1 and got.pooler_output.shape == (3, 64)


def test_pipeline_classifies_with_a_low_rank_student(tokenizer: Tokenizer, tmp_path: Path) -> None:
    ours = student(**STUDENTS["low-rank"])
    path = save_checkpoint(ours, tmp_path / "student", tokenizer)
    pipe = transformers.pipeline("text-classification", model=str(path), trust_remote_code=True, top_k=None)
    got = pipe(["the good movie", "a bad plot"])
    enc = tokenizer(["the good movie", "a bad plot"])
    with torch.no_grad():
        probs = ours(**{k: torch.from_numpy(v) for k, v in enc.items()}).softmax(-1)
    for row, p in zip(got, probs):
        scores = {r["label"]: r["score"] for r in row}
        assert scores == pytest.approx({LABELS[i]: float(p[i]) for i in range(3)}, abs=1e-5)


def test_modeling_file_runs_where_squeezebert_cannot_be_imported(tokenizer: Tokenizer, tmp_path: Path) -> None:
    ours = student(**STUDENTS["factorized-embeddings"])
    path = save_checkpoint(ours, tmp_path / "student", tokenizer)
    b = batch()
    with torch.no_grad():
        want = ours(**b)
    torch.save(b, tmp_path / "batch.pt")
    script = f"""
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "squeezebert":
            raise ImportError("squeezebert is blocked in this test")
sys.meta_path.insert(0, _Block())
import torch, transformers
model = transformers.AutoModelForSequenceClassification.from_pretrained({str(path)!r}, trust_remote_code=True)
b = torch.load({str(tmp_path / "batch.pt")!r})
with torch.no_grad():
    torch.save(model.eval()(**b).logits, {str(tmp_path / "logits.pt")!r})
assert not any(m.split(".")[0] == "squeezebert" for m in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_close(torch.load(tmp_path / "logits.pt"), want, **TOL)


def test_generated_file_is_our_sources_without_imports_of_the_package() -> None:
    text = modeling_source()
    tree = ast.parse(text)
    modules = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in modules if m and m.split(".")[0] == "squeezebert"]
    defined = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {"ModelConfig", "SqueezeBert", "GroupedLinear", "LowRankLinear"} <= defined  # from the package's code
    assert {"SqueezeBertToolkitConfig", "SqueezeBertToolkitForSequenceClassification"} <= defined
    assert "def save_pretrained" not in text  # the one method that calls back into squeezebert


def test_old_config_json_without_auto_map_still_loads(tmp_path: Path) -> None:
    ours = student()
    path = save_checkpoint(ours, tmp_path / "ckpt")
    config = json.loads((path / "config.json").read_text())
    for key in ("architectures", "auto_map"):
        config.pop(key)
    (path / "config.json").write_text(json.dumps(config))
    (path / MODELING_FILE).unlink()
    assert ModelConfig.load(path / "config.json") == ours.config
    assert load(path).model.config == ours.config


def test_convert_to_hf_warns_with_the_dense_size_and_the_remote_code_path(
    tokenizer: Tokenizer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ours = student(embedding_size=16, ranks={"intermediate": 4})
    src = save_checkpoint(ours, tmp_path / "student", tokenizer)
    with caplog.at_level(logging.WARNING):
        assert cli_main(["convert", str(src), str(tmp_path / "hf"), "--to", "hf"]) == 0
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "hf"))
    dense = hf.num_parameters()
    assert dense > ours.num_parameters()
    message = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert f"{ours.num_parameters():,} parameters become {dense:,}" in message
    assert "trust_remote_code=True" in message
    # a plain grouped model still converts to a stock class, with no warning and no remote code
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        save_hf(student(), tmp_path / "plain", tokenizer)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "auto_map" not in json.loads((tmp_path / "plain" / "config.json").read_text())
    transformers.AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "plain"))
