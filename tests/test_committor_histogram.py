"""The committor histogram test (analysis/committor_histogram.py) with scripted shooting outcomes:
shooting from a frame at x gives a known p_B(x), so the scan's isosurface, its refinements, the
test points, the random streams and the files written can be checked against hand-computed
answers without running an engine. Also its candidate frames (biased and path-sampling
campaigns), and its defaults against the CLI and the README.
"""

from __future__ import annotations

import inspect
import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cvcycle import io as cio
from cvcycle.analysis import committor_histogram as ct
from cvcycle.spec import load_spec, validate

ROOT = Path(__file__).resolve().parents[1]
QUIET = {"log": lambda line: None}


def _spec(name: str, plots: bool = False) -> dict:
    spec = validate(load_spec(ROOT / "workflows" / f"{name}.toml"))
    spec["analysis"]["plots"] = plots
    return spec


def _line(n: int) -> np.ndarray:
    """n frames (n, 1, 2) on the segment x in [-0.3, 0.3] at y = 0.7, between Mueller-Brown's states."""
    return np.stack([np.linspace(-0.3, 0.3, n), np.full(n, 0.7)], axis=1)[:, None, :]


def _sharp(x: np.ndarray) -> np.ndarray:
    """A p_B(x) that is not linear, so interpolating between the wrong two bins gives a wrong s*."""
    return 0.5 + 0.5 * np.tanh(x / 0.05)


class _FirstFeature(torch.nn.Module):
    """A CV that is the first feature (x): the scan runs along x."""

    def forward(self, x):
        return x[:, :1]


class _Scaled(torch.nn.Module):
    """A CV that is 10 x."""

    def forward(self, x):
        return 10.0 * x[:, :1]


class _Shooter:
    """Stands in for make_engine and shoot: records every shooting stage (its starts, shots per
    start, seed, max_steps and the walkers the engine was built for) and returns outcomes with
    p_B = p(x) rounded to whole shots; `undecided` lists stages (by call number) that commit nowhere."""

    def __init__(self, p=lambda x: np.clip(0.5 + x / 0.4, 0.0, 1.0), undecided=(), rng=None):
        self.p, self.undecided, self.calls, self.walkers = p, set(undecided), [], []
        self.rng = rng  # if given, outcomes are Bernoulli draws with probability p(x) instead
        self.shoot_column = 0  # p is a function of this coordinate of the start

    def engine(self, spec, system, walkers):
        self.walkers.append(walkers)

    def shoot(self, engine, starts, shots, classify, seed, max_steps, stride=10, compact=False):
        starts = np.asarray(starts).reshape(len(starts), -1)
        self.calls.append(SimpleNamespace(starts=starts, shots=shots, seed=seed, max_steps=max_steps, stride=stride))
        if len(self.calls) - 1 in self.undecided:
            return np.full((len(starts), shots), -1), 0
        if self.rng is not None:
            return (self.rng.random((len(starts), shots)) < self.p(starts[:, 0])[:, None]).astype(int), 0
        ones = np.rint(self.p(starts[:, self.shoot_column]) * shots).astype(int)
        return (np.arange(shots)[None, :] < ones[:, None]).astype(int), 0


def _campaign(tmp_path, monkeypatch, pos, spec, shooter, weights=None):
    """A campaign stub whose candidate frames are `pos` with features (x, y) and whose CV is x."""
    weights = np.full(len(pos), 1.0 / len(pos)) if weights is None else weights
    monkeypatch.setattr(ct, "load_model", lambda path: None)
    monkeypatch.setattr(ct, "cv_module", lambda model: _FirstFeature())
    monkeypatch.setattr(ct, "_candidate_frames", lambda c, k: (pos, pos[:, 0, :].copy(), weights))
    monkeypatch.setattr(ct, "make_engine", shooter.engine)
    monkeypatch.setattr(ct, "shoot", shooter.shoot)
    return SimpleNamespace(spec=spec, id="scan", seed=0, path=tmp_path,
                           progress=lambda: {"history": [{"iteration": 0}]}, iter_dir=lambda k: tmp_path)


def _bracket(scan):
    """(p_B, cv) of the two bins around p_B = 1/2, for np.interp(0.5, p, cv)."""
    p, s = np.array(scan["p_B"]), np.array(scan["cv"])
    i = int(np.argmax(p >= 0.5))
    return p[i - 1:i + 1], s[i - 1:i + 1]


def test_crossing_bin_of_the_committor_scan():
    """The first bin on the other side of p_B = 1/2 from bin 0 (1/2 itself counts as above)."""
    assert ct._crossing_bin(np.array([0.1, 0.3, 0.6, 0.8])) == 2
    assert ct._crossing_bin(np.array([0.9, 0.6, 0.4, 0.45, 0.1])) == 2
    assert ct._crossing_bin(np.array([0.2, 0.5])) == 1
    assert ct._crossing_bin(np.array([0.5, 0.7])) is None  # never below
    assert ct._crossing_bin(np.array([0.1, 0.49])) is None  # never above
    assert ct._crossing_bin(np.array([0.1, np.nan, 0.9])) is None  # a bin without a committed shot


