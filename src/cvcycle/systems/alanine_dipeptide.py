"""Alanine dipeptide (ACE-ALA-NME) in vacuum, for the OpenMM engine.

The molecule is built here, not downloaded: its ten heavy atoms are placed from standard internal
coordinates (bond lengths, angles, a trans peptide, the backbone dihedrals (phi, psi) asked for,
the L-alanine C-beta), OpenMM's Modeller adds the hydrogens of the force field's templates and a
short minimisation relaxes the rest. The force field is OpenMM's bundled amber99sb-ildn
(amber99sbildn.xml): no cut-off, bonds to hydrogen constrained. Units are OpenMM's: nm, ps,
kJ/mol; `system.temperature` is in kelvin. States are discs on (phi, psi) in degrees, with the
distance taken on the torus (periodic in both angles).
"""

from __future__ import annotations

import functools
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import GAS_CONSTANT
from .base import System

FORCE_FIELD = "amber99sbildn.xml"
# heavy atoms in the order they are built, (residue, atom name)
HEAVY_ATOMS = (("ACE", "CH3"), ("ACE", "C"), ("ACE", "O"), ("ALA", "N"), ("ALA", "CA"), ("ALA", "C"),
               ("ALA", "O"), ("ALA", "CB"), ("NME", "N"), ("NME", "C"))
# backbone dihedrals by (residue, atom name) of their four atoms
DIHEDRALS = {"phi": (("ACE", "C"), ("ALA", "N"), ("ALA", "CA"), ("ALA", "C")),
             "psi": (("ALA", "N"), ("ALA", "CA"), ("ALA", "C"), ("NME", "N")),
             "omega0": (("ACE", "CH3"), ("ACE", "C"), ("ALA", "N"), ("ALA", "CA")),
             "omega1": (("ALA", "CA"), ("ALA", "C"), ("NME", "N"), ("NME", "C"))}


def _place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle: float, torsion: float) -> np.ndarray:
    """The atom d bonded to c with |cd| = bond, angle b-c-d and dihedral a-b-c-d (degrees)."""
    angle, torsion = np.radians(angle), np.radians(torsion)
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    return c - bond * np.cos(angle) * bc + bond * np.sin(angle) * (np.cos(torsion) * m + np.sin(torsion) * n)


def heavy_atom_positions(phi: float, psi: float) -> np.ndarray:
    """Positions (10, 3) in nm of the heavy atoms (HEAVY_ATOMS order) at backbone dihedrals (phi,
    psi) in degrees: standard bond lengths and angles, trans peptides, L-alanine."""
    ch3, c0 = np.zeros(3), np.array([0.152, 0.0, 0.0])
    n = _place(np.array([0.0, 0.1, 0.0]), ch3, c0, 0.133, 116.0, 180.0)
    ca = _place(ch3, c0, n, 0.146, 122.0, 180.0)
    c = _place(c0, n, ca, 0.152, 111.0, phi)
    n2 = _place(n, ca, c, 0.133, 116.0, psi)
    ch3_2 = _place(ca, c, n2, 0.146, 122.0, 180.0)
    o0 = _place(ca, n, c0, 0.123, 123.0, 0.0)
    o = _place(n, ca, c, 0.123, 121.0, psi + 180.0)
    b, bc = 10.0 * (ca - n), 10.0 * (c - ca)  # the ideal C-beta of an L-amino acid from N, CA, C (in angstrom)
    cb = ca + 0.1 * (-0.58273431 * np.cross(b, bc) + 0.56802827 * b - 0.54067466 * bc)
    return np.array([ch3, c0, o0, n, ca, c, o, cb, n2, ch3_2])


