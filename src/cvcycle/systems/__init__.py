"""Physical systems: each provides kT, particles, masses, box, potential, starting
configurations and its states (see base.System); `make_system` builds the spec's one."""

from __future__ import annotations

from typing import Any

from .base import System

from .boxes import MODEL_BOXES

MODEL_POTENTIALS = tuple(MODEL_BOXES)  # the 2-D model potentials
PARTICLE_SYSTEMS = {"lj7": 7}  # name -> number of particles


def make_system(spec: dict[str, Any]) -> System:
    """The system of spec['system'] (`potential` names an analytic surface or a particle system)."""
    name = spec["system"]["potential"]
    if name in MODEL_POTENTIALS:
        from .model2d import ModelPotential2D

        return ModelPotential2D.from_spec(spec)
    if name == "lj7":
        from .lj7 import LJ7

        return LJ7.from_spec(spec)
    raise ValueError(f"system.potential: unknown system {name!r}")
