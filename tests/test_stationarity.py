"""The frozen-bias stationarity test: exact populations, a time step that keeps the biased
ensemble, and one that does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cvcycle.analysis.stationarity import CHI2_PER_BIN, converged_bias, frozen_bias_test
from cvcycle.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def line_cv() -> torch.nn.Module:
    """s = -x + 0.5 y, scaled so that A's centre is at -0.6 and B's at 0.6."""
    a_val, b_val = 0.558 + 0.5 * 1.442, -0.623 + 0.5 * 0.028
    scale = 1.2 / (b_val - a_val)
    lin = torch.nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[-scale, 0.5 * scale]]))
        lin.bias.fill_(-0.6 - scale * a_val)
    return lin.requires_grad_(False)


def test_converged_bias_flattens_the_cv_and_its_exact_populations_are_a_density():
    spec = load_spec(ROOT / "workflows" / "mueller-brown-autoencoder.toml")
    hook, points, s, w, h = converged_bias(spec, line_cv(), grid=201)
    assert len(points) == len(s) == len(w) == 201 * 201 and w.sum() == pytest.approx(1.0)
    assert h == pytest.approx(3.0 / 200)  # the Mueller-Brown box is 3 wide in x
    # OPES at steady state: the biased CV distribution is far flatter than the Boltzmann one
    edges = np.linspace(-0.6, 0.6, 7)
    biased = np.histogram(s, edges, weights=w)[0]
    assert biased.max() / biased.min() < 30  # unbiased: exp(~11 kT) between the basin and the barrier


@pytest.mark.parametrize("dt, passes", [(2e-3, True), (1e-2, False)])  # measured chi2 per bin ~1 and 51
def test_populations_stay_exact_at_a_small_time_step_and_drift_at_a_large_one(dt, passes):
    spec = load_spec(ROOT / "workflows" / "mueller-brown-autoencoder.toml")
    r = frozen_bias_test(spec, line_cv(), dt, time=1.0, walkers=400, bins=10, seed=3, grid=201)
    assert sum(r["exact"]) == pytest.approx(1.0) and np.allclose(r["exact"], 0.1, atol=0.01)
    assert sum(r["populations"]) == pytest.approx(1.0)
    assert r["steps"] == round(1.0 / dt) and r["walker_steps"] == 400 * r["steps"]
    assert r["passed"] == passes and (r["chi2_per_bin"] <= CHI2_PER_BIN) == passes, r["chi2_per_bin"]
    if passes:
        assert r["mean_abs_log_ratio"] < 2.5 * r["noise_floor"]
