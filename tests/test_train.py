"""The training loop, fine-tuning, evaluation and the finetune/evaluate/glue commands.

Everything runs on a very small SqueezeBERT (hidden 32, 2 layers) with a 32-word vocabulary,
written by the tests, on synthetic data where the label is the presence of a word.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from squeezebert import cli
from squeezebert.checkpoint import load, save_checkpoint
from squeezebert.config import ModelConfig, preset
from squeezebert.data import EncodedDataset, Example, TaskSource, encode
from squeezebert.files import write_dir_atomically
from squeezebert.finetune import finetune
from squeezebert.model import SqueezeBert
from squeezebert.tokenizer import Tokenizer
from squeezebert.train import (
    LAST_DIR,
    TrainConfig,
    classification_loss,
    evaluate,
    fit,
    predict,
    resume_dir,
)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
NEUTRAL = (
    "the a movie film plot was is very quite and but it actors story music long short scene ending cast "
    "script really i we saw"
).split()
VOCAB = SPECIALS + ["good", "bad"] + NEUTRAL
LABELS = {0: "neg", 1: "pos"}


def tiny_config(**overrides: object) -> ModelConfig:
    """A SqueezeBERT small enough for a few hundred steps in seconds (grouped projections kept)."""
    base = dict(
        vocab_size=len(VOCAB), hidden_size=32, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64
    )
    return preset("tiny", **{**base, **overrides})


def sentences(n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` (text, label) pairs: each text holds 'good' (pos) or 'bad' (neg) among neutral words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.choices(NEUTRAL, k=rng.randint(3, 10))
        label = i % 2
        words.insert(rng.randint(0, len(words)), "good" if label else "bad")
        rows.append((" ".join(words), LABELS[label]))
    return rows


def write_csv(path: Path, rows: list[tuple[object, ...]], header: tuple[str, ...] = ("text", "label")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return Tokenizer.from_vocab(vocab)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: Tokenizer) -> Path:
    """A headless pretrained-style checkpoint directory with its tokenizer: the --model of the CLI tests."""
    path = tmp_path_factory.mktemp("tiny-ckpt")
    torch.manual_seed(0)
    save_checkpoint(SqueezeBert(tiny_config()), path, tokenizer)
    return path


def encoded(tokenizer: Tokenizer, n: int, seed: int) -> EncodedDataset:
    examples = [Example(text, None, label, i + 2) for i, (text, label) in enumerate(sentences(n, seed))]
    return encode(tokenizer, examples, 32, {"neg": 0, "pos": 1})


def log_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- the loop
def test_tiny_model_learns_word_presence_and_loss_decreases(tokenizer: Tokenizer, tmp_path: Path) -> None:
    train, dev = encoded(tokenizer, 256, seed=1), encoded(tokenizer, 64, seed=2)
    model = SqueezeBert(tiny_config(num_labels=2, id2label=LABELS))
    config = TrainConfig(epochs=8, batch_size=16, lr=3e-3, log_every=8, seed=0)
    summary = fit(
        model,
        classification_loss,
        train,
        config,
        tmp_path,
        evaluate_fn=lambda m: evaluate(m, dev, "classification"),
        tokenizer=tokenizer,
    )
    losses = [r["loss"] for r in log_records(tmp_path) if "loss" in r]
    assert losses[-1] < 0.5 * losses[0], losses
    assert summary["best_metric"] >= 0.95, summary
    assert summary["global_step"] == 8 * 16
    assert summary["tokens_per_s"] > 0 and summary["train_tokens"] == 8 * sum(train.lengths)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "metrics.json", "train_args.json"):
        assert (tmp_path / name).is_file(), name


def test_grad_accumulation_of_two_halves_equals_one_full_batch(tokenizer: Tokenizer, tmp_path: Path) -> None:
    train = encoded(tokenizer, 48, seed=3)
    model = SqueezeBert(
        tiny_config(num_labels=2, id2label=LABELS, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    )
    twin, start = copy.deepcopy(model), copy.deepcopy(model.state_dict())
    common = dict(epochs=1, lr=1e-3, warmup_ratio=0.0, seed=5)
    fit(model, classification_loss, train, TrainConfig(batch_size=4, grad_accum_steps=2, **common), tmp_path / "a")
    fit(twin, classification_loss, train, TrainConfig(batch_size=8, grad_accum_steps=1, **common), tmp_path / "b")
    moved = max((model.state_dict()[k] - v).abs().max().item() for k, v in start.items())
    assert moved > 1e-4  # six steps really happened
    # Float-sum order differs between the two; Adam turns that into ~lr * 1e-5 differences.
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, twin.state_dict()[key], rtol=1e-4, atol=1e-6, msg=key)


def test_keep_best_saves_the_best_eval_and_it_reloads_with_the_same_predictions(
    tokenizer: Tokenizer, tmp_path: Path
) -> None:
    train, dev = encoded(tokenizer, 48, seed=4), encoded(tokenizer, 16, seed=5)
    model = SqueezeBert(tiny_config(num_labels=2, id2label=LABELS))
    scores, seen = iter([0.5, 0.9, 0.7]), []

    def scripted_eval(m: SqueezeBert) -> dict[str, float]:
        seen.append(predict(m, dev))
        return {"accuracy": next(scores), "other": 1.0}

    config = TrainConfig(epochs=1, batch_size=8, lr=1e-3, eval_every=2)  # 6 steps: evals at 2, 4, 6
    summary = fit(model, classification_loss, train, config, tmp_path, evaluate_fn=scripted_eval, tokenizer=tokenizer)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert (metrics["step"], metrics["eval"]["accuracy"], metrics["main_metric"]) == (4, 0.9, "accuracy")
    assert (summary["best_step"], summary["best_metric"]) == (4, 0.9)
    assert not np.allclose(seen[1], seen[2])  # training went on after the best eval
    reloaded = load(tmp_path).model
    assert reloaded.config.id2label == LABELS
    np.testing.assert_allclose(predict(reloaded, dev), seen[1], rtol=0, atol=1e-6)
    np.testing.assert_allclose(predict(model, dev), seen[1], rtol=0, atol=1e-6)  # fit returns the best weights
    evals = [r for r in log_records(tmp_path) if "eval_accuracy" in r]
    assert [(r["step"], r["best"]) for r in evals] == [(2, True), (4, True), (6, False)]


def test_fit_refuses_to_overwrite_a_previous_run(tokenizer: Tokenizer, tmp_path: Path) -> None:
    train = encoded(tokenizer, 16, seed=6)
    config = TrainConfig(epochs=1, batch_size=8)
    fit(SqueezeBert(tiny_config(num_labels=2, id2label=LABELS)), classification_loss, train, config, tmp_path)
    with pytest.raises(ValueError, match="holds a previous run .*pass --resume"):
        fit(SqueezeBert(tiny_config(num_labels=2, id2label=LABELS)), classification_loss, train, config, tmp_path)


def test_directory_write_is_atomic_and_falls_back_to_last_old(tmp_path: Path) -> None:
    def fill(step: int):
        return lambda d: (d / "state.json").write_text(json.dumps({"step": step}))

    write_dir_atomically(tmp_path / LAST_DIR, fill(1))
    write_dir_atomically(tmp_path / LAST_DIR, fill(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == [LAST_DIR]
    assert json.loads((tmp_path / LAST_DIR / "state.json").read_text()) == {"step": 2}
    os.replace(tmp_path / LAST_DIR, tmp_path / "last.old")  # a crash between the two renames
    assert resume_dir(tmp_path) == tmp_path / "last.old"


def test_glue_metrics_score_by_label_name_whatever_the_head_order(tokenizer: Tokenizer) -> None:
    # MRPC's F1 takes class "1" as positive: a head ordered ("1", "0") must be scored by name.
    examples = [Example(t, t, str(int(label == "pos")), i + 2) for i, (t, label) in enumerate(sentences(40, 12))]
    model = SqueezeBert(tiny_config(num_labels=2, id2label={0: "0", 1: "1"})).eval()
    reordered = copy.deepcopy(model)
    reordered.config = model.config.replace(id2label={0: "1", 1: "0"})
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([0.0, 0.3]))  # predictions not all one class
        reordered.classifier.weight.copy_(model.classifier.weight.flip(0))
        reordered.classifier.bias.copy_(model.classifier.bias.flip(0))
    scores = [evaluate(m, encode(tokenizer, examples, 32, m.config.label2id), "mrpc") for m in (model, reordered)]
    assert scores[0] == pytest.approx(scores[1])
    assert 0 < scores[0]["f1"] < 1


# --------------------------------------------------------------------------- resume after a kill
def _finetune_cmd(model: Path, train: Path, dev: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "squeezebert", "finetune", "--model", str(model), "--train", str(train),
        "--dev", str(dev), "--out", str(out), "--epochs", "3", "--batch-size", "4", "--lr", "1e-3",
        "--max-length", "32", "--seed", "7", "--eval-every", "20", "--save-every", "5", "--num-threads", "1",
        "--keep-resume-state",  # the final last/ is compared below
    ]  # fmt: skip


def test_run_killed_then_resumed_ends_with_the_weights_of_an_uninterrupted_run(tiny_dir: Path, tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", sentences(400, seed=8))
    dev = write_csv(tmp_path / "dev.csv", sentences(32, seed=9))
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    env = {**os.environ, "PYTHONHASHSEED": "0"}

    proc = subprocess.Popen(_finetune_cmd(tiny_dir, train, dev, killed), env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (killed / LAST_DIR / "state.json").is_file():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "no resume state written in 120 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed; make it longer"
    state = json.loads((resume_dir(killed) / "state.json").read_text())
    assert 0 < state["global_step"] < 300  # 3 epochs x 100 steps

    subprocess.run([*_finetune_cmd(tiny_dir, train, dev, killed), "--resume"], env=env, check=True, capture_output=True)
    subprocess.run(_finetune_cmd(tiny_dir, train, dev, straight), env=env, check=True, capture_output=True)

    # Same batches, same RNG draws (dropout included): identical up to float noise (in practice bit-exact).
    for name in (f"{LAST_DIR}/model.safetensors", "model.safetensors"):
        a, b = load_file(killed / name), load_file(straight / name)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7, msg=f"{name}: {key}")
    m_killed = json.loads((killed / "metrics.json").read_text())
    m_straight = json.loads((straight / "metrics.json").read_text())
    assert m_killed["eval"] == m_straight["eval"] and m_killed["best_step"] == m_straight["best_step"]
    assert m_killed["train"]["resumed_from_step"] == state["global_step"]
    steps = [r["step"] for r in log_records(killed) if "loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 300  # no records repeated by the resumed run


# --------------------------------------------------------------------------- finetune workflows
def test_regression_on_float_labels_trains_and_reports_correlations(tiny_dir: Path, tmp_path: Path) -> None:
    def scored(n: int, seed: int) -> list[tuple[str, float]]:
        rng = random.Random(seed)
        rows = []
        for _ in range(n):
            k = rng.randint(0, 3)
            words = rng.choices(NEUTRAL, k=4) + ["good"] * k
            rng.shuffle(words)
            rows.append((" ".join(words), k + 0.5))
        return rows

    train = write_csv(tmp_path / "train.csv", scored(200, 1), ("sentence", "score"))
    dev = write_csv(tmp_path / "dev.csv", scored(40, 2), ("sentence", "score"))
    config = TrainConfig(epochs=10, batch_size=16, lr=1e-2, seed=0)
    source = TaskSource(train_file=train, dev_file=dev, text_column="sentence", label_column="score")
    record = finetune(str(tiny_dir), tmp_path / "out", source, config=config)
    assert record["kind"] == "regression" and record["main_metric"] == "pearson"
    assert set(record["eval"]) == {"pearson", "spearman", "mse"}
    assert record["eval"]["pearson"] > 0.8, record["eval"]
    model = load(tmp_path / "out").model
    assert (model.config.num_labels, model.config.problem_type) == (1, "regression")
    losses = [r["loss"] for r in log_records(tmp_path / "out") if "loss" in r]
    assert losses[-1] < losses[0]


def test_cli_finetune_and_evaluate_on_custom_csv(tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    train = write_csv(tmp_path / "train.csv", sentences(128, seed=10))
    dev = write_csv(tmp_path / "dev.csv", sentences(32, seed=11))
    out = tmp_path / "run"
    rc = cli.main(
        ["finetune", "--model", str(tiny_dir), "--train", str(train), "--dev", str(dev), "--out", str(out),
         "--epochs", "6", "--batch-size", "8", "--lr", "1e-2", "--max-length", "24", "--seed", "3"]
    )  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "tokens/s" in printed and "accuracy" in printed
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "neg", "1": "pos"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval"]["accuracy"] >= 0.9
    assert json.loads((out / "train_args.json").read_text())["max_length"] == 24

    result_file = tmp_path / "eval.json"
    assert cli.main(["evaluate", str(out), "--dev", str(dev), "--json", str(result_file)]) == 0
    result = json.loads(result_file.read_text())
    assert result["metrics"] == pytest.approx(metrics["eval"])
    assert result["num_examples"] == 32

    # The same model with its head in the other class order scores the same: labels map by name.
    swapped = load(out)
    head = swapped.model.classifier
    with torch.no_grad():
        head.weight.copy_(head.weight.flip(0))
        head.bias.copy_(head.bias.flip(0))
    swapped.model.config.id2label = {0: "pos", 1: "neg"}
    save_checkpoint(swapped.model, tmp_path / "swapped", swapped.tokenizer)
    assert cli.main(["evaluate", str(tmp_path / "swapped"), "--dev", str(dev), "--max-length", "24"]) == 0
    assert f"accuracy               {metrics['eval']['accuracy']:.4f}" in capsys.readouterr().out

    bad = write_csv(tmp_path / "bad.csv", [("good movie", "pos"), ("the plot was meh", "meh")])
    assert cli.main(["evaluate", str(out), "--dev", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3: label 'meh' was never seen by the model" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_glue_on_a_fixture_directory_writes_the_summary(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = tmp_path / "glue"
    (data / "SST-2").mkdir(parents=True)
    (data / "STS-B").mkdir()
    for split, n, seed in (("train", 64, 20), ("dev", 16, 21)):
        rows = sentences(n, seed)
        tsv = "sentence\tlabel\n" + "".join(f"{t}\t{int(label == 'pos')}\n" for t, label in rows)
        (data / "SST-2" / f"{split}.tsv").write_text(tsv, encoding="utf-8")
        pairs = "".join(
            f"{i}\tmain\t{t}\t{u}\t{2.5 + (i % 5) / 2}\n" for i, ((t, _), (u, _)) in enumerate(zip(rows, rows[1:]))
        )
        (data / "STS-B" / f"{split}.tsv").write_text("index\tgenre\tsentence1\tsentence2\tscore\n" + pairs)
    (data / "RTE").mkdir()
    (data / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n")  # dev only: skipped
    out = tmp_path / "out"
    rc = cli.main(
        ["glue", "--model", str(tiny_dir), "--data-dir", str(data), "--out", str(out), "--epochs", "1",
         "--batch-size", "16", "--lr", "1e-3", "--max-length", "24"]
    )  # fmt: skip
    assert rc == 0
    markdown = (out / "glue.md").read_text()
    assert "| SST-2 | acc |" in markdown and "| STS-B | pearson/spearman |" in markdown
    assert "RTE: skipped, no train.tsv" in markdown
    summary = json.loads((out / "glue.json").read_text())
    assert set(summary["task_scores"]) == {"sst2", "stsb"} and summary["average"] is not None
    assert json.loads((out / "sst2" / "config.json").read_text())["id2label"] == {"0": "0", "1": "1"}
    assert "| SST-2 |" in capsys.readouterr().out


# --------------------------------------------------------------------------- issue 16: bad input and faults
@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["pos"], "every label in 'label' is 'pos'; classification needs at least two classes"),
        (["2.5"], "every label in 'label' is 2.5; nothing to learn"),
    ],
)
def test_training_data_with_a_single_label_is_refused_before_training(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, labels: list[str], message: str
) -> None:
    rows = [(text, labels[i % len(labels)]) for i, (text, _) in enumerate(sentences(16, seed=30))]
    train = write_csv(tmp_path / "one.csv", rows)
    out = tmp_path / "run"
    assert cli.main(["finetune", "--model", str(tiny_dir), "--train", str(train), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{train}: " in err and message in err, err
    assert not out.exists()  # refused before anything was written


def test_resume_with_other_data_model_or_settings_is_refused_naming_each(tiny_dir: Path, tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", sentences(24, seed=31))
    out = tmp_path / "run"
    base = [sys.executable, "-m", "squeezebert", "finetune", "--train", str(train), "--out", str(out), "--epochs", "1",
            "--batch-size", "8", "--num-threads", "1", "--keep-resume-state"]  # fmt: skip
    subprocess.run([*base, "--model", str(tiny_dir), "--lr", "1e-3"], check=True, capture_output=True, timeout=120)
    args_before = (out / "train_args.json").read_text()
    other_model = tmp_path / "other-model"
    shutil.copytree(tiny_dir, other_model)
    write_csv(train, sentences(24, seed=32))  # same file name, other content

    proc = subprocess.run(
        [*base, "--model", str(other_model), "--lr", "2e-3", "--max-length", "24", "--resume"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    err = [line for line in proc.stderr.splitlines() if line.startswith("squeezebert finetune: error:")]
    assert len(err) == 1 and "cannot resume" in err[0], proc.stderr
    for named in ("--lr: 0.001 then, 0.002 now", "--max-length: 128 then, 24 now", "--model", "--train (content)"):
        assert named in err[0], err[0]
    assert "--epochs" not in err[0] and "--seed" not in err[0]  # the same: not named
    assert (out / "train_args.json").read_text() == args_before  # the refused run wrote nothing


def test_a_setting_added_to_a_group_after_the_state_was_saved_is_not_checked(caplog: pytest.LogCaptureFixture) -> None:
    from squeezebert.train import TrainingError, _compare_fingerprints

    saved = {"lr": 1e-3, "distill": {"alpha": 0.7, "hidden_weight": 1.0}}
    newer = {"lr": 1e-3, "distill": {"alpha": 0.7, "hidden_weight": 1.0, "teacher_precision": "fp32"}, "extra": 1}
    _compare_fingerprints(Path("run/last"), saved, newer)  # resumes
    assert "does not record extra, distill.teacher_precision; not checked" in caplog.text
    for changed in ({"alpha": 0.5, "hidden_weight": 1.0}, {"alpha": 0.7}):  # a recorded one changed, or gone
        with pytest.raises(TrainingError, match=r"distillation settings: \{'alpha': 0.7, 'hidden_weight': 1.0\} then"):
            _compare_fingerprints(Path("run/last"), saved, {**newer, "distill": changed})


def test_finetune_refuses_a_non_empty_out_unless_overwrite(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    train = write_csv(tmp_path / "train.csv", sentences(16, seed=33))
    out = tmp_path / "model-dir"
    shutil.copytree(tiny_dir, out)  # a checkpoint, not a run: no log, no resume state
    (out / "notes.txt").write_text("mine")
    weights = (out / "model.safetensors").read_bytes()
    args = ["finetune", "--model", str(tiny_dir), "--train", str(train), "--out", str(out), "--epochs", "1",
            "--batch-size", "8"]  # fmt: skip

    for extra in ([], ["--resume"]):
        assert cli.main([*args, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        listed = "config.json, model.safetensors, modeling_squeezebert_toolkit.py, notes.txt, special_tokens_map.json"
        assert f"{out}: is not empty ({listed}, tokenizer.json and 1 more)" in err
        assert "pass --overwrite" in err
        assert (out / "model.safetensors").read_bytes() == weights

    assert cli.main([*args, "--overwrite"]) == 0
    assert (out / "model.safetensors").read_bytes() != weights  # the fine-tuned model
    assert (out / "train_log.jsonl").is_file() and (out / "notes.txt").read_text() == "mine"
    # A finished run in --out: --overwrite starts it again, without it the refusal says --resume.
    assert cli.main(args) == 2
    assert "holds a previous run" in capsys.readouterr().err
    # what a previous squeeze left beside its student goes too (a stale plot would describe another run)
    (out / "latency_vs_accuracy.png").write_bytes(b"old plot")
    (out / "intermediate.json").write_text("{}")
    assert cli.main([*args, "--overwrite"]) == 0
    assert not (out / "latency_vs_accuracy.png").exists() and not (out / "intermediate.json").exists()


def test_a_finished_run_drops_its_resume_state_unless_kept_and_restores_the_thread_count(
    tiny_dir: Path, tmp_path: Path
) -> None:
    train = write_csv(tmp_path / "train.csv", sentences(16, seed=37))
    args = ["finetune", "--model", str(tiny_dir), "--train", str(train), "--epochs", "1", "--batch-size", "8"]
    before = torch.get_num_threads()
    threads = 2 if before != 2 else 1
    assert cli.main([*args, "--out", str(tmp_path / "dropped"), "--num-threads", str(threads)]) == 0
    assert torch.get_num_threads() == before  # the command set its count for the run and restored it
    assert (tmp_path / "dropped" / "model.safetensors").is_file() and not (tmp_path / "dropped" / LAST_DIR).exists()
    assert cli.main([*args, "--out", str(tmp_path / "kept"), "--keep-resume-state"]) == 0
    assert (tmp_path / "kept" / LAST_DIR / "state.json").is_file()


def test_evaluate_checks_its_json_path_before_evaluating(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from squeezebert import finetune

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("evaluated before the output path was checked")

    monkeypatch.setattr(finetune, "evaluate_checkpoint", never)
    dev = write_csv(tmp_path / "dev.csv", sentences(8, seed=34))
    target = tmp_path / "no-such-dir" / "result.json"
    assert cli.main(["evaluate", str(tiny_dir), "--dev", str(dev), "--json", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"squeezebert evaluate: error: {target.parent}: no such directory for --json {target}"


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (PermissionError(13, "Permission denied", "/ro/out/model.safetensors"), "/ro/out/model.safetensors: "
         "Permission denied"),
        (OSError(28, "No space left on device"), "No space left on device"),
        (OSError(30, "Read-only file system", "/ro/out/.config.json.1.tmp", None, "/ro/out/config.json"),
         "/ro/out/.config.json.1.tmp -> /ro/out/config.json: Read-only file system"),
    ],
)  # fmt: skip
def test_a_file_system_error_is_one_line_and_exit_2(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, error, said
) -> None:
    from squeezebert import checkpoint

    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(checkpoint, "save_checkpoint", fail)
    assert cli.main(["convert", str(tiny_dir), str(tmp_path / "out"), "--to", "squeezebert"]) == 2
    assert capsys.readouterr().err.strip() == f"squeezebert convert: error: {said}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_out_is_refused_before_loading(tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    train = write_csv(tmp_path / "train.csv", sentences(16, seed=35))
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        rc = cli.main(["finetune", "--model", "no-such-model", "--train", str(train), "--out", str(locked / "run")])
    finally:
        locked.chmod(0o700)
    assert rc == 2
    assert "cannot write there (--out)" in capsys.readouterr().err  # not the model: it was never loaded


def test_a_resumed_run_removes_the_temporaries_a_killed_run_left(tiny_dir: Path, tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", sentences(16, seed=36))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "squeezebert", "finetune", "--model", str(tiny_dir), "--train", str(train),
           "--out", str(out), "--epochs", "1", "--batch-size", "8", "--num-threads", "1",
           "--keep-resume-state"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    killed = subprocess.Popen([sys.executable, "-c", ""])  # stands for a writer killed with -9
    killed.wait()
    stale = [out / f".model.safetensors.{killed.pid}.k3j2h1ab.tmp", out / f".train_args.json.{killed.pid}.x1.tmp"]
    untagged = out / ".config.json.abcd_123.tmp"  # an older version's name: stale once an hour old
    live = out / f".metrics.json.{os.getpid()}.l1ve.tmp"  # its writer (this test) still runs: kept
    for path in (*stale, untagged, live):
        path.write_bytes(b"partial")
    os.utime(untagged, (time.time() - 7200, time.time() - 7200))
    (out / "last.tmp").mkdir()
    (out / "last.tmp" / "model.safetensors").write_bytes(b"partial")

    subprocess.run([*cmd, "--resume"], check=True, capture_output=True, timeout=120)
    assert not any(p.exists() for p in (*stale, untagged, out / "last.tmp"))
    assert live.exists()
