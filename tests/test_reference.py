"""Exact grid references (committor, free energy) and the CV-quality measure built on them."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from scipy.interpolate import RegularGridInterpolator

from cvcycle.analysis.quality import cv_committor_quality
from cvcycle.analysis.reference import boltzmann_bin_free_energy, exact_reference
from cvcycle.systems.base import in_states
from cvcycle.systems.potentials import Potential2D, PotentialInfo, mueller_brown

MB_STATES = {"A": {"center": [-0.558, 1.442], "radius": 0.15}, "B": {"center": [0.623, 0.028], "radius": 0.15}}
MB_SADDLE_1 = (-0.822, 0.624)
DW_STATES = {"A": {"center": [-1.0, 0.0], "radius": 0.2}, "B": {"center": [1.0, 0.0], "radius": 0.2}}


def interp(ref, values):
    """Bilinear interpolator of a grid field of `ref` at points (n, 2) = (x, y)."""
    f = RegularGridInterpolator((ref.ys, ref.xs), values)
    return lambda pts: f(np.asarray(pts)[:, ::-1])


@pytest.fixture(scope="module")
def mb201():
    return exact_reference(Potential2D("mueller-brown", 0.1), 1.0, MB_STATES, bins=201)


@pytest.fixture(scope="module")
def mb301():
    return exact_reference(Potential2D("mueller-brown", 0.1), 1.0, MB_STATES, bins=301)


@pytest.fixture(scope="module")
def dw():
    # V = 5 ((x^2-1)^2 + y^2) at kT = 1: a 5 kT barrier at x = 0
    return exact_reference(Potential2D("double-well", 5.0), 1.0, DW_STATES, bins=161)


def test_mueller_brown_committor_boundary_conditions_and_range(mb201):
    q = mb201.committor.ravel()
    assert np.all((q >= 0) & (q <= 1))
    masks = in_states(mb201.points, MB_STATES)
    assert masks["A"].sum() > 50 and masks["B"].sum() > 50
    assert np.all(q[masks["A"]] == 0.0) and np.all(q[masks["B"]] == 1.0)
    # strictly between 0 and 1 outside the states (the grid is connected)
    outside = ~(masks["A"] | masks["B"])
    assert q[outside].min() > 0.0 and q[outside].max() < 1.0


def test_mueller_brown_committor_along_segment_and_at_saddle(mb201):
    a, b = np.array(MB_STATES["A"]["center"]), np.array(MB_STATES["B"]["center"])
    t = np.linspace(0.0, 1.0, 201)
    seg = a + t[:, None] * (b - a)
    q = interp(mb201, mb201.committor)(seg)
    length = np.linalg.norm(b - a)
    just_out_a = np.argmax(t * length > 0.17)           # first point just outside A
    just_out_b = len(t) - 1 - np.argmax((1 - t[::-1]) * length > 0.17)
    assert q[just_out_a] < 0.5 < q[just_out_b]
    assert q[just_out_a] < 0.2 and q[just_out_b] > 0.8
    # overall increase: the running maximum from A reaches 1 and q at 3/4 exceeds q at 1/4
    assert q[150] > q[50]
    q_saddle = interp(mb201, mb201.committor)([MB_SADDLE_1])[0]
    assert 0.2 < q_saddle < 0.8


def test_free_energy_is_scaled_potential(mb201):
    pot = Potential2D("mueller-brown", 0.1)
    with torch.no_grad():
        V = pot(torch.as_tensor(mb201.points)).numpy().reshape(mb201.free_energy.shape)
    np.testing.assert_allclose(mb201.free_energy, V - V.min(), atol=1e-10)
    assert mb201.free_energy.min() == 0.0
    # kT = 2 halves the free energy in kT units
    hot = exact_reference(Potential2D("mueller-brown", 0.1), 2.0, MB_STATES, bins=61)
    cold = exact_reference(Potential2D("mueller-brown", 0.1), 1.0, MB_STATES, bins=61)
    np.testing.assert_allclose(hot.free_energy, cold.free_energy / 2.0, atol=1e-10)


def test_double_well_committor_symmetry(dw):
    q = dw.committor
    j0 = np.argmin(np.abs(dw.xs))
    i0 = np.argmin(np.abs(dw.ys))
    assert dw.xs[j0] == pytest.approx(0.0, abs=1e-12) and dw.ys[i0] == pytest.approx(0.0, abs=1e-12)
    assert q[i0, j0] == pytest.approx(0.5, abs=0.02)
    # reflection x -> -x exchanges A and B: q(-x, y) = 1 - q(x, y); and y -> -y leaves q unchanged
    np.testing.assert_allclose(q[:, ::-1], 1.0 - q, atol=1e-8)
    np.testing.assert_allclose(q[::-1, :], q, atol=1e-8)
    # monotone in x along y = 0 between the states
    row = q[i0, (dw.xs > -0.8) & (dw.xs < 0.8)]
    assert np.all(np.diff(row) > 0)
    # a 5 kT barrier makes the transition sharp: q is within 0.1 of 0/1 at x = -/+0.5
    qx = interp(dw, q)([[-0.5, 0.0], [0.5, 0.0]])
    assert qx[0] < 0.1 and qx[1] > 0.9


def _independent_committor(pot: Potential2D, kT: float, states: dict, bins: int) -> np.ndarray:
    """Committor of overdamped dynamics with *isotropic* diffusion on the potential's grid: jump
    rates (1/h_d^2) exp(-(V_j - V_i)/(2 kT)) along each axis d, h_d that axis' spacing."""
    xs, ys, V = (t.numpy() for t in pot.grid(bins))
    V = V / kT
    hx, hy = xs[1] - xs[0], ys[1] - ys[0]
    ny, nx = V.shape
    idx = np.arange(nx * ny).reshape(ny, nx)
    rows, cols, rates = [], [], []
    for (di, dj), h in (((0, 1), hx), ((1, 0), hy)):
        i0, i1 = idx[: ny - di, : nx - dj].ravel(), idx[di:, dj:].ravel()
        dv = V.ravel()[i1] - V.ravel()[i0]
        rows += [i0, i1]
        cols += [i1, i0]
        rates += [np.exp(-0.5 * dv) / h**2, np.exp(0.5 * dv) / h**2]
    K = sp.csr_matrix((np.concatenate(rates), (np.concatenate(rows), np.concatenate(cols))), shape=(nx * ny,) * 2)
    L = (K - sp.diags(np.asarray(K.sum(axis=1)).ravel())).tocsr()
    pts = np.stack(np.meshgrid(xs, ys, indexing="xy"), axis=-1).reshape(-1, 2)
    m = in_states(pts, states)
    fixed = m["A"] | m["B"]
    q = np.where(m["B"], 1.0, 0.0)
    free = ~fixed
    q[free] = spla.spsolve(L[free][:, free].tocsc(), -L[free][:, fixed] @ q[fixed])
    return q.reshape(ny, nx)