def test_the_logistic_midpoint_places_the_isosurface_without_the_first_crossings_bias():
    """A finest scan as in the Mueller-Brown autoencoder's gate: 12 bins x 8 points x 20 shots with p_B
    rising linearly from 0.40 to 0.68 across them. Interpolating at the first bracketing pair puts
    the isosurface early (p_B 0.485 on average); the logistic fit to all shots is unbiased."""
    rng = np.random.default_rng(0)
    s = np.repeat(np.linspace(0.0, 1.0, 12), 8)
    p_true = lambda x: 0.40 + 0.28 * x  # noqa: E731
    first, fitted = [], []
    for _ in range(400):
        k = rng.binomial(20, p_true(s)).astype(float)
        p_bins = k.reshape(12, 8).mean(1) / 20
        i = ct._crossing_bin(p_bins)
        if i is None:
            continue
        s0, s1 = s[8 * (i - 1)], s[8 * i]
        first.append(s0 + (0.5 - p_bins[i - 1]) * (s1 - s0) / (p_bins[i] - p_bins[i - 1]))
        fitted.append(ct._logistic_midpoint(s, k, np.full(len(s), 20.0)))
    assert np.mean(p_true(np.array(first))) < 0.49
    assert np.mean(p_true(np.array(fitted))) == pytest.approx(0.5, abs=0.003)
    assert np.std(p_true(np.array(fitted))) < np.std(p_true(np.array(first)))
    n = np.full(4, 10.0)
    assert ct._logistic_midpoint(np.arange(4.0), np.zeros(4), n) is None  # every shot to A: no crossing
    assert ct._logistic_midpoint(np.arange(4.0), np.array([6.0, 7, 8, 9]), n) is None  # crossing left of the points
    assert ct._logistic_midpoint(np.arange(4.0), np.array([1.0, 3, 7, 9]), n) == pytest.approx(1.5, abs=1e-9)
    # perfectly separated shots have no finite fit: None, and the scan keeps its interpolated s*
    assert ct._logistic_midpoint(np.arange(4.0), np.array([0.0, 0, 10, 10]), n) is None


def test_scan_finds_the_isosurface_of_a_known_p_b(tmp_path, monkeypatch):
    """600 frames on x in [-0.3, 0.3], p_B = 1/2 + tanh(x/0.05)/2. The scan along x must place s*
    near 0 (the logistic midpoint of the finest scan's shots), refining inside the two bins that bracket p_B = 1/2,
    shoot each level from distinct frames of those two bins only, stop after three levels although
    a fourth would have frames enough, draw the test points from the 5 x points frames nearest s*,
    and write that transition-state ensemble with weights summing to 1. Every stage has its own
    random stream and an engine with one walker per trajectory; shots are checked for commitment
    every engine.report_stride steps."""
    pos = _line(600)
    shooter = _Shooter(_sharp)
    spec = _spec("mueller-brown-autoencoder")
    spec["engine"]["report_stride"] = 20
    c = _campaign(tmp_path, monkeypatch, pos, spec, shooter)
    result = ct.committor_histogram(c, shots=20, points=10, scan_bins=6, scan_points=2, scan_shots=10, max_steps=77,
                                    **QUIET)
    # 600 frames in 6 bins, then the 200 of the bracketing two, then their ~66, then ~22 >= 6 x 2 but no 4th
    assert len(result["scans"]) == 3 and len(shooter.calls) == 4
    assert [(len(k.starts), k.shots) for k in shooter.calls] == [(12, 10)] * 3 + [(10, 20)]
    assert shooter.walkers == [len(k.starts) * k.shots for k in shooter.calls]
    assert len({k.seed for k in shooter.calls}) == 4 and all(k.max_steps == 77 for k in shooter.calls)
    assert all(k.stride == 20 for k in shooter.calls)
    frames = np.arange(600)  # the scan's own bins, recomputed: frames are sorted by x already
    for level, scan in enumerate(result["scans"]):
        starts = shooter.calls[level].starts[:, 0]
        assert len(np.unique(starts)) == len(starts)  # distinct frames within a scan
        bins = np.array_split(frames, 6)
        assert all(len(np.intersect1d(starts, pos[b, 0, 0])) == 2 for b in bins)  # two from each bin
        np.testing.assert_allclose(scan["cv"], [np.median(pos[b, 0, 0]) for b in bins], atol=1e-12)
        i = int(np.argmax(np.array(scan["p_B"]) >= 0.5))
        frames = np.concatenate([bins[i - 1], bins[i]])
        assert np.all(np.diff(scan["cv"]) > 0) and np.all(np.diff(scan["p_B"]) >= 0)
    assert abs(result["cv_isosurface"]) < 0.01
    assert result["cv_isosurface"] == result["scans"][-1]["logistic_midpoint"]  # fitted to the finest scan's shots
    p = np.array(result["p_B"])
    assert np.all(np.abs(p - 0.5) <= 0.3)  # the test points lie within 0.025 of x = 0
    assert len(np.unique(shooter.calls[-1].starts[:, 0])) == 10  # distinct test points
    assert result["p_B_mean"] == pytest.approx(p.mean()) and result["p_B_std"] == pytest.approx(p.std())
    tse = cio.read_npz(tmp_path / "transition_states.npz")
    assert len(tse["cv"]) == 50 and tse["weights"].sum() == pytest.approx(1.0)
    nearest = np.sort(np.abs(pos[:, 0, 0] - result["cv_isosurface"]))[:50]
    np.testing.assert_allclose(np.sort(np.abs(tse["cv"] - result["cv_isosurface"])), nearest, atol=1e-9)


