"""predict: text/CSV/TSV/JSONL in, JSONL out in input order with ids and line numbers, streamed in
chunks, stdin/stdout, and bad rows that fail with their line number and leave no output behind."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from squeezebert.checkpoint import save_checkpoint
from squeezebert.cli import main
from squeezebert.config import preset
from squeezebert.infer import Classifier, Prediction, TextInput
from squeezebert.model import SqueezeBert
from squeezebert.predict import InputError, predict_file, read_rows
from squeezebert.runtime import RuntimeOptions
from squeezebert.tokenizer import Tokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"good bad movie film plot was very the a it".split()]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("predict-model")
    (tmp / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    config = preset("tiny", vocab_size=len(VOCAB), max_position_embeddings=64, id2label={0: "neg", 1: "pos"})
    save_checkpoint(SqueezeBert(config).eval(), tmp / "ckpt", tokenizer=Tokenizer.from_vocab(tmp / "vocab.txt"))
    return tmp / "ckpt"


@pytest.fixture(scope="module")
def classifier(checkpoint: Path) -> Classifier:
    return Classifier.from_pretrained(checkpoint, normalize=True)


class Echo:
    """A fake classifier whose label is the input itself: output order is visible. Records calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, inputs: Sequence[TextInput], batch_size: int = 32) -> list[Prediction]:
        self.calls.append(len(inputs))
        return [Prediction(label=x if isinstance(x, str) else " | ".join(x), score=1.0) for x in inputs]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------- formats
