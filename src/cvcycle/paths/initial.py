"""A first A -> B path for transition path sampling, cut from the frames of an earlier run."""

from __future__ import annotations

import numpy as np

from ..errors import CvcycleError
from ..systems.base import System


def reactive_segments(labels: np.ndarray) -> list[tuple[int, int]]:
    """(i, j) for every i < j with labels[i] and labels[j] two different states (0/1) and only
    -1 (neither) in between: the last frame in one state up to the first frame in the other."""
    seen = np.flatnonzero(labels >= 0)
    return [(int(i), int(j)) for i, j in zip(seen[:-1], seen[1:]) if labels[i] != labels[j]]


def initial_path(positions: np.ndarray, system: System) -> np.ndarray:
    """The shortest reactive segment with at least one frame between the states, over all walkers
    of `positions` (frames, walkers, ...) (points (frames, walkers, 2) of a 2-D model potential, or
    (frames, walkers, particles, dim)), as positions (n, ...) running from state A to state B;
    a B -> A segment is returned reversed (A and B: the system's first two states). Ties go to the
    earliest frame, then the lowest walker. Biased frames are not unbiased dynamics: discard
    the first TPS moves from it."""
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim < 3:
        raise ValueError(f"positions must be shaped (frames, walkers, ...), not {positions.shape}")
    classify = system.classify_ab
    best: tuple[int, int, int, int] | None = None  # (length, start, walker, end)
    for walker in range(positions.shape[1]):
        labels = classify(positions[:, walker])
        for i, j in reactive_segments(labels):
            if j - i >= 2 and (best is None or (j - i, i, walker) < best[:3]):
                best = (j - i, i, walker, j)
    if best is None:
        raise CvcycleError(f"no transition between states {' and '.join(system.state_names[:2])} in {positions.shape[1]} walkers x "
                           f"{positions.shape[0]} frames: no initial path for transition path sampling "
                           f"(run the campaign until the walkers cross, or give frames that do)")
    _, i, walker, j = best
    segment = positions[i:j + 1, walker]
    return segment if classify(segment[:1])[0] == 0 else segment[::-1].copy()
