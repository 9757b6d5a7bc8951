"""Is the bias smooth on the scale of one time step? A check that needs no exact answer.

A time step integrates a force faithfully only where the force changes little over one step. At
each sampled frame x the bias force is compared at x and at x + delta, delta a thermal step drawn
afresh: the distance the noise moves a walker in one step (overdamped: sqrt(2 kT dt / gamma) xi)
or a thermal velocity covers in one (underdamped: sqrt(kT / m_i) dt xi). The bias's curvature
along delta, lambda = |dF| / |delta| (mass-weighted, |M^-1/2 dF| / |M^1/2 delta|, for
underdamped dynamics), gives the step's dimensionless stiffness

    overdamped:   s = dt_b lambda / gamma       (Euler on a harmonic well is unstable at s = 2)
    underdamped:  s = dt_b sqrt(lambda)          (omega dt; velocity Verlet is unstable at 2)

with dt_b = bias_stride x dt, the step the bias acts over. Where s reaches a sizeable fraction
of the stability limit the sampled ensemble is no longer the biased Boltzmann one and no
reweighting can repair it. Measured on 49 Mueller-Brown and Wolfe-Quapp campaigns
(benchmarks/bias_stiffness.py, docs/estimators.md): all 15 whose last bias had a 99th-percentile
s above 1 failed the exact frozen-bias stationarity test (analysis.stationarity), 28 of the 30
below 0.9 passed it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..engines.base import BiasHook

CHUNK = 2000  # frames per autograd pass, at most
PAIRS_PER_CHUNK = 2**22  # frames x N^2 per autograd pass: bulk particles' feature graphs are ~3.5 MB per frame at N = 256


def bias_forces(hook: BiasHook, featurizer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Minus the gradient of the hook's bias energy with respect to positions x (n, N, d)."""
    x = x.detach().clone().requires_grad_(True)
    energy, _ = hook.energy(featurizer(x), x)
    (grad,) = torch.autograd.grad(energy.sum(), x)
    return -grad


def bias_stiffness(hook: BiasHook, featurizer: torch.nn.Module, positions: np.ndarray, *, dt: float, friction: float,
                   integrator: str, kT: float, masses: np.ndarray, bias_stride: int = 1, seed: int = 0) -> np.ndarray:
    """The stiffness s (see the module doc) of the bias `hook` at each of
    `positions` (n, N, d), in the units of the engine (kT in its energy unit, masses (N,))."""
    gen = torch.Generator().manual_seed(seed)
    x_all = torch.as_tensor(positions, dtype=torch.float64)
    dt_b = bias_stride * dt
    if integrator == "overdamped":
        scale = torch.full((x_all.shape[1], 1), math.sqrt(2.0 * kT * dt / friction), dtype=torch.float64)
        weight = torch.ones_like(scale)  # no mass weighting
    else:
        m = torch.as_tensor(masses, dtype=torch.float64)[:, None]
        scale, weight = torch.sqrt(kT / m) * dt, m.sqrt()
    out = []
    chunk = max(1, min(CHUNK, PAIRS_PER_CHUNK // x_all.shape[1] ** 2))
    for start in range(0, len(x_all), chunk):
        x = x_all[start:start + chunk]
        delta = scale * torch.randn(x.shape, generator=gen, dtype=torch.float64)
        dF = bias_forces(hook, featurizer, x + delta) - bias_forces(hook, featurizer, x)
        lam = (dF / weight).flatten(1).norm(dim=1) / (delta * weight).flatten(1).norm(dim=1)
        out.append(dt_b * lam / friction if integrator == "overdamped" else dt_b * lam.sqrt())
    return torch.cat(out).numpy()
