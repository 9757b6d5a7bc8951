"""Bulk Lennard-Jones particles in a periodic orthorhombic box: the building blocks of the
``lj-nucleation`` system (`systems.lj_nucleation`, crystal nucleation from the supercooled liquid).

* Crystalline clusters: `solid_clusters`, `largest_solid_cluster` and
  `largest_solid_cluster_per_frame` find the ten Wolde-Frenkel solid-like particles (hard
  cut-off, as `features.steinhardt`) and their clusters, the connected components of the graph
  of solid bonds (d_ij > q_threshold) between solid-like particles: the clusters of freud's
  ``SolidLiquid`` (which clusters its neighbour list filtered to such bonds), except that a
  configuration without solid-like particles has largest cluster 0 here, 1 in freud (which
  counts every liquid particle as a cluster of its own). Not differentiable.
* The truncated-and-shifted potential u(r) = 4 eps [(s/r)^12 - (s/r)^6] - u_LJ(r_c) for r < r_c,
  0 beyond (minimum image): `lj_energy` in torch (reduced or any consistent units, autograd
  forces) and `openmm_lj_system`, its OpenMM twin in kJ/mol, nm, amu.
* `LJUnits` and `ARGON`: the OpenMM value of each reduced unit (T* = k_B T / eps,
  tau = sigma sqrt(m / eps), P* = P sigma^3 / eps).
* Starting configurations: `fcc_lattice` and `random_liquid` (random sequential addition).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ..features import steinhardt as st
from . import GAS_CONSTANT

if TYPE_CHECKING:
    import openmm

AVOGADRO = 6.02214076e23  # 1/mol
BAR_PER_KJ_MOL_NM3 = 1e25 / AVOGADRO  # 1 kJ/mol/nm^3 = 1e30 / N_A Pa = 16.6 bar


@dataclass(frozen=True)
class LJUnits:
    """Reduced Lennard-Jones units of a species in OpenMM's units (kJ/mol, nm, amu, K, ps, bar).

    Each property is the OpenMM value of one reduced unit: a reduced quantity times it is the
    OpenMM quantity, an OpenMM quantity divided by it the reduced one (e.g. T = T* temperature_k,
    T* = k_B T / eps = T / temperature_k)."""

    epsilon_kj: float  # well depth, kJ/mol
    sigma_nm: float  # length, nm
    mass_amu: float  # particle mass, amu (g/mol)

    @classmethod
    def from_kelvin(cls, epsilon_k: float, sigma_nm: float, mass_amu: float) -> LJUnits:
        """Units from the well depth given as eps / k_B in kelvin."""
        return cls(GAS_CONSTANT * epsilon_k, sigma_nm, mass_amu)

    @property
    def temperature_k(self) -> float:
        """eps / k_B in kelvin."""
        return self.epsilon_kj / GAS_CONSTANT

    @property
    def tau_ps(self) -> float:
        """Time unit sigma sqrt(m / eps) in ps (nm sqrt(amu mol/kJ) = ps)."""
        return self.sigma_nm * math.sqrt(self.mass_amu / self.epsilon_kj)

    @property
    def force_kj_nm(self) -> float:
        """Force unit eps / sigma in kJ/(mol nm)."""
        return self.epsilon_kj / self.sigma_nm

    @property
    def pressure_bar(self) -> float:
        """Pressure unit eps / sigma^3 in bar."""
        return self.epsilon_kj / self.sigma_nm**3 * BAR_PER_KJ_MOL_NM3


ARGON = LJUnits.from_kelvin(119.8, 0.3405, 39.948)  # eps/k_B = 119.8 K, sigma = 0.3405 nm: tau = 2.16 ps


# --- starting configurations -------------------------------------------------------------------------

def _edges(box: np.ndarray | tuple[float, float, float]) -> np.ndarray:
    box = np.asarray(box, dtype=float)
    if box.shape != (3,) or not (box > 0).all():
        raise ValueError(f"box: expected three positive edge lengths, got {box.tolist()}")
    return box


def seeded_liquid(lattice: np.ndarray, box: np.ndarray | tuple[float, float, float], n_seed: int, min_distance: float,
                  rng: np.random.Generator) -> np.ndarray:
    """A liquid around a crystalline seed, as the seeding method of nucleation studies starts: the
    n_seed sites of `lattice` (N, 3) nearest the box centre kept as they are, the other N - n_seed
    particles added at random (random_liquid) at least min_distance from every particle. The
    seed comes first in the result; `relax_around` then relaxes the liquid around it."""
    box = _edges(box)
    delta = lattice - box / 2
    delta -= box * np.round(delta / box)
    seed = lattice[np.argsort(np.einsum("kd,kd->k", delta, delta), kind="stable")[:n_seed]]
    return random_liquid(len(lattice), box, min_distance, rng, fixed=seed)


def relax_around(positions: np.ndarray, box: np.ndarray, n_fixed: int, steps: int = 30, max_move: float = 0.02,
                 r_cut: float = 2.5) -> np.ndarray:
    """positions (N, 3) with all but the first n_fixed moved down the Lennard-Jones energy by
    steepest descent (each step at most max_move sigma per particle): random sequential addition
    leaves pairs at 0.85 sigma, whose repulsion would blow a crystalline seed apart within a
    fraction of tau of dynamics."""
    x = torch.as_tensor(positions, dtype=torch.float64).clone()
    for _ in range(steps):
        x.requires_grad_(True)
        (grad,) = torch.autograd.grad(lj_energy(x, box, r_cut=r_cut), x)
        step = -grad.detach()
        step[:n_fixed] = 0.0
        longest = step.norm(dim=1).max()
        x = (x.detach() + step * min(1.0, max_move / max(float(longest), 1e-12))) % torch.as_tensor(box)
    return x.detach().numpy()


def fcc_lattice(n_cells: tuple[int, int, int], density: float) -> tuple[np.ndarray, np.ndarray]:
    """FCC crystal of n_cells[0] x n_cells[1] x n_cells[2] cubic cells at the number density:
    positions (4 prod(n_cells), 3) in [0, box), box (3,); cubic cell a = (4 / density)^(1/3),
    nearest neighbours at a / sqrt(2)."""
    cells = np.asarray(n_cells)
    if cells.shape != (3,) or not all(isinstance(c, (int, np.integer)) and c > 0 for c in n_cells):
        raise ValueError(f"n_cells: expected three positive integers, got {n_cells!r}")
    if not density > 0:
        raise ValueError(f"density: must be positive, got {density}")
    a = (4 / density) ** (1 / 3)
    basis = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    corners = np.array(list(itertools.product(*(range(c) for c in n_cells))))
    return a * (corners[:, None, :] + basis).reshape(-1, 3), a * cells.astype(float)


def random_liquid(n: int, box: np.ndarray | tuple[float, float, float], min_distance: float,
                  rng: np.random.Generator, max_trials: int | None = None, fixed: np.ndarray | None = None) -> np.ndarray:
    """n positions (n, 3) in [0, box), pairwise at least min_distance apart (minimum image), by
    random sequential addition: uniform trial points, each kept when it is far enough from those
    kept before (drawn in batches, processed in order). `fixed` (m, 3) are placed first, as they
    are (e.g. a crystalline seed), and the other n - m around them. ValueError after max_trials
    trials [1000 n] (random sequential addition of spheres jams at a packing fraction
    pi/6 min_distance^3 n / volume of ~0.38)."""
    box = _edges(box)
    max_trials = 1000 * n if max_trials is None else max_trials
    positions, k, trials = np.empty((n, 3)), 0, 0
    if fixed is not None:
        k = len(fixed)
        positions[:k] = np.asarray(fixed, dtype=float) % box
    while k < n:
        if trials >= max_trials:
            raise ValueError(f"random_liquid: placed {k} of {n} particles at distance >= {min_distance} in "
                             f"{max_trials} trials (box {box.tolist()}): lower n or min_distance")
        batch = rng.uniform(0.0, 1.0, (min(1024, max_trials - trials), 3)) * box % box
        trials += len(batch)
        if k:
            nearest, _ = cKDTree(positions[:k], boxsize=box).query(batch, distance_upper_bound=min_distance)
            batch = batch[nearest >= min_distance]
        start = k
        for trial in batch:
            delta = positions[start:k] - trial
            delta -= box * np.round(delta / box)
            if (np.einsum("kd,kd->k", delta, delta) >= min_distance**2).all():
                positions[k] = trial
                k += 1
                if k == n:
                    break
    return positions


# --- solid-like clusters -------------------------------------------------------------------------------

def _solid_graph(positions: np.ndarray | torch.Tensor, box: st.BoxLike, r_cut: float, l: int, q_threshold: float,
                 solid_threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solid-like mask of the nodes (frame f particle k is node f N + k) and the solid bonds (i, j)
    between solid-like nodes."""
    with torch.no_grad():
        x = torch.as_tensor(positions, dtype=torch.float64).detach()
        b = st.bonds(x, box, r_cut)
        qlm = st.local_qlm(b, l)
        solid = st.solidity(st.solid_bond_counts(b, qlm, q_threshold), solid_threshold).bool()
        link = (st.bond_dot(b, qlm) > q_threshold) & solid[b.i] & solid[b.j]
    return solid.numpy(), b.i[link].numpy(), b.j[link].numpy()


