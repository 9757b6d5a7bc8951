"""The atomic writers of cvcycle.io (module docstring: "Every output goes to a temporary name in
the same directory, is flushed and fsynced, then renamed over the target: a reader sees either
the old complete file or the new complete one").

(a) A write that fails part of the way through (the disk fills up half-way, the final fsync
    fails, the data cannot be converted) leaves the old file with its old bytes, or no file at
    all where there was none, and no temporary file behind.
(b) The durable-rename protocol: fsync of the new file (with all its bytes in it) -> rename over
    the target -> fsync of the directory, in that order. Calls are recorded by wrapping os.fsync
    and os.replace / os.rename; whether an fsynced descriptor is a file or a directory is read
    from os.fstat.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from cvcycle import io as cio

OLD_BYTES = b"old complete contents\n" * 50

# name -> (call that writes `path`, check that `path` holds what that call wrote)
WRITERS = {
    "write_bytes": (lambda path: cio.write_bytes(path, b"new bytes " * 4000),
                    lambda path: path.read_bytes() == b"new bytes " * 4000),
    "write_json": (lambda path: cio.write_json(path, {"a": list(range(2000)), "b": "text"}),
                   lambda path: json.loads(path.read_text()) == {"a": list(range(2000)), "b": "text"}),
    "write_npz": (lambda path: cio.write_npz(path, x=np.arange(5000.0), y=np.eye(3)),
                  lambda path: np.array_equal(cio.read_npz(path)["x"], np.arange(5000.0))),
    # payloads smaller than a file buffer: they reach the file only when it is flushed
    "write_bytes_small": (lambda path: cio.write_bytes(path, b"tiny"), lambda path: path.read_bytes() == b"tiny"),
    "write_json_small": (lambda path: cio.write_json(path, {"k": 1}), lambda path: json.loads(path.read_text()) == {"k": 1}),
    "write_npz_small": (lambda path: cio.write_npz(path, x=np.arange(3.0)),
                        lambda path: np.array_equal(cio.read_npz(path)["x"], np.arange(3.0))),
}


def _listing(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


class _HalfWritingFile:
    """A file object whose write() puts the first half of the data on disk and then fails like
    a full disk."""

    def __init__(self, fh):
        self._fh = fh

    def write(self, data):
        self._fh.write(data[: len(data) // 2])
        self._fh.flush()
        raise OSError(errno.ENOSPC, "No space left on device (injected)")

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()
        return False


def _fail_half_way(monkeypatch):
    """Every file opened for writing through os.fdopen or open() fails half-way through its
    first write (covers a temporary file opened either way, and a direct write to the target)."""
    real_fdopen, real_open = os.fdopen, builtins.open

    def writing(mode):
        return any(c in str(mode) for c in "wax+")

    def fdopen(fd, mode="r", *args, **kwargs):
        fh = real_fdopen(fd, mode, *args, **kwargs)
        return _HalfWritingFile(fh) if writing(mode) else fh

    def open_(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        return _HalfWritingFile(fh) if writing(mode) else fh

    monkeypatch.setattr(os, "fdopen", fdopen)
    monkeypatch.setattr(builtins, "open", open_)


def _fail_fsync(monkeypatch):
    """fsync of a regular file fails (an I/O error after all the data went to the page cache)."""
    real_fsync = os.fsync

    def fsync(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "Input/output error (injected)")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def _target(tmp_path: Path, writer: str, existing: bool) -> tuple[Path, Path]:
    """A fresh folder and the file a writer writes in it, holding OLD_BYTES if `existing`."""
    directory = tmp_path / "out"
    directory.mkdir()
    path = directory / f"target.{writer}"
    if existing:
        path.write_bytes(OLD_BYTES)
    return directory, path


@pytest.mark.parametrize("failure", ["half_way", "fsync"])
@pytest.mark.parametrize("existing", [True, False], ids=["over_old_file", "new_file"])
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, writer, existing, failure):
    write, _ = WRITERS[writer]
    directory, path = _target(tmp_path, writer, existing)
    (directory / "neighbour.txt").write_bytes(b"unrelated")
    before = _listing(directory)
    with monkeypatch.context() as m:
        (_fail_half_way if failure == "half_way" else _fail_fsync)(m)
        with pytest.raises(OSError, match="injected"):
            write(path)
    assert _listing(directory) == before  # old bytes intact (or still absent), nothing left behind
    if existing:
        assert path.read_bytes() == OLD_BYTES
    else:
        assert not path.exists()


class _Unconvertible:
    def __array__(self, *args, **kwargs):
        raise RuntimeError("cannot convert (injected)")


def test_write_npz_with_an_array_that_cannot_be_converted_leaves_the_old_file(tmp_path):
    path = tmp_path / "a.npz"
    cio.write_npz(path, x=np.arange(3.0))
    old = path.read_bytes()
    with pytest.raises(RuntimeError, match="injected"):
        cio.write_npz(path, x=np.arange(4.0), bad=_Unconvertible())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]
    assert path.read_bytes() == old
    np.testing.assert_array_equal(cio.read_npz(path)["x"], np.arange(3.0))


def _record(monkeypatch) -> list[tuple]:
    """Wrap os.fsync, os.replace and os.rename; return the list the calls are appended to, as
    ("fsync", "file" | "dir" | other, (st_dev, st_ino), st_size) and ("rename", src, dst, (st_dev, st_ino) of src)."""
    events: list[tuple] = []
    real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename

    def fsync(fd):
        st = os.fstat(fd)
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
        events.append(("fsync", kind, (st.st_dev, st.st_ino), st.st_size))
        return real_fsync(fd)

    def renamer(real):
        def rename(src, dst, *args, **kwargs):
            st = os.stat(src)
            events.append(("rename", Path(src), Path(dst), (st.st_dev, st.st_ino)))
            return real(src, dst, *args, **kwargs)
        return rename

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", renamer(real_replace))
    monkeypatch.setattr(os, "rename", renamer(real_rename))
    return events


@pytest.mark.parametrize("existing", [True, False], ids=["over_old_file", "new_file"])
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_fsync_file_then_rename_then_fsync_directory(tmp_path, monkeypatch, writer, existing):
    write, written = WRITERS[writer]
    directory, path = _target(tmp_path, writer, existing)
    with monkeypatch.context() as m:
        events = _record(m)
        write(path)
    assert written(path)
    assert sorted(p.name for p in directory.iterdir()) == [path.name]  # no temporary left
    final = os.stat(path)
    dir_st = os.stat(directory)

    renames = [i for i, e in enumerate(events) if e[0] == "rename"]
    assert len(renames) == 1, f"expected one rename onto {path.name}, got {events}"
    r = renames[0]
    _, src, dst, src_id = events[r]
    assert dst.resolve() == path.resolve()
    assert src.parent.resolve() == directory.resolve(), "the temporary must be in the target's directory"
    assert src_id == (final.st_dev, final.st_ino), "the renamed file is the one now at the target"

    # before the rename: the new file itself was fsynced, with all its bytes already written
    file_syncs = [e for e in events[:r] if e[:2] == ("fsync", "file") and e[2] == src_id]
    assert file_syncs, f"the new file was not fsynced before the rename: {events}"
    assert file_syncs[-1][3] == final.st_size, "fsynced before all bytes were written"
    # nothing fsyncs the file only after the rename, and no directory fsync stands in for the file's
    assert not any(e[:2] == ("fsync", "file") for e in events[r + 1:]), events

    # after the rename: the directory holding the entry was fsynced
    dir_syncs = [e for e in events[r + 1:] if e[:2] == ("fsync", "dir")]
    assert dir_syncs, f"the directory was not fsynced after the rename: {events}"
    assert any(e[2] == (dir_st.st_dev, dir_st.st_ino) for e in dir_syncs), "fsynced some other directory"
