"""Batch inference with Ray Data (squeezebert.batch, `squeezebert batch`).

A tiny classifier written by the tests; a local Ray instance with 2 CPUs and one torch thread per
actor. Skipped when ray[data] is not installed (the `ray` extra).
"""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path

import pytest
import torch

pytest.importorskip("ray.data", reason="batch inference needs ray[data]: pip install 'squeezebert[ray]'")

import pyarrow.parquet as pq  # noqa: E402  (comes with ray[data])

from squeezebert import cli  # noqa: E402
from squeezebert.batch import BatchError, _in_input_order, classify_file, read_input  # noqa: E402
from squeezebert.checkpoint import save_checkpoint  # noqa: E402
from squeezebert.config import preset  # noqa: E402
from squeezebert.infer import Classifier  # noqa: E402
from squeezebert.model import SqueezeBert  # noqa: E402
from squeezebert.predict import predict_file  # noqa: E402
from squeezebert.runtime import RuntimeOptions  # noqa: E402
from squeezebert.tokenizer import Tokenizer  # noqa: E402

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline: no usage report, no prompt

WORDS = "the a movie film plot was is very quite and but good bad long short scene ending cast script".split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]


def texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, 12))) for _ in range(n)]


N_TEXTS, SEED = 20_000, 1


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny 2-label classifier whose decision threshold sits in the widest gap between the
    logit differences of the middle half of the test texts: about half of them get each label, and
    none lies within float noise of a tie (the test compares labels for equality)."""
    path = tmp_path_factory.mktemp("clf")
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    tokenizer = Tokenizer.from_vocab(path / "vocab.txt")
    config = preset(
        "tiny",
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=2,
        id2label={0: "neg", 1: "pos"},
        initializer_range=0.2,  # outputs that differ from text to text
    )
    torch.manual_seed(0)
    model = SqueezeBert(config).eval()
    batch = {k: torch.from_numpy(v) for k, v in tokenizer(texts(N_TEXTS, SEED)).items()}
    with torch.no_grad():
        logits = model(**batch)  # (N, 2)
        gaps = (logits[:, 1] - logits[:, 0]).sort().values
        middle = gaps[N_TEXTS // 4 : 3 * N_TEXTS // 4]
        i = int((middle[1:] - middle[:-1]).argmax())
        model.classifier.bias[1] -= float(middle[i] + middle[i + 1]) / 2
    save_checkpoint(model, path, tokenizer)
    return path


def test_ray_output_equals_single_process_predict_output_row_for_row(model_dir: Path, tmp_path: Path) -> None:
    data = texts(N_TEXTS, SEED)
    src = tmp_path / "texts.csv"
    with src.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows((f"t{i}", t) for i, t in enumerate(data))
    ray_out, single_out = tmp_path / "ray.jsonl", tmp_path / "single.jsonl"

    report = classify_file(
        model_dir, src, ray_out, id_column="id", num_cpus=2, num_workers=2, threads_per_worker=1, batch_size=64
    )
    predict_file(
        model_dir, src, single_out, id_column="id", batch_size=64, options=RuntimeOptions(num_threads=1)
    )  # `squeezebert predict`

    assert (report.rows, report.workers) == (N_TEXTS, 2)
    rows = [json.loads(line) for line in ray_out.read_text(encoding="utf-8").splitlines()]
    expected = [json.loads(line) for line in single_out.read_text(encoding="utf-8").splitlines()]
    assert len(expected) == N_TEXTS
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == N_TEXTS  # none duplicated, none lost
    assert ids == [e["id"] for e in expected] == [f"t{i}" for i in range(N_TEXTS)]  # in input order
    assert {e["label"] for e in expected} == {"neg", "pos"}  # both labels occur: the check means something
    for row, want in zip(rows, expected):
        assert row["label"] == want["label"], (row, want)
        assert row["score"] == pytest.approx(want["score"], abs=1e-6)
        assert row["probabilities"].keys() == want["probabilities"].keys()
        for label, p in want["probabilities"].items():
            assert row["probabilities"][label] == pytest.approx(p, abs=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ray.jsonl", "single.jsonl", "texts.csv"]  # no temp files


def test_cli_batch_keeps_the_id_column_for_pairs_and_writes_parquet(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    firsts, seconds = texts(300, seed=2), texts(300, seed=3)
    src = tmp_path / "pairs.jsonl"
    with src.open("w", encoding="utf-8") as f:
        for i, (a, b) in enumerate(zip(firsts, seconds)):
            f.write(json.dumps({"key": f"doc-{i}", "premise": a, "hypothesis": b, "extra": i}) + "\n")
    out = tmp_path / "out.parquet"
    code = cli.main(
        [
            "batch", str(model_dir), "--input", str(src), "--output", str(out), "--id-column", "key",
            "--text-column", "premise", "--text-pair-column", "hypothesis", "--num-cpus", "1", "--batch-size", "16",
        ]
    )  # fmt: skip
    assert code == 0
    assert "wrote" in capsys.readouterr().out
    table = pq.read_table(out)
    assert table.column_names == ["key", "label", "score", "probabilities"]
    assert table["key"].to_pylist() == [f"doc-{i}" for i in range(300)]
    expected = Classifier.from_pretrained(model_dir, normalize=True).predict(list(zip(firsts, seconds)))
    assert table["label"].to_pylist() == [p.label for p in expected]


def test_input_problems_are_one_line_errors_naming_file_and_row(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "a film"}\n{"text": null}\n', encoding="utf-8")
    with pytest.raises(BatchError, match=r"in.jsonl: data row 2: column 'text' is empty"):
        read_input(src)
    with pytest.raises(BatchError, match=r"no column 'body'; columns are \['text'\]"):
        read_input(src, text_column="body")
    numbers = tmp_path / "in.csv"
    numbers.write_text("id,text\n007,1\n8,2\n", encoding="utf-8")
    table = read_input(numbers, id_column="id")  # numbers in the text and id columns stay text
    assert table.column_names == ["id", "text"] and table["text"].to_pylist() == ["1", "2"]
    assert table["id"].to_pylist() == ["007", "8"]
    src.write_text('{"text": 5}\n', encoding="utf-8")
    with pytest.raises(BatchError, match="column 'text' holds int64, not text"):
        read_input(src)
    with pytest.raises(BatchError, match="cannot tell the format"):
        read_input(tmp_path / "in.xlsx")


def test_a_failing_job_writes_nothing_and_says_why_in_one_line(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    headless = tmp_path / "headless"
    save_checkpoint(
        SqueezeBert(preset("tiny", vocab_size=len(VOCAB))), headless, Tokenizer.from_vocab(model_dir / "vocab.txt")
    )
    src = tmp_path / "in.csv"
    src.write_text("text\na film\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert cli.main(["batch", str(headless), "--input", str(src), "--output", str(out), "--num-cpus", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no classification head" in err and len(err.splitlines()) == 1
    assert cli.main(["batch", str(model_dir), "--input", str(src), "--output", str(tmp_path / "out.txt")]) == 2
    assert "write .jsonl or .parquet" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["headless", "in.csv"]


def test_results_that_lose_duplicate_or_reorder_rows_are_refused() -> None:
    import pyarrow as pa

    ids = pa.chunked_array([pa.array([10, 11, 12, 13], pa.int64())])

    def blocks(*parts: list[int]) -> list[pa.Table]:
        return [pa.table({"id": pa.array(part, pa.int64()), "label": pa.array(["x"] * len(part))}) for part in parts]

    assert sum(b.num_rows for b in _in_input_order(iter(blocks([10, 11], [12, 13])), ids)) == 4
    for bad in (blocks([10, 11], [11, 12]), blocks([10, 12], [11, 13]), blocks([10, 11, 12, 13], [13])):
        with pytest.raises(RuntimeError, match="do not carry the input's ids in order"):
            list(_in_input_order(iter(bad), ids))
