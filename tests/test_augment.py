"""Augmented distillation data: perturbed copies, labelled by the teacher inside squeeze."""

from __future__ import annotations

import pytest
import torch

from squeezebert.augment import augment_examples, auto_copies, embedding_neighbours, resolve_copies, text_words
from squeezebert.distill import DistillConfig
from squeezebert.tables import Example

EXAMPLES = [
    Example("the film was good and the cast was young", None, "pos", 2),
    Example("a dull and awful story", None, "neg", 3),
    Example("one", None, "neg", 4),
]


def test_copies_are_unlabelled_keep_lines_and_are_deterministic() -> None:
    a = augment_examples(EXAMPLES, 3, seed=1)
    assert len(a) == 9
    assert [e.line for e in a] == [2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert all(e.label is None and e.text.strip() for e in a)
    assert a == augment_examples(EXAMPLES, 3, seed=1)
    assert a != augment_examples(EXAMPLES, 3, seed=2)


def test_words_come_from_the_training_texts_and_copies_differ() -> None:
    vocab = {w for e in EXAMPLES for w in e.text.split()}
    a = augment_examples(EXAMPLES * 20, 2, seed=0, p_replace=0.5, p_drop=0.0)
    assert all(set(e.text.split()) <= vocab for e in a)
    # with half the words replaced, most long copies differ from their original
    long = [e for e in a if len(e.text.split()) > 3]
    originals = {e.text for e in EXAMPLES}
    assert sum(e.text not in originals for e in long) > len(long) // 2


def test_no_perturbation_returns_the_originals() -> None:
    a = augment_examples(EXAMPLES, 1, seed=0, p_replace=0.0, p_drop=0.0)
    assert [e.text for e in a] == [e.text for e in EXAMPLES]


def test_drop_everything_still_leaves_one_word() -> None:
    a = augment_examples(EXAMPLES, 2, seed=0, p_replace=0.0, p_drop=1.0)
    assert all(len(e.text.split()) == 1 for e in a)


def test_pairs_perturb_both_texts() -> None:
    pairs = [Example("a man is playing a guitar", "a person plays music on a guitar", 3.2, 5)] * 10
    a = augment_examples(pairs, 1, seed=0, p_replace=0.6, p_drop=0.0)
    assert all(e.text_pair is not None for e in a)
    assert any(e.text_pair != pairs[0].text_pair for e in a) and any(e.text != pairs[0].text for e in a)


def test_zero_copies_and_bad_arguments() -> None:
    assert augment_examples(EXAMPLES, 0) == []
    with pytest.raises(ValueError, match="copies"):
        augment_examples(EXAMPLES, -1)
    with pytest.raises(ValueError, match="p_replace"):
        augment_examples(EXAMPLES, 1, p_replace=0.8, p_drop=0.5)
    for bad in (-2, "more", 1.5):
        with pytest.raises(ValueError, match="augment"):
            DistillConfig(augment=bad)
    assert DistillConfig(augment="auto").augment == "auto"


def test_auto_grows_small_training_sets_only() -> None:
    # about 32k distillation examples, at most 3 copies: the GLUE sizes
    sizes = {"rte": 2490, "mrpc": 3668, "stsb": 5749, "cola": 8551, "qnli": 104743, "sst2": 67349}
    copies = {task: auto_copies(n) for task, n in sizes.items()}
    assert copies == {"rte": 3, "mrpc": 3, "stsb": 3, "cola": 3, "qnli": 0, "sst2": 0}
    assert auto_copies(16_000) == 1 and auto_copies(12_000) == 2 and auto_copies(0) == 0
    assert resolve_copies("auto", 8551) == 3 and resolve_copies(2, 10**6) == 2 and resolve_copies(0, 10) == 0


def _toy_embeddings() -> tuple[dict[str, int], torch.Tensor]:
    """A vocabulary whose embeddings put good/great/fine together and dull/awful/boring together;
    pieces, specials and one letter in between."""
    tokens = ["[PAD]", "[UNK]", "##ing", "a", "good", "great", "fine", "dull", "awful", "boring", "film", "movie", "x1"]
    vectors = {
        "good": [1.0, 0.1, 0.0], "great": [0.9, 0.2, 0.0], "fine": [0.8, 0.0, 0.1],
        "dull": [0.0, 1.0, 0.1], "awful": [0.1, 0.9, 0.0], "boring": [0.0, 0.8, 0.2],
        "film": [0.0, 0.0, 1.0], "movie": [0.1, 0.0, 0.9],
        "##ing": [1.0, 0.1, 0.01], "a": [1.0, 0.1, 0.02], "[UNK]": [1.0, 0.1, 0.03],
    }  # fmt: skip
    table = torch.tensor([vectors.get(t, [0.3, 0.3, 0.3]) for t in tokens])
    return {t: i for i, t in enumerate(tokens)}, table


def test_embedding_neighbours_are_the_nearest_other_whole_words() -> None:
    vocab, table = _toy_embeddings()
    nb = embedding_neighbours(["good", "dull", "film", "zebra", "a", "x1"], vocab, table, k=2)
    assert nb["good"] == ["great", "fine"]  # never itself, never ##ing / a / [UNK] however close
    assert set(nb["dull"]) == {"awful", "boring"}
    assert nb["film"][0] == "movie"
    assert "zebra" not in nb and "a" not in nb and "x1" not in nb  # not a whole word of the vocabulary
    # chunking gives the same answer
    assert embedding_neighbours(["good", "dull", "film"], vocab, table, k=2, chunk=1) == {
        w: nb[w] for w in ("good", "dull", "film")
    }
    assert embedding_neighbours(["good"], vocab, table, k=0) == {}


def test_neighbour_replacements_keep_case_and_punctuation() -> None:
    vocab, table = _toy_embeddings()
    examples = [Example("Good, (dull) film!", None, "pos", 7), Example("GOOD 42 zebra", "good", None, 8)] * 30
    nb = embedding_neighbours(text_words(examples), vocab, table, k=2)
    assert text_words(examples) == {"good", "dull", "film", "zebra"}
    a = augment_examples(examples, 1, seed=0, p_replace=1.0, p_drop=0.0, neighbours=nb)
    for e in a[0::2]:
        first, second, third = e.text.split()
        assert first in ("Great,", "Fine,") and second in ("(awful)", "(boring)") and third in ("movie!", "boring!")
    for e in a[1::2]:
        # upper case kept; a number and a word without neighbours stay as they are; pairs too
        assert e.text.split()[0] in ("GREAT", "FINE") and e.text.split()[1:] == ["42", "zebra"]
        assert e.text_pair in ("great", "fine")
    assert a == augment_examples(examples, 1, seed=0, p_replace=1.0, p_drop=0.0, neighbours=nb)
