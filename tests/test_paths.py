"""Transition path sampling through openpathsampling (cvcycle.paths): path ensemble invariants,
shooting outcomes against the exact committor, exact resumption after a kill, and the errors."""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import numpy as np
import pytest

paths_ops = pytest.importorskip("openpathsampling", reason="cvcycle.paths needs openpathsampling (pip install 'cvcycle[paths]')")

from cvcycle.analysis.reference import reference_from_spec  # noqa: E402
from cvcycle.analysis.shooting import state_classifier  # noqa: E402
from cvcycle.engines import make_engine  # noqa: E402
from cvcycle.errors import CvcycleError, EngineUnavailable, WalltimeReached, WorkspaceError  # noqa: E402
from cvcycle.paths import accepted_paths, initial_path, run_tps  # noqa: E402
from cvcycle.paths.tps import load_ops  # noqa: E402
from cvcycle.spec import load_spec, validate  # noqa: E402
from cvcycle.systems import make_system  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPEC = load_spec(ROOT / "workflows" / "mueller-brown-autoencoder.toml")
STATES = SPEC["system"]["states"]
SYSTEM = make_system(validate(SPEC))
# A, first saddle, intermediate minimum, second saddle, B of Mueller-Brown
WAYPOINTS = np.array([[-0.558, 1.442], [-0.822, 0.624], [-0.05, 0.467], [0.212, 0.293], [0.623, 0.028]])
QUIET = {"log": lambda line: None}


def polyline_path() -> np.ndarray:
    line = np.concatenate([np.linspace(a, b, 10, endpoint=False) for a, b in zip(WAYPOINTS[:-1], WAYPOINTS[1:])]
                          + [WAYPOINTS[-1:]])
    return initial_path(line[:, None], SYSTEM)


@pytest.fixture(scope="module")
def reference():
    return reference_from_spec(SPEC, bins=241)


@pytest.fixture(scope="module")
def weighted_run(tmp_path_factory, reference):
    """90 moves, shooting points drawn with a Gaussian weight in logit q (as a campaign would)."""
    def weight(positions):
        q = np.clip(reference.interpolate_committor(positions), 1e-6, 1 - 1e-6)
        return np.exp(-0.5 * (np.log(q / (1 - q)) / 1.5) ** 2)

    work = tmp_path_factory.mktemp("tps")
    return work, run_tps(SPEC, polyline_path(), 90, seed=1, workdir=work, selector_weight=weight,
                         chunk_moves=30, **QUIET)


def test_initial_path_cuts_the_shortest_reactive_segment():
    a, b, mid = np.array(STATES["A"]["center"]), np.array(STATES["B"]["center"]), WAYPOINTS[2]
    walker0 = np.array([a, mid, mid, mid, b, b])       # A -> B with 3 frames between
    walker1 = np.array([mid, b, mid, a, a, mid])       # B -> A with 1 frame between: shortest
    path = initial_path(np.stack([walker0, walker1], axis=1), SYSTEM)
    np.testing.assert_array_equal(path, [a, mid, b])   # returned reversed, running A -> B
    with pytest.raises(CvcycleError, match="no transition between states A and B"):
        initial_path(np.stack([walker0[:4], walker0[:4]], axis=1), SYSTEM)
    with pytest.raises(ValueError, match=r"\(frames, walkers, \.\.\.\)"):
        initial_path(walker0, SYSTEM)


def test_accepted_paths_are_a_to_b_transition_paths(weighted_run):
    work, rec = weighted_run
    classify = state_classifier(STATES)
    found = accepted_paths(work)
    assert len(found) == rec.accepted.sum() >= 2
    assert [len(p) for p in found] == list(rec.path_length[rec.accepted])
    for p in found:
        labels = classify(p)
        assert labels[0] == 0 and labels[-1] == 1 and np.all(labels[1:-1] == -1)
    # a rejected move leaves the path as it was
    before = np.r_[len(polyline_path()), rec.path_length[:-1]]
    assert np.all(rec.path_length[~rec.accepted] == before[~rec.accepted])


