"""Numbered checkpoint series with fallback: `<stem>-0007.npz` holds the state after 7 units
of work (segments, epochs). The newest two are kept; reading takes the newest one whose
checksum verifies, sets a damaged one aside as `*.corrupt` (reported by path) and falls back
to the one before it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

import numpy as np

from . import io as cio
from .errors import WorkspaceError

KEEP = 2


class CheckpointSeries:
    def __init__(self, directory: Path, stem: str) -> None:
        self.directory, self.stem = Path(directory), stem
        self._pattern = re.compile(rf"{re.escape(stem)}-(\d+)\.npz")

    def path(self, index: int) -> Path:
        return self.directory / f"{self.stem}-{index:04d}.npz"

    def indices(self) -> list[int]:
        """Indices of the checkpoints on disk, newest first."""
        if not self.directory.is_dir():
            return []
        found = (self._pattern.fullmatch(p.name) for p in self.directory.iterdir())
        return sorted((int(m.group(1)) for m in found if m), reverse=True)

    def write(self, index: int, **arrays: np.ndarray) -> Path:
        """Write checkpoint `index` atomically, then drop all but the newest KEEP."""
        path = self.path(index)
        cio.write_npz(path, **arrays)
        self._prune()
        return path

    def _prune(self) -> None:
        for old in self.indices()[KEEP:]:
            self.path(old).unlink(missing_ok=True)

    def latest(self, log: Callable[[str], None]) -> tuple[int, dict[str, np.ndarray]] | None:
        """The newest readable checkpoint as (index, arrays), or None when there is none. Older ones
        beyond the newest KEEP, left by a run killed between a write and its pruning, are removed."""
        self._prune()
        for index in self.indices():
            path = self.path(index)
            try:
                return index, cio.read_npz(path)
            except WorkspaceError as exc:
                os.replace(path, f"{path}.corrupt")
                log(f"warning: {exc}; set aside as {path.name}.corrupt, falling back to the previous checkpoint")
        return None
