"""The system contract: what a physical system gives the loop, whatever engine runs it.

A system owns its physics and its states: kT, particle count N and dimension d, masses, an
optional periodic box, the potential energy of positions shaped (..., N, d) in torch (so an
engine can take forces by autograd), starting configurations, and the metastable states as a
classifier on a function of the configuration (the "state coordinates": (x, y) for a model
potential, (mu2, mu3) of the coordination numbers for a cluster, (phi, psi) for a peptide).
States are discs of the spec's `system.states.NAME.center` / `.radius` in those coordinates.
A system with an exact reference (a 2-D model potential) says so; everything else works
without one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import torch


class System(ABC):
    """One physical system at one temperature, with named states (the first two are A and B)."""

    name: str
    kT: float
    n_particles: int
    dim: int
    states: dict[str, dict[str, Any]]  # NAME -> {"center": [...], "radius": r}, in state coordinates
    state_coordinate_names: tuple[str, str] = ("x", "y")
    energy_unit: str = "energy units"  # of the potential (and of kT)
    trajectory_format: str | None = None  # what write_trajectories writes, if anything
    has_exact_reference: bool = False

    @property
    def masses(self) -> np.ndarray:
        """Particle masses, (N,)."""
        return np.ones(self.n_particles)

    @property
    def box(self) -> np.ndarray | None:
        """Edge lengths (d,) of the orthorhombic periodic box, or None for an open system."""
        return None

    @abstractmethod
    def potential(self, positions: torch.Tensor) -> torch.Tensor:
        """Potential energy (...,) of positions (..., N, d); differentiable."""

    @abstractmethod
    def state_coordinates(self, positions: np.ndarray) -> np.ndarray:
        """The coordinates (n, m) the states are defined on, of positions (n, N, d)."""

    @abstractmethod
    def start(self, where: list[str] | list[float], n_walkers: int, spread: float, rng: np.random.Generator) -> np.ndarray:
        """Starting configurations (n_walkers, N, d): walker i starts in state where[i % len(where)]
        (or at a point in coordinates, where a system has such points), perturbed by Gaussian noise
        of width `spread`."""

    @property
    def state_names(self) -> list[str]:
        return list(self.states)

    def classify(self, positions: np.ndarray) -> np.ndarray:
        """State index (n,) of positions (n, N, d) in `state_names` order: the first state whose
        disc holds the point, -1 outside every state."""
        return self.classify_coordinates(self.state_coordinates(positions))

    def classify_coordinates(self, z: np.ndarray) -> np.ndarray:
        """State index (n,) of state coordinates z (n, m)."""
        label = np.full(len(z), -1)
        for j, inside in reversed(list(enumerate(in_states(z, self.states).values()))):
            label[inside] = j
        return label

    def classify_ab(self, positions: np.ndarray) -> np.ndarray:
        """0 in the first state (A), 1 in the second (B), -1 elsewhere (other states included)."""
        label = self.classify(positions)
        return np.where(label < 2, label, -1)

    def reference_fes(self, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """A reference free energy on the two state coordinates, as (edges along the first,
        edges along the second, F[i2, i1] in kT, minimum 0), or None: exact for a model potential
        (`bins` per axis), a stored long-run estimate for a particle system at its reference
        temperature. Campaigns report their reweighted free energy against it."""
        return None

    def state_plane(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Bin edges along the two state coordinates on which to show a reweighted free energy
        when the system has no reference (e.g. the Ramachandran plane), or None."""
        return None

    def regions(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """Named regions of state coordinates z (n, m) as boolean masks, whose free energies
        relative to the first one a campaign reports (e.g. phi < 0 and phi > 0 of a peptide);
        none by default."""
        return {}

    def write_trajectories(self, directory: Path, positions: np.ndarray) -> None:
        """Write the walkers' stored positions (frames, walkers, N, d) in a format molecular tools
        read (a molecule: one DCD per walker and the topology as PDB); nothing by default."""

    def representatives(self) -> np.ndarray | None:
        """One configuration (n_states, N, d) per state, for orienting a CV (A below B), or None
        when the system has none (the loop then uses the mean features of frames in each state)."""
        return None

    def count_transitions(self, positions: np.ndarray) -> int:
        """State-to-state transitions summed over walkers; positions (frames, walkers, N, d)."""
        frames, walkers = positions.shape[:2]
        return count_transitions(self.classify(positions.reshape(frames * walkers, *positions.shape[2:])).reshape(frames, walkers))


def in_states(points: np.ndarray, states: dict[str, dict]) -> dict[str, np.ndarray]:
    """Boolean masks of points (n, m) inside each state's disc (center, radius) in state coordinates."""
    return {name: np.linalg.norm(points - np.asarray(s["center"]), axis=1) <= s["radius"] for name, s in states.items()}


def count_transitions(labels: np.ndarray) -> int:
    """Transitions between the first state (A) and the others, summed over walkers, from state
    labels (frames, walkers). A walker's path is reduced to the sequence of states it was seen in,
    the others merged into one (hops among them, such as between two shapes of a cluster that
    interconvert fast, are not the rare event); each change counts once."""
    total = 0
    for walker in np.asarray(labels).T:
        seen = walker[walker >= 0] > 0
        total += int(np.count_nonzero(np.diff(seen)))
    return total
