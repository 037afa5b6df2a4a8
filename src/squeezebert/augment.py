"""More distillation data from the training set itself: perturbed copies of each example.

A student learns the teacher's function only where it is shown inputs. Small GLUE training sets
(2.5k to 9k examples) show it little, so :func:`augment_examples` makes ``copies`` noisy variants
of every example — each word replaced with probability ``p_replace`` or dropped with probability
``p_drop`` — and ``squeeze`` labels them with the teacher's own predictions (its logits for
distillation, its argmax or value as the hard label), never with the original label: a perturbed
sentence may no longer deserve it (for CoLA a perturbed sentence is often ungrammatical, which is
exactly what the teacher should teach).

Where a replacement comes from:

* ``neighbours`` (:func:`embedding_neighbours`): one of the word's nearest whole words in the
  teacher's own input-embedding space — TinyBERT's word-vector replacement, with the teacher's
  embeddings as the word vectors, so no other model or download is needed. For all-MiniLM-L6-v2
  they are synonyms, antonyms and inflections ("good": excellent, bad, great, better; "walked":
  walk, walks, walking, strolled), so a copy stays a plausible sentence of the task. Measured no
  better than random words (SST-2 with 2,000 labels: eight runs within 0.4 points; CoLA: 2.7 MCC
  lower on one seed; docs/RESULTS.md, session 15), so it is opt-in (``--augment-words neighbours``).
* otherwise (the default) a word drawn from the training texts by frequency (any word for any word).

Deterministic for a given seed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from squeezebert.tables import Example

_WORD = re.compile(r"\S+")
# A whitespace-separated word as (leading punctuation, letters, trailing punctuation): "(Good!"
_CORE = re.compile(r"^([^A-Za-z]*)([A-Za-z]+(?:'[A-Za-z]+)?)([^A-Za-z]*)$")
# Vocabulary entries that may replace a word: whole words of two letters or more.
_WHOLE_WORD = re.compile(r"[a-z]{2,}")

#: Where a perturbed copy's replacement words come from: the word's nearest neighbours in the
#: teacher's input embeddings (:func:`embedding_neighbours`), or any training word by frequency.
AUGMENT_WORDS = ("neighbours", "random")

#: Nearest neighbours kept per word (TinyBERT's K for word-vector replacement).
NEIGHBOURS = 15


def _match_case(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    return word[:1].upper() + word[1:] if like[:1].isupper() else word


def _replace(word: str, rng: random.Random, pool: Sequence[str], neighbours: Mapping[str, Sequence[str]] | None) -> str:
    if neighbours is None:
        return rng.choice(pool)
    m = _CORE.match(word)
    choices = neighbours.get(m.group(2).lower()) if m else None
    if not choices:  # no neighbours known (a number, a name split into pieces, ...): kept
        return word
    return m.group(1) + _match_case(rng.choice(choices), m.group(2)) + m.group(3)


def _perturb(
    text: str,
    rng: random.Random,
    pool: Sequence[str],
    p_replace: float,
    p_drop: float,
    neighbours: Mapping[str, Sequence[str]] | None = None,
) -> str:
    words = _WORD.findall(text)
    out: list[str] = []
    for w in words:
        r = rng.random()
        if r < p_drop:
            continue
        out.append(_replace(w, rng, pool, neighbours) if r < p_drop + p_replace else w)
    if not out:  # never an empty text: keep one word of the original
        out = [rng.choice(words)] if words else [rng.choice(pool)]
    return " ".join(out)


def text_words(examples: Sequence[Example]) -> set[str]:
    """The distinct lower-cased words of ``examples``' texts (punctuation stripped)."""
    words = set()
    for ex in examples:
        for t in (ex.text, ex.text_pair):
            for w in _WORD.findall(t or ""):
                m = _CORE.match(w)
                if m:
                    words.add(m.group(2).lower())
    return words


