"""Committor by shooting against the exact grid committor, and the committor histogram test of a
campaign's CV through `python -m cvcycle committor-test`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from cvcycle import io as cio
from cvcycle.analysis.reference import reference_from_spec
from cvcycle.analysis.shooting import committed_fraction, shoot, state_classifier
from cvcycle.campaign import Campaign
from cvcycle.analysis.committor_histogram import _candidate_frames
from cvcycle.engines import make_engine
from cvcycle.models.export import cv_module, load_model
from cvcycle.spec import validate
from cvcycle.loop import advance
from test_campaign import make_campaign, tiny_spec
from test_cli import env


def _engine(spec: dict, walkers: int):
    return make_engine(validate({**spec, "engine": {**spec["engine"], "walkers": walkers}}))


@pytest.mark.parametrize("compact", [False, True])
def test_shooting_reproduces_the_exact_committor_on_mueller_brown(compact):
    """With `compact` the committed trajectories are dropped as the run goes: the same statistics."""
    spec = tiny_spec()
    ref = reference_from_spec(spec, bins=241)
    q, F = ref.committor.ravel(), ref.free_energy.ravel()
    rng = np.random.default_rng(3)
    # one point per committor decile between 0.1 and 0.9, where the Boltzmann weight is not negligible
    deciles = [np.flatnonzero((q > lo) & (q < lo + 0.1) & (F < 12)) for lo in np.arange(0.1, 0.9, 0.1)]
    idx = np.array([rng.choice(d) for d in deciles if len(d)])
    assert len(idx) >= 6
    shots = 200
    outcomes, steps = shoot(_engine(spec, len(idx) * shots), ref.points[idx], shots,
                            state_classifier(spec["system"]["states"]), seed=11, max_steps=20000, compact=compact)
    assert 0 < steps < 20000 * outcomes.size and steps % 10 == 0
    assert (outcomes >= 0).all()  # every trajectory committed
    p = committed_fraction(outcomes)
    sigma = np.sqrt(q[idx] * (1 - q[idx]) / shots)
    # binomial noise plus the grid solver's and the time step's small systematic error
    assert np.all(np.abs(p - q[idx]) <= 4 * sigma + 0.02), np.c_[q[idx], p]
    assert np.mean(((p - q[idx]) / sigma) ** 2) < 3.0


def test_shooting_outcomes_are_reproducible_and_undecided_when_too_short():
    spec = tiny_spec()
    start = np.array([[-0.05, 0.47], [0.2, 0.3]])
    a, _ = shoot(_engine(spec, 20), start, 10, state_classifier(spec["system"]["states"]), seed=5, max_steps=200)
    b, _ = shoot(_engine(spec, 20), start, 10, state_classifier(spec["system"]["states"]), seed=5, max_steps=200)
    np.testing.assert_array_equal(a, b)
    short, steps = shoot(_engine(spec, 20), start, 10, state_classifier(spec["system"]["states"]), seed=5, max_steps=10)
    assert steps == 10 * 20  # every trajectory ran the full 10 steps
    assert (short == -1).mean() > 0.5  # 10 steps from the intermediate basin decide almost nothing
    assert np.isnan(committed_fraction(np.full((1, 4), -1)))[0]


def test_committor_histogram_test_of_a_campaign_cv(tmp_path):
    # walkers start spread over the intermediate basin, so that both states and the region between
    # them are sampled in two short iterations
    spec = tiny_spec(engine={"start": [-0.05, 0.47], "start_spread": 0.25},
                     budget={"max_iterations": 2}, convergence={"min_iterations": 2}, analysis={"grid_bins": 60, "plots": True})
    path = make_campaign(tmp_path / "c", spec)
    advance(path, log=lambda line: None)
    r = subprocess.run([sys.executable, "-m", "cvcycle", "committor-test", str(path), "--points", "12", "--shots", "40"],
                       env=env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "[committor test]" in r.stdout and (path / "committor_test.png").is_file()
    result = json.loads((path / "committor_test.json").read_text())
    p, q = np.array(result["p_B"], dtype=float), np.array(result["exact_q"])
    assert len(p) == len(q) == 12 and np.all((p >= 0) & (p <= 1))
    assert result["binomial_std"] == pytest.approx(0.5 / np.sqrt(40))
    lo, hi = result["p_B_std_interval"]  # a bootstrap interval of the width that brackets it
    assert result["p_B_std"] == pytest.approx(np.std(p)) and 0 <= lo < result["p_B_std"] < hi
    # whatever the CV's quality, each point's shooting estimate must agree with its exact committor
    sigma = np.sqrt(np.clip(q * (1 - q), 0.01, None) / 40)
    assert np.all(np.abs(p - q) <= 4 * sigma + 0.05), np.c_[q, p]
    # the transition-state ensemble: the 5 x 12 frames between the states nearest the isosurface
    tse = cio.read_npz(path / "transition_states.npz")
    assert tse["weights"].sum() == pytest.approx(1.0) and len(tse["positions"]) == 5 * 12
    assert (state_classifier(spec["system"]["states"])(tse["positions"]) == -1).all()
    c = Campaign(path)
    pos, feats, _ = _candidate_frames(c, 1)
    between = state_classifier(spec["system"]["states"])(pos) == -1
    with torch.no_grad():
        s = cv_module(load_model(c.iter_dir(1) / "model.npz"))(torch.as_tensor(feats[between], dtype=torch.float32))
    distance = np.sort(np.abs(s.numpy()[:, 0] - result["cv_isosurface"]))
    np.testing.assert_allclose(np.sort(np.abs(tse["cv"] - result["cv_isosurface"])), distance[:60], atol=1e-6)
    # the same test on an input feature (x alone): the isosurface is a line x = s*, on the same frames
    r = subprocess.run([sys.executable, "-m", "cvcycle", "committor-test", str(path), "--points", "12", "--shots", "40",
                        "--feature", "x"], env=env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    on_x = json.loads((path / "committor_test-x.json").read_text())
    assert on_x["cv"] == "x" and result["cv"] == "CV_2"
    p, q = np.array(on_x["p_B"], dtype=float), np.array(on_x["exact_q"])
    assert np.all(np.abs(p - q) <= 4 * np.sqrt(np.clip(q * (1 - q), 0.01, None) / 40) + 0.05), np.c_[q, p]
    tse_x = cio.read_npz(path / "transition_states-x.npz")
    np.testing.assert_array_equal(tse_x["cv"], tse_x["positions"][:, 0, 0])  # the feature x is the particle's x
    assert np.abs(tse_x["cv"] - on_x["cv_isosurface"]).max() <= np.sort(np.abs(pos[between, 0, 0] - on_x["cv_isosurface"]))[59] + 1e-12
    r = subprocess.run([sys.executable, "-m", "cvcycle", "committor-test", str(path), "--feature", "mu2"],
                       env=env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and r.stderr.strip().endswith("'mu2' is neither one of its features (x, y) nor a state coordinate (x, y)"), r.stderr
