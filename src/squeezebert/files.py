"""Torch-free helpers for the files commands write and read: early writability checks, atomic
writes of files and directories, temporary names, and JSON reads with a one-line error.

A training run or a full evaluation should not end, minutes later, in a traceback because its
output directory is read-only or its output path names a directory: :func:`check_writable_dir`
and :func:`check_writable_file` say so at once, in one line naming the path and the flag. They
create nothing that stays behind: writability is probed by creating (and removing) an empty file
where the output will go, which also catches read-only file systems and ACLs that ``os.access``
misses.

Every output is written under a temporary name beside it and renamed into place. A writer killed
mid-write (kill -9, power loss) leaves its temporary behind; :func:`temp_prefix` puts the
writer's pid in the name (``.model.safetensors.4242.k3j2h1.tmp``) so that the next write of the
same file can tell a dead writer's leftover from a live one's and remove it
(:func:`remove_stale_temps`).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable_dir",
    "check_writable_file",
    "read_json",
    "remove_stale_temps",
    "require_file",
    "temp_prefix",
    "write_dir_atomically",
]

# A temporary without a pid in its name (written before pids were recorded) counts as stale after this.
_UNTAGGED_STALE_S = 3600.0

_PROBE_PREFIX = ".squeezebert-write-check."


def _probe(directory: Path, target: Path, flag: str) -> None:
    """Create and remove an empty file in ``directory``; a failure names ``target`` and ``flag``."""
    try:
        fd, name = tempfile.mkstemp(prefix=_PROBE_PREFIX, dir=directory)
    except OSError as e:  # permission, read-only file system, full disk, ...
        raise OSError(f"{target}: cannot write there ({flag}): {e.strerror or e}") from None
    os.close(fd)
    os.unlink(name)


def require_file(path: str | os.PathLike[str], what: str = "a file") -> Path:
    """``path``, or one line saying why it cannot be read as ``what`` (e.g. "a data file"): it does
    not exist, or it is a directory. Anything else that exists (a regular file, a named pipe,
    ``/dev/stdin``) is left to ``open``."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory; expected {what}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    return path


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
    if parent.exists() and not parent.is_dir():
        raise NotADirectoryError(f"{parent}: not a directory, for {flag} {path}")
    if not parent.is_dir():
        raise FileNotFoundError(f"{parent}: no such directory for {flag} {path}")
    _probe(parent, path, flag)


def temp_prefix(path: str | os.PathLike[str]) -> str:
    """The name prefix of this process's temporaries for ``path``: ``.{name}.{pid}.`` (add a random
    part and ``.tmp``, e.g. with ``tempfile.mkstemp(prefix=..., suffix=".tmp")``)."""
    return f".{Path(path).name}.{os.getpid()}."


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries of ``path`` (``.{name}.*.tmp`` beside it) whose writer is gone: its
    pid no longer runs, or, for a name without a pid, it is over an hour old. A live writer's
    temporary is left alone. Returns what was removed."""
    path = Path(path)
    # .{name}.{pid}.{random}.tmp, or .{name}.{random}.tmp as mkstemp named them before (random:
    # mkstemp's or a hex token); strict, so that another file's temporaries never match.
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:(\d+)\.)?[A-Za-z0-9_]+\.tmp")
    removed = []
    try:
        candidates = list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    except OSError:  # the directory is not listable: nothing to clean here
        return removed
    for candidate in candidates:
        match = pattern.fullmatch(candidate.name)
        if match is None or not candidate.is_file():
            continue
        pid = match.group(1)
        if pid is not None:
            stale = not _alive(int(pid))
        else:
            try:
                stale = time.time() - candidate.stat().st_mtime > _UNTAGGED_STALE_S
            except OSError:
                continue
        if stale:
            try:
                candidate.unlink()
            except OSError:
                continue
            removed.append(candidate)
    return removed


# --------------------------------------------------------------------------- atomic writes
def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers see the old or the new file
    only. Temporaries of ``path`` left by a killed writer are removed first; a failed write
    leaves no temporary behind."""
    path = Path(path)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give them the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda p: p.write_bytes(data))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_dir_atomically(target: Path, fill: Callable[[Path], None]) -> None:
    """Replace directory ``target`` as a whole: ``fill(target.tmp)``, fsync, then
    ``target -> target.old``, ``target.tmp -> target``, remove ``target.old``. A crash at any point
    leaves a complete ``target`` or a complete ``target.old`` for the reader to fall back on."""
    tmp = target.with_name(target.name + ".tmp")
    old = target.with_name(target.name + ".old")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    fill(tmp)
    for f in tmp.iterdir():
        _fsync(f)
    _fsync(tmp)
    if target.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
    os.replace(tmp, target)
    _fsync(target.parent)
    if old.exists():
        shutil.rmtree(old)


# --------------------------------------------------------------------------- reading
def read_json(path: str | os.PathLike[str], error: type[Exception] = ValueError, missing: str | None = None) -> Any:
    """The JSON value in ``path``; a file that cannot be read or parsed raises ``error`` with one
    line naming the file and the reason. ``missing``: a file that is not there raises
    FileNotFoundError ``"{path}: {missing}"`` instead (for callers that tell the two apart)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        if missing is not None:
            raise FileNotFoundError(f"{path}: {missing}") from None
        raise error(f"{path}: cannot read ({e})") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: cannot read ({e})") from None


def read_json_object(
    path: str | os.PathLike[str],
    error: type[Exception] = ValueError,
    missing: str | None = None,
    expected: str = "a JSON object",
) -> dict[str, Any]:
    """:func:`read_json` of a file that must hold an object; anything else raises ``error``
    ``"{path}: expected {expected}"``."""
    value = read_json(path, error, missing)
    if not isinstance(value, dict):
        raise error(f"{path}: expected {expected}")
    return value
