"""The bias-stiffness check (analysis.bias_stiffness): exact on a harmonic bias, and on a real
bias it separates the time steps that the exact stationarity test passes from those it fails."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cvcycle.analysis.bias_stiffness import bias_stiffness
from cvcycle.analysis.stationarity import converged_bias
from cvcycle.features import make_featurizer
from cvcycle.spec import load_spec
from test_stationarity import line_cv

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LIMIT = load_spec(ROOT / "workflows" / "mueller-brown-autoencoder.toml")["convergence"]["max_bias_stiffness"]


class Harmonic:
    """Bias 0.5 sum_i k_i |x_i|^2 over the particles, on positions (the features are ignored)."""

    def __init__(self, k: np.ndarray) -> None:
        self.k = torch.as_tensor(k, dtype=torch.float64)[:, None]

    def energy(self, features: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = 0.5 * (self.k * positions**2).flatten(1).sum(1)
        return e, e[:, None]


def identity(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1)


@pytest.mark.parametrize("stride", [1, 3])
def test_stiffness_of_a_harmonic_bias_is_dt_times_its_curvature(stride):
    """Overdamped: dt_b k / gamma along any direction; underdamped: dt_b sqrt(k / m) with the
    stiffness mass-weighted, so particles with k_i / m_i equal give one value."""
    x = np.random.default_rng(0).standard_normal((50, 3, 2))
    s = bias_stiffness(Harmonic(np.full(3, 40.0)), identity, x, dt=2e-3, friction=4.0, integrator="overdamped",
                       kT=1.0, masses=np.ones(3), bias_stride=stride)
    np.testing.assert_allclose(s, stride * 2e-3 * 40.0 / 4.0, rtol=1e-12)
    m = np.array([1.0, 4.0, 16.0])
    s = bias_stiffness(Harmonic(250.0 * m), identity, x, dt=1e-3, friction=1.0, integrator="underdamped",
                       kT=2.5, masses=m, bias_stride=stride)
    np.testing.assert_allclose(s, stride * 1e-3 * math.sqrt(250.0), rtol=1e-12)


def test_stiffness_ranks_the_time_steps_as_the_exact_stationarity_test_does():
    """The primed OPES bias on the line CV of Mueller-Brown keeps its exact populations at
    dt = 2e-3 and not at 1e-2 (tests/test_stationarity.py); on frames of the exact biased density
    its 99th-percentile stiffness is below the default limit at the one and above it at the other."""
    spec = load_spec(ROOT / "workflows" / "mueller-brown-autoencoder.toml")
    hook, points, _, w, _ = converged_bias(spec, line_cv(), grid=201)
    x = points[np.random.default_rng(1).choice(len(points), 3000, p=w)][:, None, :]
    p99 = {dt: np.percentile(bias_stiffness(hook, make_featurizer(spec), x, dt=dt, friction=1.0,
                                            integrator="overdamped", kT=1.0, masses=np.ones(1)), 99)
           for dt in (2e-3, 1e-2)}
    assert p99[2e-3] < DEFAULT_LIMIT < p99[1e-2], p99
