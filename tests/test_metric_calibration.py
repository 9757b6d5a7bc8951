"""Calibration of the committor-quality metrics.

1. `cv_committor_quality` (R^2 of q explained by its CV-bin means, and the width = the spread of
   q within the bins whose mean q lies in 0.4..0.6) on the exact Mueller-Brown grid reference,
   against the reference-CV table of README.md (Benchmarks: "Reference CVs under the same metric
   and grid"), produced by `analysis.benchmark.straight_line_quality` on the grid the campaigns use
   (bins = analysis.grid_bins * 2 + 1 = 241):

       | Mueller-Brown (V/10, kT = 1) | x: 0.9329 / 0.196 | -x + 0.5 y: 0.9879 / 0.085 | ... | exact committor: 0.9996 / 0.015 |

   The width does not depend on the grid (241, 301 and 481 points agree to 0.002), unlike the
   earlier single-bin width (-x + 0.5 y: 0.108, 0.111, 0.057).
2. The same metric on small hand-made inputs with hand-computed answers.
3. `p_B_std` of the committor histogram test (analysis.committor_histogram.committor_histogram): the standard
   deviation of the per-point p_B values over the test points. The docstrings state no ddof; the
   report prints it as "p_B mean +- std" next to the exact committor's "mean +- std" at the same
   points (`exact_q_std`, numpy's default ddof = 0), and the README compares both columns side
   by side, so it is the ddof = 0 (population) standard deviation of the points' p_B.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cvcycle.analysis.quality import cv_committor_quality
from cvcycle.analysis.reference import reference_from_spec
from cvcycle.spec import load_spec, validate

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "workflows" / "mueller-brown-autoencoder.toml"

R2_TOL, WIDTH_TOL = 1e-4, 1e-3  # the README prints R^2 to 4 digits and the width to 3


def _spec() -> dict:
    return validate(load_spec(SPEC))


def _reference_cvs(bins: int):
    ref = reference_from_spec(_spec(), bins=bins)
    pts, q, F = ref.points, ref.committor.ravel(), ref.free_energy.ravel()
    cvs = {"x": pts[:, 0], "-x+0.5y": -pts[:, 0] + 0.5 * pts[:, 1], "exact q": q}
    return cvs, q, F


README_TABLE = {"x": (0.9329, 0.196), "-x+0.5y": (0.9879, 0.085), "exact q": (0.9996, 0.015)}
GRIDS = (241, 301, 481)  # the campaigns' grid (analysis.grid_bins * 2 + 1), reference_from_spec's default, finer


@pytest.fixture(scope="module")
def grids():
    spec = _spec()
    assert spec["analysis"]["grid_bins"] * 2 + 1 == GRIDS[0]
    return {bins: _reference_cvs(bins) for bins in GRIDS}


@pytest.mark.parametrize("name", sorted(README_TABLE))
def test_reference_cvs_reproduce_the_readme_calibration(grids, name):
    cvs, q, F = grids[GRIDS[0]]
    r2, width = README_TABLE[name]
    m = cv_committor_quality(cvs[name], q, F)
    assert m["r2"] == pytest.approx(r2, abs=R2_TOL)
    assert m["width"] == pytest.approx(width, abs=WIDTH_TOL)


@pytest.mark.parametrize("name", sorted(README_TABLE))
def test_reference_cvs_do_not_depend_on_the_grid(grids, name):
    """R^2 and the width agree on 241, 301 and 481 points, and order the CVs as they should."""
    for bins in GRIDS[1:]:
        cvs, q, F = grids[bins]
        m = cv_committor_quality(cvs[name], q, F)
        assert m["r2"] == pytest.approx(README_TABLE[name][0], abs=3e-4)
        assert m["width"] == pytest.approx(README_TABLE[name][1], abs=2e-3)
        ms = {k: cv_committor_quality(v, q, F) for k, v in cvs.items()}
        assert ms["x"]["r2"] < ms["-x+0.5y"]["r2"] < ms["exact q"]["r2"]
        assert ms["exact q"]["width"] < ms["-x+0.5y"]["width"] < ms["x"]["width"]


def test_width_averages_the_bins_of_the_transition_region():
    """Three equal-count bins, equal weights: means 0.2, 0.45 (var 0.0025), 0.55 (var 0.01): the
    width pools the last two (mean q in 0.4..0.6): sqrt((0.0025 + 0.01) / 2)."""
    q = np.array([0.15, 0.25, 0.40, 0.50, 0.45, 0.65])
    m = cv_committor_quality(np.arange(6.0), q, np.zeros(6), n_bins=3)
    assert m["width"] == pytest.approx(math.sqrt((0.0025 + 0.01) / 2), rel=1e-12)


def test_width_band_is_open_and_falls_back_to_the_bin_nearest_one_half():
    """Bin means exactly at the band's ends are outside it (means 0.25 and 0.75 are exact in binary);
    with no bin inside, the width is that of the bin whose mean is nearest 1/2 (0.35, not 0.7)."""
    q = np.array([0.125, 0.375, 0.5, 0.5, 0.625, 0.875])  # bins: mean 0.25 (var 1/64), 0.5 (0), 0.75 (1/64)
    m = cv_committor_quality(np.arange(6.0), q, np.zeros(6), n_bins=3, band=(0.25, 0.75))
    assert m["width"] == 0.0
    q = np.array([0.3, 0.4, 0.6, 0.8])  # bins: mean 0.35 (var 0.0025), 0.7 (var 0.01)
    m = cv_committor_quality(np.arange(4.0), q, np.zeros(4), n_bins=2)
    assert m["width"] == pytest.approx(0.05, rel=1e-9)


def test_quality_on_a_hand_made_input_with_one_bin():
    """One bin: R^2 = 0 and the width is the plain standard deviation of q (equal weights)."""
    q = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    m = cv_committor_quality(np.arange(5.0), q, np.zeros(5), n_bins=1)
    assert m["r2"] == pytest.approx(0.0, abs=1e-12)
    assert m["width"] == pytest.approx(math.sqrt(0.08), rel=1e-12)  # mean 0.5, var (.16+.04+0+.04+.16)/5
    assert m["n_points"] == 5


def test_quality_on_a_hand_made_weighted_input_with_two_bins():
    """Four kept points in two equal-count bins, weights exp(-F) = 1, 1, 1, 1/2; one point with
    q outside (0.05, 0.95) and one with F > f_max = 12 kT are left out.

    bin 0 (cv 0, 1): q 0.1, 0.3 -> mean 0.2
    bin 1 (cv 2, 3): q 0.6 (w 1), 0.9 (w 1/2) -> mean (0.6 + 0.45)/1.5 = 0.7, nearest 1/2,
                     variance (0.1^2 + 0.5 * 0.2^2)/1.5 = 0.02 -> width sqrt(0.02)
    (no bin's mean lies in 0.4..0.6, so the width is the bin nearest 1/2's)
    R^2 = 1 - SS_res/SS_tot, SS_res = 0.01 + 0.01 + 0.01 + 0.5 * 0.04 = 0.05, weighted mean 1.45/3.5,
    SS_tot = sum w (q - 29/70)^2 = 37/140 -> R^2 = 1 - 0.05 * 140/37 = 30/37.
    """
    cv = np.array([0.0, 1.0, 2.0, 3.0, 1.5, 2.5])
    q = np.array([0.1, 0.3, 0.6, 0.9, 0.99, 0.5])
    F = np.array([0.0, 0.0, 0.0, math.log(2.0), 0.0, 20.0])
    m = cv_committor_quality(cv, q, F, n_bins=2, f_max=12.0)
    assert m["n_points"] == 4
    mean = 1.45 / 3.5
    ss_tot = (0.1 - mean) ** 2 + (0.3 - mean) ** 2 + (0.6 - mean) ** 2 + 0.5 * (0.9 - mean) ** 2
    assert ss_tot == pytest.approx(0.2642857142857, rel=1e-10)
    assert m["r2"] == pytest.approx(30.0 / 37.0, rel=1e-10)
    assert m["width"] == pytest.approx(math.sqrt(0.02), rel=1e-10)


# ----------------------------------------------------------------------------- p_B_std


class _ZeroCV(torch.nn.Module):
    """A committor-campaign CV (logit q) that is 0 everywhere: every frame is on q = 1/2."""

    def forward(self, x):
        return torch.zeros(len(x), 1, dtype=x.dtype)


def test_p_B_std_is_the_standard_deviation_of_the_points_p_B(tmp_path, monkeypatch):
    from cvcycle.analysis import committor_histogram as ct

    # shooting outcomes of 5 test points x 4 shots (1 = B first, 0 = A first, -1 = neither):
    # p_B over the committed shots = 1/4, 1/2, 1/2 (2 of 4), 3/4, 1 (2 of 2 committed)
    outcomes = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 0, 1], [1, 1, 0, 1], [1, -1, -1, 1]])
    p_expected = [0.25, 0.5, 0.5, 0.75, 1.0]
    # mean 0.6; squared deviations 0.1225 + 0.01 + 0.01 + 0.0225 + 0.16 = 0.325; / 5 = 0.065
    std_expected = math.sqrt(0.065)

    spec = _spec()
    spec["learner"]["kind"] = "committor"
    spec["analysis"]["plots"] = False
    # 200 frames between the states, on a segment from (-0.3, 0.7) to (0.3, 0.7)
    pos = np.stack([np.linspace(-0.3, 0.3, 200), np.full(200, 0.7)], axis=1)
    weights = np.full(len(pos), 1.0 / len(pos))
    shot_calls = []

    def fake_shoot(engine, starts, shots, *args, **kwargs):
        shot_calls.append((len(starts), shots))
        assert starts.shape == (5, 2) and shots == 4
        return outcomes.copy(), 0

    monkeypatch.setattr(ct, "load_model", lambda path: None)
    monkeypatch.setattr(ct, "cv_module", lambda model: _ZeroCV())
    monkeypatch.setattr(ct, "_candidate_frames", lambda c, k: (pos, pos.copy(), weights))
    monkeypatch.setattr(ct, "make_engine", lambda *args, **kwargs: None)
    monkeypatch.setattr(ct, "shoot", fake_shoot)
    campaign = SimpleNamespace(spec=spec, id="hand-made", seed=0, path=tmp_path,
                               progress=lambda: {"history": [{"iteration": 0}]},
                               iter_dir=lambda k: tmp_path / f"iter-{k}")

    result = ct.committor_histogram(campaign, shots=4, points=5, log=lambda line: None)

    assert shot_calls == [(5, 4)]  # a committor campaign skips the scan: one test stage only
    np.testing.assert_allclose(result["p_B"], p_expected, rtol=0, atol=1e-15)
    assert result["p_B_mean"] == pytest.approx(0.6, rel=1e-12)
    assert result["p_B_std"] == pytest.approx(std_expected, rel=1e-12)
    assert result["p_B_std"] == pytest.approx(float(np.std(result["p_B"], ddof=0)), rel=1e-12)
    assert result["binomial_std"] == pytest.approx(0.5 / math.sqrt(4), rel=1e-12)
    # the binomial noise deconvolved: p (1 - p) / (n - 1) = 0.0625, 1/12, 1/12, 0.0625 (n = 4) and 0
    # (p = 1, n = 2), mean 0.058333; 0.065 - 0.058333 = 1/150
    assert result["committed"] == [4, 4, 4, 4, 2]
    assert result["p_B_std_intrinsic"] == pytest.approx(math.sqrt(1.0 / 150.0), rel=1e-12)
    ilo, ihi = result["p_B_std_intrinsic_interval"]
    assert 0.0 <= ilo <= result["p_B_std_intrinsic"] < ihi <= 0.375
    # the bootstrap interval of the width brackets it, within the widest spread these p_B allow
    # (half the resampled points at 0.25, half at 1: std 0.375)
    lo, hi = result["p_B_std_interval"]
    assert 0.0 <= lo < std_expected < hi <= 0.375 + 1e-12
