"""Simulation engines; each is imported only when a spec asks for it."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import EngineUnavailable
from ..systems import System, make_system
from .base import Engine

# name -> (module, class, the package it needs, how to install that package)
_ENGINES = {"langevin": ("cvcycle.engines.langevin", "LangevinEngine", None, ""),
            "openmm": ("cvcycle.engines.openmm_engine", "OpenMMEngine", "openmm", 'pip install -e ".[openmm]"'),
            "hoomd": ("cvcycle.engines.hoomd_engine", "HOOMDEngine", "hoomd",
                      "HOOMD-blue is not on PyPI: conda install -c conda-forge 'hoomd>=4.8'")}


def make_engine(spec: dict[str, Any], system: System | None = None, walkers: int | None = None) -> Engine:
    """Build the engine named by spec['engine']['name'] (its module imported lazily) for the
    spec's system (or `system`), with spec['engine']['walkers'] walkers (or `walkers`)."""
    if walkers is not None:
        spec = {**spec, "engine": {**spec["engine"], "walkers": walkers}}
    name = spec["engine"]["name"]
    if name not in _ENGINES:
        raise EngineUnavailable(f"engine.name: the '{name}' engine is not available in this version of cvcycle")
    module, cls, package, install = _ENGINES[name]
    if package is not None and importlib.util.find_spec(package) is None:
        raise EngineUnavailable(f"engine.name = '{name}' needs the Python package '{package}', which is not installed "
                                f"({install})")
    return getattr(importlib.import_module(module), cls).from_spec(spec, system or make_system(spec))
