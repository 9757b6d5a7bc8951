"""Learner routes: how a campaign learns its CV. Each route is one module here defining ROUTE
(see base.Route): `autoencoder`, and the committor learned `variational`ly from biased data or
from path-sampling `shooting` outcomes. Adding a learner is one module and one line below."""

from __future__ import annotations

import importlib
from typing import Any

from ..spec import learner_route
from .base import Analysis, Route

ROUTES = {"autoencoder": "cvcycle.routes.autoencoder", "variational": "cvcycle.routes.variational",
          "shooting": "cvcycle.routes.shooting"}


def route_for(spec: dict[str, Any]) -> Route:
    """The route of a validated spec (spec.learner_route names it)."""
    return importlib.import_module(ROUTES[learner_route(spec)]).ROUTE


__all__ = ["Analysis", "ROUTES", "Route", "route_for"]
