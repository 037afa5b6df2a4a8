"""files: early writability checks and the clean-up of temporaries left by killed writers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from squeezebert.files import check_writable_dir, check_writable_file, remove_stale_temps, require_file, temp_prefix


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def test_writability_checks_name_the_path_and_the_flag_and_create_nothing(tmp_path: Path) -> None:
    check_writable_dir(tmp_path / "new" / "run")  # created later under tmp_path: fine
    check_writable_file(tmp_path / "out.json", "--json")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"a-file: is not a directory \(so .*run cannot be created\); --out"):
        check_writable_dir(tmp_path / "a-file" / "run")
    with pytest.raises(IsADirectoryError, match="is a directory; --json needs a file name"):
        check_writable_file(tmp_path, "--json")
    with pytest.raises(FileNotFoundError, match="missing: no such directory for --json"):
        check_writable_file(tmp_path / "missing" / "x.json", "--json")
    with pytest.raises(IsADirectoryError, match="is a directory; expected a data file"):
        require_file(tmp_path, "a data file")


def test_only_the_temporaries_of_dead_writers_of_the_same_file_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "model"
    dead, old = _dead_pid(), time.time() - 7200
    gone = [tmp_path / f".model.{dead}.k3j2h1ab.tmp", tmp_path / ".model.abcd_123.tmp"]  # dead pid; old, no pid
    kept = [
        tmp_path / f".model.{os.getppid()}.k3j2h1ab.tmp",  # a live writer
        tmp_path / ".model.zzzz_999.tmp",  # no pid and recent: may be live
        tmp_path / f".model.safetensors.{dead}.k3j2h1ab.tmp",  # another file's
        tmp_path / f"{temp_prefix(target)}mine.tmp",  # this process's
    ]
    for path in gone + kept:
        path.write_bytes(b"partial")
        if "zzzz" not in path.name:
            os.utime(path, (old, old))
    assert sorted(remove_stale_temps(target)) == sorted(gone)
    assert all(p.exists() for p in kept)
