"""What transition path sampling leaves behind: one record per shooting move, and the paths."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import io as cio


@dataclass
class ShootingRecords:
    """One row per two-way shooting move, in move order.

    outcomes[:, 0] is the forward half, outcomes[:, 1] the backward half, each run from the shooting
    point until it first entered a state: 0 = A, 1 = B, -1 = neither within the max length. They are
    not two independent trials of p_B: the backward half starts with the forward half's velocity
    (overdamped: last noise term) negated: the current path's noise term (overdamped), or one fresh
    Maxwell-Boltzmann draw shared by both halves (underdamped). The committor data are the extra
    shots (cvcycle.analysis.shooting)."""

    points: np.ndarray       # (n, particles, dim) shooting point positions; (n, 2) on a 2-D model potential
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


def _chunks(workdir: Path) -> Iterator[dict[str, np.ndarray]]:
    """The arrays of every chunk file present in `workdir`, in order (also moves beyond the last
    call's n_moves)."""
    index = 0
    while chunk_path(workdir, index).is_file():
        yield cio.read_npz(chunk_path(workdir, index))
        index += 1


def _accepted(chunk: dict[str, np.ndarray]) -> list[np.ndarray]:
    lengths = chunk["accepted_lengths"]
    return np.split(chunk["accepted_positions"], np.cumsum(lengths)[:-1]) if len(lengths) else []


def chain_paths(workdir: Path, start: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The Markov chain of a TPS run as distinct paths and the number of moves each was the current
    path after: `start` (the path the run began from) for the moves before the first acceptance,
    then each accepted path for the move that accepted it and every rejected move after it. A
    path-ensemble average weights each path by its count (averages over accepted paths alone
    overweight the paths the chain leaves quickly)."""
    paths, accepted = [np.asarray(start)], [np.zeros(0, bool)]
    for chunk in _chunks(workdir):
        paths += _accepted(chunk)
        accepted.append(chunk["accepted"])
    return paths, np.bincount(np.cumsum(np.concatenate(accepted)), minlength=len(paths))


def accepted_paths(workdir: Path) -> list[np.ndarray]:
    """Positions (n, ...) of every accepted A -> B path in the chunk files of `workdir`, in move order
    (the transition path ensemble: path lengths, transition states, and the path averages a rate
    estimate needs). Every chunk file present is read, also moves beyond the last call's n_moves."""
    return [path for chunk in _chunks(workdir) for path in _accepted(chunk)]