class AlanineDipeptide(System):
    """ACE-ALA-NME in vacuum with amber99sb-ildn; state coordinates (phi, psi) in degrees."""

    name = "alanine-dipeptide"
    n_particles = 22
    dim = 3
    state_coordinate_names = ("phi", "psi")
    energy_unit = "kJ/mol"
    trajectory_format = "dcd"

    def __init__(self, temperature: float, states: dict[str, dict[str, Any]]) -> None:
        self.temperature = float(temperature)  # kelvin
        self.kT = GAS_CONSTANT * self.temperature  # kJ/mol
        self.states = {name: {"center": list(s["center"]), "radius": float(s["radius"])} for name, s in states.items()}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "AlanineDipeptide":
        return cls(spec["system"]["temperature"], spec["system"]["states"])

    # -- the molecule ---------------------------------------------------------------------------
    @functools.cached_property
    def topology(self) -> Any:
        """The openmm.app.Topology of the 22 atoms (built once, at phi, psi of C7eq)."""
        return _built(-80.0, 75.0)[0]

    def openmm_system(self) -> Any:
        """A new openmm.System: amber99sb-ildn, no cut-off, constrained bonds to hydrogen."""
        import openmm.app as app

        return app.ForceField(FORCE_FIELD).createSystem(self.topology, nonbondedMethod=app.NoCutoff,
                                                        constraints=app.HBonds)

    @functools.cached_property
    def atom_index(self) -> dict[tuple[str, str], int]:
        """(residue name, atom name) -> atom index."""
        return {(a.residue.name, a.name): a.index for a in self.topology.atoms()}

    @functools.cached_property
    def masses(self) -> np.ndarray:
        return np.array([a.element.mass._value for a in self.topology.atoms()])

    def dihedral_atoms(self, name: str) -> list[int]:
        return [self.atom_index[key] for key in DIHEDRALS[name]]

    @property
    def heavy_atoms(self) -> list[int]:
        return [self.atom_index[key] for key in HEAVY_ATOMS]

    def pairs_within_bonds(self, n: int) -> set[tuple[int, int]]:
        """Atom pairs (i < j) joined by a path of at most n bonds."""
        neighbours: dict[int, set[int]] = {a.index: set() for a in self.topology.atoms()}
        for a, b in self.topology.bonds():
            neighbours[a.index].add(b.index)
            neighbours[b.index].add(a.index)
        pairs = set()
        for start in neighbours:
            reach = {start}
            for _ in range(n):
                reach |= {j for i in reach for j in neighbours[i]}
            pairs |= {(min(start, j), max(start, j)) for j in reach if j != start}
        return pairs

    def structure(self, phi: float, psi: float) -> np.ndarray:
        """A minimised structure (22, 3) in nm near backbone dihedrals (phi, psi), in degrees."""
        return _built(phi, psi)[1].copy()

    # -- the System contract -------------------------------------------------------------------
    def potential(self, positions: torch.Tensor) -> torch.Tensor:
        """The force field's energy (...,) in kJ/mol, evaluated by OpenMM (not differentiable in
        torch: the OpenMM engine takes its forces from OpenMM itself)."""
        x = positions.detach().cpu().numpy().reshape(-1, self.n_particles, 3)
        energies = _reference_energies(self, x)
        return torch.as_tensor(energies, dtype=positions.dtype).reshape(positions.shape[:-2])

    @functools.cached_property
    def _backbone(self) -> Any:
        from ..features.molecular import InternalCoordinates

        return InternalCoordinates([(name, self.dihedral_atoms(name)) for name in ("phi", "psi")])

    def state_coordinates(self, positions: np.ndarray) -> np.ndarray:
        """(phi, psi) in degrees, IUPAC sign, (n, 2)."""
        x = torch.as_tensor(np.asarray(positions, dtype=np.float64).reshape(-1, self.n_particles, 3))
        sincos = self._backbone.dihedrals(x).numpy()
        return np.degrees(np.arctan2(sincos[..., 0], sincos[..., 1]))

    def classify_coordinates(self, z: np.ndarray) -> np.ndarray:
        """State index (n,) of (phi, psi) in degrees: discs on the torus (differences wrapped into
        [-180, 180))."""
        z = np.asarray(z, dtype=np.float64)
        label = np.full(len(z), -1)
        for j, s in reversed(list(enumerate(self.states.values()))):
            d = (z - np.asarray(s["center"]) + 180.0) % 360.0 - 180.0
            label[np.linalg.norm(d, axis=1) <= s["radius"]] = j
        return label

    def start(self, where: list[str] | list[float], n_walkers: int, spread: float, rng: np.random.Generator) -> np.ndarray:
        """Walker i starts from the minimised structure at the centre of state where[i % len(where)],
        each atom displaced by Gaussian noise of width `spread` nm (the engine restores the
        constraints)."""
        names = [where] if isinstance(where, str) else list(where)
        bases = [self.structure(*self.states[name]["center"]) for name in names]
        out = np.stack([bases[i % len(bases)] for i in range(n_walkers)])
        return out + spread * rng.standard_normal(out.shape)

    def state_plane(self) -> tuple[np.ndarray, np.ndarray]:
        """The Ramachandran plane in 10-degree bins."""
        edges = np.linspace(-180.0, 180.0, 37)
        return edges, edges

    def regions(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """phi < 0 (C7eq, C5, alpha_R) and phi > 0 (C7ax, alpha_L): Delta F(C7ax - C7eq) as the
        literature reports it."""
        return {"phi < 0": z[:, 0] < 0.0, "phi > 0": z[:, 0] > 0.0}

    def write_trajectories(self, directory: Path, positions: np.ndarray) -> None:
        """walker-WW.dcd per walker (mdtraj writes the format's angstrom) and topology.pdb, each
        written atomically; `mdtraj.load("walker-00.dcd", top="topology.pdb")` reads them in nm."""
        import mdtraj

        from .. import io as cio

        topology = mdtraj.Topology.from_openmm(self.topology)
        files = {"topology.pdb": lambda path: mdtraj.Trajectory(positions[0, 0], topology).save_pdb(path)}
        for w in range(positions.shape[1]):
            files[f"walker-{w:02d}.dcd"] = (lambda path, w=w: mdtraj.Trajectory(positions[:, w], topology).save_dcd(path))
        cio.write_saved_files(directory, files)

    def representatives(self) -> np.ndarray:
        return np.stack([self.structure(*s["center"]) for s in list(self.states.values())[:2]])


@functools.cache
def _built(phi: float, psi: float) -> tuple[Any, np.ndarray]:
    """(topology, minimised positions (22, 3) in nm) of the molecule built at (phi, psi)."""
    import openmm
    import openmm.app as app
    import openmm.unit as unit

    topology = app.Topology()
    chain = topology.addChain()
    heavy = heavy_atom_positions(phi, psi)
    residue = None
    for (res, atom), _ in zip(HEAVY_ATOMS, heavy):
        if residue is None or residue.name != res:
            residue = topology.addResidue(res, chain)
        topology.addAtom(atom, app.element.get_by_symbol(atom[0]), residue)
    topology.createStandardBonds()
    forcefield = app.ForceField(FORCE_FIELD)
    modeller = app.Modeller(topology, heavy * unit.nanometer)
    # Modeller places new hydrogens at random (Python's `random`) before it minimises them: seeded
    # here, and minimised on the Reference platform, the molecule is the same in every process
    saved = random.getstate()
    random.seed(20_241_203)
    try:
        modeller.addHydrogens(forcefield, platform=openmm.Platform.getPlatformByName("Reference"))
    finally:
        random.setstate(saved)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds)
    # keep the backbone where it was built while the rest relaxes
    restraint = openmm.CustomTorsionForce("0.5*k*min(dtheta, 2*pi-dtheta)^2; dtheta = abs(theta-theta0); pi = 3.141592653589793")
    restraint.addPerTorsionParameter("k")
    restraint.addPerTorsionParameter("theta0")
    index = {(a.residue.name, a.name): a.index for a in modeller.topology.atoms()}
    for name, target in (("phi", phi), ("psi", psi)):
        restraint.addTorsion(*[index[key] for key in DIHEDRALS[name]], [1000.0, np.radians(target)])
    system.addForce(restraint)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(modeller.positions)
    context.applyConstraints(1e-8)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 2000)
    positions = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    return modeller.topology, np.asarray(positions, dtype=np.float64)


def _reference_energies(system: AlanineDipeptide, x: np.ndarray) -> np.ndarray:
    """Force-field energies (n,) in kJ/mol of positions (n, 22, 3), on OpenMM's Reference platform."""
    import openmm.unit as unit

    context = _reference_context(system)
    out = np.empty(len(x))
    for i, pos in enumerate(x):
        context.setPositions(pos * unit.nanometer)
        out[i] = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    return out


@functools.cache
def _reference_context(system: AlanineDipeptide) -> Any:
    import openmm

    return openmm.Context(system.openmm_system(), openmm.VerletIntegrator(0.001),
                          openmm.Platform.getPlatformByName("Reference"))
