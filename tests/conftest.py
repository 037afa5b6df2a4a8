"""Shared fixtures: tiny random models built in the tests, and the embedded MiniLM files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# Prepended to a `python -c` script, this makes any import of torch fail: the deployment paths
# that promise to work without PyTorch (ONNX backend, predict) are run behind it.
BLOCK_TORCH = """
import importlib.abc, sys

class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
        return None

sys.meta_path.insert(0, _NoTorch())
"""


@pytest.fixture(scope="session")
def block_torch() -> str:
    """Source that blocks importing torch (see ``BLOCK_TORCH``)."""
    return BLOCK_TORCH


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_pause_between_report_blocks(monkeypatch) -> None:
    # squeeze's report times the deployed exports in spaced blocks; the spacing is for the machine's
    # drift, which a test's tiny models and fake timers do not measure
    from squeezebert import shape_choice, squeeze

    monkeypatch.setattr(squeeze, "REPORT_BLOCK_PAUSE_S", 0.0)
    monkeypatch.setattr(shape_choice, "RETIME_PAUSE_S", 0.0)  # the shape choice's re-timing, likewise


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    # The models in tests are tiny, and the 2-core machines that run them are shared: two torch
    # threads then wait on each other behind other processes (a tiny training run took 36 s
    # instead of 0.4 s). One thread keeps the suite fast and steady.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    from squeezebert.checkpoint import CheckpointError, minilm_dir

    try:
        return minilm_dir()
    except CheckpointError as e:
        pytest.skip(str(e))
