"""The modeling file that lets transformers load a checkpoint directory as it is.

transformers has no class for a grouped, low-rank or factorized-embedding student, and turning one
into stock BERT (``convert --to hf``) multiplies it back out to full size. So every checkpoint
directory also carries ``modeling_squeezebert_toolkit.py``, and its ``config.json`` an ``auto_map``
pointing there: ``AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)``
then builds our own model at its own size and loads ``model.safetensors`` unchanged.

The file is generated, not maintained: it is the source of ``config.py``, ``model.py`` and
``hf_remote.py`` (the transformers classes) as they are, less their module docstrings, their
imports of squeezebert and the methods that call back into the package (``save_pretrained``), so
it runs where squeezebert is not installed. Whatever the model learns reaches the file with no
change here. Torch-free and transformers-free: it only reads text.
"""

from __future__ import annotations

import ast
import importlib.resources
from typing import Any

from squeezebert.config import ModelConfig

MODELING_FILE = "modeling_squeezebert_toolkit.py"
#: Package modules whose source, in this order, makes up the file.
SOURCES = ("config.py", "model.py", "hf_remote.py")
#: The transformers classes of hf_remote.py, by the auto class that loads each.
AUTO_CLASSES = {
    "AutoConfig": "SqueezeBertToolkitConfig",
    "AutoModel": "SqueezeBertToolkitModel",
    "AutoModelForSequenceClassification": "SqueezeBertToolkitForSequenceClassification",
}


def _is_ours(node: ast.AST) -> bool:
    """An import of the squeezebert package, a relative import, or ``from __future__`` (which the
    file states once, at its top)."""
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] in ("squeezebert", "__future__")
    if isinstance(node, ast.Import):
        return any(alias.name.split(".")[0] == "squeezebert" for alias in node.names)
    return False


def _strip(source: str) -> str:
    """``source`` less its module docstring, its top-level imports of squeezebert and every
    function that imports squeezebert when called; comments and layout stay as they are."""
    tree = ast.parse(source)
    drop: list[tuple[int, int]] = []
    first = tree.body[0] if tree.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        drop.append((first.lineno, first.end_lineno or first.lineno))
    drop += [(n.lineno, n.end_lineno or n.lineno) for n in tree.body if _is_ours(n)]
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(_is_ours(n) for n in ast.walk(node)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            drop.append((start, node.end_lineno or node.lineno))
    lines = source.splitlines()
    for start, end in sorted(drop, reverse=True):
        del lines[start - 1 : end]
    return "\n".join(lines).strip("\n") + "\n"


def modeling_source() -> str:
    """The text of the modeling file. Raises RuntimeError if it would still import squeezebert
    (a source grew an import this stripping does not handle): such a file is never written."""
    from squeezebert import __version__

    package = importlib.resources.files("squeezebert")
    text = (
        f'"""SqueezeBERT-toolkit models for transformers (trust_remote_code), written by squeezebert {__version__}.\n\n'
        "Generated from squeezebert's own sources (config.py, model.py, hf_remote.py), so it computes\n"
        "what squeezebert computes; it needs torch and transformers, not squeezebert.\n"
        '"""\n\nfrom __future__ import annotations\n'
    )
    for name in SOURCES:
        text += f"\n\n# {'=' * 60} squeezebert/{name}\n" + _strip(package.joinpath(name).read_text(encoding="utf-8"))
    tree = ast.parse(text)
    left = [n for n in ast.walk(tree) if _is_ours(n) and getattr(n, "module", None) != "__future__"]
    if left:
        raise RuntimeError(f"{MODELING_FILE}: line {left[0].lineno} still imports squeezebert; not written")
    return text


def auto_map_fields(config: ModelConfig) -> dict[str, Any]:
    """The ``architectures`` and ``auto_map`` entries of a checkpoint's ``config.json``."""
    module = MODELING_FILE.removesuffix(".py")
    head = "AutoModelForSequenceClassification" if config.num_labels else "AutoModel"
    return {
        "architectures": [AUTO_CLASSES[head]],
        "auto_map": {auto: f"{module}.{name}" for auto, name in AUTO_CLASSES.items()},
    }