def test_scan_refines_a_bracket_of_exactly_bins_times_points_frames(tmp_path, monkeypatch):
    """72 frames in 6 bins: the bracketing two hold 24 = 6 x 4 frames, enough for a second scan;
    its bracketing two hold 8, too few for a third."""
    shooter = _Shooter()
    c = _campaign(tmp_path, monkeypatch, _line(72), _spec("mueller-brown-autoencoder"), shooter)
    result = ct.committor_histogram(c, shots=4, points=2, scan_bins=6, scan_points=4, scan_shots=4, **QUIET)
    assert len(result["scans"]) == 2
    assert len(np.unique(shooter.calls[1].starts[:, 0])) == 24  # 4 distinct frames of each bin of 4: all of them


@pytest.mark.filterwarnings("ignore:Mean of empty slice")  # the refined scan's bins, where nothing committed
def test_scan_keeps_the_coarser_isosurface_when_a_refinement_loses_the_crossing(tmp_path, monkeypatch):
    """A refined scan where no trajectory commits cannot place the crossing: s* stays the first
    scan's. A scan that never crosses 1/2 is an error that names the CV."""
    shooter = _Shooter(_sharp, undecided={1})
    c = _campaign(tmp_path, monkeypatch, _line(600), _spec("mueller-brown-autoencoder"), shooter)
    result = ct.committor_histogram(c, shots=4, points=5, scan_bins=6, scan_points=4, scan_shots=10, **QUIET)
    assert len(result["scans"]) == 2 and np.isnan(result["scans"][1]["p_B"]).all()
    assert result["cv_isosurface"] == result["scans"][0]["logistic_midpoint"] and "logistic_midpoint" not in result["scans"][1]
    assert abs(result["cv_isosurface"]) < 0.05
    c = _campaign(tmp_path, monkeypatch, _line(600), _spec("mueller-brown-autoencoder"), _Shooter(lambda x: 0 * x + 0.2))
    with pytest.raises(ct.WorkspaceError, match=r"p_B never crosses 1/2 along CV_1"):
        ct.committor_histogram(c, shots=4, points=5, scan_bins=6, scan_points=4, scan_shots=10, **QUIET)


def test_committor_campaign_tests_the_frames_with_predicted_q_in_the_shell(tmp_path, monkeypatch):
    """For a committor campaign the CV is logit q: the isosurface is logit(1/2) = 0, there is no
    scan, and the test points are the frames with |logit q| <= logit(0.55); fewer such frames than
    test points asked for is an error."""
    edge = np.log(0.55 / 0.45)
    x = np.linspace(-0.3, 0.3, 61)
    pos = np.stack([x, np.full(len(x), 0.7)], axis=1)[:, None, :]
    inside = np.abs(x) <= edge
    shooter = _Shooter()
    c = _campaign(tmp_path, monkeypatch, pos, _spec("mueller-brown-committor-variational"), shooter)
    result = ct.committor_histogram(c, shots=10, points=int(inside.sum()), scan_bins=4, scan_points=4, **QUIET)
    assert result["cv_isosurface"] == 0.0 and result["scans"] == [] and len(shooter.calls) == 1
    tse = cio.read_npz(tmp_path / "transition_states.npz")
    np.testing.assert_allclose(np.sort(tse["cv"]), x[inside], atol=1e-7)
    with pytest.raises(ct.WorkspaceError, match=rf"only {inside.sum()} frames with predicted q in \[0.45, 0.55\]"):
        ct.committor_histogram(c, shots=10, points=int(inside.sum()) + 1, scan_bins=4, scan_points=4, **QUIET)


