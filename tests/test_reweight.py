"""Importance weights: known-answer reweighting, Kish ESS, and mixing iterations."""

from __future__ import annotations

import numpy as np
import pytest

from cvcycle.learn.reweight import combine_iterations, effective_sample_size, normalized_weights


def log_normal_pdf(x, mu, sd):
    return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd * np.sqrt(2 * np.pi))


def weighted_moments(x, w):
    m = np.sum(w * x)
    return m, np.sum(w * (x - m) ** 2)


def test_uniform_samples_reweighted_to_a_gaussian():
    rng = np.random.default_rng(0)
    x = rng.uniform(-5.0, 5.0, 200_000)
    lw = log_normal_pdf(x, 1.0, 0.5) - np.log(1 / 10.0)
    w = normalized_weights(lw)
    assert w.sum() == pytest.approx(1.0, abs=1e-12) and np.all(w >= 0)
    m, v = weighted_moments(x, w)
    # ESS ~ n / (10 * 1/(2 sqrt(pi) 0.5)) ~ 35000: SE(mean) ~ 0.003, SE(var) ~ 0.002
    ess = effective_sample_size(w)
    assert 30_000 < ess < 40_000
    assert m == pytest.approx(1.0, abs=0.015)
    assert v == pytest.approx(0.25, abs=0.01)


def test_biased_gaussian_samples_recover_target_and_offset_invariance():
    """Samples from N(0, 2^2) (the 'biased' ensemble) reweighted to N(0.5, 1); adding a constant
    to every log-weight (the c(t) offset) changes nothing."""
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 2.0, 100_000)
    lw = log_normal_pdf(x, 0.5, 1.0) - log_normal_pdf(x, 0.0, 2.0)
    w = normalized_weights(lw)
    m, v = weighted_moments(x, w)
    assert m == pytest.approx(0.5, abs=0.02)
    assert v == pytest.approx(1.0, abs=0.03)
    np.testing.assert_allclose(normalized_weights(lw + 1234.5), w, rtol=1e-10)
    np.testing.assert_allclose(normalized_weights(lw - 800.0), w, rtol=1e-10)  # no underflow to 0/0


def test_power_tempers_the_weights():
    lw = np.array([0.0, 1.0, 2.0, 5.0])
    np.testing.assert_allclose(normalized_weights(lw, power=0.0), 0.25)
    half = normalized_weights(lw, power=0.5)
    np.testing.assert_allclose(half, np.exp(0.5 * lw) / np.exp(0.5 * lw).sum(), rtol=1e-12)
    assert effective_sample_size(half) > effective_sample_size(normalized_weights(lw))


def test_large_log_weights_are_stable():
    lw = np.array([1000.0, 999.0, -1000.0])
    w = normalized_weights(lw)
    assert np.all(np.isfinite(w))
    np.testing.assert_allclose(w[:2], np.array([1.0, np.exp(-1.0)]) / (1 + np.exp(-1.0)), rtol=1e-12)
    assert w[2] == pytest.approx(0.0, abs=1e-300)


def test_effective_sample_size_limits():
    assert effective_sample_size(np.ones(137)) == pytest.approx(137.0, rel=1e-12)
    assert effective_sample_size(np.full(50, 3.0)) == pytest.approx(50.0, rel=1e-12)  # scale-free
    one_hot = np.zeros(80)
    one_hot[17] = 2.0
    assert effective_sample_size(one_hot) == pytest.approx(1.0, rel=1e-12)
    # two equal halves among zeros: ESS = 2
    assert effective_sample_size(np.array([0.0, 1.0, 0.0, 1.0])) == pytest.approx(2.0)


def test_combine_iterations_mixes_by_effective_sample_size():
    rng = np.random.default_rng(2)
    good = np.zeros(1000)                      # flat weights: ESS = 1000
    degenerate = np.full(500, -50.0)
    degenerate[3] = 0.0                        # one sample dominates: ESS ~ 1
    moderate = rng.normal(0.0, 1.0, 300)       # somewhere in between
    w = combine_iterations([good, degenerate, moderate])
    assert w.shape == (1800,)
    assert w.sum() == pytest.approx(1.0, abs=1e-12) and np.all(w >= 0)
    ess = [effective_sample_size(normalized_weights(lw)) for lw in (good, degenerate, moderate)]
    shares = [w[:1000].sum(), w[1000:1500].sum(), w[1500:].sum()]
    np.testing.assert_allclose(shares, np.array(ess) / sum(ess), rtol=1e-12)
    assert shares[1] < 1.01 / (1000 + 1 + ess[2])  # the degenerate run gets ~ 1/ESS_total
    # within a run the relative weights are that run's own normalized weights
    np.testing.assert_allclose(w[1500:] / shares[2], normalized_weights(moderate), rtol=1e-12)


def test_combined_weights_recover_target_from_two_runs():
    """Two runs sampling N(0,1) and N(1,1) both reweighted to the target N(0.3, 0.7^2)."""
    rng = np.random.default_rng(3)
    runs, lws = [], []
    for mu in (0.0, 1.0):
        x = rng.normal(mu, 1.0, 60_000)
        runs.append(x)
        lws.append(log_normal_pdf(x, 0.3, 0.7) - log_normal_pdf(x, mu, 1.0))
    w = combine_iterations(lws)
    m, v = weighted_moments(np.concatenate(runs), w)
    assert m == pytest.approx(0.3, abs=0.01)
    assert v == pytest.approx(0.49, abs=0.015)
