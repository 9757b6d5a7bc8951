"""The analysis metrics on small inputs with hand-computed answers (each written for surviving
mutants of tools/mutation.py): free energies from weighted histograms, their aligned RMSE and
change, state free energies, the committor RMSE, transition-path-theory rates, and the edges of
the committor-quality metric.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cvcycle import io as cio

from cvcycle.analysis.fes import aligned_rmse, fes_change, histogram_fes, state_free_energies
from cvcycle.analysis.quality import committor_rmse, cv_committor_quality
from cvcycle.analysis.rates import grid_tpt_rate, tpt_rate


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
    """Exactly n_bins kept points are enough (one per bin, R^2 = 1); F = f_max is kept."""
    q = np.linspace(0.1, 0.9, 50)
    m = cv_committor_quality(q, q, np.zeros(50))
    assert m["n_points"] == 50 and m["r2"] == pytest.approx(1.0) and m["width"] == 0.0
    F = np.zeros(50)
    F[:3] = 12.0  # exactly at f_max: kept
    assert cv_committor_quality(q, q, F)["n_points"] == 50
    with pytest.raises(ValueError, match="only 49 grid points"):
        cv_committor_quality(q[:49], q[:49], np.zeros(49))


def test_crossing_bin_of_the_committor_scan():
    """The first bin on the other side of p_B = 1/2 from bin 0 (1/2 itself counts as above)."""
    from cvcycle.analysis.committor_histogram import _crossing_bin

    assert _crossing_bin(np.array([0.1, 0.3, 0.6, 0.8])) == 2
    assert _crossing_bin(np.array([0.9, 0.6, 0.4, 0.45, 0.1])) == 2
    assert _crossing_bin(np.array([0.2, 0.5])) == 1
    assert _crossing_bin(np.array([0.5, 0.7])) is None  # never below
    assert _crossing_bin(np.array([0.1, 0.49])) is None  # never above
    assert _crossing_bin(np.array([0.1, np.nan, 0.9])) is None  # a bin without a committed shot


class _FirstFeature(torch.nn.Module):
    """A CV that is the first feature (x): the scan runs along x."""

    def forward(self, x):
        return x[:, :1]


def test_committor_histogram_scan_finds_the_isosurface_of_a_known_p_b(tmp_path, monkeypatch):
    """Frames on a segment x in [-0.3, 0.3] at y = 0.7; shooting from x gives p_B = clip(0.5 + x/0.4)
    (rounded to whole shots). The scan along x must place s* near 0 by linear interpolation between
    the bracketing bins' medians, refine inside those two bins, draw the test points from the
    5 x points frames nearest s*, and write that transition-state ensemble with weights summing to 1."""
    from cvcycle.analysis import committor_histogram as ct
    from cvcycle.spec import load_spec, validate

    spec = validate(load_spec(Path(__file__).resolve().parents[1] / "workflows" / "mueller-brown-autoencoder.toml"))
    spec["analysis"]["plots"] = False
    n = 600
    pos = np.stack([np.linspace(-0.3, 0.3, n), np.full(n, 0.7)], axis=1)[:, None, :]
    weights = np.full(n, 1.0 / n)
    calls = []

    def fake_shoot(engine, starts, shots, *args, **kwargs):
        x = np.asarray(starts).reshape(len(starts), -1)[:, 0]
        ones = np.rint(np.clip(0.5 + x / 0.4, 0.0, 1.0) * shots).astype(int)
        calls.append((len(starts), shots))
        return (np.arange(shots)[None, :] < ones[:, None]).astype(int), 0

    monkeypatch.setattr(ct, "load_model", lambda path: None)
    monkeypatch.setattr(ct, "cv_module", lambda model: _FirstFeature())
    monkeypatch.setattr(ct, "_candidate_frames", lambda c, k: (pos, pos[:, 0, :].copy(), weights))
    monkeypatch.setattr(ct, "make_engine", lambda *args, **kwargs: None)
    monkeypatch.setattr(ct, "shoot", fake_shoot)
    campaign = SimpleNamespace(spec=spec, id="scan", seed=0, path=tmp_path,
                               progress=lambda: {"history": [{"iteration": 0}]}, iter_dir=lambda k: tmp_path)
    result = ct.committor_histogram(campaign, shots=20, points=10, scan_bins=6, scan_points=4, scan_shots=20,
                                    log=lambda line: None)
    # three scans: 600 frames in 6 bins, then the 200 of the bracketing two, then their ~66 (>= 6 x 4)
    levels = len(result["scans"])
    assert levels == 3 and calls[:levels] == [(24, 20)] * levels and calls[levels] == (10, 20)
    for scan in result["scans"]:
        assert np.all(np.diff(scan["cv"]) > 0) and np.all(np.diff(scan["p_B"]) >= 0)
    assert abs(result["cv_isosurface"]) < 0.01
    assert result["cv_isosurface"] == pytest.approx(float(np.interp(0.5, *_bracket(result["scans"][-1]))), abs=1e-12)
    p = np.array(result["p_B"])
    assert np.all(np.abs(p - 0.5) <= 0.1)  # the test points lie within 0.04 of x = 0
    assert result["p_B_mean"] == pytest.approx(p.mean()) and result["p_B_std"] == pytest.approx(p.std())
    assert result["exact_q"] and len(result["exact_q"]) == 10
    tse = cio.read_npz(tmp_path / "transition_states.npz")
    assert len(tse["cv"]) == 50 and tse["weights"].sum() == pytest.approx(1.0)
    nearest = np.sort(np.abs(pos[:, 0, 0] - result["cv_isosurface"]))[:50]
    np.testing.assert_allclose(np.sort(np.abs(tse["cv"] - result["cv_isosurface"])), nearest, atol=1e-9)


def _bracket(scan):
    """(p_B, cv) of the two bins around p_B = 1/2, for np.interp(0.5, p, cv)."""
    p, s = np.array(scan["p_B"]), np.array(scan["cv"])
    i = int(np.argmax(p >= 0.5))
    return p[i - 1:i + 1], s[i - 1:i + 1]


def _scan_setup(tmp_path, monkeypatch, pos):
    """The committor test on frames `pos` (n, 1, 2) of a Mueller-Brown autoencoder campaign whose
    features are (x, y), shooting from x with p_B = clip(0.5 + x/0.4); returns (campaign, starts
    shot from)."""
    from cvcycle.analysis import committor_histogram as ct
    from cvcycle.spec import load_spec, validate

    spec = validate(load_spec(Path(__file__).resolve().parents[1] / "workflows" / "mueller-brown-autoencoder.toml"))
    spec["analysis"]["plots"] = False
    starts_shot = []

    def fake_shoot(engine, starts, shots, *args, **kwargs):
        starts_shot.append(np.asarray(starts).reshape(len(starts), -1))
        ones = np.rint(np.clip(0.5 + starts_shot[-1][:, 0] / 0.4, 0.0, 1.0) * shots).astype(int)
        return (np.arange(shots)[None, :] < ones[:, None]).astype(int), 0

    monkeypatch.setattr(ct, "load_model", lambda path: None)
    monkeypatch.setattr(ct, "cv_module", lambda model: _FirstFeature())
    monkeypatch.setattr(ct, "_candidate_frames", lambda c, k: (pos, pos[:, 0, :].copy(), np.full(len(pos), 1.0 / len(pos))))
    monkeypatch.setattr(ct, "make_engine", lambda *args, **kwargs: None)
    monkeypatch.setattr(ct, "shoot", fake_shoot)
    campaign = SimpleNamespace(spec=spec, id="scan", seed=0, path=tmp_path,
                               progress=lambda: {"history": [{"iteration": 0}]}, iter_dir=lambda k: tmp_path)
    return campaign, starts_shot


def test_committor_histogram_of_a_feature_shoots_only_between_the_states(tmp_path, monkeypatch):
    """`feature="y"` scans along y instead of the CV; frames inside a state are never shot from;
    the result and its transition-state ensemble are written under the feature's name."""
    from cvcycle.analysis import committor_histogram as ct

    rng = np.random.default_rng(1)
    between = np.stack([rng.uniform(-0.3, 0.3, 300), np.linspace(0.4, 1.0, 300)], axis=1)
    in_a = np.array([[-0.558, 1.442], [-0.55, 1.44]])  # the centre of state A
    pos = np.concatenate([between, in_a])[:, None, :]
    campaign, starts = _scan_setup(tmp_path, monkeypatch, pos)
    result = ct.committor_histogram(campaign, shots=20, points=10, scan_bins=6, scan_points=4, scan_shots=20,
                                    feature="y", log=lambda line: None)
    shot_from = np.concatenate(starts)
    assert not any((np.abs(shot_from - a).sum(axis=1) < 1e-12).any() for a in in_a)  # never from inside A
    assert result["cv"] == "y" and 0.4 <= result["cv_isosurface"] <= 1.0
    assert (tmp_path / "committor_test-y.json").is_file() and not (tmp_path / "committor_test.json").exists()
    assert cio.read_json(tmp_path / "committor_test-y.json")["p_B"] == result["p_B"]
    tse = cio.read_npz(tmp_path / "transition_states-y.npz")
    np.testing.assert_array_equal(tse["cv"], tse["positions"][:, 0, 1])  # the ensemble is on y
    with pytest.raises(ct.WorkspaceError, match=r"'z' is not one of its features \(x, y\)"):
        ct.committor_histogram(campaign, feature="z", log=lambda line: None)


