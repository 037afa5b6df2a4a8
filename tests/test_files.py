"""files: early writability checks, atomic writes, JSON reads and the clean-up of temporaries
left by killed writers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from squeezebert.files import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    check_writable_dir,
    check_writable_file,
    read_json,
    read_json_object,
    remove_stale_temps,
    require_file,
    temp_prefix,
)


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


def test_atomic_writes_replace_the_file_whole_with_the_usual_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    atomic_write_text(target, '{"a": 1}\n')
    atomic_write_bytes(tmp_path / "blob", b"\x00\x01")
    assert read_json(target) == {"a": 1} and (tmp_path / "blob").read_bytes() == b"\x00\x01"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask

    # a writer that fails leaves the old file and no temporary behind
    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert read_json(target) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob", "out.json"]


def test_read_json_errors_are_one_line_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json: cannot read \(Expecting"):
        read_json(bad)

    class RunError(ValueError):
        pass

    with pytest.raises(RunError, match=r"missing\.json: cannot read"):
        read_json(tmp_path / "missing.json", RunError)


def test_read_json_object_names_the_file_and_tells_missing_from_broken(tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"list\.json: expected a JSON object$"):
        read_json_object(tmp_path / "list.json")
    with pytest.raises(KeyError, match=r"list\.json: expected names to numbers"):
        read_json_object(tmp_path / "list.json", KeyError, expected="names to numbers")
    with pytest.raises(FileNotFoundError, match=r"gone\.json: no such config"):
        read_json_object(tmp_path / "gone.json", missing="no such config")
    with pytest.raises(ValueError, match=r"gone\.json: cannot read"):
        read_json_object(tmp_path / "gone.json")
    (tmp_path / "ok.json").write_text('{"a": 1}')
    assert read_json_object(tmp_path / "ok.json") == {"a": 1}
