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

    def prime(self, s: Tensor, weights: Tensor, n_kernels: float) -> None:
        """Start from an estimate of the unbiased CV distribution (samples s with weights summing
        to 1, e.g. reweighted data of earlier iterations on the new CV), as if `n_kernels`
        kernels had been deposited; the bias is then near its steady state from the first step."""
        raise NotImplementedError

    def _density(self, s: Tensor, weights: Tensor) -> Tensor:
        return self.grid.gaussians(s.to(torch.float64), self.sigma, weights.to(torch.float64))

    def offset(self) -> float:
        return 0.0

    def state_dict(self) -> dict[str, Tensor]:
        return {"values": self.values, "depositions": torch.tensor(self.depositions)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.values = torch.as_tensor(state["values"], dtype=torch.float64).clone()
        self.depositions = int(state["depositions"])


class WellTemperedMetad(GridBias):
    """Well-tempered metadynamics: heights h exp(-V(s)/(kT (gamma - 1)))."""

    def __init__(self, grid: Grid, kT: float, pace: int, sigma: float, height: float, bias_factor: float,
                 barrier: float = 12.0) -> None:
        super().__init__(grid, kT, pace, sigma)
        self.height, self.gamma, self.barrier = height * kT, bias_factor, barrier

    def deposit(self, s: Tensor) -> None:
        heights = self.height * torch.exp(-self(s) / (self.kT * (self.gamma - 1.0)))
        self.values = self.values + self.grid.gaussians(s, self.sigma, heights)

    def prime(self, s: Tensor, weights: Tensor, n_kernels: float) -> None:
        """Well-tempered steady state V = (1 - 1/gamma)(kT ln P/P_max + barrier), clipped at 0."""
        p = self._density(s, weights)
        log_p = torch.log(p / p.max() + 1e-300)
        self.values = ((1.0 - 1.0 / self.gamma) * (self.kT * log_p + self.barrier)).clamp_min(0.0)

    def offset(self) -> float:
        """Tiwary-Parrinello c(t) = kT ln[int e^{g V/((g-1) kT)} / int e^{V/((g-1) kT)}]."""
        a = self.values.flatten() / (self.kT * (self.gamma - 1.0))
        return float(self.kT * (torch.logsumexp(self.gamma * a, 0) - torch.logsumexp(a, 0)))


class Opes(GridBias):
    """OPES (Invernizzi & Parrinello 2020) with a grid KDE of the reweighted CV distribution.

    V(s) = (1 - 1/gamma) kT log(P(s)/Z + eps), gamma = barrier/kT, eps = exp(-barrier/((1 - 1/gamma) kT)),
    P the kernel density estimate with weights exp(V/kT), Z its average over the explored region
    (grid points that received a kernel centre).
    """

    def __init__(self, grid: Grid, kT: float, pace: int, sigma: float, barrier: float) -> None:
        super().__init__(grid, kT, pace, sigma)
        self.barrier = barrier
        self.gamma = max(barrier / kT, 1.0 + 1e-6)
        self.prefactor = (1.0 - 1.0 / self.gamma) * kT
        self.epsilon = math.exp(-barrier / self.prefactor)
        self.density = torch.zeros_like(self.values)
        self.visits = torch.zeros(self.values.numel(), dtype=torch.float64)
        self.weight_sum = self.weight_sum2 = 0.0  # sums of the kernels' weights and of their squares
        self.values.fill_(self.prefactor * math.log(self.epsilon))

    def deposit(self, s: Tensor) -> None:
        weights = torch.exp(self(s) / self.kT)
        self.density = self.density + self.grid.gaussians(s, self.sigma, weights)
        self.weight_sum += float(weights.sum())
        self.weight_sum2 += float((weights**2).sum())
        self.visits.index_add_(0, self.grid.nearest(s), torch.ones(len(s), dtype=torch.float64))
        self._update_values()

    def normalised_density(self) -> tuple[Tensor, float]:
        """P = density / weight_sum on the grid and Z, its mean over the grid points that received a
        kernel centre."""
        p = self.density / self.weight_sum
        return p, float(p.flatten()[self.visits > 0].mean())

    def _update_values(self) -> None:
        p, z = self.normalised_density()
        self.values = self.prefactor * torch.log(p / z + self.epsilon)

    def prime(self, s: Tensor, weights: Tensor, n_kernels: float) -> None:
        # Kernels deposited at steady state weigh E_biased[exp(V/kT)] = 1/Z_b on average, with
        # Z_b = sum_i w_i exp(-V(s_i)/kT); scaling the prior by n_kernels/Z_b makes it count as
        # n_kernels such depositions (V itself does not depend on that scale).
        s = s.to(torch.float64)
        self.density = self._density(s, weights)
        self.weight_sum = 1.0
        self.visits.index_add_(0, self.grid.nearest(s), torch.ones(len(s), dtype=torch.float64))
        self._update_values()
        z_biased = float((weights.to(torch.float64) * torch.exp(-self(s) / self.kT)).sum())
        scale = n_kernels / max(z_biased, 1e-300)
        self.density = self.density * scale
        self.weight_sum = scale
        self.weight_sum2 = scale**2 / n_kernels  # as n_kernels depositions of equal weight

    def state_dict(self) -> dict[str, Tensor]:
        return super().state_dict() | {"density": self.density, "visits": self.visits,
                                       "weight_sum": torch.tensor(self.weight_sum, dtype=torch.float64),
                                       "weight_sum2": torch.tensor(self.weight_sum2, dtype=torch.float64)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        super().load_state_dict(state)
        self.density = torch.as_tensor(state["density"], dtype=torch.float64).clone()
        self.visits = torch.as_tensor(state["visits"], dtype=torch.float64).clone()
        self.weight_sum = float(state["weight_sum"])
        # checkpoints written before weight_sum2 was kept: as if every kernel weighed the same
        self.weight_sum2 = float(state["weight_sum2"]) if "weight_sum2" in state \
            else self.weight_sum**2 / max(float(self.visits.sum()), 1.0)