def _transition_region(ref):
    q, F = ref.committor.ravel(), ref.free_energy.ravel()
    return ref.points[(q > 0.02) & (q < 0.98) & (F < 12.0)]


def test_committor_does_not_depend_on_the_box_aspect_ratio(mb201):
    """Extending the reflecting box by a strip where F > 18 kT must leave q unchanged (the true
    committor changes by < 1e-3 there). The MB box is 3.0 x 2.7; with the same number of bins
    on both axes the grid spacings differ, and a generator that ignores this (unit rates on
    both axes) describes anisotropic diffusion D_x/D_y = (h_x/h_y)^2 = 1.23 -- a different
    committor. The square box (3.0 x 3.0) has h_x = h_y, so there the generator is isotropic."""
    square = Potential2D("mueller-brown", 0.1)
    square.info = PotentialInfo(mueller_brown, ((-1.7, 1.3), (-0.65, 2.35)))
    ref_sq = exact_reference(square, 1.0, MB_STATES, bins=201)
    assert ref_sq.free_energy[(ref_sq.ys < -0.5) | (ref_sq.ys > 2.2)].min() > 18.0
    pts = _transition_region(mb201)
    diff = np.abs(interp(mb201, mb201.committor)(pts) - interp(ref_sq, ref_sq.committor)(pts))
    assert diff.max() < 0.01, diff.max()


