"""RuntimeOptions (validated once, frozen), the thread-count context manager and the trained
max length a checkpoint records."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from squeezebert.runtime import BACKENDS, PRECISIONS, RuntimeOptions, recorded_max_length, threads


def test_runtime_options_defaults_normalize_and_leave_the_rest_to_the_model() -> None:
    options = RuntimeOptions()
    assert (options.backend, options.precision, options.max_length, options.num_threads) == (None,) * 4
    assert options.normalize is True and options.busy_wait is None
    assert options.spins(True) is True and options.spins(False) is False
    assert RuntimeOptions(busy_wait=True).spins(False) is True


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "tensorrt"}, "backend must be one of"),
        ({"backend": "onnxruntime"}, "backend must be one of"),
        ({"precision": "fp16"}, "precision must be one of"),
        ({"max_length": 1}, "max_length must be at least 2"),
        ({"max_length": 12.5}, "max_length must be an integer"),
        ({"num_threads": 0}, "num_threads must be >= 1"),
        ({"num_threads": True}, "num_threads must be an integer"),
        ({"normalize": "yes"}, "normalize must be True or False"),
        ({"busy_wait": 1}, "busy_wait must be True, False or None"),
        ({"static_shapes": -1}, "static_shapes must be a whole number"),
        ({"static_shapes": True}, "static_shapes must be a whole number"),
    ],
)
def test_runtime_options_refuse_bad_values_when_made(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RuntimeOptions(**kwargs)


def test_runtime_options_are_frozen_and_replace_revalidates() -> None:
    options = RuntimeOptions(backend="onnx", precision="int8")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.backend = "torch"  # type: ignore[misc]
    with pytest.raises(ValueError, match="num_threads"):
        dataclasses.replace(options, num_threads=-1)
    assert set(BACKENDS) == {"torch", "onnx", "openvino"} and set(PRECISIONS) == {"fp32", "bf16", "int8"}


def test_threads_sets_the_count_for_the_block_and_restores_it() -> None:
    before = torch.get_num_threads()
    inside = 1 if before != 1 else 2
    with threads(inside):
        assert torch.get_num_threads() == inside
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="boom"), threads(inside):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with threads(None):
        assert torch.get_num_threads() == before


def test_recorded_max_length_reads_train_args(tmp_path: Path) -> None:
    assert recorded_max_length(tmp_path) is None and recorded_max_length(None) is None
    (tmp_path / "train_args.json").write_text(json.dumps({"max_length": 64}), encoding="utf-8")
    assert recorded_max_length(tmp_path) == 64
    (tmp_path / "train_args.json").write_text("[1]", encoding="utf-8")
    with pytest.raises(ValueError, match="train_args.json: expected a JSON object"):
        recorded_max_length(tmp_path)
    (tmp_path / "train_args.json").write_text(json.dumps({"max_length": "long"}), encoding="utf-8")
    with pytest.raises(ValueError, match="max_length must be an integer"):
        recorded_max_length(tmp_path)


def test_runtime_imports_no_torch() -> None:
    script = "import sys; import squeezebert.runtime, squeezebert.infer; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
