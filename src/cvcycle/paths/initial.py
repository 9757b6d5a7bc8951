"""A first A -> B path for transition path sampling, cut from the frames of an earlier run."""

from __future__ import annotations

import numpy as np

from ..analysis.shooting import state_classifier
from ..errors import CvcycleError


def reactive_segments(labels: np.ndarray) -> list[tuple[int, int]]:
    """(i, j) for every i < j with labels[i] and labels[j] two different states (0/1) and only
    -1 (neither) in between: the last frame in one state up to the first frame in the other."""
    seen = np.flatnonzero(labels >= 0)
    return [(int(i), int(j)) for i, j in zip(seen[:-1], seen[1:]) if labels[i] != labels[j]]


def initial_path(positions: np.ndarray, states: dict[str, dict]) -> np.ndarray:
    """The shortest reactive segment with at least one frame between the states, over all walkers
    of `positions` (frames, walkers, 2), as positions (n, 2) running from the first state (A) to
    the second (B); a B -> A segment is returned reversed. Ties go to the earliest frame, then the
    lowest walker. Biased frames are not unbiased dynamics: discard the first TPS moves from it."""
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[2] != 2:
        raise ValueError(f"positions must be shaped (frames, walkers, 2), not {positions.shape}")
    classify = state_classifier(states)
    best: tuple[int, int, int, int] | None = None  # (length, start, walker, end)
    for walker in range(positions.shape[1]):
        labels = classify(positions[:, walker])
        for i, j in reactive_segments(labels):
            if j - i >= 2 and (best is None or (j - i, i, walker) < best[:3]):
                best = (j - i, i, walker, j)
    if best is None:
        names = " and ".join(list(states)[:2])
        raise CvcycleError(f"no transition between states {names} in {positions.shape[1]} walkers x "
                           f"{positions.shape[0]} frames: no initial path for transition path sampling "
                           f"(run the campaign until the walkers cross, or give frames that do)")
    _, i, walker, j = best
    segment = positions[i:j + 1, walker]
    return segment if classify(segment[:1])[0] == 0 else segment[::-1].copy()
