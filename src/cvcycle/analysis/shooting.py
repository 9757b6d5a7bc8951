"""Committor estimates by shooting: many unbiased trajectories from given configurations, each
followed until it first enters state A or B. p_B(x) = fraction of trajectories from x that reach
B first; for a perfect reaction coordinate, configurations on its isosurface p_B = 1/2 all have
p_B = 1/2 (the committor histogram test; Geissler, Dellago & Chandler 1999).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..engines.base import Engine
from ..systems.model2d import plane
from ..systems.base import in_states

Classify = Callable[[np.ndarray], np.ndarray]


def state_classifier(states: dict[str, dict]) -> Classify:
    """Points of a 2-D model potential, (n, 2) or (n, 1, 2) -> 0 inside the first state (A), 1
    inside the second (B), -1 elsewhere (a System's classify_ab does this for any system)."""
    masks_of = lambda pos: list(in_states(pos, states).values())[:2]  # noqa: E731

    def classify(positions: np.ndarray) -> np.ndarray:
        in_a, in_b = masks_of(plane(positions))
        return np.where(in_a, 0, np.where(in_b, 1, -1))

    return classify


def shoot(engine: Engine, points: np.ndarray, shots: int, classify: Classify, seed: int, max_steps: int,
          stride: int = 10, compact: bool = False) -> tuple[np.ndarray, int]:
    """Outcomes (len(points), shots): 1 if the trajectory entered B first, 0 if A first, -1 if it
    reached neither within max_steps; and the trajectory steps: the sum over trajectories of the
    steps each ran until it committed (what trajectories run one by one would cost). Every
    trajectory starts from its point with its own Maxwell-Boltzmann velocities (an overdamped
    engine: its own last noise term), so the shots from a point are independent trials of p_B. The engine
    runs all len(points) * shots trajectories as its walkers (it must have been built with that
    many) until the last one commits; states are checked every `stride` steps, so a visit shorter
    than that can be missed (harmless when states are basins); the first stride is a keyed run,
    the later ones go on with its random stream where reseeding is costly (Engine.run_on). With
    `compact` the engine drops the
    committed trajectories whenever fewer than half of its walkers are still running (where it
    can), so a few slow trajectories do not keep all the others running: the same statistics,
    from another draw of the noise."""
    starts = np.repeat(np.asarray(points, dtype=np.float64), shots, axis=0)
    engine.set_positions(starts)
    engine.draw_velocities(seed)
    engine.seed = seed
    outcome = np.full(len(starts), -1)
    rows = np.arange(len(starts))  # the trajectory each of the engine's walkers runs
    steps = 0
    for chunk in range(math.ceil(max_steps / stride)):
        (engine.run if chunk == 0 else engine.run_on)(stride, stride, stream=(chunk,))
        steps += stride * int((outcome < 0).sum())
        state = classify(engine.state_dict()["positions"])
        newly = (outcome[rows] < 0) & (state >= 0)
        outcome[rows[newly]] = state[newly]
        if (outcome >= 0).all():
            break
        running = outcome[rows] < 0
        if compact and running.mean() < 0.5:
            try:
                engine.keep_walkers(np.flatnonzero(running))
            except NotImplementedError:
                compact = False
            else:
                rows = rows[running]
    return outcome.reshape(len(points), shots), steps


def committed_fraction(outcomes: np.ndarray) -> np.ndarray:
    """p_B per point from shooting outcomes, over the trajectories that committed (NaN if none did)."""
    done = outcomes >= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(done.any(axis=1), (outcomes == 1).sum(axis=1) / done.sum(axis=1), np.nan)