def test_committor_matches_independent_isotropic_solution(mb201):
    q_ind = _independent_committor(Potential2D("mueller-brown", 0.1), 1.0, MB_STATES, 201)
    keep = (mb201.committor > 0.02) & (mb201.committor < 0.98) & (mb201.free_energy < 12.0)
    diff = np.abs(mb201.committor - q_ind)[keep]
    assert diff.max() < 0.01, diff.max()


def test_independent_solver_is_box_invariant(mb201):
    """Sanity check of the reference used above: isotropic rates give the same committor in the
    3.0 x 2.7 and 3.0 x 3.0 boxes (over the transition region, F < 12 kT)."""
    pot = Potential2D("mueller-brown", 0.1)
    square = Potential2D("mueller-brown", 0.1)
    square.info = PotentialInfo(mueller_brown, ((-1.7, 1.3), (-0.65, 2.35)))
    q0 = _independent_committor(pot, 1.0, MB_STATES, 201)
    q1 = _independent_committor(square, 1.0, MB_STATES, 201)
    xs1, ys1, _ = square.grid(201)
    f0 = RegularGridInterpolator((mb201.ys, mb201.xs), q0)
    f1 = RegularGridInterpolator((ys1.numpy(), xs1.numpy()), q1)
    pts = _transition_region(mb201)[:, ::-1]
    assert np.abs(f0(pts) - f1(pts)).max() < 0.002


# ----------------------------------------------------------------------------- CV quality


@pytest.mark.parametrize("name,lo,hi", [("x", 0.92, 0.94), ("-x+0.5y", 0.98, 0.995)])
def test_cv_quality_calibration_of_linear_cvs(mb301, name, lo, hi):
    P = mb301.points
    cv = P[:, 0] if name == "x" else -P[:, 0] + 0.5 * P[:, 1]
    res = cv_committor_quality(cv, mb301.committor, mb301.free_energy)
    assert lo <= res["r2"] <= hi, res
    assert res["n_points"] > 1000


def test_cv_quality_of_exact_committor_and_invariances(mb301):
    q, F = mb301.committor, mb301.free_energy
    res = cv_committor_quality(q, q, F)
    assert res["r2"] >= 0.999 and res["width"] <= 0.02, res
    # any strictly increasing map of a CV gives the same score: only the order matters
    x = mb301.points[:, 0]
    base = cv_committor_quality(x, q, F)
    for g in (lambda v: 3.0 * v - 7.0, lambda v: np.exp(v), lambda v: v ** 3):
        r = cv_committor_quality(g(x), q, F)
        assert r["r2"] == pytest.approx(base["r2"], abs=1e-12)
        assert r["width"] == pytest.approx(base["width"], abs=1e-12)
    # a decreasing map too, for a CV without ties (equal-count bins then only shift by the
    # remainder of n_points / n_bins)
    cv = -x + 0.5 * mb301.points[:, 1] + 1e-7 * np.random.default_rng(1).normal(size=x.size)
    assert cv_committor_quality(-cv, q, F)["r2"] == pytest.approx(cv_committor_quality(cv, q, F)["r2"], abs=2e-3)
    # a CV that carries no information scores ~0
    noise = np.random.default_rng(0).normal(size=q.size)
    assert cv_committor_quality(noise, q, F)["r2"] < 0.05


def test_cv_quality_does_not_depend_on_the_sign_of_a_grid_aligned_cv(mb301):
    """x and -x are the same CV. On the grid, x takes each value on a whole column of points;
    equal-count bins cut through such ties, and the stable argsort then orders tied points by
    their flat index, i.e. by y -- so the score of x uses information from y, and reversing the
    CV reverses that ordering: R^2(x) = 0.933 but R^2(-x) = 0.939 at 301 bins."""
    q, F, x = mb301.committor, mb301.free_energy, mb301.points[:, 0]
    r_plus, r_minus = cv_committor_quality(x, q, F)["r2"], cv_committor_quality(-x, q, F)["r2"]
    assert r_plus == pytest.approx(r_minus, abs=2e-3), (r_plus, r_minus)


def test_cv_quality_needs_enough_transition_points():
    q = np.linspace(0, 1, 30)
    with pytest.raises(ValueError, match="transition region"):
        cv_committor_quality(q, q, np.zeros(30))


