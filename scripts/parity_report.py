"""Print the max abs difference between our model and transformers' reference implementations.

Random weights (tiny configs and the full-size squeezebert-uncased config) through
transformers' own SqueezeBERT and BERT classes, plus the real all-MiniLM-L6-v2 weights. The tests
assert these stay <= 1e-5; this script reports the actual figures for docs/RESULTS.md.

    python scripts/parity_report.py
"""

from __future__ import annotations

import tempfile

import torch
import transformers

from squeezebert.checkpoint import load, minilm_dir

TINY = dict(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
GROUPS = dict(q_groups=4, k_groups=4, v_groups=4, post_attention_groups=1, intermediate_groups=4, output_groups=4)


def inputs(batch: int, seq: int, vocab: int) -> dict[str, torch.Tensor]:
    ids = torch.randint(1, vocab, (batch, seq))
    mask = torch.ones(batch, seq, dtype=torch.long)
    for i in range(batch):
        mask[i, max(2, seq - 2 * i) :] = 0
    types = torch.zeros_like(ids)
    types[:, seq // 2 :] = 1
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": types * mask}


def max_diff(hf_cls: type, cfg: object, shapes: list[tuple[int, int]]) -> float:
    hf = hf_cls(cfg).eval()
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ours = load(d).model
    worst = 0.0
    for b, t in shapes:
        x = inputs(b, t, cfg.vocab_size)
        with torch.no_grad():
            ref = hf(**x)
            ref = ref.logits if hasattr(ref, "logits") else ref.last_hidden_state
            worst = max(worst, (ours(**x) - ref).abs().max().item())
    return worst


def main() -> None:
    torch.manual_seed(0)
    shapes = [(1, 7), (4, 7), (1, 128), (4, 128)]
    rows = []
    sq_tiny = transformers.SqueezeBertConfig(**TINY, embedding_size=64, num_labels=3, **GROUPS)
    bert_tiny = transformers.BertConfig(**TINY, num_labels=3)
    sq_full = transformers.SqueezeBertConfig(vocab_size=30528, embedding_size=768, num_labels=2, **GROUPS)
    for name, cls, cfg, sh in [
        (
            "SqueezeBertForSequenceClassification, tiny",
            transformers.SqueezeBertForSequenceClassification,
            sq_tiny,
            shapes,
        ),
        ("SqueezeBertModel, tiny", transformers.SqueezeBertModel, sq_tiny, shapes),
        ("BertForSequenceClassification, tiny", transformers.BertForSequenceClassification, bert_tiny, shapes),
        ("BertModel, tiny", transformers.BertModel, bert_tiny, shapes),
        (
            "SqueezeBertForSequenceClassification, squeezebert-uncased size",
            transformers.SqueezeBertForSequenceClassification,
            sq_full,
            [(1, 128), (4, 7)],
        ),  # noqa: E501
        ("SqueezeBertModel, squeezebert-uncased size", transformers.SqueezeBertModel, sq_full, [(1, 128), (4, 7)]),
    ]:
        rows.append((name, "logits" if "Classification" in name else "hidden states", max_diff(cls, cfg, sh)))
    ours = load("minilm-l6")
    hf = transformers.BertModel.from_pretrained(minilm_dir()).eval()
    texts = ["The quick brown fox.", "A much longer sentence about nothing in particular, with commas."]
    b = {k: torch.from_numpy(v) for k, v in ours.tokenizer(texts, ["Is it quick?", "Nothing."]).items()}
    with torch.no_grad():
        d = (ours.model(**b) - hf(**b).last_hidden_state).abs()
    rows.append(
        ("all-MiniLM-L6-v2 real weights (real tokens)", "hidden states", d[b["attention_mask"].bool()].max().item())
    )
    print("| reference | compared | max abs diff |")
    print("|---|---|---|")
    for name, what, diff in rows:
        print(f"| {name} | {what} | {diff:.1e} |")


if __name__ == "__main__":
    main()