def _clusters(solid: np.ndarray, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the solid nodes over the edges (i, j): labels (nodes,), -1 off the
    solid nodes, numbered by decreasing size (ties: by first node), and the sizes."""
    n = len(solid)
    _, component = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)), directed=False)
    ids, first, sizes = np.unique(component[solid], return_index=True, return_counts=True)
    order = np.lexsort((first, -sizes))
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids))
    labels = np.full(n, -1, dtype=np.int64)
    labels[solid] = rank[np.searchsorted(ids, component[solid])]
    return labels, sizes[order]


def _checked(positions: np.ndarray | torch.Tensor, ndim: int) -> np.ndarray | torch.Tensor:
    if positions.ndim != ndim or positions.shape[-1] != 3:
        shape = "(N, 3)" if ndim == 2 else "(F, N, 3)"
        raise ValueError(f"positions: expected {shape}, got {tuple(positions.shape)}")
    return positions


def solid_clusters(positions: np.ndarray | torch.Tensor, box: st.BoxLike, r_cut: float = 1.5, l: int = 6,
                   q_threshold: float = 0.7, solid_threshold: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Clusters of ten Wolde-Frenkel solid-like particles of one frame, positions (N, 3).

    A particle is solid-like with >= solid_threshold solid bonds (neighbours j within r_cut with
    d_ij > q_threshold, `steinhardt.solid_bond_counts` and `solidity` with a hard cut-off); the
    clusters are the connected components of the solid bonds between solid-like particles (freud's
    ``SolidLiquid`` clusters). Returns labels (N,), -1 for liquid-like particles and 0, 1, ... by
    decreasing cluster size (ties: by lowest particle index), and the cluster sizes, descending."""
    solid, i, j = _solid_graph(_checked(positions, 2), box, r_cut, l, q_threshold, solid_threshold)
    return _clusters(solid, i, j)


def largest_solid_cluster(positions: np.ndarray | torch.Tensor, box: st.BoxLike, r_cut: float = 1.5, l: int = 6,
                          q_threshold: float = 0.7, solid_threshold: int = 7) -> int:
    """Size of the largest solid-like cluster of positions (N, 3) (`solid_clusters`), 0 without one."""
    _, sizes = solid_clusters(positions, box, r_cut, l, q_threshold, solid_threshold)
    return int(sizes[0]) if len(sizes) else 0


def largest_solid_cluster_per_frame(positions: np.ndarray | torch.Tensor, box: st.BoxLike, r_cut: float = 1.5,
                                    l: int = 6, q_threshold: float = 0.7, solid_threshold: int = 7) -> np.ndarray:
    """`largest_solid_cluster` of every frame of positions (F, N, 3), shaped (F,) (one graph for all)."""
    return solid_order_per_frame(positions, box, r_cut, l, q_threshold, solid_threshold)[:, 0]


def solid_order_per_frame(positions: np.ndarray | torch.Tensor, box: st.BoxLike, r_cut: float = 1.5, l: int = 6,
                          q_threshold: float = 0.7, solid_threshold: int = 7) -> np.ndarray:
    """(largest solid-like cluster, number of solid-like particles) of every frame of positions
    (F, N, 3), shaped (F, 2), integers (one graph for all frames)."""
    frames, n = _checked(positions, 3).shape[:2]
    solid, i, j = _solid_graph(positions, box, r_cut, l, q_threshold, solid_threshold)
    labels, sizes = _clusters(solid, i, j)
    out = np.zeros((frames, 2), dtype=np.int64)
    np.maximum.at(out[:, 0], np.flatnonzero(solid) // n, sizes[labels[solid]])
    out[:, 1] = solid.reshape(frames, n).sum(axis=1)
    return out


# --- truncated-and-shifted Lennard-Jones ------------------------------------------------------------------

def _check_cutoff(box: st.BoxLike, cutoff: float) -> None:
    shortest = float(torch.as_tensor(box).min())
    if not 0 < cutoff <= shortest / 2:
        raise ValueError(f"r_cut: the cut-off {cutoff} must be in (0, min(box)/2] = (0, {shortest / 2}] (minimum image)")


def lj_energy(positions: torch.Tensor, box: st.BoxLike, epsilon: float = 1.0, sigma: float = 1.0,
              r_cut: float = 2.5) -> torch.Tensor:
    """Truncated-and-shifted Lennard-Jones energy of positions (..., N, 3) in a periodic box, shaped (...).

    sum over the unordered pairs at minimum-image distance r < r_cut sigma of
    4 epsilon [(sigma/r)^12 - (sigma/r)^6] minus its value at r_cut sigma (continuous at the
    cut-off, forces truncated). r_cut is in units of sigma; r_cut sigma <= min(box)/2.
    Differentiable in the positions (the pair list, from `steinhardt.neighbor_pairs` per frame, is not)."""
    cutoff = r_cut * sigma
    _check_cutoff(box, cutoff)
    frames = positions.reshape(-1, *positions.shape[-2:])
    shift = r_cut**-12 - r_cut**-6
    pair_sums = []
    for frame in frames:
        i, j = st.neighbor_pairs(frame, box, cutoff)
        once = i < j
        r2 = (st.displacements(frame, box, i[once], j[once]) ** 2).sum(-1)
        s6 = (sigma * sigma / r2) ** 3
        pair_sums.append((s6 * s6 - s6 - shift).sum())
    return (4 * epsilon * torch.stack(pair_sums)).reshape(positions.shape[:-2])


def openmm_lj_system(n: int, box: np.ndarray | tuple[float, float, float], epsilon_kj: float = ARGON.epsilon_kj,
                     sigma_nm: float = ARGON.sigma_nm, mass_amu: float = ARGON.mass_amu, r_cut: float = 2.5,
                     dispersion_correction: bool = False) -> openmm.System:
    """OpenMM System of n Lennard-Jones particles in the periodic box (edge lengths in sigma): the
    potential of `lj_energy` in kJ/mol and nm (positions in nm = reduced positions times sigma_nm).

    One CustomNonbondedForce, CutoffPeriodic at r_cut sigma (r_cut in sigma), no switching function,
    energy 4 eps (x^2 - x - step(r_c - r) (x_c^2 - x_c)) with x = (sigma/r)^6 and x_c = (sigma/r_c)^6:
    inside the cut-off (the only pairs OpenMM evaluates) exactly the truncated-and-shifted potential,
    which NonbondedForce is not (it truncates the Lennard-Jones term without shifting it).
    dispersion_correction=False (default, the model of `lj_energy`) adds no long-range correction;
    True adds OpenMM's, the integral of the expression beyond the cut-off, where step() has removed
    the shift: the standard Lennard-Jones tail (8/3) pi N rho eps sigma^3 [(sigma/r_c)^9 / 3 -
    (sigma/r_c)^3], updated with the volume, for production NPT runs. Masses mass_amu."""
    import openmm

    box = _edges(box)
    _check_cutoff(box, r_cut)
    cutoff_nm = r_cut * sigma_nm
    force = openmm.CustomNonbondedForce(
        "4*epsilon*(x^2 - x - step(r_cut - r)*(x_cut^2 - x_cut)); x = (sigma/r)^6; x_cut = (sigma/r_cut)^6; "
        f"epsilon = {epsilon_kj!r}; sigma = {sigma_nm!r}; r_cut = {cutoff_nm!r}")
    force.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic)
    force.setCutoffDistance(cutoff_nm)
    force.setUseSwitchingFunction(False)
    force.setUseLongRangeCorrection(dispersion_correction)
    system = openmm.System()
    for _ in range(n):
        system.addParticle(mass_amu)
        force.addParticle([])
    system.addForce(force)
    edges = box * sigma_nm
    system.setDefaultPeriodicBoxVectors(openmm.Vec3(edges[0], 0, 0), openmm.Vec3(0, edges[1], 0),
                                        openmm.Vec3(0, 0, edges[2]))
    return system
