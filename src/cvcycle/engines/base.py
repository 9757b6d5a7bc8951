"""The engine contract: the only thing the campaign loop knows about a simulation engine.

An engine advances many walkers of one system (see systems.base.System) together. Positions
are (walkers, N, d) for N particles in d = 2 or 3 dimensions, with the system's masses and
optional periodic box. The engine owns its seed and a global step counter that continues across
runs and iterations and is part of its saved state, so an engine that draws noise from
(seed, step, particle) never repeats it. The bias is handed over as an object (`BiasHook`) that
the engine applies its own way (the torch engine calls it in Python; an OpenMM or HOOMD-blue
engine may wrap it in a force of its own), every step or every `bias_stride` steps; its forces
are those of bias(CV(features(positions))), by autograd or an equivalent. State is saved and
restored as plain arrays (opaque engine blobs as uint8 arrays, never pickles); the class flag
`deterministic_restart` says whether a restored engine continues bit for bit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from ..systems.base import System


class BiasHook(Protocol):
    """What an engine needs from a bias on a learned CV."""

    def energy(self, features: torch.Tensor, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Bias energy per walker (n,) and CV values (n, d); differentiable in `features`, and in
        `positions` (walkers, N, d), the tensor the features were computed from, which engines
        pass so that a bias on gradients of the CV (the Kolmogorov bias) can take them with
        respect to the positions."""

    def observe(self, step: int, cv: torch.Tensor) -> bool:
        """Called at every bias evaluation with the global step and detached CV values; True when
        the bias changed (a deposition)."""

    def offset(self) -> float:
        """Reweighting offset c(t) in energy units: weight = exp((V(s, t) - c(t)) / kT)."""


@dataclass
class Frames:
    """Reported frames, arrays shaped (n_frames, n_walkers, ...): the global step, positions
    (.., N, d), features, potential and bias energy, CV and log weight (V - c(t)) / kT."""

    step: np.ndarray
    positions: np.ndarray
    features: np.ndarray
    potential: np.ndarray
    cv: np.ndarray
    bias: np.ndarray
    log_weight: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Engine(ABC):
    """Many walkers of one system, advanced together."""

    deterministic_restart: ClassVar[bool]  # a restored state continues bit for bit

    system: System
    featurizer: torch.nn.Module
    n_walkers: int
    seed: int          # the engine's own random seed
    step: int          # global step counter: continues across runs, saved with the state
    device: torch.device

    @classmethod
    @abstractmethod
    def from_spec(cls, spec: dict[str, Any], system: System) -> "Engine":
        """Set up from a validated spec and its system (walkers, time step, seed, threads)."""

    @property
    def kT(self) -> float:
        return self.system.kT

    @property
    def feature_names(self) -> list[str]:
        return list(self.featurizer.names)

    @abstractmethod
    def set_positions(self, positions: np.ndarray, velocities: np.ndarray | None = None) -> None:
        """Place the walkers, positions (walkers, N, d); velocities likewise, or zero."""

    @abstractmethod
    def draw_velocities(self, seed: int) -> None:
        """Give every walker fresh velocities from the Maxwell-Boltzmann distribution at the system's
        temperature, drawn from a stream that is a pure function of `seed`, and whatever else a
        trajectory needs to start as a regular one (an overdamped scheme's last noise term): what a
        shot from a configuration starts with. Positions are kept."""

    @abstractmethod
    def run(self, n_steps: int, report_stride: int, bias: BiasHook | None = None, *, bias_stride: int = 1,
            stream: tuple[int, ...] | None = None) -> Frames:
        """Advance `n_steps` from the global step `self.step`, reporting a frame every
        `report_stride` steps (at the start of each stride) and evaluating the bias every
        `bias_stride` steps. The random stream is a pure function of (seed, stream) when a stream
        key is given, else of (seed, step)."""

    def run_on(self, n_steps: int, report_stride: int, stream: tuple[int, ...]) -> Frames:
        """Advance `n_steps` unbiased, as run(n_steps, report_stride, stream=stream) where reseeding
        is cheap; an engine whose reseeding is costly (OpenMM reinitialises every Context) instead
        draws on from its random stream where the previous run left it, so the noise is a pure
        function of the last keyed run() and the calls since. For the many short runs of
        shooting and path sampling, between their checks for commitment."""
        return self.run(n_steps, report_stride, stream=stream)

    @abstractmethod
    def forces(self, bias: BiasHook | None = None) -> np.ndarray:
        """Forces (walkers, N, d) at the current positions, of the potential plus `bias`."""

    def keep_walkers(self, walkers: np.ndarray) -> None:
        """Continue with only the walkers at these indices, in this order (e.g. the trajectories of
        a shooting run that have not committed yet). An engine that cannot drop walkers raises
        NotImplementedError, and callers run them all."""
        raise NotImplementedError(f"{type(self).__name__} cannot drop walkers")

    @abstractmethod
    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to continue (positions, velocities, step, ...), as arrays."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `state_dict` returned."""


def torch_threads(cpus: int, walkers: int, particles: int) -> int:
    """Torch threads for an engine's walkers (their dynamics in the torch engine; features, CV and
    bias of all walkers at once in every engine): `cpus` for batches big enough to split, else 1.
    Torch runs an operation on fewer than 32,768 elements in one thread anyway, and the idle
    threads of a bigger pool only spin: on a loaded 2-core machine two threads ran alanine
    dipeptide's biased OpenMM walkers (8 x 22 atoms) 4-5 x slower than one (600 against 3,300
    walker steps / s) and Mueller-Brown's 25 walkers 5 x slower (3,100 against 16,000); on an idle
    machine two were 2-3 % slower (5,740 against 5,930 and 33,300 against 33,900). Pair terms
    make a particle system's work grow as walkers x particles^2."""
    return cpus if walkers * particles * particles >= 32768 else 1
