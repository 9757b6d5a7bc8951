"""The openpathsampling side of the bridge; imported only through cvcycle.paths once OPS is known
to be installed.

A snapshot holds one walker's positions (particles, dim) and one velocity-like array of the same
shape that OPS negates on time reversal: the velocities for an underdamped integrator (BAOAB, or
OpenMM's Langevin middle scheme, whose engine gives velocities at the positions' time, so that
the negated ones reverse the deterministic part of a step), and the last Leimkuhler-Matthews
noise xi_n for the overdamped one. That scheme is BAOAB's infinite-friction limit, with
end-of-step velocity proportional to xi_n + F dt / (2 gamma c), c its noise amplitude; flipping
xi_n alone leaves out the F term, so the first step of a reversed half differs from the exact
reversal by one step's drift F dt / gamma. With underdamped dynamics every shooting point gets
fresh Maxwell-Boltzmann velocities (randomize_velocities, for OPS's RandomVelocities).
A 2-D model potential's snapshot is one particle, (1, 2); arrays of them come out as points (n, 2).

Each OPS frame is `stride` engine steps whose random stream is seeded from (base seed, frame
counter), both owned by the bridge engine, so a run is a pure function of its seeds; an engine
whose reseeding is costly (OpenMM) is seeded at the first frame and goes on from there
(Engine.run_on), which keeps a chunk of moves a pure function of its seed.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
import openpathsampling as paths
from openpathsampling.engines import features as ops_features

from .. import io as cio
from ..engines.base import Engine

Weight = Callable[[np.ndarray], np.ndarray]
Classify = Callable[[np.ndarray], np.ndarray]


@ops_features.attach_features([ops_features.coordinates, ops_features.velocities, ops_features.engine])
class Snapshot(paths.engines.BaseSnapshot):
    """One frame of a one-walker cvcycle engine."""


class BridgeEngine(paths.engines.DynamicsEngine):
    """OPS dynamics engine over a one-walker cvcycle Engine; one OPS frame = `stride` engine steps.

    `halves` collects the final position of every trajectory generated since it was last cleared,
    leaving out those OPS stopped before their first new frame."""

    base_snapshot_type = Snapshot
    _default_options = {"n_frames_max": 1000, "on_max_length": "fail"}

    def __init__(self, engine: Engine, stride: int, max_frames: int, seed: int, underdamped: bool,
                 frame_shape: tuple[int, ...]) -> None:
        """`frame_shape`: one frame's positions as cvcycle stores them, (particles, dim), or (2,)
        for a 2-D model potential's point."""
        if engine.n_walkers != 1:
            raise ValueError(f"the OPS bridge needs an engine with one walker, not {engine.n_walkers}")
        self.shape = tuple(frame_shape)
        atoms, dim = (1, self.shape[0]) if len(self.shape) == 1 else self.shape
        descriptor = paths.engines.SnapshotDescriptor.construct(Snapshot, {"n_atoms": atoms, "n_spatial": dim})
        super().__init__(options={"n_frames_max": int(max_frames)}, descriptor=descriptor)
        self.engine, self.stride, self.seed, self.snap_shape = engine, int(stride), int(seed), (atoms, dim)
        engine.seed = self.seed
        self.underdamped = underdamped
        self.frames = 0  # frames generated so far: the counter of the per-frame seeds
        self.redraws = 0  # velocity draws so far (randomize_velocities)
        self.halves: list[np.ndarray] = []

    @property
    def current_snapshot(self) -> Snapshot:
        state = self.engine.state_dict()
        velocity = state["velocities" if self.underdamped else "noise"]
        return Snapshot(coordinates=state["positions"].reshape(self.snap_shape).copy(),
                        velocities=velocity.reshape(self.snap_shape).copy(), engine=self)

    @current_snapshot.setter
    def current_snapshot(self, snap: Snapshot) -> None:
        x = np.array(snap.coordinates, dtype=np.float64).reshape(1, *self.shape)
        v = np.array(snap.velocities, dtype=np.float64).reshape(1, *self.shape)
        if self.underdamped:
            self.engine.set_positions(x, v)
        else:  # the overdamped scheme's state: positions and the last noise term (the Langevin engine)
            self.engine.load_state_dict({"positions": x, "velocities": np.zeros_like(x), "noise": v,
                                         "step": np.array(self.engine.step)})

    def randomize_velocities(self, snapshot: Snapshot, beta: float | None = None, subset: object = None) -> Snapshot:
        """The snapshot with fresh Maxwell-Boltzmann velocities at the engine's temperature (OPS's
        RandomVelocities modifier calls this; `beta` and `subset` are OPS's and unused: all atoms,
        the system's temperature), drawn from (seed, counter) so a chunk stays a pure function of
        its seed."""
        self.current_snapshot = snapshot
        self.redraws += 1
        self.engine.draw_velocities(cio.derive_seed(self.seed, 8_000_009, self.redraws))
        return self.current_snapshot

    def generate_next_frame(self) -> Snapshot:
        (self.engine.run if self.frames == 0 else self.engine.run_on)(self.stride, self.stride, stream=(self.frames,))
        self.frames += 1
        return self.current_snapshot

    def stop(self, trajectory: paths.Trajectory) -> None:
        if len(trajectory) > 1:
            self.halves.append(point(trajectory[-1].coordinates))

    def trajectory(self, positions: np.ndarray, velocities: np.ndarray) -> paths.Trajectory:
        """An OPS trajectory from arrays (n, particles, dim), or points (n, 2) of a 2-D model potential."""
        return paths.Trajectory([Snapshot(coordinates=p.reshape(self.snap_shape).copy(), velocities=v.reshape(self.snap_shape).copy(),
                                          engine=self)
                                 for p, v in zip(np.asarray(positions, dtype=np.float64), np.asarray(velocities, dtype=np.float64))])


