"""LJ7 in two dimensions: seven Lennard-Jones particles (epsilon = sigma = mass = 1), the classic
cluster of the collective-variable literature (Dellago, Bolhuis and Chandler 1998; Tribello,
Ceriotti and Parrinello 2010; Tiwary and Berne 2016), whose states are its four minimum-energy
shapes, told apart by the second and third central moments (mu2, mu3) of the coordination numbers.

The potential is the full Lennard-Jones sum over the 21 pairs (no cut-off) plus a weak flat-bottom
confinement, 1/2 k (|x_i - x_com| - R)^2 for |x_i - x_com| > R, that brings an evaporated particle
back; R = 2.5 sigma lies 0.77 sigma beyond the farthest particle of any of the four minima (1.73 sigma
in C3), about 20 thermal vibration amplitudes at kT = 0.1, so it is zero at every minimum and in
their basins and only acts on configurations with a particle (nearly) evaporated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..features.particles import CoordinationMoments, pair_displacements
from .base import System

REFERENCE = Path(__file__).parent / "data" / "lj7-reference.npz"
CONFINEMENT_RADIUS = 2.5  # sigma, from the centre of mass
CONFINEMENT_STIFFNESS = 1.0  # epsilon / sigma^2: weak next to the LJ bond (~57 epsilon / sigma^2)

# The four minimum-energy structures, centred, along their principal axes (quenched with BFGS to a
# gradient < 3e-7; energies -12.5349, -11.5013, -11.4769, -11.4034 epsilon, literature -12.53, -11.50,
# -11.48, -11.40): C0 the hexagon with a centre particle, C1 the capped parallelogram, C2 the
# trapezoid, C3 the symmetric "bridge" (mirror-symmetric in x).
MINIMA: dict[str, np.ndarray] = {
    "C0": np.array([[0.00000000, 0.00000000], [-1.11506569, -0.08707136], [-0.48212683, -1.00921090],
                    [0.63293886, -0.92213953], [1.11506569, 0.08707136], [0.48212683, 1.00921090],
                    [-0.63293886, 0.92213953]]),
    "C1": np.array([[-0.36394459, 0.20525930], [0.37109932, -0.63399490], [0.72956191, 0.43017229],
                    [-0.72625775, -0.85313461], [-0.01902638, 1.26495764], [-1.45869279, -0.00238291],
                    [1.46726030, -0.41087681]]),
    "C2": np.array([[-0.26287696, -0.17345431], [0.66251857, 0.45063359], [0.73091858, -0.67274722],
                    [-0.34324274, 0.94145969], [-1.27029917, 0.31207419], [-1.17934607, -0.80704920],
                    [1.66232779, -0.05091675]]),
    "C3": np.array([[0.00000000, -0.55374524], [0.55759906, 0.41782795], [-0.55759906, 0.41782795],
                    [-1.11649277, -0.55561874], [1.11649277, -0.55561874], [1.67617864, 0.41466341],
                    [-1.67617864, 0.41466340]]),
}
MINIMUM_ENERGIES: dict[str, float] = {"C0": -12.534867, "C1": -11.501291, "C2": -11.476907, "C3": -11.403419}


def lj_energy(positions: torch.Tensor) -> torch.Tensor:
    """Lennard-Jones energy 4 sum_{i<j} (r^-12 - r^-6), (...,) of positions (..., N, d)."""
    r2 = (pair_displacements(positions) ** 2).sum(dim=-1)
    inv6 = r2**-3
    return 4.0 * (inv6 * inv6 - inv6).sum(dim=-1)


def confinement_energy(positions: torch.Tensor, radius: float = CONFINEMENT_RADIUS,
                       stiffness: float = CONFINEMENT_STIFFNESS) -> torch.Tensor:
    """Flat-bottom restraint 1/2 k sum_i max(|x_i - x_com| - R, 0)^2 (equal masses), (...,)."""
    r2 = ((positions - positions.mean(dim=-2, keepdim=True)) ** 2).sum(dim=-1)
    outside = r2 > radius * radius
    excess = torch.sqrt(torch.where(outside, r2, torch.full_like(r2, radius * radius))) - radius  # no sqrt(0)
    return 0.5 * stiffness * (excess**2).sum(dim=-1)


class LJ7(System):
    """2-D LJ7 at temperature kT, with states as discs in (mu2, mu3); positions (..., 7, 2).

    A state's structure (for `start` and `representatives`) is the minimum of MINIMA whose (mu2, mu3)
    lies in its disc (the one closest to the centre if several do); the state's name does not matter.
    The state coordinates use the literature switching function (r0 = 1.5, nn = 8, mm = 16) whatever
    the campaign's features are, so the states stay the same physical sets.
    """

    name = "lj7"
    state_coordinate_names = ("mu2", "mu3")
    n_particles, dim = 7, 2
    has_exact_reference = False

    def __init__(self, kT: float, states: dict[str, dict[str, Any]]) -> None:
        self.kT, self.states = float(kT), states
        self.moments = CoordinationMoments(7, r0=1.5, nn=8, mm=16, moments=(2, 3))
        z = self.state_coordinates(np.stack(list(MINIMA.values())))
        self.minima_coordinates = dict(zip(MINIMA, z))
        self.structures: dict[str, str | None] = {}
        for state, disc in states.items():
            dist = {m: float(np.linalg.norm(zm - np.asarray(disc["center"]))) for m, zm in self.minima_coordinates.items()}
            inside = [m for m in dist if dist[m] <= disc["radius"]]
            self.structures[state] = min(inside, key=dist.__getitem__) if inside else None

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "LJ7":
        sy = spec["system"]
        return cls(sy["temperature"], sy["states"])

    def potential(self, positions: torch.Tensor) -> torch.Tensor:
        return lj_energy(positions) + confinement_energy(positions)

    def state_coordinates(self, positions: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(positions, dtype=np.float64).reshape(-1, 7, 2))
        with torch.no_grad():
            return self.moments(x).numpy()

    def structure(self, state: str) -> np.ndarray:
        """The minimum-energy structure (7, 2) of a state; ValueError if its disc holds none."""
        if state not in self.states:
            raise ValueError(f"lj7: unknown state {state!r} (states: {', '.join(self.states)})")
        minimum = self.structures[state]
        if minimum is None:
            known = ", ".join(f"{m} ({z[0]:.3f}, {z[1]:.3f})" for m, z in self.minima_coordinates.items())
            disc = self.states[state]
            raise ValueError(f"lj7: state {state!r} (center {disc['center']}, radius {disc['radius']} in (mu2, mu3)) "
                             f"holds no known minimum-energy structure; the minima lie at {known}")
        return MINIMA[minimum].copy()

    def start(self, where: list[str] | list[float], n_walkers: int, spread: float, rng: np.random.Generator) -> np.ndarray:
        if isinstance(where, str):
            where = [where]
        if not where or not all(isinstance(w, str) for w in where):
            raise ValueError(f"lj7: walkers start in named states, got {where!r}")
        base = np.stack([self.structure(where[i % len(where)]) for i in range(n_walkers)])
        return base + spread * rng.standard_normal(base.shape)

    def reference_fes(self, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """F(mu2, mu3) from parallel tempering (benchmarks/lj7_reference.py, stored in
        systems/data/lj7-reference.npz) when kT is its temperature, else None."""
        if not REFERENCE.is_file():
            return None
        ref = np.load(REFERENCE, allow_pickle=False)
        if abs(float(ref["kT"]) - self.kT) > 1e-9:
            return None
        return ref["mu2_edges"], ref["mu3_edges"], ref["fes"]

    def representatives(self) -> np.ndarray | None:
        if any(m is None for m in self.structures.values()):
            return None
        return np.stack([MINIMA[m] for m in self.structures.values()])  # type: ignore[index]
