"""Look-alike normalization: disguised Latin words are restored, real foreign words are not."""

from __future__ import annotations

import pytest

from squeezebert.normalize import normalize_text


@pytest.mark.parametrize(
    "disguised,plain",
    [
        ("g\u043e\u043ed movie", "good movie"),  # Cyrillic о
        ("\u0430 gre\u0430t film", "\u0430 great film"),  # a lone Cyrillic а is a (Cyrillic) word of its own
        ("terr\u0456ble", "terrible"),  # Cyrillic і
        ("\u03bfverpriced", "overpriced"),  # Greek ο
        ("\uff47\uff4f\uff4f\uff44", "good"),  # fullwidth
        ("\U0001d420\U0001d428\U0001d428\U0001d41d", "good"),  # mathematical bold
        ("aw\u200bful", "awful"),  # zero-width space inside a word
        ("\u0421\u0410\u0422 food", "\u0421\u0410\u0422 food"),  # all-Cyrillic word stays
        ("S\u0421AM", "SCAM"),
    ],
)
def test_disguised_words_are_restored(disguised: str, plain: str) -> None:
    assert normalize_text(disguised) == plain


def test_real_foreign_text_is_untouched() -> None:
    for text in ["Привет, как дела?", "λόγος και πράξη", "東京は大きい", "Café crème"]:
        assert normalize_text(text) == text


def test_confusables_can_be_switched_off() -> None:
    assert normalize_text("g\u043e\u043ed", confusables=False) == "g\u043e\u043ed"
    assert normalize_text("\uff47\uff4f", confusables=False) == "go"  # NFKC still applies


def test_normalization_is_idempotent() -> None:
    text = "g\u043e\u043ed \uff47\uff4f \U0001d420 Привет"
    once = normalize_text(text)
    assert normalize_text(once) == once
