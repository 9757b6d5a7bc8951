"""What transition path sampling leaves behind: one record per shooting move, and the paths."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from .. import io as cio


@dataclass
class ShootingRecords:
    """One row per two-way shooting move, in move order.

    outcomes[:, 0] is the forward half, outcomes[:, 1] the backward half, each run from the shooting
    point until it first entered a state: 0 = A, 1 = B, -1 = neither within the max length. Rejected
    moves (A -> A, B -> B) keep both outcomes: they are committor data like the accepted ones."""

    points: np.ndarray       # (n, 2) shooting point positions
    features: np.ndarray     # (n, n_features) their features
    outcomes: np.ndarray     # (n, 2) int
    accepted: np.ndarray     # (n,) bool
    steps: np.ndarray        # (n,) engine steps OPS ran for the move
    extra_steps: np.ndarray  # (n,) engine steps spent running a half that OPS skipped
    path_length: np.ndarray  # (n,) frames of the current path after the move

    def as_dict(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, arrays: dict[str, np.ndarray]) -> "ShootingRecords":
        return cls(**{f.name: arrays[f.name] for f in fields(cls)})

    @classmethod
    def concatenate(cls, parts: list["ShootingRecords"]) -> "ShootingRecords":
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    def __len__(self) -> int:
        return len(self.accepted)


def chunk_path(workdir: Path, index: int) -> Path:
    return Path(workdir) / f"chunk-{index:04d}.npz"


def accepted_paths(workdir: Path) -> list[np.ndarray]:
    """Positions (n, 2) of every accepted A -> B path in the chunk files of `workdir`, in move order
    (the transition path ensemble: path lengths, transition states, and the path averages a rate
    estimate needs). Every chunk file present is read, also moves beyond the last call's n_moves."""
    out: list[np.ndarray] = []
    index = 0
    while chunk_path(workdir, index).is_file():
        chunk = cio.read_npz(chunk_path(workdir, index))
        out += np.split(chunk["accepted_positions"], np.cumsum(chunk["accepted_lengths"])[:-1]) if len(chunk["accepted_lengths"]) else []
        index += 1
    return out