def test_committor_histogram_needs_enough_frames_between_the_states(tmp_path, monkeypatch):
    """scan_bins x scan_points frames between the states are the least a scan can use."""
    from cvcycle.analysis import committor_histogram as ct

    pos = np.stack([np.linspace(-0.3, 0.3, 24), np.full(24, 0.7)], axis=1)[:, None, :]
    campaign, _ = _scan_setup(tmp_path, monkeypatch, pos)
    ct.committor_histogram(campaign, shots=4, points=2, scan_bins=6, scan_points=4, scan_shots=4, log=lambda line: None)
    campaign, _ = _scan_setup(tmp_path, monkeypatch, pos[:23])
    with pytest.raises(ct.WorkspaceError, match="only 23 frames between the states"):
        ct.committor_histogram(campaign, shots=4, points=2, scan_bins=6, scan_points=4, scan_shots=4, log=lambda line: None)


def test_candidate_frames_of_a_biased_campaign_are_the_stored_positions_with_their_weights(tmp_path):
    """The committor test draws from the frames whose positions are stored (every 2nd here): each
    comes with its own features, and with a weight proportional to exp(log_weight) within its
    iteration."""
    from cvcycle.analysis.committor_histogram import _candidate_frames
    from cvcycle.spec import load_spec, validate

    spec = validate(load_spec(Path(__file__).resolve().parents[1] / "workflows" / "mueller-brown-autoencoder.toml"))
    rng = np.random.default_rng(2)
    walkers, log_weights = 3, []
    for k, frames in enumerate((8, 6)):
        d = tmp_path / f"iter-{k:03d}"
        d.mkdir()
        positions = rng.standard_normal((frames, walkers, 1, 2))
        log_weights.append(rng.normal(0.0, 2.0, (frames, walkers)))
        cio.write_npz(d / "samples.npz", step=np.arange(frames), features=positions[:, :, 0, :].copy(),
                      log_weight=log_weights[-1], state=np.full((frames, walkers), -1))
        kept = np.arange(0, frames, 2)
        cio.write_npz(d / "trajectory.npz", positions=positions[kept], frame=kept)
    campaign = SimpleNamespace(spec=spec, iter_dir=lambda k: tmp_path / f"iter-{k:03d}")
    pos, feats, weights = _candidate_frames(campaign, 1)
    assert pos.shape == ((4 + 3) * walkers, 1, 2)
    np.testing.assert_array_equal(feats, pos[:, 0, :])  # each frame's own features
    first = 4 * walkers  # iteration 0's stored frames come first
    for lw, w in ((log_weights[0][::2].ravel(), weights[:first]), (log_weights[1][::2].ravel(), weights[first:])):
        np.testing.assert_allclose(w / w[0], np.exp(lw - lw[0]), rtol=1e-10)
    assert 0 < weights.sum() < 1  # the frames without stored positions carry the rest