def point(coordinates: np.ndarray) -> np.ndarray:
    """A snapshot's coordinates (particles, dim) as cvcycle stores one frame: (particles, dim), or
    the point (2,) of a 2-D model potential's single particle."""
    x = np.array(coordinates, dtype=np.float64)
    return x[0] if len(x) == 1 else x


def arrays(trajectory: paths.Trajectory) -> tuple[np.ndarray, np.ndarray]:
    """Positions and velocity-like arrays of an OPS trajectory, one `point` per frame."""
    return (np.array([point(s.coordinates) for s in trajectory]), np.array([point(s.velocities) for s in trajectory]))


def state_volumes(classify: Classify, names: list[str]) -> tuple[paths.Volume, paths.Volume]:
    """States A and B (the first two `names`) as OPS volumes, by `classify` (a System's classify_ab:
    positions (n, ...) -> 0 in A, 1 in B, -1 elsewhere)."""
    label = paths.FunctionCV("cvcycle_state", lambda snap: float(classify(np.asarray(snap.coordinates)[None])[0]))
    name_a, name_b = names[:2]
    return (paths.CVDefinedVolume(label, -0.5, 0.5).named(name_a),
            paths.CVDefinedVolume(label, 0.5, 1.5).named(name_b))


class WeightSelector(paths.ShootingPointSelector):
    """Shooting frame chosen with probability proportional to weight(position); the two end frames
    (inside the states) are never chosen."""

    def __init__(self, weight: Weight) -> None:
        super().__init__()
        self.weight = weight

    def _biases(self, trajectory: paths.Trajectory) -> np.ndarray:
        w = np.zeros(len(trajectory))
        if len(trajectory) > 2:
            inner = np.asarray(self.weight(arrays(trajectory)[0][1:-1]), dtype=np.float64).reshape(-1)
            if inner.shape != (len(trajectory) - 2,) or not np.all(np.isfinite(inner) & (inner >= 0)):
                raise ValueError("selector_weight must return one finite, non-negative weight per position")
            w[1:-1] = inner
        return w

    def f(self, snapshot: Snapshot, trajectory: paths.Trajectory) -> float:
        return float(self._biases(trajectory)[trajectory.index(snapshot)])

    def sum_bias(self, trajectory: paths.Trajectory) -> float:
        return float(self._biases(trajectory).sum())

    def pick(self, trajectory: paths.Trajectory) -> int:
        cum = np.cumsum(self._biases(trajectory))
        if cum[-1] <= 0:
            raise ValueError("selector_weight is zero on every interior frame of the current path")
        return int(np.searchsorted(cum, self._rng.random() * cum[-1], side="right"))


@contextmanager
def seeded(simulation: paths.PathSampling, seed: int) -> Iterator[None]:
    """Run OPS with its random choices drawn from `seed`: every mover's and selector's numpy
    generator is replaced, and Python's `random` (OPS's sample choice) is seeded for the block and
    restored afterwards."""
    rng = np.random.default_rng(cio.derive_seed(seed, 0))
    for node in simulation.root_mover:
        for obj in (node, getattr(node, "selector", None)):
            if obj is not None and hasattr(obj, "_rng"):
                obj._rng = rng
    saved = random.getstate()
    random.seed(cio.derive_seed(seed, 1))
    try:
        yield
    finally:
        random.setstate(saved)
