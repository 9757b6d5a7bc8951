"""Engines whose dynamics run outside Python (OpenMM, HOOMD-blue): the walkers advance inside
the engine's library, and the bias on the learned CV reaches them through it (a per-particle
force that OpenMM holds, a velocity kick written into HOOMD-blue's state).

At every bias evaluation the walkers' positions go to torch in one batch (features -> CV -> bias,
forces by autograd) and the forces are handed to the library; they act for one step, with
`bias_stride` k > 1 as an impulse of k times the force at the steps that are multiples of k and
none in between (multiple time stepping, as the torch engine and PLUMED's STRIDE do), so the
k - 1 steps between evaluations run without Python. `ExternalEngine.run` is that loop; a
subclass supplies positions, potential energies and forces, and the steps themselves.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any

import numpy as np
import torch

from .. import io as cio
from ..errors import SimulationError
from ..features import make_featurizer
from ..systems.base import System
from .base import BiasHook, Engine, Frames, torch_threads

FRAME_KEYS = ("step", "positions", "features", "potential", "cv", "bias", "log_weight")


class ExternalEngine(Engine):
    """The run loop of an engine whose steps run inside a library, the bias handed to it per step."""

    dt: float
    reseed_is_costly = False  # run_on() then goes on with the random stream instead of reseeding

    @classmethod
    def from_spec(cls, spec: dict[str, Any], system: System) -> "ExternalEngine":
        en = spec["engine"]
        torch.set_num_threads(torch_threads(spec["resources"]["cpus"], en["walkers"], system.n_particles))
        return cls(system, make_featurizer(spec), dt=en["dt"], friction=en["friction"], n_walkers=en["walkers"],
                   seed=spec["campaign"]["seed"], platform=en.get("platform", "auto"))

    @abstractmethod
    def positions(self) -> np.ndarray:
        """Positions (walkers, N, d) in the system's units."""

    @abstractmethod
    def _potentials(self) -> np.ndarray:
        """Potential energy (walkers,) of the system's own forces (no bias), in its units."""

    @abstractmethod
    def _potential_forces(self) -> np.ndarray:
        """Forces (walkers, N, d) of the system's own potential (no bias), in its units."""

    @abstractmethod
    def _set_bias_force(self, forces: np.ndarray | None) -> None:
        """Per-particle bias forces (walkers, N, d) that act on the next step (an impulse of the
        step's length), or none (None)."""

    @abstractmethod
    def _reseed(self, key: tuple[int, ...]) -> None:
        """Seed every walker's random stream from (key, walker); no bias force held after it."""

    @abstractmethod
    def _advance(self, n: int) -> None:
        """n steps of every walker inside the library; SimulationError naming the walker if one fails."""

    def _start_arrays(self, positions: np.ndarray, velocities: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Positions and velocities (walkers, N, d) for set_positions (zero velocities for None);
        SimulationError for a shape that does not fit or positions that are not finite."""
        shape = (self.n_walkers, self.system.n_particles, self.system.dim)

        def fit(a: np.ndarray, what: str) -> np.ndarray:
            a = np.asarray(a, dtype=np.float64)
            if a.size != math.prod(shape):
                raise SimulationError(f"{what} shaped {a.shape} do not fit {shape[0]} walkers x {shape[1]} particles x "
                                      f"{shape[2]}")
            return a.reshape(shape)

        pos = fit(positions, "positions")
        bad = first_nonfinite_walker(pos)
        if bad is not None:
            raise SimulationError(f"initial positions are not finite (walker {bad})")
        return pos, np.zeros_like(pos) if velocities is None else fit(velocities, "velocities")

    def _evaluate(self, hook: BiasHook | None, x: np.ndarray, forces: bool) -> tuple[np.ndarray, ...]:
        """Features, CV, bias energy and (if `forces`) bias forces (walkers, N, d) at positions x;
        positions in the autograd graph whenever there is a bias, which may differentiate through
        them for its energy alone (the Kolmogorov bias)."""
        xt = torch.as_tensor(x).requires_grad_(hook is not None)
        feats = self.featurizer(xt)
        if hook is None:
            zeros = np.zeros(len(x))
            return feats.detach().numpy(), np.zeros((len(x), 0)), zeros, np.zeros_like(x)
        bias, cv = hook.energy(feats, xt)
        grad = torch.autograd.grad(bias.sum(), xt)[0].numpy() if forces else np.zeros_like(x)
        return feats.detach().numpy(), cv.detach().numpy(), bias.detach().numpy(), -grad

    def run(self, n_steps: int, report_stride: int, bias: BiasHook | None = None, *, bias_stride: int = 1,
            stream: tuple[int, ...] | None = None) -> Frames:
        if bias_stride < 1:
            raise ValueError(f"bias_stride must be a positive number of steps, got {bias_stride}")
        self._reseed((self.seed, *stream) if stream is not None else (self.seed, self.step))  # no bias held after it
        return self._run(n_steps, report_stride, bias, bias_stride)

    def run_on(self, n_steps: int, report_stride: int, stream: tuple[int, ...]) -> Frames:
        """Without reseeding when reseeding is costly (`reseed_is_costly`): the random stream goes
        on from the previous run."""
        if not self.reseed_is_costly:
            return super().run_on(n_steps, report_stride, stream)
        self._set_bias_force(None)
        return self._run(n_steps, report_stride, None, 1)

    def _run(self, n_steps: int, report_stride: int, bias: BiasHook | None, bias_stride: int) -> Frames:
        """run()'s steps and frames, with the random stream as it stands and no bias force held."""
        hook, beta, start, end = bias, 1.0 / self.kT, self.step, self.step + n_steps
        rows: dict[str, list[np.ndarray]] = {k: [] for k in FRAME_KEYS}
        while self.step < end:
            step = self.step
            on = hook is not None and step % bias_stride == 0
            report = (step - start) % report_stride == 0
            if on or report:
                x = self._finite(self.positions())
                feats, cv, b, f = self._evaluate(hook, x, forces=on)
                if on and hook.observe(step, torch.as_tensor(cv)):  # a deposition at the current configuration
                    feats, cv, b, f = self._evaluate(hook, x, forces=True)
                if report:
                    offset = hook.offset() if hook is not None else 0.0
                    for name, val in zip(FRAME_KEYS, (np.array(step), x, feats, self._potentials(), cv, b,
                                                      beta * (b - offset))):
                        rows[name].append(val)
                if on:
                    self._set_bias_force(bias_stride * f)
                    self._advance(1)
                    if bias_stride > 1:
                        self._set_bias_force(None)
                    continue
            # no event until the next bias evaluation, report or the end
            nxt = [end, start + (((step - start) // report_stride) + 1) * report_stride]
            if hook is not None:
                nxt.append((step // bias_stride + 1) * bias_stride)
            self._advance(min(nxt) - step)
        self._set_bias_force(None)
        self._finite(self.positions())
        return Frames(**{k: np.stack(v) for k, v in rows.items()})

    def forces(self, bias: BiasHook | None = None) -> np.ndarray:
        self._set_bias_force(None)
        return self._potential_forces() + self._evaluate(bias, self.positions(), forces=True)[3]

    def _finite(self, x: np.ndarray) -> np.ndarray:
        """x, or a SimulationError naming the first walker whose positions are not finite."""
        bad = first_nonfinite_walker(x)
        if bad is not None:
            raise SimulationError(f"simulation diverged by step {self.step}, walker {bad}: "
                                  f"positions are not finite (engine.dt = {self.dt} may be too large)")
        return x


def first_nonfinite_walker(x: np.ndarray) -> int | None:
    """Index of the first walker of x (walkers, ...) with a non-finite entry, or None."""
    bad = np.flatnonzero(~np.isfinite(x).reshape(len(x), -1).all(axis=1))
    return int(bad[0]) if len(bad) else None


def seed31(*key: int) -> int:
    """A seed in [1, 2**31) derived from the key (OpenMM reads 0 as 'pick one at random')."""
    return 1 + cio.derive_seed(*key) % (2**31 - 1)
