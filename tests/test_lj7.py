"""LJ7 in 2-D: the four minima, forces, the confinement, states in (mu2, mu3) and starting structures."""

from pathlib import Path

import numpy as np
import pytest
import torch

from cvcycle.spec import load_spec
from cvcycle.systems import make_system
from cvcycle.systems.lj7 import CONFINEMENT_RADIUS, LJ7, MINIMA, MINIMUM_ENERGIES, confinement_energy

WORKFLOW = Path(__file__).resolve().parents[1] / "workflows" / "lj7-autoencoder.toml"
LITERATURE = {"C0": -12.53, "C1": -11.50, "C2": -11.48, "C3": -11.40}  # epsilon


@pytest.fixture(scope="module")
def system() -> LJ7:
    s = make_system(load_spec(WORKFLOW))
    assert isinstance(s, LJ7) and s.kT == 0.1 and s.state_names == ["C0", "C1", "C2", "C3"]
    return s


def minima() -> np.ndarray:
    return np.stack([MINIMA[k] for k in LITERATURE])


def test_minima_energies_match_literature_and_are_stationary(system):
    x = torch.tensor(minima(), requires_grad=True)
    u = system.potential(x)
    (grad,) = torch.autograd.grad(u.sum(), x)
    assert u.detach().numpy() == pytest.approx(list(LITERATURE.values()), abs=0.01)
    assert u.detach().numpy() == pytest.approx(list(MINIMUM_ENERGIES.values()), abs=1e-5)
    assert grad.abs().max() < 1e-5


def test_forces_match_finite_differences(system):
    rng = np.random.default_rng(1)
    x = minima() + 0.05 * rng.standard_normal((4, 7, 2))
    x[3, 6] = [3.4, 1.0]  # one particle beyond the confinement radius
    xt = torch.tensor(x, requires_grad=True)
    (grad,) = torch.autograd.grad(system.potential(xt).sum(), xt)
    h = 1e-6
    numeric = np.zeros_like(x)
    for idx in np.ndindex(x.shape[1:]):
        for sign in (1, -1):
            xp = x.copy()
            xp[(slice(None), *idx)] += sign * h
            numeric[(slice(None), *idx)] += sign * system.potential(torch.tensor(xp)).numpy() / (2 * h)
    np.testing.assert_allclose(grad.numpy(), numeric, rtol=1e-5, atol=1e-5)


def test_potential_broadcasts_over_leading_dimensions(system):
    x = torch.tensor(np.broadcast_to(minima(), (3, 4, 7, 2)).copy())
    assert system.potential(x).shape == (3, 4)


def test_confinement_is_zero_at_the_minima_and_restoring_outside():
    x = torch.tensor(minima())
    assert torch.all(confinement_energy(x) == 0.0)
    assert (np.linalg.norm(minima() - minima().mean(axis=1, keepdims=True), axis=-1).max()
            < CONFINEMENT_RADIUS - 0.5)
    far = torch.tensor(np.stack([MINIMA["C0"]] * 3))
    for i, r in enumerate((3.5, 4.5, 6.0)):  # 2.8 .. 5.0 sigma from the centre of mass
        far[i, 1] = torch.tensor([r, 0.0])
    far.requires_grad_(True)
    e = confinement_energy(far)
    (grad,) = torch.autograd.grad(e.sum(), far)
    assert torch.all(e > 0) and torch.all(torch.diff(e) > 0)
    outward = far[:, 1] - far.mean(dim=1)
    assert torch.all((-grad[:, 1] * outward).sum(-1) < 0)  # the force on the evaporated particle points inwards
    assert torch.allclose(grad.sum(dim=1), torch.zeros(3, 2, dtype=grad.dtype), atol=1e-12)  # no net force


def test_minima_classify_into_their_own_states(system):
    assert system.classify(minima()).tolist() == [0, 1, 2, 3]
    rng = np.random.default_rng(2)
    z = system.state_coordinates(minima())
    # each minimum lies well inside its disc
    for j, (name, disc) in enumerate(system.states.items()):
        assert np.linalg.norm(z[j] - disc["center"]) < 0.6 * disc["radius"], name
    assert system.classify(minima() + 0.01 * rng.standard_normal((4, 7, 2))).tolist() == [0, 1, 2, 3]


def test_state_coordinates_are_invariant_to_permutation_rotation_translation(system):
    rng = np.random.default_rng(3)
    x = minima() + 0.05 * rng.standard_normal((4, 7, 2))
    a = 0.7
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    y = x[:, rng.permutation(7)] @ rot.T + np.array([2.0, -1.0])
    np.testing.assert_allclose(system.state_coordinates(y), system.state_coordinates(x), atol=1e-12)
    assert system.state_coordinates(x).shape == (4, 2)


