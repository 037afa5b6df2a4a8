"""Shared fixtures: tiny random models built in the tests, and the embedded MiniLM files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    from squeezebert.checkpoint import CheckpointError, minilm_dir

    try:
        return minilm_dir()
    except CheckpointError as e:
        pytest.skip(str(e))
