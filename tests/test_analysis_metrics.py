"""The analysis metrics on small inputs with hand-computed answers (each written for surviving
mutants of tools/mutation.py): free energies from weighted histograms, their aligned RMSE and
change, state free energies, the committor RMSE, transition-path-theory rates, and the edges of
the committor-quality metric.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from cvcycle.analysis.fes import aligned_rmse, fes_change, histogram_fes, state_free_energies
from cvcycle.analysis.quality import committor_rmse, cv_committor_quality, free_energy_window
from cvcycle.analysis.rates import grid_tpt_rate, tpt_rate
from cvcycle.analysis.reference import exact_reference
from cvcycle.systems.potentials import Potential2D

STATES = {"A": {"center": [-0.558, 1.442], "radius": 0.15}, "B": {"center": [0.623, 0.028], "radius": 0.15}}


def test_histogram_fes_1d_is_minus_log_probability_from_zero():
    """Bins [0,1), [1,2), [2,3) with weights 3, 1, 0: F = -ln(p / p_max) = 0, ln 3, NaN (empty)."""
    values = np.array([0.2, 0.5, 0.7, 1.5, 2.5])
    weights = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
    F = histogram_fes(values, weights, [np.array([0.0, 1.0, 2.0, 3.0])])
    assert F[0] == 0.0 and F[1] == pytest.approx(math.log(3.0), rel=1e-12) and np.isnan(F[2])


def test_histogram_fes_2d_rows_follow_the_second_coordinate():
    """Weights 1 at (x, y) = (0.5, 0.5), 4 at (1.5, 0.5), 2 at (0.5, 1.5): F[iy, ix]."""
    values = np.array([[0.5, 0.5], [1.5, 0.5], [0.5, 1.5]])
    F = histogram_fes(values, np.array([1.0, 4.0, 2.0]), [np.array([0.0, 1.0, 2.0])] * 2)
    assert F.shape == (2, 2)
    assert F[0, 1] == 0.0  # y bin 0, x bin 1: the most weight
    assert F[0, 0] == pytest.approx(math.log(4.0), rel=1e-12)
    assert F[1, 0] == pytest.approx(math.log(2.0), rel=1e-12)
    assert np.isnan(F[1, 1])


def test_aligned_rmse_removes_the_best_shift_and_reports_coverage():
    ref = np.array([0.0, 1.0, 2.0, 3.0, np.nan])
    est = np.array([5.0, 6.0, 7.5, np.nan, 1.0])  # ref + 5 except +0.5 more in bin 2; bin 3 missing
    mask = np.array([True, True, True, True, True])
    rmse, coverage = aligned_rmse(est, ref, mask)
    diff = np.array([5.0, 5.0, 5.5])
    assert rmse == pytest.approx(float(np.sqrt(np.mean((diff - diff.mean()) ** 2))), rel=1e-12)
    assert coverage == pytest.approx(3 / 5)
    rmse, coverage = aligned_rmse(est, ref, np.array([True, True, False, False, False]))
    assert rmse == 0.0 and coverage == 1.0
    assert aligned_rmse(est, ref, np.array([False, True, False, False, False])) == (0.0, 1.0)  # one bin
    assert aligned_rmse(est, ref, np.zeros(5, dtype=bool)) == (float("inf"), 0.0)
    assert aligned_rmse(est, ref, np.array([False, False, False, True, True])) == (float("inf"), 0.0)


def test_fes_change_is_the_aligned_rmse_below_the_cutoff():
    old = np.array([0.0, 1.0, 2.0, 3.0, 9.0, 20.0])
    new = np.array([1.0, 2.0, 3.5, 4.0, 10.0, 2.0])
    # bins where both are <= 8: 0..3 -> differences 1, 1, 1.5, 1
    d = np.array([1.0, 1.0, 1.5, 1.0])
    assert fes_change(new, old, 8.0) == pytest.approx(float(np.sqrt(np.mean((d - d.mean()) ** 2))), rel=1e-12)
    assert fes_change(new, old, 3.0) == float("inf")  # only bins 0, 1 (new <= 3 and old <= 3): fewer than 3
    assert fes_change(new, old, 3.5) == pytest.approx(float(np.std([1.0, 1.0, 1.5])), rel=1e-12)  # exactly 3 bins
    # "below the cutoff" includes it, for both estimates: new[2] = 3.5 counts as the old one here
    assert fes_change(old, new, 3.5) == pytest.approx(float(np.std([1.0, 1.0, 1.5])), rel=1e-12)


def test_state_free_energies_relative_to_the_first_state():
    labels = np.array([0, 0, 1, 2, 2, -1])
    weights = np.array([0.3, 0.1, 0.1, 0.05, 0.15, 0.3])
    out = state_free_energies(labels, weights, ["A", "B", "C"])
    assert out["B"] == pytest.approx(-math.log(0.1 / 0.4), rel=1e-12)
    assert out["C"] == pytest.approx(-math.log(0.2 / 0.4), rel=1e-12)
    assert out["others"] == pytest.approx(-math.log(0.3 / 0.4), rel=1e-12)
    none = state_free_energies(np.array([0, 0, -1]), np.array([0.5, 0.5, 1.0]), ["A", "B"])
    assert none == {"B": None, "others": None}
    assert state_free_energies(np.array([1, -1]), np.array([1.0, 1.0]), ["A", "B"]) == {"B": None, "others": None}


def test_committor_rmse_over_the_transition_region():
    q = np.array([0.01, 0.2, 0.5, 0.8, 0.99, 0.05, 0.95, 0.5])
    pred = q + np.array([0.3, 0.1, -0.2, 0.1, 0.3, 0.3, 0.3, 0.3])
    F = np.array([0.0, 0.0, 1.0, 12.0, 0.0, 0.0, 0.0, 12.5])
    # kept: 0.05 < q < 0.95 and F <= 12 -> indices 1, 2, 3 (errors 0.1, -0.2, 0.1)
    assert committor_rmse(pred, q, F) == pytest.approx(math.sqrt((0.01 + 0.04 + 0.01) / 3), rel=1e-12)


def test_the_metric_window_rises_with_the_transition_state_and_stays_12_kT_below_it():
    """F <= 12 kT unless the transition state (lowest F at 0.45 < q < 0.55) lies above 11 kT; then
    1 kT above it. On Mueller-Brown at 13 kT (scale 0.1226) the fixed window held no grid point
    with 0.45 < q < 0.55; the raised one holds the saddle region."""
    q = np.array([0.1, 0.5, 0.52, 0.9])
    assert free_energy_window(q, np.array([0.0, 10.9, 11.5, 0.0])) == 12.0
    assert free_energy_window(q, np.array([0.0, 13.0, 12.5, 0.0])) == 13.5
    assert free_energy_window(np.array([0.1, 0.9]), np.array([0.0, 20.0])) == 12.0  # no transition state on the grid
    for scale, window in ((0.1, 12.0), (0.1226, 13.81)):
        ref = exact_reference(Potential2D("mueller-brown", scale), 1.0, STATES, bins=241)
        q, F = ref.committor.ravel(), ref.free_energy.ravel()
        assert free_energy_window(q, F) == pytest.approx(window, abs=0.01)
        assert ((q > 0.45) & (q < 0.55) & (F <= free_energy_window(q, F))).sum() >= 20


def test_tpt_rate_of_a_linear_committor_on_a_uniform_density():
    """q = x on [0, 1] with |grad q|^2 = 1 and uniform weights: the flux through the window
    (0.1, 0.9) is D x 0.8 / 0.8 = D, E[1 - q] = 1/2, so k_AB = 2 D (any weight normalisation)."""
    x = (np.arange(10000) + 0.5) / 10000
    k = tpt_rate(x, np.ones_like(x), np.full_like(x, 3.0), diffusion=0.7)
    assert k == pytest.approx(2 * 0.7, rel=1e-3)
    # a narrower window estimates the same flux
    assert tpt_rate(x, np.ones_like(x), np.ones_like(x), 0.7, window=(0.3, 0.6)) == pytest.approx(1.4, rel=1e-3)


def test_grid_tpt_rate_matches_the_sample_estimate():
    """q = x on a grid over [0, 1] x [0, 2]: k_AB = D x (fraction of grid columns inside the
    window) / 0.8 / E[1 - q], E[1 - q] = 1/2; F shifted by a constant changes nothing, and a tilt
    F = 2 y weights rows without changing the x profile. q = y / 2 has |grad q|^2 = 1/4."""
    xs, ys = np.linspace(0.0, 1.0, 201), np.linspace(0.0, 2.0, 101)
    X, Y = np.meshgrid(xs, ys)
    inside_x = np.mean((xs > 0.1) & (xs < 0.9))
    for F in (np.zeros_like(X) + 5.0, 2.0 * Y, 2.0 * Y - 900.0, 2.0 * Y + 900.0):  # any zero of F
        assert grid_tpt_rate(xs, ys, F, X.copy(), diffusion=0.5) == pytest.approx(0.5 * inside_x / 0.8 / 0.5, rel=1e-9)
    inside_y = np.mean((ys / 2 > 0.1) & (ys / 2 < 0.9))
    assert grid_tpt_rate(xs, ys, np.zeros_like(X), Y / 2.0, diffusion=0.5) == pytest.approx(
        0.5 * 0.25 * inside_y / 0.8 / 0.5, rel=1e-9)


def test_quality_edges_of_its_selection_and_bins():
    """Exactly n_bins kept points are enough (one per bin, R^2 = 1); F = f_max is kept; q exactly
    at either end of q_range is not (the range is open)."""
    q = np.linspace(0.1, 0.9, 50)
    m = cv_committor_quality(q, q, np.zeros(50))
    assert m["n_points"] == 50 and m["r2"] == pytest.approx(1.0) and m["width"] == 0.0
    ends = np.concatenate([q, [0.05, 0.95]])
    assert cv_committor_quality(ends, ends, np.zeros(52))["n_points"] == 50
    F = np.zeros(50)
    F[:3] = 12.0  # exactly at f_max: kept
    assert cv_committor_quality(q, q, F)["n_points"] == 50
    with pytest.raises(ValueError, match="only 49 grid points"):
        cv_committor_quality(q[:49], q[:49], np.zeros(49))


def test_rank_correlation_of_the_cv_with_state_coordinates():
    """Spearman's rho: 1 for any increasing map of a coordinate, -1 for a decreasing one, the
    exact value on ties-free data, and None for a constant coordinate."""
    from cvcycle.routes.evaluate import rank_correlations

    rng = np.random.default_rng(0)
    n = rng.permutation(200).astype(float)
    z = np.stack([n, -np.exp(n / 50), np.full(200, 3.0)], axis=1)
    cv = np.tanh(n / 80)[:, None]
    out = rank_correlations(cv, z, ("n", "down", "flat"))
    assert out == {"n": pytest.approx(1.0), "down": pytest.approx(-1.0), "flat": None}
    noisy = rank_correlations(np.array([[1.0], [2.0], [3.0], [4.0]]), np.array([[1.0], [3.0], [2.0], [4.0]]), ("x",))
    assert noisy["x"] == pytest.approx(1 - 6 * 2 / (4 * 15))  # 1 - 6 sum d^2 / (n (n^2 - 1)), sum d^2 = 2


def test_q_change_is_unmeasured_where_no_frame_is_between_the_states():
    """The RMS change of q counts the frames where either committor is between 0.05 and 0.95; where
    both are saturated on every frame (a walker deep in a state) the change is None, not 0, so the
    q_change check cannot pass on frames that cannot see the transition region."""
    from cvcycle.routes.evaluate import q_change_rms

    z_old, z_new = np.array([-9.0, 9.0, 0.0, 8.0]), np.array([-8.0, 10.0, 1.0, -8.0])
    q = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    # frame 2 counts (q 0.5 -> 0.73); frames 0, 1 and 3 are saturated under both models and left out
    assert q_change_rms(z_new, z_old) == pytest.approx(abs(q(1.0) - q(0.0)))
    assert q_change_rms(z_new[:2], z_old[:2]) is None
