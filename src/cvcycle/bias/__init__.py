"""Biases on learned CVs and the hook that connects them to an engine."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..systems import thermal_energy
from .grid import Grid
from .methods import GridBias, Opes, WellTemperedMetad


def make_bias(spec: dict[str, Any], cv_dim: int, explore: bool = False) -> GridBias:
    """Build the bias of spec['bias'] on a grid covering cv_range widened by grid_margin; with
    `explore`, iteration 0's bias on one feature (explore_range and explore_sigma instead)."""
    b, kT = spec["bias"], thermal_energy(spec)
    lo, hi = b["explore_range" if explore else "cv_range"]
    sigma = b["explore_sigma" if explore else "sigma"]
    pad = b["grid_margin"] * (hi - lo)
    grid = Grid([lo - pad] * cv_dim, [hi + pad] * cv_dim, b["grid_bins"])
    if b["kind"] == "metad":
        return WellTemperedMetad(grid, kT, b["pace"], sigma, b["height"], b["bias_factor"], b["barrier"])
    return Opes(grid, kT, b["pace"], sigma, b["barrier"])


class FeatureCV(torch.nn.Module):
    """Features (..., F) -> the feature at `index` as a 1-D CV (..., 1): bias.explore's CV."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features[..., self.index:self.index + 1]


def kolmogorov_terms(spec: dict[str, Any]) -> tuple[float, float] | None:
    """(lambda, epsilon) of the spec's static Kolmogorov bias, or None where it is off."""
    b = spec["bias"]
    return (b["kolmogorov_lambda"], b["kolmogorov_epsilon"]) if b["kolmogorov_lambda"] > 0 else None


class CVBias:
    """Engine hook: bias V(CV(features)); implements engines.base.BiasHook.

    With `kolmogorov` = (lambda, epsilon) and a CV that is logit q, a static Kolmogorov bias
    -lambda kT log(|grad q|^2 + epsilon) is added (Kang, Trizio & Parrinello 2024): it draws
    walkers to where q changes, the transition region that the variational loss needs sampled.
    |grad q|^2 is taken with respect to the positions the features were computed from, in the
    dynamics' metric: sum_i |grad_i q|^2 / m_i with `inverse_mass` (N,) (underdamped, unequal
    masses), else the positions' own (the metric the variational loss uses, learn.committor)."""

    def __init__(self, cv_model: torch.nn.Module, bias: GridBias, kolmogorov: tuple[float, float] | None = None,
                 kT: float = 1.0, inverse_mass: np.ndarray | None = None) -> None:
        self.cv_model, self.bias, self.kolmogorov, self.kT = cv_model, bias, kolmogorov, kT
        self.inverse_mass = None if inverse_mass is None else torch.as_tensor(inverse_mass, dtype=torch.float64)

    def energy(self, features: torch.Tensor, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        cv = self.cv_model(features.to(torch.float32))
        if self.kolmogorov is None:
            return self.bias(cv.to(torch.float64)), cv.to(torch.float64)
        if positions is None or not positions.requires_grad:
            raise ValueError("the Kolmogorov bias needs the positions the features were computed from, with "
                             "requires_grad, to take |grad q|^2 with respect to them")
        (g,) = torch.autograd.grad(torch.sigmoid(cv).sum(), positions, create_graph=True)
        g = g.to(torch.float64) ** 2
        if self.inverse_mass is not None:
            g = g * self.inverse_mass[:, None]
        lam, eps = self.kolmogorov
        v_k = -lam * self.kT * torch.log(g.flatten(1).sum(1) + eps)
        cv = cv.to(torch.float64)
        return self.bias(cv) + v_k, cv

    def observe(self, step: int, cv: torch.Tensor) -> bool:
        return self.bias.observe(step, cv)

    def offset(self) -> float:
        return self.bias.offset()
