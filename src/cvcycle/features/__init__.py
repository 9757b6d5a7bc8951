"""Differentiable featurizers: positions -> feature vectors, with names in input order."""

from __future__ import annotations

from typing import Any

from .coordinates import Coordinates


def make_featurizer(spec: dict[str, Any]) -> Coordinates:
    """Build the featurizer a spec's [features] section asks for."""
    kind = spec["features"]["kind"]
    if kind == "coordinates":
        return Coordinates(spec["features"]["names"])
    raise ValueError(f"features.kind: unknown featurizer {kind!r}")
