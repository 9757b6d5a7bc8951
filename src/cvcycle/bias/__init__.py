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
    """Engine hook: bias V(CV(features)); implements engines.base.BiasHook.

    With `kolmogorov` = (lambda, epsilon) and a CV that is logit q, a static Kolmogorov bias
    -lambda kT log(|grad q|^2 + epsilon) is added (Kang, Trizio & Parrinello 2024): it draws
    walkers to where q changes, the transition region that the variational loss needs sampled.
    The gradient is taken with respect to the features (exact for Cartesian coordinates)."""

    def __init__(self, cv_model: torch.nn.Module, bias: GridBias, kolmogorov: tuple[float, float] | None = None,
                 kT: float = 1.0) -> None:
        self.cv_model, self.bias, self.kolmogorov, self.kT = cv_model, bias, kolmogorov, kT

    def energy(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kolmogorov is None:
            cv = self.cv_model(features.to(torch.float32)).to(torch.float64)
            return self.bias(cv), cv
        f = features.to(torch.float32)
        if not f.requires_grad:
            f = f.detach().requires_grad_(True)
        cv = self.cv_model(f)
        (g,) = torch.autograd.grad(torch.sigmoid(cv).sum(), f, create_graph=True)
        lam, eps = self.kolmogorov
        v_k = -lam * self.kT * torch.log((g.to(torch.float64) ** 2).sum(1) + eps)
        cv = cv.to(torch.float64)
        return self.bias(cv) + v_k, cv

    def observe(self, step: int, cv: torch.Tensor) -> bool:
        return self.bias.observe(step, cv)

    def offset(self) -> float:
        return self.bias.offset()
