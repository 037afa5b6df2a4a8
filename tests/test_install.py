"""A deployment install without PyTorch: ``pip install 'squeezebert[onnx]'`` into a fresh virtual
environment predicts and serves an ONNX export, and a command that needs torch names the extra."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from squeezebert.checkpoint import save_checkpoint
from squeezebert.config import preset
from squeezebert.infer import Classifier
from squeezebert.model import SqueezeBert
from squeezebert.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[1]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"good bad the a movie plot was very".split()]
# pip's words for an index it could not reach: then the test cannot run here, which is not a failure.
NO_INDEX = ("NewConnectionError", "Network is unreachable", "Temporary failure in name resolution", "ConnectTimeout")

# Prepended to a `python -c` script: importing torch fails as it does where torch is not installed.
NO_TORCH_INSTALLED = """
import importlib.abc, sys

class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoTorch())
from squeezebert.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_command_that_needs_torch_names_the_extra_to_install(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH_INSTALLED, "info", "tiny"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("squeezebert info: error: this needs PyTorch")
    assert "pip install 'squeezebert[train]'" in lines[0] and "export directory" in lines[0]


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    from squeezebert.export import export

    root = tmp_path_factory.mktemp("deploy")
    (root / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    model = SqueezeBert(preset("tiny", vocab_size=len(VOCAB), max_position_embeddings=64, id2label={0: "n", 1: "p"}))
    ckpt = save_checkpoint(model.eval(), root / "ckpt", Tokenizer.from_vocab(root / "vocab.txt"))
    export(ckpt, root / "onnx", precision="int8")
    return root / "onnx"


@pytest.fixture(scope="module")
def torch_free_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with ``pip install '.[onnx]'`` of this source tree (copied, so
    the build leaves nothing in the repository); its bin directory."""
    root = tmp_path_factory.mktemp("venv")
    tree = root / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tree / name)
    shutil.copytree(REPO / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=300)
    python = root / "venv" / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-input", f"{tree}[onnx]"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if install.returncode != 0 and any(word in install.stderr for word in NO_INDEX):
        pytest.skip("no package index reachable to build the torch-free environment")
    assert install.returncode == 0, install.stderr[-3000:]
    return python.parent


@pytest.mark.slow
def test_onnx_extra_predicts_and_serves_an_export_without_torch(
    torch_free_venv: Path, onnx_export: Path, tmp_path: Path
) -> None:
    httpx = pytest.importorskip("httpx")
    bin_dir = torch_free_venv
    probe = subprocess.run([str(bin_dir / "python"), "-c", "import torch"], capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr  # truly torch-free

    texts = ["the good movie", "a bad plot was very bad"]
    want = Classifier.from_pretrained(onnx_export).predict(texts)

    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = subprocess.run(
        [str(bin_dir / "squeezebert"), "predict", str(onnx_export), "--input", str(tmp_path / "in.txt")]
        + ["--output", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["label"] for r in rows] == [p.label for p in want]
    assert [r["score"] for r in rows] == pytest.approx([p.score for p in want], abs=1e-6)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(bin_dir / "squeezebert"), "serve", str(onnx_export), "--port", str(port), "--num-threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            assert time.monotonic() < deadline, "the torch-free server never became ready"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        response = httpx.post(f"http://127.0.0.1:{port}/v1/classify", json={"texts": texts}, timeout=30)
        assert response.status_code == 200, response.text
        assert [p["label"] for p in response.json()["predictions"]] == [p.label for p in want]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    # a command that needs torch says which extra brings it
    info = subprocess.run([str(bin_dir / "squeezebert"), "info", "tiny"], capture_output=True, text=True, timeout=120)
    assert info.returncode == 2 and "pip install 'squeezebert[train]'" in info.stderr