@pytest.mark.parametrize("slope", [1.0, 0.6])
def test_committor_campaign_is_tested_at_its_other_levels_too(tmp_path, monkeypatch, slope):
    """At every convergence.test_levels level the test shoots from `points` frames with logit q_pred
    within logit(0.55) of the level's (stream 10 + i) and reports their mean p_B: the level itself
    for a right committor, off it for one that is right at 1/2 only (p_B = sigmoid(slope logit q))."""
    pos = _line(601)  # x in [-0.3, 0.3]; the CV 10 x is logit q_pred
    shooter = _Shooter(lambda x: 1.0 / (1.0 + np.exp(-slope * 10.0 * x)))
    spec = _spec("mueller-brown-committor-variational")
    spec["convergence"]["test_levels"] = [0.2, 0.8, 0.99]
    c = _campaign(tmp_path, monkeypatch, pos, spec, shooter)
    monkeypatch.setattr(ct, "cv_module", lambda model: _Scaled())
    result = ct.committor_histogram(c, shots=1000, points=20, seed=3, **QUIET)
    assert len(shooter.calls) == 3  # 1/2, 0.2 and 0.8; no frame has q_pred near 0.99
    for call, stage in zip(shooter.calls, (0, 10, 11)):
        assert call.seed == cio.derive_seed(0, 3, stage) and call.starts.shape == (20, 2)
    for call, row in zip(shooter.calls[1:], result["levels"][:2]):
        logit = np.log(row["q"] / (1.0 - row["q"]))
        assert np.all(np.abs(10.0 * call.starts[:, 0] - logit) <= np.log(0.55 / 0.45) + 1e-6)
        expected = np.mean(np.rint(1000.0 / (1.0 + np.exp(-slope * 10.0 * call.starts[:, 0]))) / 1000.0)
        assert row["p_B_mean"] == pytest.approx(expected, abs=1e-12)
        assert abs(row["p_B_mean"] - row["q"]) < 0.01 if slope == 1.0 else abs(row["p_B_mean"] - row["q"]) > 0.05
    assert result["levels"][2] == {"q": 0.99, "error": "campaign scan: only 0 frames with a nonzero weight with "
                                   "predicted q near 0.99, fewer than the 20 distinct test points asked for (--points)"}
    assert ct.levels_text(result).startswith(" (q 0.2: ") and ct.levels_text(result).endswith("q 0.99: too few frames)")
    assert ct.levels_text({"p_B_mean": 0.5}) == ""


def test_a_level_with_few_frames_widens_its_window_and_is_judged_against_the_points_own_prediction(tmp_path, monkeypatch):
    """Path-sampling data are sparse away from q = 1/2: where the level's logit window holds fewer
    frames than test points, it doubles (up to 4 x), and the row records the window and the mean
    q_pred of the points shot from, against which the gate judges the mean p_B."""
    x = np.linspace(-0.3, 0.3, 601)
    level = 0.2
    logit = np.log(level / (1 - level))
    near = np.abs(10.0 * x - logit) <= ct.SHELL
    keep = ~near | (np.cumsum(near) % 4 == 0)  # a quarter of the frames in the level's own window
    pos = np.stack([x[keep], np.full(keep.sum(), 0.7)], axis=1)[:, None, :]
    shooter = _Shooter(lambda x: 1.0 / (1.0 + np.exp(-10.0 * x)))
    spec = _spec("mueller-brown-committor-variational")
    spec["convergence"]["test_levels"] = [level]
    c = _campaign(tmp_path, monkeypatch, pos, spec, shooter)
    monkeypatch.setattr(ct, "cv_module", lambda model: _Scaled())
    assert np.count_nonzero(near & keep) < 20
    result = ct.committor_histogram(c, shots=1000, points=20, seed=3, **QUIET)
    (row,) = result["levels"]
    assert row["logit_window"] == pytest.approx(2 * ct.SHELL)
    starts = shooter.calls[1].starts[:, 0]
    assert np.all(np.abs(10.0 * starts - logit) <= 2 * ct.SHELL + 1e-6)
    assert row["q_pred_mean"] == pytest.approx(np.mean(1.0 / (1.0 + np.exp(-10.0 * starts))), abs=1e-6)
    assert abs(row["p_B_mean"] - row["q_pred_mean"]) < 0.01  # a right committor, wherever the points are
    assert "(predicted " in ct.levels_text(result)


