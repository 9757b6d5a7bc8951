"""K_s, the Kolmogorov functional of the best committor guess that is a function of a CV: a
closed-form answer, invariance under monotone maps of the CV, the committor as its minimum, and
its gradient through a featurizer."""

from __future__ import annotations

import numpy as np
import pytest

from cvcycle.features.coordinates import Coordinates
from cvcycle.learn.cv_kolmogorov import bootstrap_kolmogorov, cv_and_grad_sq, cv_kolmogorov

A, B = -1.0, 1.0  # states: x <= A and x >= B


def double_well_grid(n: int = 401):
    """Boltzmann-weighted grid points of V = 3 (x^2 - 1)^2 + 2 y^2 (kT = 1) on [-1.6, 1.6] x [-2, 2]."""
    xs, ys = np.linspace(-1.6, 1.6, n), np.linspace(-2.0, 2.0, n)
    X, Y = np.meshgrid(xs, ys, indexing="xy")
    V = 3.0 * (X**2 - 1.0) ** 2 + 2.0 * Y**2
    w = np.exp(-V).ravel()
    return np.column_stack([X.ravel(), Y.ravel()]), w / w.sum(), xs


def exact_k_of_x(xs: np.ndarray) -> float:
    """For s = x the density of x is rho(x) = exp(-V1) / Z1 and G(s) = rho(s): K = 1 / int_A^B ds / rho."""
    v1 = 3.0 * (xs**2 - 1.0) ** 2
    z1 = np.trapz(np.exp(-v1), xs)
    inner = (xs >= A) & (xs <= B)
    return float(1.0 / np.trapz(z1 * np.exp(v1[inner]), xs[inner]))


def test_k_of_the_committor_coordinate_matches_the_closed_form():
    pos, w, xs = double_well_grid()
    k = cv_kolmogorov(pos[:, 0], np.ones(len(pos)), w, A, B)
    assert k == pytest.approx(exact_k_of_x(xs), rel=0.02)


def test_k_is_invariant_under_a_monotone_map_of_the_cv():
    pos, w, _ = double_well_grid()
    x = pos[:, 0]
    k_x = cv_kolmogorov(x, np.ones(len(x)), w, A, B)
    f, df = np.sinh(2.0 * x) + x, 2.0 * np.cosh(2.0 * x) + 1.0  # steep at the ends, flat in the middle
    assert cv_kolmogorov(f, df**2, w, float(np.sinh(2 * A) + A), float(np.sinh(2 * B) + B)) == pytest.approx(k_x, rel=0.02)
    assert cv_kolmogorov(-x, np.ones(len(x)), w, -A, -B) == pytest.approx(k_x, rel=1e-9)  # either orientation


def test_a_tilted_cv_has_a_larger_k_than_the_committor_coordinate():
    """Here q is a function of x alone, so s = x attains the minimum; tilting the isolines costs."""
    pos, w, _ = double_well_grid()
    k_x = cv_kolmogorov(pos[:, 0], np.ones(len(pos)), w, A, B)
    tilt = 0.3
    k_tilted = cv_kolmogorov(pos[:, 0] + tilt * pos[:, 1], np.full(len(pos), 1 + tilt**2), w, A, B)
    assert k_tilted > 1.2 * k_x


def test_too_few_samples_between_the_states_is_inf():
    s = np.array([-2.0, -1.5, 0.0, 1.5, 2.0])
    assert cv_kolmogorov(s, np.ones(5), np.full(5, 0.2), -1.0, 1.0) == float("inf")


def test_grad_sq_goes_through_the_featurizer_to_the_positions():
    pos = np.random.default_rng(0).normal(size=(50, 2))
    cv = lambda f: (f[:, :1] ** 2 + 3.0 * f[:, 1:]).float()  # noqa: E731
    s, g2 = cv_and_grad_sq(cv, Coordinates(["y", "x"]), pos, chunk=7)  # features in reversed order
    assert np.allclose(s, pos[:, 1] ** 2 + 3.0 * pos[:, 0], atol=1e-5)
    assert np.allclose(g2, 9.0 + 4.0 * pos[:, 1] ** 2, rtol=1e-5)


def correlated_sample(pos: np.ndarray, w: np.ndarray, rng: np.random.Generator, blocks: int = 25, draws: int = 40,
                      repeats: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Boltzmann samples in `blocks` walkers of `draws` independent points, each seen `repeats`
    times in a row, 0.01 apart (frames correlated in time): the points and each frame's walker."""
    idx = np.repeat(rng.choice(len(pos), blocks * draws, p=w), repeats)
    return pos[idx] + rng.normal(0.0, 0.01, (len(idx), 2)), np.repeat(np.arange(blocks), draws * repeats)


def test_bootstrap_of_whole_walkers_matches_the_spread_between_independent_campaigns():
    """The bootstrap resamples walkers, not frames: its spread of K_s matches the spread over
    independent data sets although each walker's frames come in correlated runs (resampling
    frames would be half as wide here)."""
    pos, w, _ = double_well_grid(201)
    rng = np.random.default_rng(4)
    estimates = []
    for _ in range(60):
        p, _walker = correlated_sample(pos, w, rng)
        estimates.append(cv_kolmogorov(p[:, 0], np.ones(len(p)), np.full(len(p), 1 / len(p)), A, B))
    p, walker = correlated_sample(pos, w, rng)
    boot = bootstrap_kolmogorov([(p[:, 0], np.ones(len(p)), A, B)], np.full(len(p), 1 / len(p)), walker, 300, seed=1)
    assert boot.shape == (300, 1)
    ratio = boot[:, 0].std() / np.std(estimates)
    assert 0.7 < ratio < 1.45, ratio  # measured 1.06 (frames resampled instead of walkers: ~0.5)


def test_bootstrap_pairs_the_resamples_of_every_cv():
    """The same resamples for every CV: a CV is never below itself, the committor coordinate is
    below a strongly tilted CV in every resample, and the order of a slightly tilted one is as
    uncertain as its small difference."""
    pos, w, _ = double_well_grid(201)
    p, walker = correlated_sample(pos, w, np.random.default_rng(5), draws=100)
    x, ones, weights = p[:, 0], np.ones(len(p)), np.full(len(p), 1 / len(p))

    def tilted(t: float):
        return (x + t * p[:, 1], np.full(len(p), 1 + t**2), A, B)

    boot = bootstrap_kolmogorov([(x, ones, A, B), (x, ones, A, B), tilted(0.3), tilted(0.02)], weights, walker, 200, 2)
    below_x = np.mean(boot < boot[:, :1], axis=0)
    assert below_x[1] == 0.0 and below_x[2] == 0.0
    assert np.all(boot[:, 0] < boot[:, 2])
    assert 0.0 < below_x[3] < 0.95  # a 0.02 tilt changes K_s by less than its error
    again = bootstrap_kolmogorov([(x, ones, A, B)], weights, walker, 200, 2)
    np.testing.assert_array_equal(again[:, 0], boot[:, 0])  # a pure function of the seed
