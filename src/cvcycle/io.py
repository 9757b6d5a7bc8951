"""Atomic file writes, checksummed tensor files and derived random seeds.

Every output goes to a temporary name in the same directory, is flushed and fsynced, then
renamed over the target: a reader sees either the old complete file or the new complete one.
Files get the permissions the process's umask allows, as open() would give them.
Array files carry the checksum of their contents inside, so a damaged one is detected on reading.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import WorkspaceError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600; a group may share the workspace
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_bytes(path: Path, data: bytes) -> None:
    """Atomically write raw bytes."""
    _atomic_write(path, lambda fh: fh.write(data))


def write_saved_files(directory: Path, savers: dict[str, Callable[[str], None]]) -> None:
    """Files written by tools that take a file name (mdtraj's save_dcd, save_pdb): each saver
    writes its file into a scratch folder, from which it reaches `directory` / name atomically."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, save in savers.items():
            save(str(Path(tmp) / name))
            write_bytes(directory / name, (Path(tmp) / name).read_bytes())


def write_json(path: Path, obj: Any) -> None:
    """Atomically write an object as indented JSON."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n"
    _atomic_write(path, lambda fh: fh.write(text), mode="w")


def read_json(path: Path) -> Any:
    """Read JSON, reporting a missing or corrupted file by path."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise WorkspaceError(f"missing file: {path}") from None
    except json.JSONDecodeError as exc:
        raise WorkspaceError(f"corrupted JSON file {path}: {exc}") from None


CHECKSUM_KEY = "__sha256__"


def array_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of `arrays`, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Atomically write arrays as .npz, with the SHA-256 of their contents stored inside the same
    file (one rename publishes data and checksum together)."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    buf = io.BytesIO()
    np.savez(buf, **arrays, **{CHECKSUM_KEY: np.array(array_digest(arrays))})
    write_bytes(path, buf.getvalue())


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read an .npz written by write_npz, verifying its checksum."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise WorkspaceError(f"missing file: {path}") from None
    except Exception as exc:  # zipfile/ValueError/OSError variants for truncated or garbled archives
        raise WorkspaceError(f"checksum mismatch (corrupted or truncated file): {path} ({type(exc).__name__}: {exc})") from None
    stored = arrays.pop(CHECKSUM_KEY, None)
    if stored is None:
        raise WorkspaceError(f"no checksum in {path}: not written by cvcycle, or damaged")
    if str(stored) != array_digest(arrays):
        raise WorkspaceError(f"checksum mismatch (corrupted or truncated file): {path}")
    return arrays


def derive_seed(*keys: int) -> int:
    """A 63-bit seed derived from integer keys, e.g. (seed, iteration, segment)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


REMEDIES = {errno.ENOSPC: "free space on that file system (finished iterations are intact; the run resumes from its "
                          "last checkpoint)",
            errno.EDQUOT: "free space within your quota (the run resumes from its last checkpoint)",
            errno.EROFS: "the file system is mounted read-only: run where the workspace is writable",
            errno.EACCES: "no permission: check the owner and mode of the job directory",
            errno.EPERM: "no permission: check the owner and mode of the job directory"}


def os_error(exc: OSError) -> WorkspaceError:
    """An OSError as one message: what failed, on which path, and what to do."""
    where = f": {exc.filename}" if exc.filename else ""
    remedy = REMEDIES.get(exc.errno or 0)
    return WorkspaceError(f"{exc.strerror or exc}{where}" + (f" ({remedy})" if remedy else ""))
