"""Unicode normalization against look-alike obfuscation, applied before WordPiece.

Spam and machine-spun text swap Latin letters for look-alikes ("gооd" with Cyrillic о) or use
compatibility forms (fullwidth "ｇｏｏｄ", mathematical bold "𝐠𝐨𝐨𝐝") to dodge filters. WordPiece then
sees unknown or rare pieces and the classifier loses the word. Two steps undo most of it:

1. NFKC folds compatibility forms (fullwidth, mathematical alphanumerics, ligatures) to plain ones.
2. In *mixed-script* words — a run of letters that holds at least one Latin letter — characters
   from other scripts that look like Latin letters are mapped to those letters. A word written
   wholly in Cyrillic or Greek ("привет", "λόγος") is left alone: it is real text, not disguise.

Zero-width characters (often inserted inside words) are removed first. Torch-free.
"""

from __future__ import annotations

import re
import unicodedata

# Look-alikes of Latin letters from Cyrillic, Greek, Armenian and a few Latin extensions, chosen
# from the glyphs that render identically or nearly so in common fonts.
_CONFUSABLES = {
    # Cyrillic lower case
    "а": "a", "в": "b", "е": "e", "ё": "e", "һ": "h", "і": "i", "ї": "i", "ј": "j", "к": "k", "м": "m",
    "н": "h", "о": "o", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "ԁ": "d", "ԛ": "q",
    "ԝ": "w", "ү": "y", "ɡ": "g",
    # Cyrillic upper case
    "А": "A", "В": "B", "Е": "E", "Ё": "E", "З": "3", "І": "I", "Ї": "I", "Ј": "J", "К": "K", "М": "M",
    "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T", "У": "Y", "Х": "X", "Ѕ": "S", "Ԁ": "D", "Ԛ": "Q",
    "Ԝ": "W", "Ү": "Y",
    # Greek
    "α": "a", "β": "b", "γ": "y", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ω": "w", "ϲ": "c", "ϳ": "j",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "Ϲ": "C",
    # Armenian
    "օ": "o", "ս": "u", "զ": "q", "հ": "h", "ո": "n", "ց": "g",
    # Latin extensions that read as plain letters
    "ı": "i", "ȷ": "j", "ℓ": "l", "ɑ": "a",
}  # fmt: skip

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_WORD = re.compile(r"[^\W\d_]+")  # runs of letters


def _is_latin(ch: str) -> bool:
    return "LATIN" in unicodedata.name(ch, "")


def _fix_word(match: re.Match[str]) -> str:
    word = match.group(0)
    if word.isascii() or not any(_is_latin(c) for c in word):
        return word
    return "".join(_CONFUSABLES.get(c, c) for c in word)


def normalize_text(text: str, confusables: bool = True) -> str:
    """NFKC, zero-width removal and (with ``confusables``) Latin look-alike mapping in
    mixed-script words. Idempotent."""
    text = unicodedata.normalize("NFKC", text.translate(_ZERO_WIDTH))
    if confusables:
        text = _WORD.sub(_fix_word, text)
    return text
