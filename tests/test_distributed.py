"""Data-parallel training under torchrun (squeezebert.distributed and fit's DDP path).

The multi-process tests launch `python -m torch.distributed.run --standalone --nproc-per-node 2`
on a tiny SqueezeBERT (hidden 32, 2 layers, 24-word vocabulary) written by the tests, one torch
thread per process, and compare final weights with a single-process run of the same command.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from squeezebert import cli, distributed
from squeezebert.checkpoint import save_checkpoint
from squeezebert.config import preset
from squeezebert.model import SqueezeBert
from squeezebert.tokenizer import Tokenizer

WORDS = "the a movie film plot was is very quite and but it story music long short scene ending cast".split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", *WORDS]
ENV = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}


# --------------------------------------------------------------------------- pieces
def test_shards_of_a_step_are_disjoint_cover_it_and_differ_in_size_by_at_most_one() -> None:
    for n in (1, 2, 5, 9, 10):
        batch = list(range(100, 100 + n))
        for size in (1, 2, 3, 4):
            shards = [distributed.shard(batch, r, size) for r in range(size)]
            assert sorted(i for s in shards for i in s) == batch
            assert max(map(len, shards)) - min(map(len, shards)) <= 1
    with pytest.raises(ValueError, match="rank must be in"):
        distributed.shard([1, 2], 2, 2)


def test_one_process_needs_no_process_group_and_a_missing_launcher_is_explained(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    assert distributed.init_from_env() is False
    assert distributed.world() == distributed.World(0, 1, 0)
    assert distributed.on_main(lambda: 7) == 7  # just a call without a group
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ValueError, match="MASTER_ADDR, MASTER_PORT not set: launch with 'torchrun"):
        distributed.init_from_env()
    assert distributed.world().rank == 1 and not distributed.world().is_main


def test_dropout_streams_differ_between_ranks_and_repeat_for_the_same_rank() -> None:
    seeds = {distributed.rank_seed(42, r) for r in range(8)}
    assert len(seeds) == 8 and all(0 <= s < 2**63 for s in seeds)
    assert distributed.rank_seed(42, 3, 100) == distributed.rank_seed(42, 3, 100) != distributed.rank_seed(42, 3)


def test_cli_dist_timeout_reaches_the_train_config() -> None:
    args = cli.build_parser().parse_args(["finetune", "--model", "tiny", "--out", "x", "--dist-timeout", "45"])
    assert cli._train_config(args).dist_timeout == 45.0
    with pytest.raises(ValueError, match="dist_timeout must be > 0"):
        cli._train_config(
            cli.build_parser().parse_args(["finetune", "--model", "t", "--out", "x", "--dist-timeout", "0"])
        )


# --------------------------------------------------------------------------- torchrun
def _sentences(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.choices(WORDS, k=rng.randint(3, 10))
        words.insert(rng.randint(0, len(words)), "good" if i % 2 else "bad")
        rows.append((" ".join(words), "pos" if i % 2 else "neg"))
    return rows


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(("text", "label"))
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny headless checkpoints without and with dropout, and the data.

    With 2 processes and a step batch of 3 x 3 = 9, each step splits 5/4 (uneven shards) into
    micro-batches of 2/2/1 and 2/1/1 (DDP's no_sync path), and 9k + 1 examples leave a last step
    of one example, so rank 1 has an empty shard there (the weight-0 stand-in batch)."""
    root = tmp_path_factory.mktemp("ddp")
    (root / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    tokenizer = Tokenizer.from_vocab(root / "vocab.txt")
    base = dict(vocab_size=len(VOCAB), hidden_size=32, num_attention_heads=2, intermediate_size=64)
    for name, p in (("nodrop", 0.0), ("dropout", 0.1)):
        torch.manual_seed(0)
        config = preset(
            "tiny", max_position_embeddings=64, hidden_dropout_prob=p, attention_probs_dropout_prob=p, **base
        )
        save_checkpoint(SqueezeBert(config), root / name, tokenizer)
    return {
        "nodrop": root / "nodrop",
        "dropout": root / "dropout",
        "short": _write_csv(root / "short.csv", _sentences(9 * 12 + 1, seed=1)),  # 13 steps an epoch
        "dev": _write_csv(root / "dev.csv", _sentences(24, seed=3)),
    }


def _finetune(model: Path, train: Path, dev: Path, out: Path, epochs: int) -> list[str]:
    return [
        "-m", "squeezebert", "finetune", "--model", str(model), "--train", str(train), "--dev", str(dev),
        "--out", str(out), "--epochs", str(epochs), "--batch-size", "3", "--grad-accum", "3", "--lr", "3e-3",
        "--max-length", "32", "--seed", "7", "--eval-every", "10", "--save-every", "4", "--log-every", "1",
        "--num-threads", "1", "--dist-timeout", "20", "--keep-resume-state",  # last/ is compared
    ]  # fmt: skip


def _torchrun(nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)]


