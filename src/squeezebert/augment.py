"""More distillation data from the training set itself: perturbed copies of each example.

A student learns the teacher's function only where it is shown inputs. Small GLUE training sets
(2.5k to 9k examples) show it little, so :func:`augment_examples` makes ``copies`` noisy variants
of every example — each word replaced, with probability ``p_replace``, by a word drawn from the
training texts by frequency, or dropped with probability ``p_drop`` — and ``squeeze`` labels them
with the teacher's own predictions (its logits for distillation, its argmax or value as the hard
label), never with the original label: a perturbed sentence may no longer deserve it (for CoLA a
perturbed sentence is often ungrammatical, which is exactly what the teacher should teach).

This is the cheap, dependency-free cousin of TinyBERT's augmentation (which draws replacements
from a masked language model or word vectors). Deterministic for a given seed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from squeezebert.tables import Example

_WORD = re.compile(r"\S+")


def _perturb(text: str, rng: random.Random, pool: Sequence[str], p_replace: float, p_drop: float) -> str:
    words = _WORD.findall(text)
    out: list[str] = []
    for w in words:
        r = rng.random()
        if r < p_drop:
            continue
        out.append(rng.choice(pool) if r < p_drop + p_replace else w)
    if not out:  # never an empty text: keep one word of the original
        out = [rng.choice(words)] if words else [rng.choice(pool)]
    return " ".join(out)


def augment_examples(
    examples: Sequence[Example],
    copies: int,
    seed: int = 0,
    p_replace: float = 0.15,
    p_drop: float = 0.05,
) -> list[Example]:
    """``copies`` perturbed, unlabelled variants of every example (pairs: both texts perturbed).

    The variants keep the original's ``line`` (so an error or a log points at the source row) and
    have ``label=None``: the teacher labels them. Replacement words come from all texts of
    ``examples``, drawn in proportion to their frequency.
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
            text = _perturb(ex.text, rng, pool, p_replace, p_drop)
            pair = _perturb(ex.text_pair, rng, pool, p_replace, p_drop) if ex.text_pair is not None else None
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


__all__ = ["AUTO_MAX_COPIES", "AUTO_TARGET_EXAMPLES", "augment_examples", "auto_copies", "resolve_copies"]