@pytest.mark.parametrize("spread", [0.0, 0.2])
def test_intrinsic_width_removes_the_binomial_noise_of_the_shots(tmp_path, monkeypatch, spread):
    """200 distinct points whose true p_B is 0.5 + spread x / 0.2 (x uniform in [-0.2, 0.2]: std
    spread / sqrt(3)), 100 random shots each: the measured width adds the binomial noise (about
    0.05), the intrinsic one recovers the true spread, and its 95 % interval holds it."""
    x = np.linspace(-0.2, 0.2, 401)
    pos = np.stack([x, np.full(len(x), 0.7)], axis=1)[:, None, :]
    shooter = _Shooter(lambda x: 0.5 + spread * x / 0.2, rng=np.random.default_rng(4))
    c = _campaign(tmp_path, monkeypatch, pos, _spec("mueller-brown-committor-variational"), shooter)
    result = ct.committor_histogram(c, shots=100, points=200, scan_bins=4, scan_points=4, **QUIET)
    true = np.std(0.5 + spread * shooter.calls[-1].starts[:, 0] / 0.2)
    assert result["p_B_std"] ** 2 == pytest.approx(true**2 + 0.0025, abs=0.0012)
    # the estimate's own noise: sqrt of a variance difference, about 0.02 at these sizes when true = 0
    assert result["p_B_std_intrinsic"] == pytest.approx(true, abs=0.03)
    lo, hi = result["p_B_std_intrinsic_interval"]
    assert lo <= true <= hi


def test_widths_use_the_points_with_two_committed_shots_or_more():
    """A point with one committed shot says nothing about binomial noise and is left out; with two,
    p (1 - p) / (n - 1) is the unbiased estimate of p (1 - p) / n (here 0.25 / 1)."""
    w = ct._widths(np.array([0.5, 1.0, np.nan, 0.0]), np.array([2, 1, 0, 2]), seed=0)
    assert w["p_B_std"] == pytest.approx(0.25, rel=1e-12)  # the std of 0.5 and 0.0
    assert w["p_B_std_intrinsic"] == pytest.approx(0.0)  # 0.0625 - mean(0.25, 0) < 0: clipped
    w = ct._widths(np.array([0.5, 0.0, 1.0]), np.array([2, 4, 4]), seed=0)
    assert w["p_B_std_intrinsic"] == pytest.approx(math.sqrt(np.var([0.5, 0.0, 1.0]) - 0.25 / 3), rel=1e-12)


def test_the_report_draws_the_histogram_and_names_the_exact_committor(tmp_path, monkeypatch):
    """With plots on, committor_test.png is written; on an analytic potential the summary line
    gives the exact committor at the test points."""
    lines = []
    c = _campaign(tmp_path, monkeypatch, _line(200), _spec("mueller-brown-autoencoder", plots=True), _Shooter())
    result = ct.committor_histogram(c, shots=10, points=5, scan_bins=4, scan_points=4, scan_shots=10, log=lines.append)
    assert (tmp_path / "committor_test.png").stat().st_size > 1000
    assert f"exact committor at the same points {result['exact_q_mean']:.3f}" in lines[-1]


def test_of_a_feature_shoots_only_between_the_states(tmp_path, monkeypatch):
    """`feature="y"` scans along y instead of the CV; frames inside a state are never shot from;
    the result and its transition-state ensemble are written under the feature's name."""
    rng = np.random.default_rng(1)
    between = np.stack([rng.uniform(-0.3, 0.3, 300), np.linspace(0.4, 1.0, 300)], axis=1)
    in_a = np.array([[-0.558, 1.442], [-0.55, 1.44]])  # the centre of state A
    pos = np.concatenate([between, in_a])[:, None, :]
    shooter = _Shooter()
    c = _campaign(tmp_path, monkeypatch, pos, _spec("mueller-brown-autoencoder"), shooter)
    result = ct.committor_histogram(c, shots=20, points=10, scan_bins=6, scan_points=4, scan_shots=20, feature="y",
                                    **QUIET)
    shot_from = np.concatenate([k.starts for k in shooter.calls])
    assert not any((np.abs(shot_from - a).sum(axis=1) < 1e-12).any() for a in in_a)  # never from inside A
    assert result["cv"] == "y" and 0.4 <= result["cv_isosurface"] <= 1.0
    assert (tmp_path / "committor_test-y.json").is_file() and not (tmp_path / "committor_test.json").exists()
    assert cio.read_json(tmp_path / "committor_test-y.json")["p_B"] == result["p_B"]
    tse = cio.read_npz(tmp_path / "transition_states-y.npz")
    np.testing.assert_array_equal(tse["cv"], tse["positions"][:, 0, 1])  # the ensemble is on y
    with pytest.raises(ct.WorkspaceError, match=r"'z' is neither one of its features \(x, y\) nor a state coordinate \(x, y\)"):
        ct.committor_histogram(c, feature="z", **QUIET)