def _run(cmd: list[str], timeout: float = 240) -> None:
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]


def _assert_same_weights(a_file: Path, b_file: Path, rtol: float, atol: float) -> None:
    a, b = load_file(a_file), load_file(b_file)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=rtol, atol=atol, msg=f"{a_file.parent.name}: {key}")


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_train_the_weights_of_one_process_with_the_same_global_batch(
    files: dict[str, Path], tmp_path: Path
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    args = _finetune(files["nodrop"], files["short"], files["dev"], one, epochs=3)
    _run([sys.executable, *args])
    _run([*_torchrun(2), *_finetune(files["nodrop"], files["short"], files["dev"], two, epochs=3)])

    # Gradients are summed in another order across two processes; Adam turns that into differences
    # of ~lr * 1e-5 over these 39 steps (measured: 2e-8 at most).
    for name in ("model.safetensors", "last/model.safetensors"):
        _assert_same_weights(one / name, two / name, rtol=1e-4, atol=1e-5)
    moved = load_file(one / "last/model.safetensors")["embeddings.word_embeddings.weight"]
    start = load_file(files["nodrop"] / "model.safetensors")["embeddings.word_embeddings.weight"]
    assert (moved - start).abs().max() > 1e-2  # 39 real steps happened
    # The log is rank 0's alone, and its losses are those of the whole step batch.
    log_one, log_two = _log(one), _log(two)
    assert [r["step"] for r in log_one] == [r["step"] for r in log_two]
    for a, b in zip(log_one, log_two):
        if "loss" in a:
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    args_two = json.loads((two / "train_args.json").read_text())
    assert (args_two["world_size"], args_two["dist_timeout"]) == (2, 20.0)
    metrics_one, metrics_two = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert metrics_two["best_step"] == metrics_one["best_step"]
    assert metrics_two["train"]["train_tokens"] == metrics_one["train"]["train_tokens"]  # every token counted once


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(x) for x in (task / "children").read_text().split()]
    return kids


