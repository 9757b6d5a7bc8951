"""Physical systems: each provides kT, particles, masses, box, potential, starting
configurations and its states (see base.System); `make_system` builds the spec's one."""

from __future__ import annotations

from typing import Any

from .base import System

from .boxes import MODEL_BOXES

MODEL_POTENTIALS = tuple(MODEL_BOXES)  # the 2-D model potentials
PARTICLE_SYSTEMS = {"lj7": 7}  # name -> number of particles
MOLECULES = {"alanine-dipeptide": 22}  # name -> number of atoms; OpenMM force fields, temperature in kelvin
BULK_SYSTEMS = ("lj-nucleation",)  # periodic particle systems sized by the spec (system.cells)
GAS_CONSTANT = 8.314462618e-3  # kJ/(mol K)


def thermal_energy(spec: dict[str, Any]) -> float:
    """kT in the system's energy unit: system.temperature itself for the model potentials and
    reduced-unit particle systems, R T in kJ/mol for a molecule (temperature in kelvin)."""
    t = spec["system"]["temperature"]
    return GAS_CONSTANT * t if spec["system"]["potential"] in MOLECULES else t


def n_particles(spec: dict[str, Any]) -> int:
    """The number of particles of the spec's system (1 for a 2-D model potential)."""
    name = spec["system"]["potential"]
    if name in BULK_SYSTEMS:
        return 4 * spec["system"]["cells"] ** 3  # an FCC crystal of cells^3 cubic cells
    return {**PARTICLE_SYSTEMS, **MOLECULES}.get(name, 1)


def make_system(spec: dict[str, Any]) -> System:
    """The system of spec['system'] (`potential` names an analytic surface or a particle system)."""
    name = spec["system"]["potential"]
    if name in MODEL_POTENTIALS:
        from .model2d import ModelPotential2D

        return ModelPotential2D.from_spec(spec)
    if name == "lj7":
        from .lj7 import LJ7

        return LJ7.from_spec(spec)
    if name == "lj-nucleation":
        from .lj_nucleation import LJNucleation

        return LJNucleation.from_spec(spec)
    if name == "alanine-dipeptide":
        from .alanine_dipeptide import AlanineDipeptide

        return AlanineDipeptide.from_spec(spec)
    raise ValueError(f"system.potential: unknown system {name!r}")
