"""Analytic potentials: forces from autograd, Mueller-Brown reference energies, scaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cvcycle.systems.potentials import POTENTIALS, Potential2D

# Mueller-Brown stationary points and energies (unscaled), from REFERENCES.md.
MB_MINIMA = [((-0.558, 1.442), -146.70), ((0.623, 0.028), -108.17), ((-0.050, 0.467), -80.77)]
MB_SADDLES = [((-0.822, 0.624), -40.66), ((0.212, 0.293), -72.25)]


def _energy(pot: Potential2D, pts) -> np.ndarray:
    with torch.no_grad():
        return pot(torch.as_tensor(np.asarray(pts, dtype=np.float64))).numpy()


def _autograd_grad(pot: Potential2D, pts: np.ndarray) -> np.ndarray:
    x = torch.as_tensor(pts, dtype=torch.float64).requires_grad_(True)
    (g,) = torch.autograd.grad(pot(x).sum(), x)
    return g.numpy()


@pytest.mark.parametrize("name", sorted(POTENTIALS))
def test_autograd_gradient_matches_central_differences(name):
    pot = Potential2D(name, scale=1.0)
    (x0, x1), (y0, y1) = pot.box
    rng = np.random.default_rng(1234)
    pts = np.column_stack([rng.uniform(x0, x1, 64), rng.uniform(y0, y1, 64)])
    grad = _autograd_grad(pot, pts)
    h = 1e-5
    fd = np.empty_like(pts)
    for k in range(2):
        e = np.zeros(2)
        e[k] = h
        fd[:, k] = (_energy(pot, pts + e) - _energy(pot, pts - e)) / (2 * h)
    # Central differences in float64: error ~ h^2 V''' + eps |V| / h; gradients reach ~1e3 on MB.
    scale = np.maximum(1.0, np.abs(grad))
    assert np.max(np.abs(grad - fd) / scale) < 1e-6
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("point,energy", MB_MINIMA + MB_SADDLES)
def test_mueller_brown_reference_energies(point, energy):
    v = _energy(Potential2D("mueller-brown"), [point])[0]
    assert v == pytest.approx(energy, abs=0.01)


@pytest.mark.parametrize("point,energy", MB_MINIMA)
def test_mueller_brown_minima_are_stationary_and_local_minima(point, energy):
    pot = Potential2D("mueller-brown")
    g = _autograd_grad(pot, np.array([point]))[0]
    # Coordinates are given to 3 decimals: |grad| <= |Hessian| * 5e-4 * sqrt(2). The largest
    # Hessian eigenvalue at these minima is 1.5e3-4e3, so the bound is ~1-3 (typical |grad| 0.02 away: ~50).
    x = torch.tensor([point], dtype=torch.float64)
    hess = torch.autograd.functional.hessian(lambda p: pot(p).sum(), x).reshape(2, 2).numpy()
    bound = np.abs(np.linalg.eigvalsh(hess)).max() * 5e-4 * np.sqrt(2.0)
    assert np.linalg.norm(g) <= bound
    # and a true minimum: the Hessian is positive definite; nearby points are higher
    assert np.all(np.linalg.eigvalsh(hess) > 0)
    ring = np.array(point) + 0.02 * np.column_stack([np.cos(np.linspace(0, 2 * np.pi, 16)),
                                                       np.sin(np.linspace(0, 2 * np.pi, 16))])
    assert np.all(_energy(pot, ring) > energy)


@pytest.mark.parametrize("point,energy", MB_SADDLES)
def test_mueller_brown_saddles_have_one_negative_curvature(point, energy):
    pot = Potential2D("mueller-brown")
    x = torch.tensor([point], dtype=torch.float64)
    hess = torch.autograd.functional.hessian(lambda p: pot(p).sum(), x).reshape(2, 2).numpy()
    ev = np.linalg.eigvalsh(hess)
    assert ev[0] < 0 < ev[1]


@pytest.mark.parametrize("name", sorted(POTENTIALS))
def test_scale_multiplies_energy_and_forces(name):
    rng = np.random.default_rng(7)
    pts = rng.uniform(-1.0, 1.0, size=(32, 2))
    base, scaled = Potential2D(name, 1.0), Potential2D(name, 0.15)
    np.testing.assert_allclose(_energy(scaled, pts), 0.15 * _energy(base, pts), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_autograd_grad(scaled, pts), 0.15 * _autograd_grad(base, pts), rtol=1e-12, atol=1e-10)


def test_double_well_and_wolfe_quapp_closed_forms():
    pts = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0], [0.5, -0.3]])
    dw = _energy(Potential2D("double-well"), pts)
    np.testing.assert_allclose(dw, [0.0, 0.0, 1.0, (0.25 - 1.0) ** 2 + 0.09], atol=1e-14)
    wq = _energy(Potential2D("wolfe-quapp"), pts)
    x, y = pts[:, 0], pts[:, 1]
    np.testing.assert_allclose(wq, x**4 + y**4 - 2 * x**2 - 4 * y**2 + x * y + 0.3 * x + 0.1 * y, atol=1e-14)


def test_grid_layout_rows_follow_y():
    pot = Potential2D("mueller-brown", 0.1)
    xs, ys, V = pot.grid(31)
    assert V.shape == (31, 31)
    i, j = 7, 22
    expected = _energy(pot, [[xs[j].item(), ys[i].item()]])[0]
    assert V[i, j].item() == pytest.approx(expected, abs=1e-12)