def test_of_a_state_coordinate_that_is_not_a_feature(tmp_path, monkeypatch):
    """`feature` may name a state coordinate (phi of alanine dipeptide, whose features hold only
    its sine and cosine): here y of a campaign whose only feature is x; the scan runs along y
    computed from the positions."""
    rng = np.random.default_rng(2)
    pos = np.stack([rng.uniform(-0.3, 0.3, 300), np.linspace(0.4, 1.0, 300)], axis=1)[:, None, :]
    spec = _spec("mueller-brown-autoencoder")
    spec["features"]["names"] = ["x"]
    shooter = _Shooter(lambda y: np.clip((y - 0.4) / 0.6, 0.0, 1.0))  # p_B along y this time
    c = _campaign(tmp_path, monkeypatch, pos, spec, shooter)
    monkeypatch.setattr(ct, "_candidate_frames", lambda c, k: (pos, pos[:, 0, :1].copy(), np.full(len(pos), 1 / len(pos))))
    shooter.shoot_column = 1
    result = ct.committor_histogram(c, shots=20, points=10, scan_bins=6, scan_points=4, scan_shots=20, feature="y",
                                    **QUIET)
    assert result["cv"] == "y" and result["cv_isosurface"] == pytest.approx(0.7, abs=0.05)
    tse = cio.read_npz(tmp_path / "transition_states-y.npz")
    np.testing.assert_array_equal(tse["cv"], tse["positions"][:, 0, 1])


def test_needs_enough_frames_between_the_states(tmp_path, monkeypatch):
    """scan_bins x scan_points frames between the states are the least a scan can use."""
    pos = _line(24)
    c = _campaign(tmp_path, monkeypatch, pos, _spec("mueller-brown-autoencoder"), _Shooter())
    ct.committor_histogram(c, shots=4, points=2, scan_bins=6, scan_points=4, scan_shots=4, **QUIET)
    c = _campaign(tmp_path, monkeypatch, pos[:23], _spec("mueller-brown-autoencoder"), _Shooter())
    with pytest.raises(ct.WorkspaceError, match="only 23 frames between the states"):
        ct.committor_histogram(c, shots=4, points=2, scan_bins=6, scan_points=4, scan_shots=4, **QUIET)


def test_defaults_are_the_ones_the_cli_and_the_readme_give():
    """The function's defaults are the CLI's (which passes its own) and the README's description."""
    from cvcycle.__main__ import parser

    defaults = {k: v.default for k, v in inspect.signature(ct.committor_histogram).parameters.items()}
    cli = parser().parse_args(["committor-test", "JOB"])
    assert {k: getattr(cli, k) for k in ("shots", "points", "max_steps", "seed", "feature")} == \
        {k: defaults[k] for k in ("shots", "points", "max_steps", "seed", "feature")}
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Committor histogram test"):]
    section = " ".join(section[:section.index("\n## ")].split())
    assert f"[--points {defaults['points']}] [--shots {defaults['shots']}]" in section
    scan = re.search(r"(\d+) equal-population bins along the CV, (\d+) frames per bin, (\d+) shots per frame", section)
    assert scan and tuple(map(int, scan.groups())) == (defaults["scan_bins"], defaults["scan_points"],
                                                      defaults["scan_shots"])
    assert f"undecided after {defaults['max_steps']:,} steps" in section


def test_candidate_frames_of_a_biased_campaign_are_the_stored_positions_with_their_weights(tmp_path):
    """The committor test draws from the frames whose positions are stored (every 2nd here): each
    comes with its own features, and with a weight proportional to exp(log_weight) within its
    iteration."""
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
    campaign = SimpleNamespace(spec=_spec("mueller-brown-autoencoder"), iter_dir=lambda k: tmp_path / f"iter-{k:03d}")
    pos, feats, weights = ct._candidate_frames(campaign, 1)
    assert pos.shape == ((4 + 3) * walkers, 1, 2)
    np.testing.assert_array_equal(feats, pos[:, 0, :])  # each frame's own features
    first = 4 * walkers  # iteration 0's stored frames come first
    for lw, w in ((log_weights[0][::2].ravel(), weights[:first]), (log_weights[1][::2].ravel(), weights[first:])):
        np.testing.assert_allclose(w / w[0], np.exp(lw - lw[0]), rtol=1e-10)
    assert 0 < weights.sum() < 1  # the frames without stored positions carry the rest


