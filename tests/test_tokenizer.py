"""Our tokenizer against transformers' on varied text, truncation and dynamic padding."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

from squeezebert.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")

FRAGMENTS = [
    "The movie was great!",
    "it 's a charming and often affecting journey . ",
    "Café crème, naïve façade — résumé.",
    "ÀÉÎÕÜ ñ ç ß ø",
    "I ❤️ this 😂😂 so much 👍🏽",
    "東京は大きい都市です。",
    "Привет, как дела?",
    "e-mail: someone@example.com, url: https://example.org/a?b=c",
    "Numbers 3.14159, 1,000,000 and -42%",
    "Tabs\tand\nnewlines   and   spaces",
    "UPPER lower MiXeD",
    "don't won't can't y'all",
    '"quoted" (parenthesized) [bracketed] {braced}',
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "",
    "   ",
    "a",
    "\u200b zero width and \u00a0 nbsp",
    "##not a subword",
    "[CLS] literal special tokens [SEP]",
]


def varied_sentences() -> list[str]:
    out = list(FRAGMENTS)
    for a, b in itertools.product(FRAGMENTS[:14], FRAGMENTS[2:16]):
        out.append(f"{a} {b}")
    out.append(" ".join(FRAGMENTS) * 20)  # very long
    return out


@pytest.fixture(scope="module")
def pair(minilm_path):
    return Tokenizer.from_dir(minilm_path), transformers.AutoTokenizer.from_pretrained(minilm_path)


def test_same_ids_as_transformers_on_varied_sentences(pair) -> None:
    ours, theirs = pair
    sentences = varied_sentences()
    assert len(sentences) > 200
    for max_length in (512, 16):
        got = ours.tokenize(sentences, max_length=max_length)
        expected = theirs(sentences, truncation=True, max_length=max_length)["input_ids"]
        mismatches = [s for s, (ids, _), e in zip(sentences, got, expected) if ids != e]
        assert not mismatches, f"{len(mismatches)} differ, e.g. {mismatches[0]!r}"


def test_pairs_truncate_longest_first_like_transformers(pair) -> None:
    ours, theirs = pair
    firsts = varied_sentences()[20:80]
    seconds = varied_sentences()[100:160]
    for max_length in (24, 64):
        got = ours.tokenize(firsts, seconds, max_length=max_length)
        expected = theirs(firsts, seconds, truncation="longest_first", max_length=max_length)
        assert [g[0] for g in got] == expected["input_ids"]
        assert [g[1] for g in got] == expected["token_type_ids"]


def test_dynamic_padding_to_longest_in_batch(pair) -> None:
    ours, _ = pair
    batch = ours(["short", "a somewhat longer sentence here"], max_length=128)
    width = batch["input_ids"].shape[1]
    assert width == len(ours.tokenize(["a somewhat longer sentence here"])[0][0]) < 128
    assert batch["input_ids"].dtype == np.int64
    assert batch["attention_mask"].sum(1).tolist() == [3, width]
    assert (batch["input_ids"][0, 3:] == ours.pad_token_id).all()


def test_vocab_txt_builds_the_same_tokenizer(minilm_path) -> None:
    from_json = Tokenizer.from_dir(minilm_path)
    from_vocab = Tokenizer.from_vocab(minilm_path / "vocab.txt", lowercase=True)
    sentences = varied_sentences()[:120]
    assert from_vocab.tokenize(sentences) == from_json.tokenize(sentences)


def test_saved_tokenizer_has_no_fixed_padding(minilm_path, tmp_path) -> None:
    tok = Tokenizer.from_dir(minilm_path)  # the shipped file pads every text to 128
    tok.save(tmp_path)
    again = Tokenizer.from_dir(tmp_path)
    assert again(["hi"])["input_ids"].shape == (1, 3)


def test_bad_tokenizer_files_are_clear_errors(tmp_path) -> None:
    (tmp_path / "tokenizer.json").write_text("{broken")
    with pytest.raises(ValueError, match="not a valid tokenizer.json"):
        Tokenizer.from_dir(tmp_path)
    (tmp_path / "vocab.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="lacks the special token"):
        Tokenizer.from_vocab(tmp_path / "vocab.txt")
    with pytest.raises(FileNotFoundError, match="no tokenizer.json or vocab.txt"):
        Tokenizer.from_dir(tmp_path / "missing")


def test_a_single_string_is_rejected_not_split_into_characters(minilm_path) -> None:
    with pytest.raises(TypeError, match="not a single string"):
        Tokenizer.from_dir(minilm_path).tokenize("a string")  # type: ignore[arg-type]


def test_tokenize_from_many_threads_with_different_max_lengths_matches_one_thread(minilm_path) -> None:
    # The server tokenizes off the event loop; a max_length set on shared state by one thread must
    # never truncate another thread's texts.
    tok = Tokenizer.from_dir(minilm_path)
    texts = [*varied_sentences()[:29], " ".join(FRAGMENTS) * 2]  # the last one is longer than 128 tokens
    pairs = list(reversed(texts))
    jobs = [(m, p) for m in (6, 9, 16, 33, 128) for p in (False, True)]
    reference = {(m, p): tok.tokenize(texts, pairs if p else None, max_length=m) for m, p in jobs}
    assert len({str(r) for r in reference.values()}) == len(jobs)  # every job gives a different answer
    mismatches: list[tuple[int, bool]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def hammer(worker: int) -> None:
        try:
            start.wait()
            for i in range(20):
                m, p = jobs[(worker * 7 + i) % len(jobs)]
                if tok.tokenize(texts, pairs if p else None, max_length=m) != reference[(m, p)]:
                    mismatches.append((m, p))
        except BaseException as e:  # noqa: BLE001 - reported below, with the thread's error
            errors.append(e)

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and mismatches == []
