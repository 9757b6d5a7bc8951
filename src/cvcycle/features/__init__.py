"""Differentiable featurizers: positions (..., N, d) -> named features (..., n_features).

`make_featurizer(spec)` builds the featurizer named by ``spec["features"]["kind"]`` from the
registry `FEATURIZERS`. Keys read from ``spec["features"]`` (defaults in brackets):

* ``kind``: a key of `FEATURIZERS` (required);
* ``names``: coordinates, e.g. ["x", "y"] or ["x0", "y3"] [["x", "y"]];
* particle featurizers: ``particles`` (N) [7], ``r0`` (switching radius) [1.5], ``nn`` and ``mm``
  (switching exponents) [8, 16]; ``coordination_moments`` also ``moments`` [[2, 3]];
* ``internal`` (a molecule): ``dihedrals``, ``distances``; ``steinhardt`` (bulk particles):
  ``r_cut``, ``r_on``, ``q_threshold``, ``solid_threshold``, ``bins`` (spec.SteinhardtFeaturesSpec).

Adding a featurizer is one `Featurizer` subclass and one registry line.
"""

from __future__ import annotations

from typing import Any, Callable

from .base import Featurizer
from .coordinates import Coordinates
from .particles import CoordinationMoments, CoordinationNumbers, SortedCoordination, SortedPairDistances


def _switch(spec: dict[str, Any]) -> dict[str, Any]:
    f = spec["features"]
    return {"n_particles": f.get("particles", 7), "r0": f.get("r0", 1.5), "nn": f.get("nn", 8), "mm": f.get("mm", 16)}


def _internal(spec: dict[str, Any]) -> Featurizer:
    """A molecule's dihedrals (features.dihedrals) and, with features.distances, the distances of
    its heavy-atom pairs more than three bonds apart (closer pairs move only with a bond, an angle
    or one stiff dihedral, and an autoencoder that standardises its inputs magnified those
    vibrations into a stiff CV), on the atoms of the spec's system."""
    from ..systems import make_system
    from .molecular import InternalCoordinates, heavy_atom_pairs

    system = make_system(spec)
    heavy = system.heavy_atoms
    atoms = list(system.topology.atoms())
    names = [f"{atoms[i].residue.name}:{atoms[i].name}" for i in heavy]  # e.g. ALA:CA
    near = system.pairs_within_bonds(3)
    distances = [(name, pair) for name, pair in heavy_atom_pairs(names, heavy) if tuple(sorted(pair)) not in near] \
        if spec["features"]["distances"] else []
    return InternalCoordinates([(name, system.dihedral_atoms(name)) for name in spec["features"]["dihedrals"]], distances)


def _steinhardt(spec: dict[str, Any]) -> Featurizer:
    """Crystalline order of the spec's bulk system, in its periodic box."""
    from ..systems import make_system
    from .steinhardt import SteinhardtFeatures

    f = spec["features"]
    return SteinhardtFeatures(make_system(spec).box, r_cut=f["r_cut"], r_on=f["r_on"], q_threshold=f["q_threshold"],
                              solid_threshold=f["solid_threshold"], n_bins=f["bins"])


FEATURIZERS: dict[str, Callable[[dict[str, Any]], Featurizer]] = {
    "coordinates": lambda spec: Coordinates(spec["features"].get("names", ["x", "y"])),
    "coordination": lambda spec: CoordinationNumbers(**_switch(spec)),
    "sorted_coordination": lambda spec: SortedCoordination(**_switch(spec)),
    "coordination_moments": lambda spec: CoordinationMoments(**_switch(spec),
                                                             moments=spec["features"].get("moments", [2, 3])),
    "sorted_distances": lambda spec: SortedPairDistances(spec["features"].get("particles", 7)),
    "internal": _internal,
    "steinhardt": _steinhardt,
}


def make_featurizer(spec: dict[str, Any]) -> Featurizer:
    """Build the featurizer a spec's [features] section asks for."""
    kind = spec["features"]["kind"]
    if kind not in FEATURIZERS:
        raise ValueError(f"features.kind: unknown featurizer {kind!r} (known: {', '.join(FEATURIZERS)})")
    return FEATURIZERS[kind](spec)


__all__ = ["FEATURIZERS", "Coordinates", "CoordinationMoments", "CoordinationNumbers", "Featurizer",
           "SortedCoordination", "SortedPairDistances", "make_featurizer"]