def test_candidate_frames_of_a_path_sampling_campaign_are_its_markov_chains_and_shooting_points(tmp_path):
    """For the shooting route: the paths of every iteration's TPS chain up to k, each weighted by
    the moves it was the current path (the run's start path until the first acceptance, then every
    accepted path for its move and the rejected moves after it; paths held for no move are left
    out), then every iteration's shooting points with weight 1; features computed from them."""
    from cvcycle.paths import initial_path
    from cvcycle.paths.records import chunk_path
    from cvcycle.systems import make_system

    spec = _spec("mueller-brown-committor-tps")
    a, b = (np.array(spec["system"]["states"][s]["center"]) for s in ("A", "B"))
    hot = np.linspace(a, b, 40)[:, None, :]  # (frames, walkers, 2): one straight crossing from A to B
    (tmp_path / "iter-000").mkdir()
    cio.write_npz(tmp_path / "iter-000" / "hot_run.npz", positions=hot)
    rng = np.random.default_rng(3)
    accepted = {0: [False, True, False, False, True], 1: [True, False], 2: [False, True]}
    expected, weights, final = [], [], None
    for k, flags in accepted.items():
        d = tmp_path / f"iter-{k:03d}"
        (d / "tps").mkdir(parents=True, exist_ok=True)
        paths = [rng.standard_normal((int(rng.integers(3, 7)), 2)) for _ in range(sum(flags))]
        cio.write_npz(chunk_path(d / "tps", 0), accepted=np.array(flags), accepted_positions=np.concatenate(paths),
                      accepted_lengths=np.array([len(p) for p in paths]))
        start = initial_path(hot, make_system(spec)) if k == 0 else final
        held = np.bincount(np.cumsum(flags), minlength=len(paths) + 1)
        points = rng.standard_normal((4, 2))
        final = paths[-1]
        cio.write_npz(d / "shots.npz", points=points, final_path=final)
        if k < 2:
            for path, h in zip([start] + paths, held):
                if h:
                    expected.append(path)
                    weights.append(np.full(len(path), float(h)))
            expected.append(points)
            weights.append(np.ones(4))
    campaign = SimpleNamespace(spec=spec, iter_dir=lambda k: tmp_path / f"iter-{k:03d}")
    pos, feats, w = ct._candidate_frames(campaign, 1)  # iterations 0 and 1, not 2
    expected, weights = np.concatenate(expected), np.concatenate(weights)
    assert pos.shape == (len(expected), 1, 2)
    np.testing.assert_array_equal(pos[:, 0, :], expected)
    np.testing.assert_allclose(feats, expected, rtol=1e-6)
    np.testing.assert_allclose(w, weights / weights.sum(), rtol=1e-12)


def _gate_campaign(tmp_path, cv_dim=1, **convergence):
    spec = _spec("mueller-brown-autoencoder")
    spec["learner"]["cv_dim"] = cv_dim
    spec["convergence"].update(convergence)
    (tmp_path / "iter-003").mkdir(parents=True)
    return SimpleNamespace(spec=spec, id="gate", seed=0, path=tmp_path, iter_dir=lambda k: tmp_path / f"iter-{k:03d}")


@pytest.mark.parametrize("mean,width,passes", [(0.5, 0.0, True), (0.549, 0.079, True), (0.551, 0.0, False),
                                               (0.449, 0.0, False), (0.5, 0.081, False), (0.75, 0.08, True),
                                               (0.25, 0.08, True)])
def test_convergence_gate_passes_a_cv_only_within_its_thresholds(tmp_path, monkeypatch, mean, width, passes):
    """Once the other checks pass, the test of iteration k's CV (seed 1 + k, files in iter-k/) must
    give |mean p_B - 1/2| <= test_mean and an intrinsic width <= test_width; metrics.json says so."""
    calls = []

    def fake_test(c, **kwargs):
        calls.append(kwargs)
        return {"p_B_mean": mean, "p_B_std": 0.06, "p_B_std_intrinsic": width, "p_B_std_intrinsic_interval": [0, 0.1],
                "points": 50, "shots": 100}

    monkeypatch.setattr(ct, "committor_histogram", fake_test)
    # the ends are in: 0.75 - 0.5 is exactly 0.25 in floating point (0.55 - 0.5 is not 0.05)
    c = _gate_campaign(tmp_path, test_mean=0.25 if abs(mean - 0.5) == 0.25 else 0.05, test_width=0.08)
    metrics = {"converged": True, "checks": {"cv_r2": True, "fes_change": True}}
    ct.convergence_gate(c, 3, metrics, **QUIET)
    assert calls[0]["iteration"] == 3 and calls[0]["seed"] == 4 and calls[0]["out"] == tmp_path / "iter-003"
    assert metrics["checks"]["committor_test"] is passes and metrics["converged"] is passes
    assert metrics["committor_test"]["p_B_std_intrinsic"] == width
    assert cio.read_json(tmp_path / "iter-003" / "metrics.json") == metrics


@pytest.mark.parametrize("levels,passes", [([], True), ([{"q": 0.2, "p_B_mean": 0.16}, {"q": 0.8, "p_B_mean": 0.84}], True),
                                           ([{"q": 0.2, "p_B_mean": 0.14}, {"q": 0.8, "p_B_mean": 0.8}], False),
                                           ([{"q": 0.2, "p_B_mean": 0.2}, {"q": 0.8, "p_B_mean": 0.86}], False),
                                           ([{"q": 0.2, "p_B_mean": 0.2}, {"q": 0.8, "error": "too few"}], False),
                                           # judged against the points' own mean prediction where recorded
                                           ([{"q": 0.2, "q_pred_mean": 0.26, "p_B_mean": 0.28}], True),
                                           ([{"q": 0.2, "q_pred_mean": 0.2, "p_B_mean": 0.28}], False)])
