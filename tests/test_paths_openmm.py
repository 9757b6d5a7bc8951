"""Transition path sampling on a molecule: the OPS bridge over the OpenMM engine (a snapshot carries
what the engine needs to continue; time reversal), and the shooting route on alanine dipeptide end
to end through project.py (paths from C7eq to C7ax, shooting points as whole molecules, the
committor trained on their features)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("openmm", reason="OpenMM is not installed (pip install -e \".[openmm]\")")
pytest.importorskip("openpathsampling", reason="path sampling needs openpathsampling (pip install -e \".[paths]\")")

from cvcycle import io as cio  # noqa: E402
from cvcycle.engines import make_engine  # noqa: E402
from cvcycle.features import make_featurizer  # noqa: E402
from cvcycle.paths import accepted_paths, initial_path  # noqa: E402
from cvcycle.paths.tps import load_ops  # noqa: E402
from cvcycle.spec import load_spec, validate  # noqa: E402
from cvcycle.systems import make_system  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "workflows" / "alanine-dipeptide-committor-tps.toml"


@pytest.fixture(scope="module")
def spec():
    return validate(load_spec(WORKFLOW))


@pytest.fixture(scope="module")
def system(spec):
    return make_system(spec)


def _line_path(system, n: int = 13) -> np.ndarray:
    """Minimised structures (n, 22, 3) at (phi, psi) on the straight line from C7eq's centre to
    C7ax's: a crude first path, as a high-temperature run would give one."""
    a, b = (np.array(system.states[s]["center"]) for s in ("C7eq", "C7ax"))
    return np.stack([system.structure(*(a + t * (b - a))) for t in np.linspace(0.0, 1.0, n)])


def test_a_snapshot_carries_what_the_openmm_engine_needs_to_continue(spec, system):
    one = {**spec, "engine": {**spec["engine"], "walkers": 1}}
    bridge = load_ops().BridgeEngine(make_engine(one, system), stride=5, max_frames=100, seed=3, underdamped=True,
                                     frame_shape=(22, 3))
    engine = bridge.engine
    engine.set_positions(system.start(["C7eq"], 1, 0.0, np.random.default_rng(0)))
    engine.draw_velocities(4)
    start = bridge.current_snapshot
    assert start.coordinates.shape == (22, 3) and start.velocities.shape == (22, 3)
    bridge.frames = 0
    straight = [bridge.generate_next_frame() for _ in range(3)]
    bridge.current_snapshot, bridge.frames = start, 0
    first = bridge.generate_next_frame()
    bridge.current_snapshot = bridge.trajectory(first.coordinates[None], first.velocities[None])[0]  # its arrays alone
    rest = [bridge.generate_next_frame() for _ in range(2)]
    for a, b in zip(straight, [first] + rest):  # the same frames, up to the constraint solver's tolerance
        np.testing.assert_allclose(a.coordinates, b.coordinates, atol=1e-6)
        np.testing.assert_allclose(a.velocities, b.velocities, atol=1e-4)
    assert not np.allclose(straight[0].coordinates, straight[-1].coordinates, atol=1e-3)  # it moved
    np.testing.assert_array_equal(first.reversed.velocities, -first.velocities)  # time reversal
    # the shooting point's fresh velocities (OPS's RandomVelocities calls this): thermal, new at
    # every call, and the same again from the same seed and counter
    bridge.redraws = 0
    fresh = [bridge.randomize_velocities(first) for _ in range(2)]
    bridge.redraws = 0
    again = bridge.randomize_velocities(first)
    np.testing.assert_array_equal(fresh[0].coordinates, first.coordinates)
    assert not np.allclose(fresh[0].velocities, fresh[1].velocities)
    np.testing.assert_array_equal(fresh[0].velocities, again.velocities)
    m = np.asarray(system.masses).reshape(-1, 1)
    kinetic = np.mean([(m * f.velocities ** 2).sum() / (3 * 22 - 12) for f in fresh])  # 2 KE / dof ~ kT
    assert 0.5 * 2.494 < kinetic < 2.0 * 2.494
    line = _line_path(system, 5)
    label = system.classify_ab(line)
    path = initial_path(line[:, None], system)  # (frames, walkers, 22, 3) -> (n, 22, 3), C7eq first
    assert label[0] == 0 and label[-1] == 1 and path.shape[1:] == (22, 3)
    assert system.classify_ab(path[:1])[0] == 0 and system.classify_ab(path[-1:])[0] == 1


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_a_tiny_shooting_campaign_on_alanine_dipeptide_through_project_py(tmp_path, spec, system):
    sys.path.insert(0, str(ROOT / "tests"))
    from test_cli import env, to_toml

    raw = load_spec(WORKFLOW)
    raw["campaign"].pop("schema")
    raw["paths"].update(moves=6, chunk_moves=3, extra_shots=2, max_frames=400)
    raw["learner"].update(epochs=5)
    raw["budget"]["max_iterations"] = 2
    raw["convergence"].update(min_iterations=2, committor_test=False)
    raw["resources"]["cpus"] = 1
    (tmp_path / "tps.toml").write_text(to_toml(raw))
    run = lambda *args: subprocess.run([sys.executable, str(ROOT / "project.py"), *args], cwd=tmp_path, env=env(),  # noqa: E731
                                       capture_output=True, text=True, timeout=900)
    assert run("init", "tps.toml").returncode == 0
    job = next((tmp_path / "workspace").iterdir())
    (job / "iter-000").mkdir()
    cio.write_npz(job / "iter-000" / "hot_run.npz", positions=_line_path(system)[:, None])  # instead of the 1000 K run
    r = run("run")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert re.search(r"summary: alanine-dipeptide-committor-tps seed 0: (converged|budget) at iteration 1,", r.stdout)
    feat = make_featurizer(spec)
    for k in (0, 1):
        shots = cio.read_npz(job / f"iter-{k:03d}" / "shots.npz")
        assert shots["points"].shape == (6, 22, 3) and shots["extra_outcomes"].shape == (6, 2)
        with torch.no_grad():
            np.testing.assert_allclose(shots["features"], feat(torch.as_tensor(shots["points"])).numpy(), atol=1e-12)
        assert np.isin(shots["outcomes"], (-1, 0, 1)).all() and np.isin(shots["extra_outcomes"], (-1, 0, 1)).all()
        for path in accepted_paths(job / f"iter-{k:03d}" / "tps"):  # C7eq -> C7ax, neither state in between
            label = system.classify_ab(path)
            assert label[0] == 0 and label[-1] == 1 and (label[1:-1] == -1).all()
    metrics = json.loads((job / "iter-001" / "metrics.json").read_text())
    assert metrics["moves"] == 6 and metrics["q_change"] is not None and "committor_rmse" not in metrics
    assert (job / "iter-001" / "shooting_points.png").stat().st_size > 10_000
    from cvcycle.analysis.committor_histogram import _candidate_frames  # the gate's frames: paths and points
    from cvcycle.campaign import Campaign

    pos, feats, weights = _candidate_frames(Campaign(job), 1)
    assert pos.shape[1:] == (22, 3) and feats.shape == (len(pos), len(feat.names)) and weights.sum() == pytest.approx(1.0)
    cv = torch.jit.load(str(job / "iter-001" / "cv.pt"))
    q = torch.sigmoid(cv(feat(torch.as_tensor(system.representatives())).float()))
    assert torch.isfinite(q).all()