def test_start_and_representatives(system):
    rng = np.random.default_rng(4)
    x = system.start(["C0", "C2"], 5, 0.0, rng)
    assert x.shape == (5, 7, 2)
    np.testing.assert_array_equal(x[0], MINIMA["C0"])
    np.testing.assert_array_equal(x[3], MINIMA["C2"])
    noisy = system.start(["C1"], 200, 0.02, rng)
    assert np.std(noisy - MINIMA["C1"]) == pytest.approx(0.02, rel=0.1)
    np.testing.assert_array_equal(system.representatives(), minima())


def test_unknown_or_empty_state_is_a_clear_error(system):
    with pytest.raises(ValueError, match="'D'"):
        system.start(["D"], 2, 0.0, np.random.default_rng(0))
    empty = LJ7(0.1, {"C0": system.states["C0"], "melt": {"center": [2.0, 2.0], "radius": 0.1}})
    with pytest.raises(ValueError, match="'melt'.*no known minimum-energy structure"):
        empty.start(["melt"], 2, 0.0, np.random.default_rng(0))
    assert empty.representatives() is None
    np.testing.assert_array_equal(empty.start(["C0"], 1, 0.0, np.random.default_rng(0))[0], MINIMA["C0"])


def run_small_campaign(path: Path, workflow: str, overrides: dict) -> dict:
    """A workflow of workflows/, shrunk by `overrides` (section -> fields) to two iterations, run
    to the end in `path`; its job document."""
    from cvcycle import io as cio
    from cvcycle.loop import advance
    from cvcycle.spec import load_spec, validate

    spec = load_spec(Path(__file__).resolve().parents[1] / "workflows" / workflow)
    small = {**overrides, "budget": {"max_iterations": 2}, "convergence": {"min_iterations": 2}}
    for section, values in small.items():
        spec[section] = {**spec[section], **values}
    path.mkdir()
    cio.write_json(path / "signac_statepoint.json", {"spec": validate(spec)})
    doc = advance(path, log=lambda line: None)
    assert doc["status"] == "budget" and len(doc["history"]) == 2
    return doc