# ----------------------------------------------------------------------------- bin free energy


def test_boltzmann_bin_free_energy_on_mueller_brown():
    pot = Potential2D("mueller-brown", 0.1)
    (x0, x1), (y0, y1) = pot.box
    xe, ye = np.linspace(x0, x1, 51), np.linspace(y0, y1, 46)
    F = boltzmann_bin_free_energy(pot, 1.0, xe, ye)
    assert F.shape == (45, 50) and F.min() == 0.0

    def bin_of(p):
        return np.searchsorted(ye, p[1]) - 1, np.searchsorted(xe, p[0]) - 1

    # the minimum bin holds the deepest minimum; bins holding the other minima sit at their
    # energy above it (bins 0.06 wide: within-bin averaging shifts F by < 0.1 kT at minima)
    assert np.unravel_index(F.argmin(), F.shape) == bin_of((-0.558, 1.442))
    for (p, v) in (((0.623, 0.028), -108.17), ((-0.050, 0.467), -80.77)):
        assert F[bin_of(p)] == pytest.approx(0.1 * (v + 146.70), abs=0.1)
    # converged in the sub-sampling where it matters
    F40 = boltzmann_bin_free_energy(pot, 1.0, xe, ye, sub=40)
    low = F40 < 8.0
    assert np.abs(F - F40)[low].max() < 0.02
    # F = -ln of a bin average of exp(-V) is below V at the bin centre (Jensen) up to sub-sampling error
    xc, yc = 0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1])
    X, Y = np.meshgrid(xc, yc)
    with torch.no_grad():
        Vc = pot(torch.as_tensor(np.stack([X, Y], -1))).numpy()
    # compare shapes after aligning the minima: F - (Vc - Vc.min()) <= small
    assert np.max(F - (Vc - Vc.min())) < 0.05


def test_count_transitions_counts_state_changes_per_walker():
    from cvcycle.systems.model2d import ModelPotential2D

    states = {"A": {"center": [0.0, 0.0], "radius": 0.5}, "B": {"center": [2.0, 0.0], "radius": 0.5}}
    count_transitions = ModelPotential2D("double-well", 1.0, 1.0, states).count_transitions
    a, b, mid = [0.0, 0.0], [2.0, 0.0], [1.0, 0.0]
    # walker 0: A -> mid -> B -> mid -> A (2 transitions); walker 1: stays in A and between (0)
    w0 = [a, mid, b, mid, a]
    w1 = [a, mid, a, mid, mid]
    positions = np.array([w0, w1]).transpose(1, 0, 2)[:, :, None, :]  # (frames, walkers, 1 particle, 2)
    assert count_transitions(positions) == 2
    assert count_transitions(positions[:3]) == 1


def test_transitions_are_counted_between_the_first_state_and_the_others():
    from cvcycle.systems.model2d import ModelPotential2D

    states = {"A": {"center": [0.0, 0.0], "radius": 0.5}, "B": {"center": [2.0, 0.0], "radius": 0.5},
              "C": {"center": [2.0, 2.0], "radius": 0.5}}
    a, b, c, mid = [0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [1.0, 1.0]
    # A -> B -> C -> B -> A: two crossings of the A / not-A boundary; B <-> C hops do not count
    path = np.array([[a, mid, b, c, b, c, mid, a]]).transpose(1, 0, 2)[:, :, None, :]
    assert ModelPotential2D("double-well", 1.0, 1.0, states).count_transitions(path) == 2


def test_state_free_energies_are_minus_log_population_ratios():
    from cvcycle.analysis.fes import state_free_energies

    labels = np.array([0, 0, 1, 2, -1, 1, 0])
    w = np.array([0.2, 0.3, 0.05, 0.1, 0.3, 0.05, 0.0])
    got = state_free_energies(labels, w, ["A", "B", "C", "D"])
    assert got["B"] == pytest.approx(-np.log(0.1 / 0.5)) and got["C"] == pytest.approx(-np.log(0.1 / 0.5))
    assert got["D"] is None  # no weight in D
    assert got["others"] == pytest.approx(-np.log(0.2 / 0.5))
