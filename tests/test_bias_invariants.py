"""Bias properties the rest of the suite did not pin (each found as a surviving mutant of
tools/mutation.py): well-tempered priming against its closed form, the nearest grid point of
CV values outside the grid, OPES's zero offset, kernel sums that do not depend on chunking, and
the Kolmogorov bias in reduced units by default.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cvcycle.bias import CVBias
from cvcycle.bias.grid import Grid
from cvcycle.bias.methods import Opes, WellTemperedMetad

f64 = torch.float64


def test_metad_priming_is_the_well_tempered_steady_state():
    """Two far-apart samples with weights 1/4 and 3/4 give a prior density with maxima 3/4 and 1/4
    of height ratio 1/3 (kernels of width 0.05, 1 apart, do not overlap); the primed bias is
    V = (1 - 1/gamma)(kT ln(P/P_max) + barrier), clipped at 0:
    3/4 (gamma = 4) x (12) = 9 at s = 0.5, 3/4 x (12 - 2 ln 3) at s = -0.5, and 0 beyond
    |s - c| = sqrt(2 barrier/kT) sigma from the centres c."""
    kT, gamma, barrier, sigma = 2.0, 4.0, 12.0, 0.05
    b = WellTemperedMetad(Grid([-2.0], [2.0], 401), kT, 10, sigma, 1.0, gamma, barrier)
    b.prime(torch.tensor([[-0.5], [0.5]], dtype=f64), torch.tensor([0.25, 0.75], dtype=f64), 100.0)
    v = b.values.numpy()
    s = b.grid.axes[0].numpy()
    at = {x: v[np.argmin(np.abs(s - x))] for x in (-0.5, 0.5)}
    assert at[0.5] == pytest.approx(0.75 * barrier, rel=1e-12)
    assert at[-0.5] == pytest.approx(0.75 * (barrier - kT * math.log(3.0)), rel=1e-9)
    # near the upper centre: 3/4 (barrier - kT (s - 0.5)^2 / (2 sigma^2)) while positive
    near = np.abs(s - 0.5) <= 0.1
    expected = np.clip(0.75 * (barrier - kT * (s[near] - 0.5) ** 2 / (2 * sigma**2)), 0.0, None)
    np.testing.assert_allclose(v[near], expected, rtol=1e-9, atol=1e-9)
    assert np.all(v >= 0.0) and np.all(v[np.abs(s) >= 1.0] == 0.0)


def test_nearest_grid_point_of_cv_values_outside_the_grid_is_the_edge():
    g1 = Grid([-1.0], [1.0], 21)
    idx = g1.nearest(torch.tensor([[-5.0], [-1.0], [-0.96], [0.96], [1.0], [7.0]], dtype=f64))
    assert idx.tolist() == [0, 0, 0, 20, 20, 20]
    g2 = Grid([0.0, 0.0], [1.0, 2.0], 11)
    idx = g2.nearest(torch.tensor([[-3.0, -3.0], [5.0, 9.0], [-3.0, 9.0], [0.0, 0.2]], dtype=f64))
    assert idx.tolist() == [0, 10 * 11 + 10, 10, 1]


def test_opes_weights_need_no_offset():
    """OPES's bias is normalised by Z as it goes: the reweighting offset c(t) is 0 at every time."""
    b = Opes(Grid([-2.0], [2.0], 101), 1.0, 1, 0.1, 10.0)
    assert b.offset() == 0.0
    for k in range(5):
        b.observe(k, torch.tensor([[0.1 * k], [-0.3]], dtype=f64))
    assert b.offset() == 0.0 and isinstance(b.offset(), float)


def test_many_kernels_on_a_2d_grid_sum_like_a_direct_sum():
    """2-D grid of 151 x 151 points and 1600 kernels: past the memory bound, summed in chunks."""
    g = Grid([-1.0, -1.0], [1.0, 1.0], 151)
    rng = np.random.default_rng(5)
    centers = rng.uniform(-1.0, 1.0, (1600, 2))
    heights = rng.uniform(0.5, 1.5, 1600)
    assert len(g.points) * len(centers) > 2**25
    out = g.gaussians(torch.tensor(centers), 0.2, torch.tensor(heights)).numpy()
    pts = g.points.numpy()
    probe = rng.choice(len(pts), 200, replace=False)
    d2 = ((pts[probe, None, :] - centers[None]) ** 2).sum(-1)
    expected = np.exp(-0.5 * d2 / 0.2**2) @ heights
    np.testing.assert_allclose(out.reshape(-1)[probe], expected, rtol=1e-10)