def export_plumed(path: Path) -> Path:
    """`python -m cvcycle export PATH --format plumed --iteration 0` into PATH/plumed, as a user runs it."""
    import subprocess
    import sys

    out = path / "plumed"
    r = subprocess.run([sys.executable, "-m", "cvcycle", "export", str(path), "--format", "plumed", "--out", str(out),
                        "--iteration", "0"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def test_a_small_lj7_campaign_runs_through_the_loop(tmp_path):
    """The loop on a particle system with no exact answer: positions (frames, walkers, 7, 2)
    every position_stride frames, state coordinates and labels every frame, the FES on (mu2,
    mu3) against the stored reference, state free energies, and `show`."""
    import json
    import subprocess
    import sys

    from cvcycle import io as cio

    path = tmp_path / "lj7"
    run_small_campaign(path, "lj7-autoencoder.toml", {
        "engine": {"walkers": 4, "initial_steps": 400, "steps": 400, "segment_steps": 200, "position_stride": 5},
        "learner": {"epochs": 5, "ensemble": 2, "checkpoint_epochs": 5}, "analysis": {"plots": True}})
    samples = cio.read_npz(path / "iter-001" / "samples.npz")
    traj = cio.read_npz(path / "iter-001" / "trajectory.npz")
    assert samples["features"].shape == (40, 4, 7) and samples["state_coordinates"].shape == (40, 4, 2)
    assert traj["positions"].shape == (8, 4, 7, 2)  # every 5th of 40 frames
    np.testing.assert_array_equal(traj["frame"], np.arange(0, 40, 5))
    # the features are the sorted coordination numbers, the state coordinates their central moments
    c = samples["features"]
    assert np.all(np.diff(c, axis=-1) >= 0)
    dev = c - c.mean(axis=-1, keepdims=True)
    np.testing.assert_allclose(samples["state_coordinates"], np.stack([(dev**2).mean(-1), (dev**3).mean(-1)], -1),
                               rtol=1e-6, atol=1e-7)
    system = LJ7(0.1, cio.read_json(path / "signac_statepoint.json")["spec"]["system"]["states"])
    np.testing.assert_array_equal(samples["state"][::5], system.classify(traj["positions"].reshape(-1, 7, 2)).reshape(8, 4))
    metrics = cio.read_json(path / "iter-001" / "metrics.json")
    assert "fes_rmse_exact" not in metrics and "fes_rmse_reference" in metrics and metrics["committor_r2"] is None
    assert set(metrics["state_free_energies"]) == {"C1", "C2", "C3", "others"}
    fes = cio.read_npz(path / "iter-001" / "fes.npz")
    assert fes["F_xy"].shape == (30, 30)  # on the reference's (mu2, mu3) bins
    assert (path / "iter-001" / "fes_states.png").stat().st_size > 10_000  # F(mu2, mu3) next to the reference
    shown = subprocess.run([sys.executable, "-m", "cvcycle", "show", str(path), "--json"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["features"] == [f"c({i})" for i in range(1, 8)]

    # export --format plumed: plumed.dat's COORDINATION of each particle with the others, SORTed,
    # evaluated here on the stored positions, gives the campaign's features
    out = export_plumed(path)  # CV_1, with iteration 1's 2-D bias
    assert json.loads((out / "export.json").read_text())["bias"].endswith("the end of iteration 1, the run biased by this CV")
    lines = (out / "plumed.dat").read_text().splitlines()
    coordination = [ln for ln in lines if " COORDINATION " in ln]
    assert len(coordination) == 7 and all(ln.endswith("SWITCH={RATIONAL R_0=1.5 NN=8 MM=16} NOPBC") for ln in coordination)
    assert "sorted: SORT ARG=c1,c2,c3,c4,c5,c6,c7" in lines and "UNITS NATURAL" in lines[2]
    pos = traj["positions"]
    r = np.linalg.norm(pos[..., :, None, :] - pos[..., None, :, :], axis=-1) / 1.5
    c = []
    for ln in coordination:
        i = int(ln.split("GROUPA=")[1].split()[0]) - 1
        others = [int(j) - 1 for j in ln.split("GROUPB=")[1].split()[0].split(",")]
        c.append(((1 - r[..., i, others] ** 8) / (1 - r[..., i, others] ** 16)).sum(-1))
    np.testing.assert_allclose(np.sort(np.stack(c, -1), -1), samples["features"][::5], rtol=1e-5, atol=1e-6)


def test_a_small_lj7_variational_committor_campaign_runs_through_the_loop(tmp_path):
    """workflows/lj7-committor-variational.toml, shrunk: walkers start in C0 and C1, q is trained
    with the mass-weighted metric through the moments' Jacobian, and logit q is biased."""
    from cvcycle import io as cio

    path = tmp_path / "lj7-var"
    run_small_campaign(path, "lj7-committor-variational.toml", {
        "engine": {"walkers": 4, "initial_steps": 400, "steps": 400, "segment_steps": 200},
        "learner": {"epochs": 5, "checkpoint_epochs": 5}, "analysis": {"plots": False}})
    first = cio.read_npz(path / "iter-000" / "samples.npz")
    assert set(np.unique(first["state"][0])) == {0, 1}  # two walkers start in C0 (A), two in C1 (B)
    metrics = cio.read_json(path / "iter-001" / "metrics.json")
    assert metrics["q_change"] is not None and 0.0 <= metrics["q_change"] <= 1.0
    assert (path / "iter-001" / "committor.pt").is_file()
    bias = cio.read_npz(path / "iter-001" / "bias.npz")
    assert np.ptp(bias["values"]) > 0  # OPES deposited on logit q

    # export --format plumed: the moments as COMBINE (the mean) and CUSTOM over the coordination numbers
    out = export_plumed(path)
    lines = (out / "plumed.dat").read_text().splitlines()
    assert "cv: PYTORCH_MODEL FILE=model.ptc ARG=mu2,mu3" in lines
    assert "mu3: CUSTOM ARG=c1,c2,c3,c4,c5,c6,c7,cmean VAR=c1,c2,c3,c4,c5,c6,c7,m FUNC=((c1-m)^3+(c2-m)^3+(c3-m)^3+" \
           "(c4-m)^3+(c5-m)^3+(c6-m)^3+(c7-m)^3)/7 PERIODIC=NO" in lines


SMALL = {"engine": {"walkers": 4, "initial_steps": 400, "steps": 400, "segment_steps": 200},
         "learner": {"epochs": 5, "checkpoint_epochs": 5}, "analysis": {"plots": False}}


# bias_tol (kT): the campaign's grid against PLUMED's kernel sum. The autoencoder's 2-D bias changes by up
# to 1 kT per grid cell in its tails, where the grid's linear interpolation is off by ~0.1 kT itself.
@pytest.mark.parametrize("workflow, bias_tol", [("lj7-autoencoder.toml", 0.1), ("lj7-committor-variational.toml", 3e-3)])
def test_the_exported_plumed_input_gives_the_campaigns_cv_and_bias_in_plumed(tmp_path, workflow, bias_tol):
    """LJ7's particle features in PLUMED (COORDINATION + SORT, or the moments), the CV of iteration 0 and
    iteration 1's bias on it from STATE (a 2-D one for the autoencoder), on walker 0's frames."""
    import json

    from cvcycle import io as cio
    from plumed_driver import check_in_plumed, plumed_or_skip, write_xyz

    plumed_or_skip()
    path = tmp_path / "lj7"
    run_small_campaign(path, workflow, SMALL)
    out = export_plumed(path)
    pos = cio.read_npz(path / "iter-001" / "trajectory.npz")["positions"][:, 0]
    write_xyz(out / "frames.xyz", pos)
    got = check_in_plumed(path, out, pos, ["--ixyz", "frames.xyz"])
    (out / "plumed-check.json").write_text(json.dumps(got))
    kT = 0.1
    assert got["frames"] == len(pos) and got["cv"] < 1e-6 and got["force_rel"] < 1e-3 and got["bias_formula"] < 1e-8
    assert got["bias"] < bias_tol * kT and got["as_written_before_deposition"] < 1e-6
