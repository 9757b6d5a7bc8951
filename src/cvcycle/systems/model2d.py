"""A 2-D analytic model potential as a system: one particle in two dimensions, circular states
in (x, y), and an exact reference (free energy and committor on a grid)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..analysis.reference import boltzmann_bin_free_energy
from .base import System
from .potentials import Potential2D


class ModelPotential2D(System):
    """scale x V(x, y) of a named potential at temperature kT; positions (..., 1, 2)."""

    n_particles, dim = 1, 2
    has_exact_reference = True

    def __init__(self, potential: str, scale: float, kT: float, states: dict[str, dict[str, Any]]) -> None:
        self.name, self.kT, self.states = potential, float(kT), states
        self.surface = Potential2D(potential, scale)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "ModelPotential2D":
        sy = spec["system"]
        return cls(sy["potential"], sy["scale"], sy["temperature"], sy["states"])

    def potential(self, positions: torch.Tensor) -> torch.Tensor:
        return self.surface(positions[..., 0, :])

    def state_coordinates(self, positions: np.ndarray) -> np.ndarray:
        return plane(positions)

    def start(self, where: list[str] | list[float], n_walkers: int, spread: float, rng: np.random.Generator) -> np.ndarray:
        if isinstance(where[0], str):
            centers = np.array([self.states[where[i % len(where)]]["center"] for i in range(n_walkers)])[:, None, :]
        else:
            centers = np.asarray(where, dtype=np.float64).reshape(1, 1, 2)
        return centers + spread * rng.standard_normal((n_walkers, 1, 2))

    def reference_fes(self, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact free energy of histogram bins over the potential's box (Boltzmann weight
        integrated over each bin)."""
        (x0, x1), (y0, y1) = self.surface.box
        xe, ye = np.linspace(x0, x1, bins + 1), np.linspace(y0, y1, bins + 1)
        return xe, ye, boltzmann_bin_free_energy(self.surface, self.kT, xe, ye)

    def representatives(self) -> np.ndarray:
        return np.array([s["center"] for s in self.states.values()], dtype=np.float64)[:, None, :]


def plane(positions: np.ndarray) -> np.ndarray:
    """The (x, y) points (n, 2) of one-particle 2-D positions (n, 1, 2) (or (n, 2))."""
    return np.asarray(positions).reshape(len(positions), 2)