def test_convergence_gate_needs_every_level_of_a_committor_within_test_mean(tmp_path, monkeypatch, levels, passes):
    """A committor right at 1/2 but off by more than test_mean at another level, or with too few
    frames there to test, does not pass; the levels are kept in metrics.json."""
    monkeypatch.setattr(ct, "committor_histogram", lambda c, **kwargs: {
        "p_B_mean": 0.5, "p_B_std": 0.05, "p_B_std_intrinsic": 0.0, "p_B_std_intrinsic_interval": [0, 0.01],
        "points": 50, "shots": 100, "levels": levels})
    c = _gate_campaign(tmp_path, test_mean=0.05, test_width=0.08)
    metrics = {"converged": True, "checks": {"q_change": True}}
    ct.convergence_gate(c, 3, metrics, **QUIET)
    assert metrics["checks"]["committor_test"] is passes and metrics["converged"] is passes
    assert metrics["committor_test"].get("levels", []) == levels


@pytest.mark.parametrize("p_half,low,high,passes", [
    # start in B, seed 0 (q RMSE 0.0546 against the exact committor): every level within test_mean,
    # all three low by 0.03-0.05: calibration RMS 0.039
    (0.471, 0.16, 0.76, False),
    # the default workflow's seed 1 (q RMSE 0.0094): 0.038 off at 1/2 alone, RMS 0.026
    (0.538, 0.208, 0.824, True),
    (0.5, 0.2, 0.8, True)])
def test_convergence_gate_needs_a_committor_calibrated_over_its_levels_as_a_whole(tmp_path, monkeypatch, p_half, low,
                                                                                  high, passes):
    """The RMS over 1/2 and the other levels of (mean p_B - mean predicted q) must be within
    test_calibration: a q biased the same way at every level fails even where each level alone
    passes; the RMS is recorded and named in the log line's levels text."""
    levels = [{"q": 0.2, "q_pred_mean": 0.2, "p_B_mean": low}, {"q": 0.8, "q_pred_mean": 0.8, "p_B_mean": high}]
    monkeypatch.setattr(ct, "committor_histogram", lambda c, **kwargs: {
        "p_B_mean": p_half, "p_B_std": 0.05, "p_B_std_intrinsic": 0.03, "p_B_std_intrinsic_interval": [0, 0.05],
        "points": 50, "shots": 100, "levels": levels})
    c = _gate_campaign(tmp_path, test_mean=0.05, test_width=0.08, test_calibration=0.035)
    metrics = {"converged": True, "checks": {"q_change": True}}
    ct.convergence_gate(c, 3, metrics, **QUIET)
    rms = np.sqrt(np.mean(np.square([p_half - 0.5, low - 0.2, high - 0.8])))
    assert metrics["committor_test"]["calibration_rms"] == pytest.approx(rms, abs=1e-12)
    assert metrics["checks"]["committor_test"] is passes and metrics["converged"] is passes
    assert ct.levels_text(metrics["committor_test"]).endswith(f"; calibration RMS {rms:.3f})")


def test_convergence_gate_runs_only_where_it_applies(tmp_path, monkeypatch):
    """No test while another check fails, for a 2-D CV, or with the gate off; a test that cannot run
    (no isosurface, too few frames) fails the gate with its message."""
    def no_test(c, **kwargs):
        raise AssertionError("the test must not run")

    monkeypatch.setattr(ct, "committor_histogram", no_test)
    for c, checks in ((_gate_campaign(tmp_path / "a"), {"cv_r2": False}),
                      (_gate_campaign(tmp_path / "b", cv_dim=2), {"cv_r2": True}),
                      (_gate_campaign(tmp_path / "c", committor_test=False), {"cv_r2": True})):
        metrics = {"converged": all(checks.values()), "checks": dict(checks)}
        ct.convergence_gate(c, 3, metrics, **QUIET)
        assert metrics["committor_test"] is None and "committor_test" not in metrics["checks"]

    def no_isosurface(c, **kwargs):
        raise ct.WorkspaceError("campaign gate: p_B never crosses 1/2 along CV_4")

    monkeypatch.setattr(ct, "committor_histogram", no_isosurface)
    c = _gate_campaign(tmp_path / "d")
    metrics = {"converged": True, "checks": {"cv_r2": True}}
    ct.convergence_gate(c, 3, metrics, **QUIET)
    assert metrics["converged"] is False and "never crosses" in metrics["committor_test"]["error"]
