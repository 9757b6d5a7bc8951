"""The engine contract: the only thing the campaign loop knows about a simulation engine.

An engine is set up from a validated spec, holds the state of all its walkers, runs N steps
under an optional bias hook, reports frames every `report_stride` steps, and saves/restores its
state as plain arrays (no pickles). The bias acts on features of the positions; its forces come
from autograd through bias(CV(features(positions))), which every engine evaluates the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np
import torch


class BiasHook(Protocol):
    """What an engine needs from a bias on a learned CV."""

    def energy(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bias energy per walker (n,) and CV values (n, d); differentiable in `features`."""

    def observe(self, step: int, cv: torch.Tensor) -> bool:
        """Called after every step with detached CV values; True when the bias changed."""

    def offset(self) -> float:
        """Reweighting offset c(t) in energy units: weight = exp((V(s, t) - c(t)) / kT)."""


@dataclass
class Frames:
    """Reported frames, arrays shaped (n_frames, n_walkers, ...)."""

    step: np.ndarray
    positions: np.ndarray
    features: np.ndarray
    potential: np.ndarray
    cv: np.ndarray
    bias: np.ndarray
    log_weight: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def concatenate(cls, parts: list[dict[str, np.ndarray]]) -> "Frames":
        return cls(**{f.name: np.concatenate([p[f.name] for p in parts]) for f in fields(cls)})


class Engine(ABC):
    """Many walkers of one system, advanced together."""

    kT: float
    n_walkers: int
    feature_names: list[str]

    @abstractmethod
    def set_positions(self, positions: np.ndarray) -> None:
        """Place the walkers (velocities, where the integrator has them, are reset)."""

    @abstractmethod
    def run(self, n_steps: int, report_stride: int, seed: int, hook: BiasHook | None = None,
            first_step: int = 0) -> Frames:
        """Advance `n_steps`; the random stream is a pure function of `seed`."""

    @abstractmethod
    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to continue exactly (positions, velocities, ...)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `state_dict` returned."""
