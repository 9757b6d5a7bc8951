"""OPES priming (bias.methods.Opes.prime) against the OPES formulas, computed here with numpy.

OPES (Invernizzi & Parrinello 2020), as the class documents it:
    V(s) = (1 - 1/gamma) kT log(P(s)/Z + eps),  gamma = barrier/kT,
    eps = exp(-barrier / ((1 - 1/gamma) kT)),
P the kernel density estimate (kernels exp(-(s - c)^2 / 2 sigma^2) on the grid, each weighted by
exp(V/kT) at its centre when deposited) divided by the sum of the kernel weights, and Z the average
of P over the explored region (grid points nearest a kernel centre).

Priming from a prior (samples s_i, weights w_i summing to 1) as if n_kernels kernels had been
deposited at steady state: a kernel deposited then, from the biased distribution
p(s) exp(-V(s)/kT) / Z_b with Z_b = sum_i w_i exp(-V(s_i)/kT), has the mean weight
E_biased[exp(V/kT)] = 1/Z_b; so the primed kernel density is the prior's KDE times n_kernels/Z_b,
and the sum of kernel weights is n_kernels/Z_b. V does not depend on that scale, but every later
deposition is weighed against it, so a wrong scale shows in the stored state and in the next
deposition's change of V.

The prior is a tilted double well F(s)/kT = 3 (s^2 - 1)^2 + 2.5 s: minima near s = -1 and +1 that
differ by 5 kT, a barrier of about 3 kT between them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cvcycle.bias.grid import Grid
from cvcycle.bias.methods import Opes

KT, BARRIER, SIGMA = 1.5, 15.0, 0.1       # gamma = 10
LO, HI, BINS = -3.0, 3.0, 301
N_KERNELS = 400.0


def free_energy_kT(s):
    return 3.0 * (s * s - 1.0) ** 2 + 2.5 * s


def prior(kind: str):
    rng = np.random.default_rng(11)
    if kind == "resampled":  # samples drawn from exp(-F/kT), equal weights
        fine = np.linspace(-2.0, 2.0, 40001)
        p = np.exp(-free_energy_kT(fine))
        s = rng.choice(fine, 4000, p=p / p.sum()) + rng.uniform(-5e-5, 5e-5, 4000)
        w = np.full(len(s), 1.0 / len(s))
    else:  # "weighted": spread-out samples carrying Boltzmann weights (as routes.simulate.prime_bias)
        s = rng.uniform(-1.8, 1.8, 3000)
        w = np.exp(-free_energy_kT(s))
        w /= w.sum()
    return s, w


def opes_numpy(s, w, n_kernels):
    """Expected primed state: grid, V on the grid, density, kernel-weight sum, visit counts, Z, Z_b."""
    g = np.linspace(LO, HI, BINS)
    h = (HI - LO) / (BINS - 1)
    kde = np.exp(-0.5 * (g[:, None] - s[None, :]) ** 2 / SIGMA**2) @ w   # weights sum to 1
    nearest = np.clip(np.rint((s - LO) / h).astype(int), 0, BINS - 1)
    visits = np.bincount(nearest, minlength=BINS).astype(float)
    z = kde[visits > 0].mean()
    gamma = BARRIER / KT
    prefactor = (1.0 - 1.0 / gamma) * KT
    eps = math.exp(-BARRIER / prefactor)
    V = prefactor * np.log(kde / z + eps)
    z_b = float(np.sum(w * np.exp(-np.interp(s, g, V) / KT)))
    scale = n_kernels / z_b
    return dict(g=g, V=V, density=kde * scale, weight_sum=scale, visits=visits, z=z, z_b=z_b,
                prefactor=prefactor, eps=eps)


def primed(s, w, n_kernels=N_KERNELS):
    b = Opes(Grid([LO], [HI], BINS), KT, 1, SIGMA, BARRIER)
    b.prime(torch.tensor(s[:, None]), torch.tensor(w), n_kernels)
    return b


@pytest.fixture(scope="module", params=["resampled", "weighted"])
def case(request):
    s, w = prior(request.param)
    return s, w, opes_numpy(s, w, N_KERNELS)


def test_the_prior_spans_several_kT(case):
    s, w, ref = case
    V = ref["V"]
    explored = ref["visits"] > 0
    # the primed bias itself spans (1 - 1/gamma) x several kT over the explored region
    assert V[explored].max() - V[explored].min() > 4.0 * KT
    # Z_b is not 1 (1.04 and 0.64 for the two priors), so a prior left unscaled by 1/Z_b differs
    # from the right one; the exact checks below see any difference, the Monte Carlo one a large one
    assert abs(math.log(ref["z_b"])) > 0.03


def test_primed_state_matches_the_opes_formulas(case):
    s, w, ref = case
    b = primed(s, w)
    np.testing.assert_allclose(b.values.numpy(), ref["V"], rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(b.visits.numpy(), ref["visits"])
    # the kernel weights count as N_KERNELS steady-state depositions: sum = N_KERNELS / Z_b
    assert b.weight_sum == pytest.approx(ref["weight_sum"], rel=1e-10)
    np.testing.assert_allclose(b.density.numpy(), ref["density"], rtol=1e-10, atol=1e-300)
    state = b.state_dict()
    assert float(state["weight_sum"]) == pytest.approx(ref["weight_sum"], rel=1e-10)
    np.testing.assert_allclose(state["density"].numpy(), ref["density"], rtol=1e-10, atol=1e-300)
    # P = density / weight sum is the prior's KDE: its average over the explored region is Z
    p = b.density.numpy() / b.weight_sum
    assert p[b.visits.numpy() > 0].mean() == pytest.approx(ref["z"], rel=1e-10)


def test_weight_sum_scales_with_n_kernels_and_v_does_not(case):
    s, w, ref = case
    b1, b2 = primed(s, w, 100.0), primed(s, w, 300.0)
    assert b2.weight_sum / b1.weight_sum == pytest.approx(3.0, rel=1e-12)
    torch.testing.assert_close(b1.values, b2.values, rtol=1e-12, atol=1e-12)


def test_next_deposition_changes_v_by_the_opes_update(case):
    s, w, ref = case
    b = primed(s, w)
    s0 = np.array([0.05, 0.1])  # near the barrier top between the two minima, where P is small
    w0 = np.exp(np.interp(s0, ref["g"], ref["V"]) / KT)
    assert b.observe(0, torch.tensor(s0[:, None]))
    g = ref["g"]
    density = ref["density"] + np.exp(-0.5 * (g[:, None] - s0[None, :]) ** 2 / SIGMA**2) @ w0
    weight_sum = ref["weight_sum"] + w0.sum()
    visits = ref["visits"].copy()
    np.add.at(visits, np.clip(np.rint((s0 - LO) / (g[1] - g[0])).astype(int), 0, BINS - 1), 1.0)
    p = density / weight_sum
    V_new = ref["prefactor"] * np.log(p / p[visits > 0].mean() + ref["eps"])
    dV = V_new - ref["V"]
    assert np.abs(dV).max() > 1e-2 * KT  # the deposition matters, so the check below has teeth
    np.testing.assert_allclose(b.values.numpy() - ref["V"], dV, rtol=0, atol=1e-9)
    assert b.weight_sum == pytest.approx(weight_sum, rel=1e-10)


def test_steady_state_depositions_add_weight_in_proportion_to_their_number(case):
    """Physical meaning of the scale: M kernels deposited from the biased distribution that the
    primed bias produces add, on average, M / N_KERNELS times the primed weight sum (Monte Carlo,
    about 1 % noise at M = 20000)."""
    s, w, ref = case
    b = primed(s, w)
    before = b.weight_sum
    V_at_s = np.interp(s, ref["g"], ref["V"])
    biased = w * np.exp(-V_at_s / KT)
    m = 20000
    draws = np.random.default_rng(5).choice(s, m, p=biased / biased.sum())
    b.observe(0, torch.tensor(draws[:, None]))
    assert (b.weight_sum - before) / before == pytest.approx(m / N_KERNELS, rel=0.03)
