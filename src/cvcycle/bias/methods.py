"""Adaptive biases on a CV, tabulated on a grid: well-tempered metadynamics and OPES.

Both share their walkers' depositions (multiple-walker style), expose their whole state as
tensors (`state_dict`), and give the reweighting offset c(t) so that a frame recorded at time t
has weight exp((V(s, t) - c(t)) / kT).
"""

from __future__ import annotations

import math

import torch

from .grid import Grid

Tensor = torch.Tensor


class GridBias:
    """Common part: a bias V(s) on a grid, deposited every `pace` steps."""

    kind = ""

    def __init__(self, grid: Grid, kT: float, pace: int, sigma: float) -> None:
        self.grid, self.kT, self.pace, self.sigma = grid, kT, pace, sigma
        self.values = torch.zeros([grid.bins] * grid.dim, dtype=torch.float64)
        self.depositions = 0

    def __call__(self, s: Tensor) -> Tensor:
        return self.grid.interpolate(self.values, s)

    def observe(self, step: int, cv: Tensor) -> bool:
        if step % self.pace:
            return False
        with torch.no_grad():
            self.deposit(cv.to(torch.float64))
        self.depositions += 1
        return True

    def deposit(self, s: Tensor) -> None:
        raise NotImplementedError

    def offset(self) -> float:
        return 0.0

    def state_dict(self) -> dict[str, Tensor]:
        return {"values": self.values, "depositions": torch.tensor(self.depositions)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.values = torch.as_tensor(state["values"], dtype=torch.float64).clone()
        self.depositions = int(state["depositions"])


class WellTemperedMetad(GridBias):
    """Well-tempered metadynamics: heights h exp(-V(s)/(kT (gamma - 1)))."""

    kind = "metad"

    def __init__(self, grid: Grid, kT: float, pace: int, sigma: float, height: float, bias_factor: float) -> None:
        super().__init__(grid, kT, pace, sigma)
        self.height, self.gamma = height * kT, bias_factor

    def deposit(self, s: Tensor) -> None:
        heights = self.height * torch.exp(-self(s) / (self.kT * (self.gamma - 1.0)))
        self.values = self.values + self.grid.gaussians(s, self.sigma, heights)

    def offset(self) -> float:
        """Tiwary-Parrinello c(t) = kT ln[int e^{g V/((g-1) kT)} / int e^{V/((g-1) kT)}]."""
        a = self.values.flatten() / (self.kT * (self.gamma - 1.0))
        return float(self.kT * (torch.logsumexp(self.gamma * a, 0) - torch.logsumexp(a, 0)))


class Opes(GridBias):
    """OPES (Invernizzi & Parrinello 2020) with a grid KDE of the reweighted CV distribution.

    V(s) = (1 - 1/gamma) kT log(P(s)/Z + eps), gamma = barrier/kT, eps = exp(-barrier/((1 - 1/gamma) kT)),
    P the kernel density estimate with weights exp(V/kT), Z its average over visited grid points.
    """

    kind = "opes"

    def __init__(self, grid: Grid, kT: float, pace: int, sigma: float, barrier: float) -> None:
        super().__init__(grid, kT, pace, sigma)
        self.barrier = barrier
        self.gamma = max(barrier / kT, 1.0 + 1e-6)
        self.prefactor = (1.0 - 1.0 / self.gamma) * kT
        self.epsilon = math.exp(-barrier / self.prefactor)
        self.density = torch.zeros_like(self.values)
        self.visits = torch.zeros(self.values.numel(), dtype=torch.float64)
        self.weight_sum = 0.0
        self.values.fill_(self.prefactor * math.log(self.epsilon))

    def deposit(self, s: Tensor) -> None:
        weights = torch.exp(self(s) / self.kT)
        self.density = self.density + self.grid.gaussians(s, self.sigma, weights)
        self.weight_sum += float(weights.sum())
        self.visits.index_add_(0, self.grid.nearest(s), torch.ones(len(s), dtype=torch.float64))
        p = self.density / self.weight_sum
        z = float((p.flatten() * self.visits).sum() / self.visits.sum())
        self.values = self.prefactor * torch.log(p / z + self.epsilon)

    def state_dict(self) -> dict[str, Tensor]:
        return super().state_dict() | {"density": self.density, "visits": self.visits,
                                       "weight_sum": torch.tensor(self.weight_sum, dtype=torch.float64)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        super().load_state_dict(state)
        self.density = torch.as_tensor(state["density"], dtype=torch.float64).clone()
        self.visits = torch.as_tensor(state["visits"], dtype=torch.float64).clone()
        self.weight_sum = float(state["weight_sum"])
