"""Torch-free checks on the files and directories a command will write, made before its work starts.

A training run or a full evaluation should not end, minutes later, in a traceback because its
output directory is read-only or its output path names a directory: :func:`check_writable_dir`
and :func:`check_writable_file` say so at once, in one line naming the path and the flag. They
create nothing that stays behind: writability is probed by creating (and removing) an empty file
where the output will go, which also catches read-only file systems and ACLs that ``os.access``
misses.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["check_writable_dir", "check_writable_file"]

_PROBE_PREFIX = ".squeezebert-write-check."


def _probe(directory: Path, target: Path, flag: str) -> None:
    """Create and remove an empty file in ``directory``; a failure names ``target`` and ``flag``."""
    try:
        fd, name = tempfile.mkstemp(prefix=_PROBE_PREFIX, dir=directory)
    except OSError as e:
        raise PermissionError(f"{target}: cannot write there ({flag}): {e.strerror or e}") from None
    os.close(fd)
    os.unlink(name)


def check_writable_dir(path: str | os.PathLike[str], flag: str = "--out") -> None:
    """Raise OSError (one line naming ``path`` and ``flag``) unless files can be written in the
    directory ``path``, or, when it does not exist yet, created under its nearest existing
    ancestor. Creates nothing."""
    path = Path(path)
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == path else f" (so {path} cannot be created)"
        raise NotADirectoryError(f"{existing}: is not a directory{where}; {flag} needs a directory")
    _probe(existing, path, flag)


def check_writable_file(path: str | os.PathLike[str], flag: str) -> None:
    """Raise OSError (one line naming ``path`` and ``flag``) unless the file ``path`` can be written:
    its directory exists and is writable, and ``path`` is not a directory. Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory; {flag} needs a file name")
    parent = path.parent
    if not parent.is_dir():
        what = "not a directory" if parent.exists() else "no such directory"
        raise FileNotFoundError(f"{parent}: {what} for {flag} {path}")
    _probe(parent, path, flag)