def _rank_of(pid: int) -> int | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    return next((int(e[5:]) for e in environ if e.startswith(b"RANK=")), None)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the rank-1 process through /proc")
def test_a_killed_rank_fails_the_run_fast_and_a_resumed_run_ends_with_the_uninterrupted_weights(
    files: dict[str, Path], tmp_path: Path
) -> None:
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    cmd = [*_torchrun(2), *_finetune(files["dropout"], files["short"], files["dev"], killed, epochs=3)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (killed / "last" / "state.json").is_file():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no resume state written in 120 s"
            time.sleep(0.01)
        victim = next(p for p in _children(proc.pid) if _rank_of(p) == 1)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        _, err = proc.communicate(timeout=60)  # the survivor must not hang (timeout 20 s, torchrun stops it)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ended_after = time.monotonic() - killed_at
    print(f"the run ended {ended_after:.1f} s after rank 1 was killed")  # shown with -s
    assert ended_after < 60
    assert proc.returncode != 0, "the run finished before rank 1 was killed; make it longer"
    assert "SIGKILL" in err, err[-3000:]  # torchrun names the rank that died and how
    state = json.loads((killed / "last" / "state.json").read_text())
    assert 0 < state["global_step"] < 39  # 3 epochs x 13 steps

    _run([*_torchrun(2), *_finetune(files["dropout"], files["short"], files["dev"], killed, epochs=3), "--resume"])
    _run([*_torchrun(2), *_finetune(files["dropout"], files["short"], files["dev"], straight, epochs=3)])

    # Same batches, same dropout draws on each rank (every rank's RNG is in the resume state):
    # identical up to float noise (in practice bit-exact).
    for name in ("model.safetensors", "last/model.safetensors"):
        _assert_same_weights(killed / name, straight / name, rtol=1e-6, atol=1e-7)
    steps = [r["step"] for r in _log(killed) if "loss" in r]
    assert steps == list(range(1, 40))  # no step logged twice, none missing
    assert json.loads((killed / "metrics.json").read_text())["train"]["resumed_from_step"] == state["global_step"]


def _rank_output(log_dir: Path, rank: int, stream: str) -> str:
    """What rank ``rank`` wrote to ``stream`` (stdout, stderr), from torchrun's ``--log-dir``."""
    (found,) = log_dir.glob(f"*/attempt_0/{rank}/{stream}.log")
    return found.read_text(encoding="utf-8")


@pytest.mark.slow
def test_squeeze_under_torchrun_writes_the_report_from_rank_0_alone(files: dict[str, Path], tmp_path: Path) -> None:
    teacher = tmp_path / "teacher"
    torch.manual_seed(0)
    config = preset(
        "tiny", vocab_size=1100, hidden_size=32, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, id2label={0: "neg", 1: "pos"},  # the latency bench's random ids need both
        q_groups=1, k_groups=1, v_groups=1, post_attention_groups=1, intermediate_groups=1, output_groups=1,
    )  # fmt: skip
    save_checkpoint(SqueezeBert(config), teacher, Tokenizer.from_vocab(files["nodrop"].parent / "vocab.txt"))
    out, logs = tmp_path / "student", tmp_path / "logs"
    cmd = [
        *_torchrun(2), "--log-dir", str(logs), "--redirects", "3",
        "-m", "squeezebert", "squeeze", "--teacher", str(teacher), "--train", str(files["short"]),
        "--dev", str(files["dev"]), "--out", str(out), "--epochs", "1", "--batch-size", "8", "--max-length", "32",
        "--calibration-samples", "32", "--bench-repeats", "1", "--num-threads", "1", "--dist-timeout", "60",
        "--no-bf16",  # the rows must not depend on whether this CPU has native bf16
        "--int8",  # nor on whether torch's int8 runs on oneDNN (VNNI) here
        "--no-openvino",  # nor on whether OpenVINO is installed
        "--augment", "0",  # the step count below is of the training set itself
    ]  # fmt: skip
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = _rank_output(logs, 0, "stderr"), _rank_output(logs, 1, "stderr")
    assert "report: scoring the student" in rank0
    assert "report: scoring the student" not in rank1 and "Traceback" not in rank1
    assert (out / "report.md").is_file()
    report = json.loads((out / "report.json").read_text())
    assert [r["model"] for r in report["rows"]] == ["teacher fp32", "student fp32", "teacher int8", "student int8"]
    assert report["train"]["global_step"] == 14  # 109 examples in global batches of 8: trained, not skipped
    assert json.loads((out / "train_args.json").read_text())["world_size"] == 2
    # The report is printed once, by rank 0.
    assert "| teacher fp32" in _rank_output(logs, 0, "stdout") and _rank_output(logs, 1, "stdout") == ""