def test_kolmogorov_bias_defaults_to_reduced_units():
    """With a CV s = a.x (logit q) the Kolmogorov term is -lambda kT log(|grad_x sigmoid(s)|^2 + eps)
    and |grad q| = q (1 - q) |a|; without a kT the hook works in reduced units, kT = 1."""
    lin = torch.nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.5, -2.0]]))
        lin.bias.zero_()
    lin.requires_grad_(False)
    bias = Opes(Grid([-3.0], [3.0], 121), 1.0, 1, 0.2, 8.0)  # flat: V = -barrier everywhere
    lam, eps = 0.7, 1e-3
    x = torch.tensor([[0.2, 0.1], [-0.4, 0.3], [0.0, 0.0]], dtype=f64, requires_grad=True)
    energy, cv = CVBias(lin, bias, kolmogorov=(lam, eps)).energy(x, x)
    s = x.detach().numpy() @ np.array([1.5, -2.0])
    q = 1.0 / (1.0 + np.exp(-s))
    grad_sq = (q * (1 - q)) ** 2 * (1.5**2 + 2.0**2)
    expected = -8.0 - lam * 1.0 * np.log(grad_sq + eps)
    np.testing.assert_allclose(cv.detach().numpy()[:, 0], s, rtol=1e-6)
    np.testing.assert_allclose(energy.detach().numpy(), expected, rtol=1e-5)


def test_opes_weight_sum_is_the_sum_of_the_deposited_kernel_weights():
    """Each kernel is weighted by exp(V(s)/kT) at its centre when deposited; the empty bias is
    flat at -barrier, so the first two kernels weigh exp(-barrier/kT) each."""
    kT, barrier = 1.5, 9.0
    b = Opes(Grid([-2.0], [2.0], 201), kT, 1, 0.1, barrier)
    b.observe(0, torch.tensor([[0.3], [-0.6]], dtype=f64))
    assert b.weight_sum == pytest.approx(2.0 * math.exp(-barrier / kT), rel=1e-12)
    s = torch.tensor([[0.1], [0.5], [-1.0]], dtype=f64)
    expected = b.weight_sum + float(torch.exp(b(s) / kT).sum())
    b.observe(1, s)
    assert b.weight_sum == pytest.approx(expected, rel=1e-12)
    assert float(b.state_dict()["weight_sum"]) == pytest.approx(expected, rel=1e-12)


def test_opes_weight_sum2_is_the_sum_of_the_squared_kernel_weights_and_survives_a_checkpoint():
    """PLUMED's STATE carries sum_weights2, from which it takes the effective number of kernels
    (1 + sum w)^2 / (1 + sum w^2); older checkpoints without it load as equal-weight kernels."""
    kT, barrier = 1.0, 6.0
    b = Opes(Grid([-2.0], [2.0], 201), kT, 1, 0.1, barrier)
    b.observe(0, torch.tensor([[0.3], [-0.6]], dtype=f64))
    s = torch.tensor([[0.28], [1.5]], dtype=f64)
    w = torch.exp(b(s) / kT)
    assert w.max() / w.min() > 10  # unequal weights: sum w^2 is not (sum w)^2 / n
    b.observe(1, s)
    expected = 2.0 * math.exp(-2 * barrier / kT) + float((w**2).sum())
    assert b.weight_sum2 == pytest.approx(expected, rel=1e-12)
    state = b.state_dict()
    again = Opes(Grid([-2.0], [2.0], 201), kT, 1, 0.1, barrier)
    again.load_state_dict(state)
    assert again.weight_sum2 == pytest.approx(expected, rel=1e-12)
    old = {k: v for k, v in state.items() if k != "weight_sum2"}
    again.load_state_dict(old)
    assert again.weight_sum2 == pytest.approx(b.weight_sum**2 / 4, rel=1e-12)  # four kernels
