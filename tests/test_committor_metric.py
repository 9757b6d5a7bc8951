"""|grad_x q|^2 of the committor through non-Cartesian features equals autograd through the
positions: the metric J D J^T of `feature_metric` (D = identity or the inverse masses) is what
turns feature gradients into position gradients. With Cartesian features the metric is the
identity, so only features that mix the coordinates can catch a dropped or wrong metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cvcycle.features.particles import CoordinationMoments, CoordinationNumbers
from cvcycle.learn.committor import committor_and_grad_sq, committor_terms, feature_metric
from cvcycle.learn.cv_kolmogorov import cv_and_grad_sq
from cvcycle.models.committor import CommittorNet
from cvcycle.systems.lj7 import MINIMA


def _frames(n: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.stack([MINIMA[name] for name in ("C0", "C1", "C2", "C3")])
    return base[rng.integers(0, 4, n)] + 0.08 * rng.standard_normal((n, 7, 2))


def _model(n_features: int) -> CommittorNet:
    torch.manual_seed(3)
    model = CommittorNet(n_features, [8, 8], "tanh")
    with torch.no_grad():  # weights large enough that q varies between 0.05 and 0.95 on the frames
        for p in model.parameters():
            p.mul_(3.0)
    return model


def _autograd_grad_sq(model: CommittorNet, featurizer: torch.nn.Module, pos: np.ndarray,
                      inverse_mass: np.ndarray | None) -> np.ndarray:
    x = torch.as_tensor(pos, dtype=torch.float64).requires_grad_(True)
    q = model.committor(featurizer(x).float())
    (g,) = torch.autograd.grad(q.sum(), x)
    g2 = (g * g).sum(-1)  # (n, N)
    if inverse_mass is not None:
        g2 = g2 * torch.as_tensor(inverse_mass)
    return g2.sum(-1).numpy()


@pytest.mark.parametrize("featurizer", [CoordinationMoments(7), CoordinationNumbers(7)], ids=["moments", "coordination"])
@pytest.mark.parametrize("inverse_mass", [None, np.array([1.0, 0.5, 0.25, 1.0, 2.0, 1.0, 0.5])], ids=["unit", "masses"])
def test_grad_sq_through_the_feature_metric_matches_autograd_through_positions(featurizer, inverse_mass):
    pos = _frames()
    with torch.no_grad():
        feats = featurizer(torch.as_tensor(pos)).numpy()
    model = _model(feats.shape[1])
    metric = feature_metric(featurizer, pos, inverse_mass)
    assert metric is not None and metric.shape == (len(pos), feats.shape[1], feats.shape[1])
    q, g2 = committor_and_grad_sq(model, feats, metric)
    expected = _autograd_grad_sq(model, featurizer, pos, inverse_mass)
    assert np.ptp(q) > 0.2  # the committor is not flat on these frames
    np.testing.assert_allclose(g2, expected, rtol=2e-4, atol=1e-7 * expected.max())
    # without the metric (|grad_features q|^2) the numbers are different: the test can fail
    _, plain = committor_and_grad_sq(model, feats, None)
    assert np.max(np.abs(plain - expected) / expected.max()) > 0.05

    # the training loss uses the same metric: its Kolmogorov term is the weighted mean of g2
    w = np.linspace(0.5, 1.5, len(pos))
    kol, _ = committor_terms(model, feats, w, np.full(len(pos), -1), metric)
    assert kol == pytest.approx(float(np.mean(w / w.mean() * expected)), rel=2e-4)


def test_cv_grad_sq_of_k_s_is_mass_weighted():
    """K_s takes |grad_x s|^2 in the same metric: sum_i |grad_i s|^2 / m_i."""
    featurizer, pos = CoordinationMoments(7), _frames(seed=1)
    model = _model(2)
    inverse_mass = np.array([1.0, 0.5, 0.25, 1.0, 2.0, 1.0, 0.5])
    cv = lambda f: model(f)  # noqa: E731  logit q as a CV
    s, g2 = cv_and_grad_sq(cv, featurizer, pos, inverse_mass=inverse_mass)
    x = torch.as_tensor(pos).requires_grad_(True)
    (g,) = torch.autograd.grad(model(featurizer(x).float())[:, 0].sum(), x)
    expected = ((g * g).sum(-1) * torch.as_tensor(inverse_mass)).sum(-1).numpy()
    np.testing.assert_allclose(g2, expected, rtol=1e-6)
    _, unweighted = cv_and_grad_sq(cv, featurizer, pos)
    assert not np.allclose(unweighted, expected, rtol=1e-2)


@pytest.mark.parametrize("inverse_mass", [None, np.linspace(0.5, 2.0, 7)])
def test_feature_metric_is_the_same_computed_in_chunks(inverse_mass):
    """Frames are independent: chunks of 3 frames give the metric of all 10 at once (bounded
    memory must not change the numbers), and it is J D J^T by the definition."""
    rng = np.random.default_rng(4)
    pos = MINIMA["C1"][None] + 0.1 * rng.standard_normal((10, 7, 2))
    whole = feature_metric(CoordinationNumbers(7), pos, inverse_mass, chunk=100)
    np.testing.assert_allclose(feature_metric(CoordinationNumbers(7), pos, inverse_mass, chunk=3), whole, rtol=1e-13, atol=1e-15)
    jac = torch.autograd.functional.jacobian(lambda p: CoordinationNumbers(7)(p[None])[0], torch.as_tensor(pos[7]))
    jac = jac.reshape(7, -1).numpy()
    d = np.ones(14) if inverse_mass is None else np.repeat(inverse_mass, 2)
    np.testing.assert_allclose(whole[7], (jac * d) @ jac.T, rtol=1e-12, atol=1e-14)


def test_cv_grad_sq_is_the_same_computed_in_chunks():
    """|grad_x s|^2 of a CV of particle features, 3 frames at a time or all at once (the default
    chunk of 7 particles, 2^16 / 49 = 1337 frames, holds all 10)."""
    from cvcycle.features.base import frames_per_chunk

    features = CoordinationMoments(7)
    assert frames_per_chunk(features, 1) == 20000 and frames_per_chunk(features, 7) == 1337
    assert frames_per_chunk(features, 4000) == 1
    rng = np.random.default_rng(5)
    pos = MINIMA["C2"][None] + 0.1 * rng.standard_normal((10, 7, 2))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    whole = cv_and_grad_sq(net, CoordinationMoments(7), pos)
    parts = cv_and_grad_sq(net, CoordinationMoments(7), pos, chunk=3)
    for a, b in zip(whole, parts):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-12)
    assert np.all(whole[1] > 0)


def test_feature_metric_of_steinhardt_features_with_a_neighbour_search():
    """The nucleation features find neighbours with a cell list (data-dependent shapes, which
    torch.func.vmap rejects): the metric of two frames in one chunk is each frame's own J J^T,
    and g^T M g equals |grad_x q|^2 by autograd through the positions."""
    from cvcycle.features.steinhardt import SteinhardtFeatures
    from cvcycle.systems.lj_bulk import fcc_lattice

    lattice, box = fcc_lattice((2, 2, 2), 0.95)  # 32 particles, box edge 3.23 sigma
    rng = np.random.default_rng(5)
    pos = np.stack([lattice + s * rng.standard_normal(lattice.shape) for s in (0.05, 0.15)])
    featurizer = SteinhardtFeatures(box, n_bins=4)
    metric = feature_metric(featurizer, pos, chunk=2)
    for i in range(2):
        jac = torch.autograd.functional.jacobian(lambda p: featurizer(p[None])[0], torch.as_tensor(pos[i]))
        jac = jac.reshape(jac.shape[0], -1).numpy()
        np.testing.assert_allclose(metric[i], jac @ jac.T, rtol=1e-10, atol=1e-12 * np.abs(metric[i]).max())
    with torch.no_grad():
        feats = featurizer(torch.as_tensor(pos)).numpy()
    model = _model(feats.shape[1])
    _, g2 = committor_and_grad_sq(model, feats, metric)
    np.testing.assert_allclose(g2, _autograd_grad_sq(model, featurizer, pos, None), rtol=2e-4)
