"""Crystal nucleation of Lennard-Jones particles: the supercooled liquid and its crystal in a cubic
periodic box at fixed number density (NVT).

N = 4 cells^3 particles (an FCC crystal of `cells` cubic cells a side fills the box exactly) of the
truncated-and-shifted Lennard-Jones potential (cut-off `r_cut` sigma), in reduced units: lengths
in sigma, energies and kT (`system.temperature`) in epsilon, time in tau = sigma sqrt(m / eps).
The OpenMM engine runs it in argon's units (`openmm_units`, see `lj_bulk.ARGON`) and converts.

The state coordinates are (n_largest, n_solid): the largest cluster of ten Wolde-Frenkel
solid-like particles and the number of solid-like particles (`lj_bulk.solid_order_per_frame`,
hard cut-off 1.5 sigma, q6 bonds d_ij > 0.7, at least 7 of them: freud's SolidLiquid), so the
liquid is a disc at the origin and a post-critical nucleus a disc reaching in from (N, N).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import lj_bulk as lb
from .base import System, in_states

CLUSTER_CUTOFF = 1.5  # sigma: the first neighbour shell of the liquid and of FCC near the triple point
FRAMES_PER_GRAPH = 256  # frames classified at once (bounded memory for the bond graph)


class LJNucleation(System):
    """N = 4 cells^3 Lennard-Jones particles in a cubic box at `density`, kT = temperature (epsilon)."""

    name = "lj-nucleation"
    dim = 3
    state_coordinate_names = ("n_largest", "n_solid")
    energy_unit = "epsilon"
    trajectory_format = "dcd"
    openmm_units = lb.ARGON

    def __init__(self, temperature: float, states: dict[str, dict[str, Any]], cells: int, density: float,
                 r_cut: float) -> None:
        self.kT, self.cells, self.density, self.r_cut = float(temperature), int(cells), float(density), float(r_cut)
        self.states = {name: {"center": list(s["center"]), "radius": float(s["radius"])} for name, s in states.items()}
        self.n_particles = 4 * self.cells**3
        self.lattice, self._box = lb.fcc_lattice((self.cells,) * 3, self.density)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "LJNucleation":
        sy = spec["system"]
        return cls(sy["temperature"], sy["states"], sy["cells"], sy["density"], sy["r_cut"])

    @property
    def box(self) -> np.ndarray:
        return self._box.copy()

    def potential(self, positions: torch.Tensor) -> torch.Tensor:
        return lb.lj_energy(positions, self._box, r_cut=self.r_cut)

    def openmm_system(self) -> Any:
        """The OpenMM System in argon's units (nm, kJ/mol, amu): `lj_bulk.openmm_lj_system`."""
        return lb.openmm_lj_system(self.n_particles, self._box, r_cut=self.r_cut)

    def hoomd_forces(self, hoomd: Any, types: list[str]) -> list[Any]:
        """The potential for the HOOMD-blue engine: hoomd.md.pair.LJ, shifted at r_cut, on a cell list."""
        lj = hoomd.md.pair.LJ(nlist=hoomd.md.nlist.Cell(buffer=0.4), default_r_cut=self.r_cut, mode="shift")
        for a in types:
            for b in types:
                lj.params[(a, b)] = {"epsilon": 1.0, "sigma": 1.0}
        return [lj]

    def state_coordinates(self, positions: np.ndarray) -> np.ndarray:
        """(n_largest, n_solid) of positions (n, N, 3), floats (n, 2)."""
        x = np.asarray(positions, dtype=np.float64).reshape(-1, self.n_particles, 3)
        out = [lb.solid_order_per_frame(x[k:k + FRAMES_PER_GRAPH], self._box, CLUSTER_CUTOFF)
               for k in range(0, len(x), FRAMES_PER_GRAPH)]
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 2))

    def start(self, where: list[str] | list[float], n_walkers: int, spread: float, rng: np.random.Generator) -> np.ndarray:
        """Walker i starts in state where[i % len(where)]: a random liquid (random sequential
        addition, particles >= 0.85 sigma apart) for a state whose disc holds (0, 0), the FCC
        crystal for one whose disc holds (N, N), and for a state in between a seeded liquid
        (lj_bulk.seeded_liquid): the smallest FCC seed (in steps of 4 sites) whose largest
        solid-like cluster in a random liquid reaches the state centre's n_largest, the liquid
        then relaxed around it (lj_bulk.relax_around, which orders some more of it: a centre of 50
        gave 62-77); each particle then displaced by Gaussian noise of width `spread` sigma."""
        names = [where] if isinstance(where, str) else list(where)
        corners = {"liquid": np.zeros(2), "crystal": np.full(2, float(self.n_particles))}
        kinds = []
        for name in names:
            if name not in self.states:
                raise ValueError(f"lj-nucleation: unknown state {name!r} (states: {', '.join(self.states)})")
            held = [k for k, z in corners.items() if in_states(z[None], {name: self.states[name]})[name][0]]
            seed = round(self.states[name]["center"][0])
            if not held and not 0 < seed < self.n_particles:
                raise ValueError(f"lj-nucleation: walkers start from a random liquid (a state whose disc holds "
                                 f"(0, 0)), the crystal (one holding ({self.n_particles}, {self.n_particles})) or a "
                                 f"seeded liquid (one centred at 0 < n_largest < {self.n_particles}); state {name!r} "
                                 "is none of them")
            kinds.append(held[0] if held else seed)

        def configuration(kind: str | int) -> np.ndarray:
            if kind == "crystal":
                return self.lattice
            if kind == "liquid":
                return lb.random_liquid(self.n_particles, self._box, 0.85, rng)
            for n_seed in range(int(kind), self.n_particles, 4):  # a seed's surface is not solid-like: grow it
                x = lb.seeded_liquid(self.lattice, self._box, n_seed, 0.85, rng)
                if self.state_coordinates(x)[0, 0] >= int(kind):
                    return lb.relax_around(x, self._box, n_seed, r_cut=self.r_cut)
            return self.lattice

        out = np.stack([configuration(kinds[i % len(kinds)]) for i in range(n_walkers)])
        return out + spread * rng.standard_normal(out.shape)

    def state_plane(self) -> tuple[np.ndarray, np.ndarray]:
        """Integer bins of (n_largest, n_solid) from 0 to N (at most 65 bins a side)."""
        step = max(1, -(-(self.n_particles + 1) // 64))
        edges = np.arange(-0.5, self.n_particles + step, step, dtype=np.float64)
        return edges, edges

    @functools.cached_property
    def _topology(self) -> Any:
        import mdtraj

        top = mdtraj.Topology()
        chain = top.add_chain()
        for _ in range(self.n_particles):
            top.add_atom("Ar", mdtraj.element.argon, top.add_residue("AR", chain))
        return top

    def write_trajectories(self, directory: Path, positions: np.ndarray) -> None:
        """walker-WW.dcd per walker and topology.pdb with the periodic box, in argon's nm (reduced
        lengths times sigma = 0.3405 nm, for mdtraj and VMD), walker-WW.gsd in reduced units (HOOMD-blue's
        format, for OVITO and freud), each written atomically, and nucleus.png (`_draw_nucleus`)."""
        import mdtraj

        from .. import io as cio

        self._draw_nucleus(directory / "nucleus.png", positions.reshape(-1, self.n_particles, 3))

        sigma = self.openmm_units.sigma_nm
        box = self._box * sigma

        def trajectory(x: np.ndarray) -> Any:
            x = x.reshape(-1, self.n_particles, 3) * sigma
            return mdtraj.Trajectory(x, self._topology, unitcell_lengths=np.tile(box, (len(x), 1)),
                                     unitcell_angles=np.full((len(x), 3), 90.0))

        files = {"topology.pdb": lambda path: trajectory(positions[0, 0]).save_pdb(path)}
        for w in range(positions.shape[1]):
            files[f"walker-{w:02d}.dcd"] = (lambda path, w=w: trajectory(positions[:, w]).save_dcd(path))
            files[f"walker-{w:02d}.gsd"] = (lambda path, w=w: self._save_gsd(path, positions[:, w]))
        cio.write_saved_files(directory, files)

    def _save_gsd(self, path: str, frames: np.ndarray) -> None:
        """The frames (F, N, 3) as a HOOMD-blue GSD file in reduced units: positions wrapped into the
        box [-L/2, L/2) with their images, one particle type "A"."""
        import gsd.hoomd

        images = np.floor(frames / self._box + 0.5)
        with gsd.hoomd.open(path, "w") as out:
            for k, x in enumerate(frames):
                frame = gsd.hoomd.Frame()
                frame.configuration.step = k
                frame.configuration.box = [*self._box, 0.0, 0.0, 0.0]
                frame.particles.N = self.n_particles
                frame.particles.types = ["A"]
                frame.particles.typeid = np.zeros(self.n_particles, dtype=np.uint32)
                frame.particles.position = (x - images[k] * self._box).astype(np.float32)
                frame.particles.image = images[k].astype(np.int32)
                out.append(frame)

    def _draw_nucleus(self, path: Path, frames: np.ndarray) -> None:
        """A picture of the stored frame whose largest solid-like cluster is nearest N / 5 (a nucleus
        that does not yet span the periodic box)."""
        from ..analysis.plots import plot_nucleus

        z = self.state_coordinates(frames)
        pick = int(np.argmin(np.abs(z[:, 0] - self.n_particles / 5)))
        labels, _ = lb.solid_clusters(frames[pick], self._box, CLUSTER_CUTOFF)
        plot_nucleus(path, frames[pick], self._box, labels,
                     f"the stored frame with the largest solid-like cluster nearest N/5: {int(z[pick, 0])} of "
                     f"{self.n_particles}, {int(z[pick, 1])} solid-like in all")
