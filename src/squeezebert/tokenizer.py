"""WordPiece tokenization through the ``tokenizers`` library.

Torch-free on purpose (the ONNX deployment path uses it): batches come back as int64 numpy arrays.
Padding is dynamic, to the longest sequence of each batch; truncation is longest-first for pairs.

Thread safety: ``tokenizers`` keeps truncation as mutable state on the tokenizer object, so setting
it per call would let two threads (the server's, say) truncate with each other's length. Instead
each ``max_length`` gets its own copy of the tokenizer, configured once when first used and only
read after that; encoding on a configured copy mutates nothing and is safe from any thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

from squeezebert.files import atomic_write

TOKENIZER_FILE = "tokenizer.json"


class Tokenizer:
    """A BERT-style WordPiece tokenizer.

    ``tok(texts, pairs=None, max_length=128)`` returns ``{"input_ids", "attention_mask",
    "token_type_ids"}``, each an int64 array ``(B, T)`` with T the longest sequence in the batch.
    """

    def __init__(self, backend: HFTokenizer, max_length: int = 512) -> None:
        self.backend = backend
        # tokenizer.json files often carry fixed padding/truncation (e.g. pad to 128); we pad
        # dynamically per batch and truncate per call instead.
        self.backend.no_padding()
        self.backend.no_truncation()
        # max_length -> a copy of `backend` with that truncation set; never changed once made.
        self._truncating: dict[int, HFTokenizer] = {}
        self._truncating_lock = threading.Lock()
        self.max_length = max_length
        self.pad_token_id = self._special_id("[PAD]", 0)
        self.cls_token_id = self._special_id("[CLS]", None)
        self.sep_token_id = self._special_id("[SEP]", None)

    def _special_id(self, token: str, default: int | None) -> int | None:
        i = self.backend.token_to_id(token)
        return default if i is None else i

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_file(cls, path: str | os.PathLike[str], lowercase: bool = True) -> Tokenizer:
        """Load ``tokenizer.json`` or build from a WordPiece ``vocab.txt``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: tokenizer file not found")
        if path.suffix == ".txt":
            return cls.from_vocab(path, lowercase=lowercase)
        try:
            backend = HFTokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
            raise ValueError(f"{path}: not a valid tokenizer.json ({e})") from None
        return cls(backend)

    @classmethod
    def from_vocab(cls, vocab_file: str | os.PathLike[str], lowercase: bool = True) -> Tokenizer:
        """A BERT tokenizer from a ``vocab.txt`` (one WordPiece token per line)."""
        vocab: dict[str, int] = {}
        with open(vocab_file, encoding="utf-8") as f:
            for i, line in enumerate(f):
                token = line.rstrip("\n")
                if token:
                    vocab.setdefault(token, i)
        for special in ("[UNK]", "[CLS]", "[SEP]", "[PAD]"):
            if special not in vocab:
                raise ValueError(f"{vocab_file}: vocabulary lacks the special token {special}")
        backend = HFTokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
        # strip_accents=None follows lowercase, as in BERT's BasicTokenizer.
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
        )
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
        backend.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
        backend.decoder = decoders.WordPiece(prefix="##")
        # Special tokens written literally in text stay whole, as in BERT's tokenizer.
        backend.add_special_tokens([t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if t in vocab])
        return cls(backend)

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Load from a checkpoint directory holding ``tokenizer.json`` or ``vocab.txt``."""
        path = Path(path)
        if (path / TOKENIZER_FILE).is_file():
            return cls.from_file(path / TOKENIZER_FILE)
        if (path / "vocab.txt").is_file():
            lowercase = _lowercase_from_tokenizer_config(path)
            return cls.from_vocab(path / "vocab.txt", lowercase=lowercase)
        raise FileNotFoundError(f"{path}: no tokenizer.json or vocab.txt")

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``tokenizer.json`` (into a directory, or to the given file path)."""
        path = Path(path)
        target = path / TOKENIZER_FILE if path.is_dir() else path
        atomic_write(target, lambda tmp: self.backend.save(str(tmp)))

    def hf_sidecars(self, model_max_length: int) -> dict[str, str]:
        """``tokenizer_config.json`` and ``special_tokens_map.json`` (file name -> text) that make
        ``transformers.AutoTokenizer`` load a directory's ``tokenizer.json`` as the BERT fast
        tokenizer it is, returning ``token_type_ids`` as ours does (without them it builds a
        generic tokenizer that returns none)."""
        import json

        special = {
            "cls_token": "[CLS]",
            "sep_token": "[SEP]",
            "pad_token": "[PAD]",
            "unk_token": "[UNK]",
            "mask_token": "[MASK]",
        }
        special = {k: v for k, v in special.items() if self.backend.token_to_id(v) is not None}
        config = {
            "tokenizer_class": "BertTokenizerFast",
            "model_max_length": model_max_length,
            "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
            "clean_up_tokenization_spaces": False,
            **special,
        }
        return {
            "tokenizer_config.json": json.dumps(config, indent=2, sort_keys=True) + "\n",
            "special_tokens_map.json": json.dumps(special, indent=2, sort_keys=True) + "\n",
        }

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def check_fits(self, vocab_size: int, source: str) -> None:
        """Raise ValueError when this tokenizer can produce an id that the model's embedding table
        (``vocab_size`` rows) lacks: torch would fail with an IndexError and ONNX Runtime with a
        Gather error on the first text holding such a token, long after loading."""
        ids = self.backend.get_vocab(with_added_tokens=True).values()
        needed = max(ids, default=-1) + 1
        if needed > vocab_size:
            raise ValueError(
                f"{source}: the tokenizer has {needed} token ids (0..{needed - 1}) but the model's vocab_size is "
                f"{vocab_size}; the tokenizer files do not belong to this model"
            )

    # ------------------------------------------------------------------ encoding
    def tokenize(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None, max_length: int = 128
    ) -> list[tuple[list[int], list[int]]]:
        """Unpadded ``(input_ids, token_type_ids)`` per text, truncated longest-first to ``max_length``."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not a single string")
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(pairs)} pair texts")
        inputs = list(texts) if pairs is None else list(zip(texts, pairs))
        encodings = self._with_truncation(max_length).encode_batch(inputs)
        return [(e.ids, e.type_ids) for e in encodings]

    def _with_truncation(self, max_length: int) -> HFTokenizer:
        """The copy of ``backend`` that truncates longest-first to ``max_length`` (made once)."""
        backend = self._truncating.get(max_length)
        if backend is None:
            with self._truncating_lock:
                backend = self._truncating.get(max_length)
                if backend is None:
                    # A round trip through JSON is the library's way to copy a tokenizer.
                    backend = HFTokenizer.from_str(self.backend.to_str())
                    backend.enable_truncation(max_length=max_length, strategy="longest_first")
                    self._truncating[max_length] = backend
        return backend

    def pad(self, items: Sequence[tuple[Sequence[int], Sequence[int]]]) -> dict[str, np.ndarray]:
        """Pad ``(input_ids, token_type_ids)`` items to the longest one: int64 arrays (B, T)."""
        return pad_batch(items, self.pad_token_id)

    def __call__(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None, max_length: int = 128
    ) -> dict[str, np.ndarray]:
        return self.pad(self.tokenize(texts, pairs, max_length))

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode(list(ids))


def pad_batch(items: Sequence[tuple[Sequence[int], Sequence[int]]], pad_token_id: int = 0) -> dict[str, np.ndarray]:
    """Pad ``(input_ids, token_type_ids)`` items to the longest one: ``input_ids``,
    ``attention_mask`` and ``token_type_ids`` as int64 arrays (B, T)."""
    width = max((len(ids) for ids, _ in items), default=0)
    batch = len(items)
    input_ids = np.full((batch, width), pad_token_id, dtype=np.int64)
    token_type_ids = np.zeros((batch, width), dtype=np.int64)
    attention_mask = np.zeros((batch, width), dtype=np.int64)
    for i, (ids, types) in enumerate(items):
        n = len(ids)
        input_ids[i, :n] = ids
        token_type_ids[i, :n] = types
        attention_mask[i, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


def _lowercase_from_tokenizer_config(path: Path) -> bool:
    import json

    cfg = path / "tokenizer_config.json"
    if cfg.is_file():
        try:
            return bool(json.loads(cfg.read_text()).get("do_lower_case", True))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return True
    return True
