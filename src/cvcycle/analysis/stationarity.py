"""Is a biased ensemble sampled correctly at this time step? A frozen-bias stationarity test.

On a 2-D model potential, the spec's bias (OPES or metadynamics, plus the Kolmogorov bias where
the spec has one) is primed on a learned CV from the exact Boltzmann distribution, the steady
state a run converges to, and frozen. Walkers start from the exact biased density
exp(-(U + V(x)) / kT) and run with no deposition. An exact integrator keeps that density, so the
populations of CV bins stay where they started; a time step too large for the bias's forces lets
them drift. The populations are measured over the second half of the run (the first half lets
them move) and compared with the exact ones from a fine grid: z-scores with the spread between
walkers (independent), the mean |ln p / p_exact| next to the noise floor that the same spread
alone would give, and the worst bin.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..bias import CVBias, kolmogorov_terms, make_bias
from ..engines.langevin import LangevinEngine
from ..features import make_featurizer
from ..systems import make_system, thermal_energy
from ..systems.potentials import Potential2D

CHI2_PER_BIN = 2.0  # pass: mean z^2 over the bins; about 1 by noise alone (sd 0.3 with 20 bins)
PRIME_CUTOFF = 30.0  # kT above the minimum: grid points the steady-state bias is primed from


class Frozen:
    """A bias hook that never deposits: the energy and CV of `hook`, a constant offset."""

    def __init__(self, hook: CVBias) -> None:
        self.hook = hook

    def energy(self, features: torch.Tensor, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.hook.energy(features, positions)

    def observe(self, step: int, cv: torch.Tensor) -> bool:
        return False

    def offset(self) -> float:
        return 0.0


def converged_bias(spec: dict[str, Any], cv_model: torch.nn.Module, grid: int = 601,
                   inverse_mass: np.ndarray | None = None) -> tuple[CVBias, np.ndarray, np.ndarray, np.ndarray, float]:
    """The spec's bias on `cv_model` at its steady state (primed from the exact Boltzmann
    distribution on a grid x grid mesh over the potential's box), and on that mesh: the points
    (n, 2), their CV values, biased Boltzmann weights (summing to 1) and the mesh spacing."""
    sy, kT = spec["system"], thermal_energy(spec)
    xs, ys, U = Potential2D(sy["potential"], sy["scale"]).grid(grid)
    u = U.reshape(-1).to(torch.float64) / kT
    pts = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 1, 2).to(torch.float64)
    featurizer = make_featurizer(spec)
    with torch.no_grad():
        s = cv_model(featurizer(pts).float()).double()
    bias = make_bias(spec, spec["learner"]["cv_dim"])
    keep = u - u.min() <= PRIME_CUTOFF
    w = torch.exp(-(u[keep] - u.min()))
    en, b = spec["engine"], spec["bias"]
    bias.prime(s[keep], w / w.sum(), b["warm_start_weight"] * en["walkers"] * en["steps"] / b["pace"])
    hook = CVBias(cv_model, bias, kolmogorov_terms(spec), kT, inverse_mass)
    energy = []
    for chunk in torch.split(pts, 20000):
        x = chunk.clone().requires_grad_(True)
        energy.append(hook.energy(featurizer(x), x)[0].detach())
    total = u + torch.cat(energy) / kT
    weights = torch.exp(-(total - total.min())).numpy()
    return hook, pts[:, 0].numpy(), s[:, 0].numpy(), weights / weights.sum(), float(xs[1] - xs[0])


def frozen_bias_test(spec: dict[str, Any], cv_model: torch.nn.Module, dt: float, time: float, walkers: int = 1000,
                     bins: int = 20, seed: int = 0, grid: int = 601, inverse_mass: np.ndarray | None = None) -> dict[str, Any]:
    """Run `walkers` from the exact density biased by `converged_bias` for `time` (in the
    potential's time units) at time step `dt`, the bias frozen; compare the CV-bin populations of
    the second half with the exact ones. Bins hold equal exact populations (1/bins each)."""
    hook, points, s_grid, w_grid, h = converged_bias(spec, cv_model, grid, inverse_mass)
    edges = _weighted_quantiles(s_grid, w_grid, bins)
    exact = np.bincount(np.searchsorted(edges, s_grid), weights=w_grid, minlength=bins)
    rng = np.random.default_rng(seed)
    start = points[rng.choice(len(points), walkers, p=w_grid)] + rng.uniform(-h / 2, h / 2, (walkers, 2))
    en = {**spec["engine"], "dt": dt, "walkers": walkers}
    engine = LangevinEngine.from_spec({**spec, "engine": en, "campaign": {**spec["campaign"], "seed": seed}},
                                      make_system(spec))
    steps = int(round(time / dt))
    stride = max(1, steps // 400)
    engine.set_positions(start[:, None, :])
    engine.draw_velocities(seed)
    frames = engine.run(steps, stride, Frozen(hook))
    s = frames.cv[len(frames.cv) // 2:, :, 0]  # (frames, walkers)
    idx = np.searchsorted(edges, s)
    per_walker = np.stack([(idx == b).mean(axis=0) for b in range(bins)])  # (bins, walkers)
    p, se = per_walker.mean(axis=1), per_walker.std(axis=1, ddof=1) / math.sqrt(walkers)
    z = (p - exact) / np.maximum(se, 1e-12)
    ratio = np.log(np.maximum(p, 1e-12) / exact)
    return {"dt": dt, "steps": steps, "walkers": walkers, "walker_steps": steps * walkers, "bins": bins,
            "populations": p.tolist(), "exact": exact.tolist(), "standard_errors": se.tolist(),
            "mean_abs_log_ratio": float(np.abs(ratio).mean()),
            "noise_floor": float(np.mean(math.sqrt(2.0 / math.pi) * se / exact)),
            "max_abs_log_ratio": float(np.abs(ratio).max()), "max_abs_z": float(np.abs(z).max()),
            "chi2_per_bin": float(np.mean(z * z)), "passed": bool(np.mean(z * z) <= CHI2_PER_BIN)}


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, bins: int) -> np.ndarray:
    """The bins - 1 inner edges that split weighted values into bins of equal weight."""
    order = np.argsort(values)
    cdf = np.cumsum(weights[order])
    return values[order][np.searchsorted(cdf, np.arange(1, bins) / bins)]