def embedding_neighbours(
    words: Iterable[str], vocab: Mapping[str, int], embeddings: Any, k: int = NEIGHBOURS, chunk: int = 2048
) -> dict[str, list[str]]:
    """Each of ``words`` that is a whole word of ``vocab`` (a WordPiece vocabulary: token -> id)
    -> its ``k`` nearest other whole words by cosine similarity of their rows of ``embeddings``
    (the model's input word embeddings, ``(vocab size, E)``, a tensor or array). Words the
    vocabulary splits into pieces get none. Pieces (``##...``), special tokens and one-letter
    entries are never proposed."""
    import torch

    table = torch.as_tensor(embeddings).detach().float()
    candidates = sorted(w for w in vocab if _WHOLE_WORD.fullmatch(w) and vocab[w] < table.shape[0])
    index = {w: i for i, w in enumerate(candidates)}
    asked = sorted(set(words) & index.keys())
    if not asked or k < 1:
        return {}
    cand = torch.nn.functional.normalize(table[[vocab[w] for w in candidates]], dim=-1)
    k = min(k, len(candidates) - 1)
    out: dict[str, list[str]] = {}
    for start in range(0, len(asked), chunk):
        part = asked[start : start + chunk]
        sims = cand[[index[w] for w in part]] @ cand.T  # (chunk, candidates)
        sims[torch.arange(len(part)), [index[w] for w in part]] = -2.0  # never the word itself
        top = sims.topk(k, dim=-1).indices.tolist()
        out.update({w: [candidates[j] for j in row] for w, row in zip(part, top)})
    return out


def augment_examples(
    examples: Sequence[Example],
    copies: int,
    seed: int = 0,
    p_replace: float = 0.15,
    p_drop: float = 0.05,
    neighbours: Mapping[str, Sequence[str]] | None = None,
) -> list[Example]:
    """``copies`` perturbed, unlabelled variants of every example (pairs: both texts perturbed).

    The variants keep the original's ``line`` (so an error or a log points at the source row) and
    have ``label=None``: the teacher labels them. A replaced word becomes one of its
    ``neighbours`` (lower-cased word -> candidates, e.g. :func:`embedding_neighbours`; case and
    surrounding punctuation kept; a word with none stays as it is), or, without ``neighbours``, a
    word drawn from all texts of ``examples`` in proportion to its frequency.
    """
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies}")
    if not 0 <= p_replace <= 1 or not 0 <= p_drop <= 1 or p_replace + p_drop > 1:
        raise ValueError(f"need 0 <= p_replace, p_drop and p_replace + p_drop <= 1, got {p_replace}, {p_drop}")
    if copies == 0 or not examples:
        return []
    pool = [w for ex in examples for t in (ex.text, ex.text_pair) if t for w in _WORD.findall(t)]
    if not pool:
        raise ValueError("augment_examples: the examples have no words to draw replacements from")
    rng = random.Random(seed)
    out: list[Example] = []
    for ex in examples:
        for _ in range(copies):
            text = _perturb(ex.text, rng, pool, p_replace, p_drop, neighbours)
            pair = (
                _perturb(ex.text_pair, rng, pool, p_replace, p_drop, neighbours) if ex.text_pair is not None else None
            )
            out.append(Example(text, pair, None, ex.line))
    return out


# ``augment="auto"``: grow a small training set with perturbed copies up to about this many
# distillation examples, with at most AUTO_MAX_COPIES copies per example (SST-2's 67k: none).
AUTO_TARGET_EXAMPLES = 32_000
AUTO_MAX_COPIES = 3


def auto_copies(num_examples: int, target: int = AUTO_TARGET_EXAMPLES, max_copies: int = AUTO_MAX_COPIES) -> int:
    """Copies per example that bring ``num_examples`` to about ``target`` (0 to ``max_copies``)."""
    if num_examples <= 0:
        return 0
    return max(0, min(max_copies, -(-target // num_examples) - 1))


def resolve_copies(augment: int | str, num_examples: int) -> int:
    """``augment`` as given to squeeze (a count, or ``"auto"``) -> copies per example."""
    return auto_copies(num_examples) if augment == "auto" else int(augment)


__all__ = [
    "AUGMENT_WORDS",
    "AUTO_MAX_COPIES",
    "AUTO_TARGET_EXAMPLES",
    "NEIGHBOURS",
    "augment_examples",
    "auto_copies",
    "embedding_neighbours",
    "resolve_copies",
    "text_words",
]