def test_plain_text_one_text_per_line_in_order_blank_lines_skipped(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("good movie\n\nbad plot\r\nvery good\n", encoding="utf-8")
    report = predict_file(Echo(), src, tmp_path / "out.jsonl")
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [(r["line"], r["label"]) for r in rows] == [(1, "good movie"), (3, "bad plot"), (4, "very good")]
    assert report.rows == 3 and report.format == "text"
    assert leftovers(tmp_path) == []


def test_csv_keeps_ids_and_first_line_of_multiline_quoted_rows(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text('id,text,extra\nr1,"good, very good",x\nr2,"bad\nplot",y\n\nr3,the film,z\n', encoding="utf-8")
    predict_file(Echo(), src, tmp_path / "out.jsonl")
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [(r["line"], r["id"], r["label"]) for r in rows] == [
        (2, "r1", "good, very good"),
        (3, "r2", "bad\nplot"),
        (6, "r3", "the film"),
    ]


def test_tsv_pairs_and_a_named_id_column(tmp_path: Path) -> None:
    src = tmp_path / "in.tsv"
    src.write_text('key\ta\tb\nk1\t"quoted\tgood\nk2\tbad\tplot\n', encoding="utf-8")
    predict_file(Echo(), src, tmp_path / "out.jsonl", text_column="a", text_pair_column="b", id_column="key")
    rows = read_jsonl(tmp_path / "out.jsonl")
    # TSV has quoting off, as GLUE files need: the quote is part of the text.
    assert [(r["id"], r["label"]) for r in rows] == [("k1", '"quoted | good'), ("k2", "bad | plot")]


def test_jsonl_keeps_ids_of_any_json_type_in_order(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    lines = [{"id": 7, "text": "good"}, {"text": "no id"}, {"id": "x", "text": "bad", "other": [1]}]
    src.write_text("\n".join(json.dumps(x) for x in lines[:2]) + "\n\n" + json.dumps(lines[2]) + "\n", encoding="utf-8")
    predict_file(Echo(), src, tmp_path / "out.jsonl")
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert rows == [
        {"line": 1, "id": 7, "label": "good", "score": 1.0},
        {"line": 2, "label": "no id", "score": 1.0},
        {"line": 4, "id": "x", "label": "bad", "score": 1.0},
    ]


def test_real_classifier_output_matches_a_direct_predict(classifier: Classifier, tmp_path: Path) -> None:
    texts = [f"{a} {b} film" for a in ("good", "bad", "very") for b in ("movie", "plot", "it")]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    predict_file(classifier, src, tmp_path / "out.jsonl", batch_size=4, chunk_size=5)
    rows = read_jsonl(tmp_path / "out.jsonl")
    want = classifier.predict(texts)
    assert [r["label"] for r in rows] == [w.label for w in want]
    assert [r["score"] for r in rows] == pytest.approx([w.score for w in want], abs=1e-5)
    assert set(rows[0]) == {"line", "label", "score", "probabilities"}


def test_regression_rows_carry_a_value(tmp_path: Path) -> None:
    class Regressor:
        def predict(self, inputs: Sequence[TextInput], batch_size: int = 32) -> list[Prediction]:
            return [Prediction(value=float(len(x))) for x in inputs]

    src = tmp_path / "in.txt"
    src.write_text("abc\nde\n", encoding="utf-8")
    predict_file(Regressor(), src, tmp_path / "out.jsonl")
    assert read_jsonl(tmp_path / "out.jsonl") == [{"line": 1, "value": 3.0}, {"line": 2, "value": 2.0}]


# --------------------------------------------------------------------------- streaming
class CountingStream(io.RawIOBase):
    """A raw byte stream that records how much has been read from it."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), len(self.data) - self.pos)
        buffer[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


def test_predict_streams_chunks_instead_of_reading_the_whole_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [f"text number {i} " + "pad " * 10 for i in range(3000)]  # ~170 kB
    raw = CountingStream("\n".join(lines).encode() + b"\n")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(raw)))
    read_at_call: list[int] = []

    class Watcher(Echo):
        def predict(self, inputs: Sequence[TextInput], batch_size: int = 32) -> list[Prediction]:
            read_at_call.append(raw.pos)
            return super().predict(inputs, batch_size)

    fake = Watcher()
    report = predict_file(fake, "-", tmp_path / "out.jsonl", chunk_size=100)
    assert report.rows == 3000 and fake.calls == [100] * 30
    assert read_at_call[0] < len(raw.data) / 10  # the first chunk ran long before the end was read
    assert [r["label"] for r in read_jsonl(tmp_path / "out.jsonl")] == lines


def test_read_rows_is_lazy() -> None:
    data = b"text\n" + b"".join(b"row %d\n" % i for i in range(100_000))
    raw = CountingStream(data)
    rows = read_rows(io.BufferedReader(raw), "csv", "mem.csv")
    first = [next(rows) for _ in range(3)]
    assert [r.text for r in first] == ["row 0", "row 1", "row 2"] and [r.line for r in first] == [2, 3, 4]
    assert raw.pos < len(data) / 10


# --------------------------------------------------------------------------- CLI, stdin/stdout
def test_cli_reads_stdin_and_writes_stdout(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"good movie\nbad plot\n")))
    assert main(["predict", str(checkpoint)]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["line"] for r in rows] == [1, 2] and all(r["label"] in ("neg", "pos") for r in rows)
    assert "wrote stdout: 2 rows" in err


def test_cli_stdin_jsonl_with_format_flag(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"id": "a", "body": "good"}\n')))
    assert main(["predict", str(checkpoint), "--format", "jsonl", "--text-column", "body", "--no-normalize"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == "a"


def test_cli_file_to_file_normalizes_by_default(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    original = Classifier.from_pretrained

    def spy(path: Any, options: RuntimeOptions) -> Classifier:
        seen.update(vars(options))  # the one options object the command built
        return original(path, options)

    monkeypatch.setattr(Classifier, "from_pretrained", spy)
    src = tmp_path / "in.csv"
    src.write_text("id,text\n1,good\n2,bad\n", encoding="utf-8")
    assert main(["predict", str(checkpoint), "--input", str(src), "--output", str(tmp_path / "o.jsonl")]) == 0
    assert seen["normalize"] is True
    assert [r["id"] for r in read_jsonl(tmp_path / "o.jsonl")] == ["1", "2"]
    assert main(["predict", str(checkpoint), "--input", str(src), "--output", "-", "--no-normalize"]) == 0
    assert seen["normalize"] is False


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("in.csv", "id,text\n1,good\n2,\n", "in.csv:3: empty text in 'text'"),
        ("in.csv", "id,text\n1,good\n2,bad,extra\n", "in.csv:3: row has 3 comma-separated fields but the header has 2"),
        ("in.csv", "id,txt\n1,good\n", "in.csv:1: no column 'text' (columns: id, txt)"),
        ("in.csv", "", "in.csv:1: empty file"),
        ("in.jsonl", '{"text": "good"}\n{"text": "ok"\n', "in.jsonl:2: malformed JSON"),
        ("in.jsonl", '{"text": "good"}\n\n{"text": 5}\n', "in.jsonl:3: field 'text' must be a string, got a number"),
        ("in.jsonl", '{"text": "good"}\n[1]\n', "in.jsonl:2: expected a JSON object, got an array"),
        ("in.jsonl", '{"text": "good"}\n{"body": "x"}\n', "in.jsonl:2: missing field 'text' (fields: body)"),
        ("in.txt", b"good\nbad \xff plot\n", "in.txt:2: bytes b'\\xff' are not valid utf-8"),
        ("in.xlsx", "text\n", "cannot tell the format from the extension '.xlsx'"),
    ],
)
def test_bad_rows_fail_with_file_and_line_and_leave_no_output(
    tmp_path: Path, name: str, content: str | bytes, message: str
) -> None:
    src = tmp_path / name
    src.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputError) as e:
        predict_file(Echo(), src, tmp_path / "out.jsonl", chunk_size=1)  # chunk 1: the good rows were written
    assert message in str(e.value) and str(src) in str(e.value)
    assert not (tmp_path / "out.jsonl").exists() and leftovers(tmp_path) == []


def test_cli_bad_row_exits_2_with_one_line_and_keeps_an_old_output(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.csv"
    good = "".join(f"{i},good movie\n" for i in range(50))
    src.write_text("id,text\n" + good + "bad,\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n", encoding="utf-8")
    code = main(["predict", str(checkpoint), "--input", str(src), "--output", str(out), "--chunk-size", "8"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == f"squeezebert predict: error: {src}:52: empty text in 'text'; expected a non-blank string"
    assert out.read_text(encoding="utf-8") == "previous results\n"  # untouched, not half-replaced
    assert leftovers(tmp_path) == []


def test_refuses_to_overwrite_the_input_and_checks_columns_before_loading(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "good"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="is the input file"):
        predict_file(Echo(), src, src)
    with pytest.raises(ValueError, match="text pairs need"):
        predict_file(Echo(), _write(tmp_path / "x.txt", "a\n"), "-", text_pair_column="b")
    with pytest.raises(InputError, match="no column 'nope'"):
        # A model path that does not exist: the header is checked first, so the column error wins.
        predict_file(tmp_path / "no-model", _write(tmp_path / "y.csv", "text\na\n"), "-", text_column="nope")
    with pytest.raises(FileNotFoundError):
        predict_file(Echo(), tmp_path / "missing.csv", "-")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- ONNX without torch
NO_TORCH_MAIN = """
import sys
import time
from squeezebert.cli import main

code = main(sys.argv[1:])
assert "torch" not in sys.modules, "predict imported torch"
sys.exit(code)
"""


def test_cli_predict_onnx_runs_where_torch_cannot_be_imported(
    checkpoint: Path, tmp_path: Path, block_torch: str
) -> None:
    pytest.importorskip("onnxruntime")
    from squeezebert.export import export

    export(checkpoint, tmp_path / "onnx", precision="fp32")
    src = tmp_path / "in.csv"
    src.write_text('id,a,b\nr1,"good, very good",movie\nr2,bad plot,film\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = ["predict", str(tmp_path / "onnx"), "--backend", "onnx", "--input", str(src), "--output", str(out)]
    args += ["--text-column", "a", "--text-pair-column", "b"]
    result = subprocess.run(
        [sys.executable, "-c", block_torch + NO_TORCH_MAIN, *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    rows = read_jsonl(out)
    want = Classifier.from_pretrained(tmp_path / "onnx", backend="onnx", normalize=True).predict(
        [("good, very good", "movie"), ("bad plot", "film")]
    )
    assert [(r["line"], r["id"], r["label"]) for r in rows] == [(2, "r1", want[0].label), (3, "r2", want[1].label)]
    assert [r["score"] for r in rows] == pytest.approx([w.score for w in want], abs=1e-6)

    # A bad row is reported by the torch-free reader: file and line, exit 2, no output file left.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "good"}\n{"text": 3}\n', encoding="utf-8")
    args = [
        "predict",
        str(tmp_path / "onnx"),
        "--backend",
        "onnx",
        "--input",
        str(bad),
        "--output",
        str(tmp_path / "b.jsonl"),
    ]
    result = subprocess.run(
        [sys.executable, "-c", block_torch + NO_TORCH_MAIN, *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert f"{bad}:2: field 'text' must be a string, got a number" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "b.jsonl").exists()


# --------------------------------------------------------------------------- issue 16: bad input and faults
def _dead_pid() -> int:
    """The pid of a process that has exited (what a killed writer leaves in its temporaries' names)."""
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_predict_stopped_by_a_signal_leaves_no_partial_output(checkpoint: Path, tmp_path: Path, sig: int) -> None:
    out = tmp_path / "out" / "preds.jsonl"
    out.parent.mkdir()
    cmd = [sys.executable, "-m", "squeezebert", "predict", str(checkpoint), "--output", str(out), "--chunk-size", "1"]
    # The child gets the default SIGINT disposition even when this test runs in the background of a
    # non-interactive shell (`cmd &`), which starts it with SIGINT ignored: predict then rightly
    # ignores it too, and finishes (seen once, from a CI run started with nohup ... &).
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"good movie\nbad plot\n")  # more rows may come: the output stays open
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        while not list(out.parent.glob(".preds.jsonl.*.tmp")):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "predict never started writing"
            time.sleep(0.01)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig, err
    assert list(out.parent.iterdir()) == []  # no partial temporary, no output


def test_predict_removes_the_temporaries_a_killed_run_left(checkpoint: Path, tmp_path: Path) -> None:
    import os

    out = tmp_path / "preds.jsonl"
    dead = tmp_path / f".preds.jsonl.{_dead_pid()}.0badf00d.tmp"
    live = tmp_path / f".preds.jsonl.{os.getppid()}.0123abcd.tmp"  # a writer that still runs: kept
    other = tmp_path / f".other.jsonl.{_dead_pid()}.0badf00d.tmp"  # another target's: kept
    for path in (dead, live, other):
        path.write_text('{"line": 1}\n')
    (tmp_path / "in.txt").write_text("good movie\n")
    predict_file(Echo(), tmp_path / "in.txt", out)
    assert not dead.exists() and live.exists() and other.exists() and out.is_file()


def test_cli_predict_reads_cr_line_ends_and_names_a_directory_input(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_bytes(b"good movie\rbad plot\r")
    out = tmp_path / "preds.jsonl"
    assert main(["predict", str(checkpoint), "--input", str(texts), "--output", str(out)]) == 0
    assert [json.loads(line)["line"] for line in out.read_text().splitlines()] == [1, 2]
    assert main(["predict", str(checkpoint), "--input", str(tmp_path)]) == 2
    assert f"{tmp_path}: is a directory; expected an input file" in capsys.readouterr().err
