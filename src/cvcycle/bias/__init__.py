"""Biases on learned CVs and the hook that connects them to an engine."""

from __future__ import annotations

from typing import Any

import torch

from .grid import Grid
from .methods import GridBias, Opes, WellTemperedMetad


def make_bias(spec: dict[str, Any], cv_dim: int) -> GridBias:
    """Build the bias of spec['bias'] on a grid covering cv_range widened by grid_margin."""
    b, kT = spec["bias"], spec["system"]["temperature"]
    lo, hi = b["cv_range"]
    pad = b["grid_margin"] * (hi - lo)
    grid = Grid([lo - pad] * cv_dim, [hi + pad] * cv_dim, b["grid_bins"])
    if b["kind"] == "metad":
        return WellTemperedMetad(grid, kT, b["pace"], b["sigma"], b["height"], b["bias_factor"], b["barrier"])
    return Opes(grid, kT, b["pace"], b["sigma"], b["barrier"])


class CVBias:
    """Engine hook: bias V(CV(features)); implements engines.base.BiasHook."""

    def __init__(self, cv_model: torch.nn.Module, bias: GridBias) -> None:
        self.cv_model, self.bias = cv_model, bias

    def energy(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cv = self.cv_model(features.to(torch.float32)).to(torch.float64)
        return self.bias(cv), cv

    def observe(self, step: int, cv: torch.Tensor) -> bool:
        return self.bias.observe(step, cv)

    def offset(self) -> float:
        return self.bias.offset()
