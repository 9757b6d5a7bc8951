"""Atomic file writes, checksummed tensor files and derived random seeds.

Every output goes to a temporary name in the same directory, is flushed and fsynced, then
renamed over the target: a reader sees either the old complete file or the new complete one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import WorkspaceError


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
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


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Atomically write arrays as .npz with a SHA-256 checksum of the payload stored inside."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    payload = buf.getvalue()
    digest = hashlib.sha256(payload).hexdigest()
    write_bytes(path, payload)
    write_bytes(Path(str(path) + ".sha256"), (digest + "\n").encode())


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read an .npz written by write_npz, verifying its checksum."""
    path = Path(path)
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        raise WorkspaceError(f"missing file: {path}") from None
    sums = Path(str(path) + ".sha256")
    if sums.exists() and hashlib.sha256(payload).hexdigest() != sums.read_text().strip():
        raise WorkspaceError(f"checksum mismatch (corrupted or truncated file): {path}")
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as exc:  # zipfile/ValueError variants for truncated archives
        raise WorkspaceError(f"unreadable array file {path}: {exc}") from None


def derive_seed(*keys: int) -> int:
    """A 63-bit seed derived from integer keys, e.g. (seed, iteration, segment)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))
