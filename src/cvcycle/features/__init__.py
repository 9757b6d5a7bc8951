"""Differentiable featurizers: positions (..., N, d) -> named features (..., n_features).

`make_featurizer(spec)` builds the featurizer named by ``spec["features"]["kind"]`` from the
registry `FEATURIZERS`. Keys read from ``spec["features"]`` (defaults in brackets):

* ``kind``: a key of `FEATURIZERS` (required);
* ``names``: coordinates, e.g. ["x", "y"] or ["x0", "y3"] [["x", "y"]];
* particle featurizers: ``particles`` (N) [7], ``r0`` (switching radius) [1.5], ``nn`` and ``mm``
  (switching exponents) [8, 16]; ``coordination_moments`` also ``moments`` [[2, 3]].

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


FEATURIZERS: dict[str, Callable[[dict[str, Any]], Featurizer]] = {
    "coordinates": lambda spec: Coordinates(spec["features"].get("names", ["x", "y"])),
    "coordination": lambda spec: CoordinationNumbers(**_switch(spec)),
    "sorted_coordination": lambda spec: SortedCoordination(**_switch(spec)),
    "coordination_moments": lambda spec: CoordinationMoments(**_switch(spec),
                                                             moments=spec["features"].get("moments", [2, 3])),
    "sorted_distances": lambda spec: SortedPairDistances(spec["features"].get("particles", 7)),
}


def make_featurizer(spec: dict[str, Any]) -> Featurizer:
    """Build the featurizer a spec's [features] section asks for."""
    kind = spec["features"]["kind"]
    if kind not in FEATURIZERS:
        raise ValueError(f"features.kind: unknown featurizer {kind!r} (known: {', '.join(FEATURIZERS)})")
    return FEATURIZERS[kind](spec)


__all__ = ["FEATURIZERS", "Coordinates", "CoordinationMoments", "CoordinationNumbers", "Featurizer",
           "SortedCoordination", "SortedPairDistances", "make_featurizer"]