def test_shooting_records_are_complete(weighted_run):
    _, rec = weighted_run
    assert len(rec) == 90 and rec.points.shape == (90, 2) and rec.outcomes.shape == (90, 2)
    np.testing.assert_array_equal(rec.features, rec.points)  # coordinate features of the shooting points
    assert set(np.unique(rec.outcomes)) <= {-1, 0, 1}
    assert np.all(state_classifier(STATES)(rec.points) == -1)  # never shot from inside a state
    assert np.all(rec.steps > 0) and np.all(rec.steps % 10 == 0) and np.all(rec.extra_steps % 10 == 0)
    # an accepted path ran forward into B and backward into A (valid ones may still be rejected:
    # the selector weight and the path length enter the acceptance)
    assert np.all(rec.outcomes[rec.accepted] == [1, 0])
    # OPS skips the second half once the first rules A -> B out; the bridge runs it for its outcome
    assert (rec.extra_steps > 0).any() and (rec.outcomes >= 0).mean() > 0.95


def test_shooting_outcomes_follow_the_exact_committor(weighted_run, reference):
    work, rec = weighted_run
    q = np.repeat(reference.interpolate_committor(rec.points), 2)
    o = rec.outcomes.ravel()
    q, o = q[o >= 0], o[o >= 0]
    # binned: mean outcome against mean exact q, binomial error plus a small systematic allowance
    edges = np.linspace(0, 1, 6)
    used = 0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (q >= lo) & (q < hi)
        if m.sum() >= 10:
            used += 1
            sigma = np.sqrt(np.mean(q[m] * (1 - q[m])) / m.sum())
            assert abs(o[m].mean() - q[m].mean()) <= 3.5 * sigma + 0.03, (lo, hi, o[m].mean(), q[m].mean(), m.sum())
    assert used >= 3
    z = (o - q).sum() / np.sqrt((q * (1 - q)).sum())
    assert abs(z) < 4, z
    # the exact committor predicts the outcomes far better than their overall frequency does
    qc, pc = np.clip(q, 1e-3, 1 - 1e-3), o.mean()
    ll_q = np.sum(o * np.log(qc) + (1 - o) * np.log(1 - qc))
    ll_const = np.sum(o * np.log(pc) + (1 - o) * np.log(1 - pc))
    assert ll_q > ll_const + 5, (ll_q, ll_const)  # likelihood ratio > e^5
    # the selector weight concentrated shooting points where q is intermediate, unlike path frames
    frames = np.concatenate([p[1:-1] for p in accepted_paths(work)])
    mid = lambda x: np.mean(np.abs(reference.interpolate_committor(x) - 0.5) < 0.4)  # noqa: E731
    assert mid(rec.points) > mid(frames) + 0.2, (mid(rec.points), mid(frames))


class Killed(Exception):
    pass


def test_a_killed_run_resumes_to_the_same_records(tmp_path, monkeypatch):
    kw = dict(chunk_moves=3, **QUIET)
    whole = run_tps(SPEC, polyline_path(), 7, seed=5, workdir=tmp_path / "whole", **kw)
    bridge = load_ops().BridgeEngine
    generate = bridge.generate_next_frame
    work = tmp_path / "killed"
    late = []

    def dying(self):  # the process dies a few frames into chunk 1
        if (work / "chunk-0000.npz").exists():
            late.append(1)
            if len(late) == 5:
                raise Killed
        return generate(self)

    monkeypatch.setattr(bridge, "generate_next_frame", dying)
    with pytest.raises(Killed):
        run_tps(SPEC, polyline_path(), 7, seed=5, workdir=work, **kw)
    monkeypatch.undo()
    assert sorted(p.name for p in work.iterdir()) == ["chunk-0000.npz"]  # no partial or temporary file
    # randomness drawn elsewhere in the process must not leak into the run, and Python's is restored
    random.seed(99)
    np.random.seed(99)
    paths_ops.rng.default_rng().random(17)
    state = random.getstate()
    resumed = run_tps(SPEC, polyline_path(), 7, seed=5, workdir=work, **kw)
    assert random.getstate() == state
    for name, rows in whole.as_dict().items():
        np.testing.assert_array_equal(rows, getattr(resumed, name), err_msg=name)
    # extending the run: the shorter last chunk is run again, longer, and starts the same way
    longer = run_tps(SPEC, polyline_path(), 8, seed=5, workdir=work, **kw)
    for name, rows in whole.as_dict().items():
        np.testing.assert_array_equal(rows, getattr(longer, name)[:7], err_msg=name)
    with pytest.raises(WorkspaceError, match="other settings"):
        run_tps(SPEC, polyline_path(), 7, seed=6, workdir=work, **kw)


def test_a_deadline_stops_after_a_chunk_and_the_next_call_finishes(tmp_path):
    kw = dict(chunk_moves=2, **QUIET)
    whole = run_tps(SPEC, polyline_path(), 4, seed=3, workdir=tmp_path / "whole", **kw)
    work = tmp_path / "stopped"
    with pytest.raises(WalltimeReached, match="after chunk 1/2"):
        run_tps(SPEC, polyline_path(), 4, seed=3, workdir=work, deadline=time.monotonic(), **kw)
    assert sorted(p.name for p in work.iterdir()) == ["chunk-0000.npz"]
    resumed = run_tps(SPEC, polyline_path(), 4, seed=3, workdir=work, deadline=time.monotonic(), **kw)  # last chunk: no stop
    for name, rows in whole.as_dict().items():
        np.testing.assert_array_equal(rows, getattr(resumed, name), err_msg=name)


def test_halves_stop_undecided_at_the_max_length(tmp_path):
    rec = run_tps(SPEC, polyline_path(), 4, seed=2, workdir=tmp_path, max_frames=3, chunk_moves=2, **QUIET)
    assert (rec.outcomes == -1).any() and not rec.accepted.any()
    assert np.all(rec.steps + rec.extra_steps <= 2 * 3 * 10)  # each half runs at most max_frames frames


@pytest.mark.parametrize("integrator", ["overdamped", "underdamped"])
def test_a_snapshot_carries_everything_the_engine_needs_to_continue(integrator):
    spec = validate({**SPEC, "engine": {**SPEC["engine"], "walkers": 1, "integrator": integrator}})
    engine = load_ops().BridgeEngine(make_engine(spec), stride=5, max_frames=100, seed=3,
                                     underdamped=integrator == "underdamped", frame_shape=(2,))
    start = engine.trajectory(WAYPOINTS[2:3], np.array([[0.3, -0.2]]))[0]
    engine.current_snapshot, engine.frames = start, 0
    straight = [engine.generate_next_frame() for _ in range(3)]
    engine.current_snapshot, engine.frames = start, 0
    first = engine.generate_next_frame()
    engine.current_snapshot = engine.trajectory(first.coordinates, first.velocities)[0]  # from its arrays alone
    rest = [engine.generate_next_frame() for _ in range(2)]
    for a, b in zip(straight, [first] + rest):
        np.testing.assert_array_equal(a.coordinates, b.coordinates)
        np.testing.assert_array_equal(a.velocities, b.velocities)
    assert np.abs(straight[-1].velocities).sum() > 0
    np.testing.assert_array_equal(first.reversed.velocities, -first.velocities)  # time reversal
    np.testing.assert_array_equal(first.reversed.coordinates, first.coordinates)


def test_bad_inputs_give_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(CvcycleError, match="not an A -> B path"):
        run_tps(SPEC, polyline_path()[::-1], 2, seed=0, workdir=tmp_path / "r", **QUIET)
    with pytest.raises(ValueError, match="non-negative weight"):
        run_tps(SPEC, polyline_path(), 2, seed=0, workdir=tmp_path / "w", selector_weight=lambda x: -np.ones(len(x)), **QUIET)
    monkeypatch.setitem(sys.modules, "openpathsampling", None)  # as if it were not installed
    with pytest.raises(EngineUnavailable, match=r"needs the Python package 'openpathsampling' \(pip install 'cvcycle\[paths\]'\)"):
        run_tps(SPEC, polyline_path(), 2, seed=0, workdir=tmp_path / "m", **QUIET)
