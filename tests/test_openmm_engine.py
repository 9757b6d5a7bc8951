"""The OpenMM engine on alanine dipeptide: the molecule cvcycle builds, the engine contract (frames,
forces of potential + bias against finite differences, the bias force inside OpenMM, bit-for-bit
continuation from saved state, pure random streams), spec rules, and a tiny campaign end to end
through project.py."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

openmm = pytest.importorskip("openmm", reason="OpenMM is not installed (pip install -e \".[openmm]\")")
md = pytest.importorskip("mdtraj", reason="mdtraj is not installed")

from cvcycle.bias import CVBias, make_bias  # noqa: E402
from cvcycle.engines import make_engine  # noqa: E402
from cvcycle.engines.base import torch_threads  # noqa: E402
from cvcycle.engines.openmm_engine import OpenMMEngine  # noqa: E402
from cvcycle.errors import SpecError  # noqa: E402
from cvcycle.features import make_featurizer  # noqa: E402
from cvcycle.spec import load_spec, validate  # noqa: E402
from cvcycle.systems import make_system, thermal_energy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "workflows" / "alanine-dipeptide-autoencoder.toml"


def _spec(**engine) -> dict:
    spec = load_spec(SPEC)
    spec["engine"].update({"walkers": 3, **engine})
    spec["resources"]["cpus"] = 1
    return spec


class _FirstFeatures(torch.nn.Module):
    """A smooth 1-D CV: a fixed combination of the first features (sin/cos of phi and psi)."""

    def forward(self, f):
        return 0.7 * f[:, :1] - 0.4 * f[:, 3:4] + 0.05 * f[:, 8:9]


def _hook(spec: dict) -> CVBias:
    bias = make_bias(spec, 1)
    bias.observe(0, torch.tensor([[0.3], [0.1], [-0.2]], dtype=torch.float64))  # a bias with some shape
    return CVBias(_FirstFeatures(), bias, kT=thermal_energy(spec))


@pytest.fixture(scope="module")
def system():
    return make_system(_spec())


def test_the_built_molecule_has_its_backbone_where_asked_and_mdtraj_agrees(system):
    x = system.representatives()  # C7eq, C7ax centres
    t = md.Trajectory(x.astype(np.float32), md.Topology.from_openmm(system.topology))
    phi, psi = np.degrees(md.compute_phi(t)[1][:, 0]), np.degrees(md.compute_psi(t)[1][:, 0])
    np.testing.assert_allclose(system.state_coordinates(x), np.stack([phi, psi], axis=1), atol=1e-3)
    np.testing.assert_allclose(system.state_coordinates(x), [[-110.0, 110.0], [70.0, -70.0]], atol=5.0)
    assert system.classify(x).tolist() == [0, 1] and system.n_particles == t.n_atoms == 22
    atoms = list(system.topology.atoms())
    assert sorted(i for i, a in enumerate(atoms) if a.element.symbol != "H") == sorted(system.heavy_atoms)
    # L-alanine: the C-beta on the side a real structure has it
    n, ca, c, cb = (x[0, system.atom_index[("ALA", name)]] for name in ("N", "CA", "C", "CB"))
    assert np.dot(np.cross(n - ca, c - ca), cb - ca) > 0
    assert thermal_energy(_spec()) == pytest.approx(2.4943, abs=1e-4) == system.kT


def test_states_are_discs_on_the_torus(system):
    z = np.array([[-83.0 + 360.0, 74.0], [-83.0, 74.0 - 359.0], [70.0 + 29.0, -70.0], [180.0, 180.0], [-170.0, 170.0]])
    assert system.classify_coordinates(z).tolist() == [0, 0, 1, -1, -1]


def test_internal_features_match_mdtraj(system):
    featurizer = make_featurizer(_spec())
    x = system.start(["C7eq", "C7ax"], 6, 0.01, np.random.default_rng(3))
    f = featurizer(torch.as_tensor(x)).numpy()
    t = md.Trajectory(x.astype(np.float32), md.Topology.from_openmm(system.topology))
    phi = md.compute_dihedrals(t, [system.dihedral_atoms("phi")])[:, 0]
    names = featurizer.names
    np.testing.assert_allclose(f[:, names.index("sin_phi")], np.sin(phi), atol=1e-5)
    np.testing.assert_allclose(f[:, names.index("cos_phi")], np.cos(phi), atol=1e-5)
    pair = [system.atom_index[("ALA", "CB")], system.atom_index[("NME", "C")]]
    d = md.compute_distances(t, [pair])[:, 0]
    np.testing.assert_allclose(f[:, names.index("d_ALA:CB_NME:C")], d, atol=1e-5)
    assert len(names) == 4 + 15  # sin, cos of phi, psi; heavy-atom pairs more than three bonds apart


def test_frames_have_the_contract_shapes_and_openmm_energies(system):
    spec = _spec()
    engine = make_engine(spec, system)
    engine.set_positions(system.start(["C7eq"], 3, 0.0, np.random.default_rng(0)))
    engine.draw_velocities(5)
    frames = engine.run(40, 10)
    assert frames.step.tolist() == [0, 10, 20, 30] and engine.step == 40
    assert frames.positions.shape == (4, 3, 22, 3) and frames.features.shape == (4, 3, 19)
    assert frames.cv.shape == (4, 3, 0) and not frames.bias.any() and not frames.log_weight.any()
    reference = system.potential(torch.as_tensor(frames.positions[-1])).numpy()  # Reference platform
    np.testing.assert_allclose(frames.potential[-1], reference, atol=1e-2)
    # constraints hold: every bond to hydrogen at its force-field length
    omm = system.openmm_system()
    for k in range(omm.getNumConstraints()):
        i, j, length = omm.getConstraintParameters(k)
        r = np.linalg.norm(frames.positions[-1][:, i] - frames.positions[-1][:, j], axis=1)
        np.testing.assert_allclose(r, length._value, atol=1e-6)


def test_forces_are_minus_the_gradient_of_potential_plus_bias(system):
    spec = _spec(walkers=2)
    engine = OpenMMEngine(system, make_featurizer(spec), 0.002, 1.0, 2, platform="Reference")
    hook = _hook(spec)
    x = system.start(["C7eq", "C7ax"], 2, 0.005, np.random.default_rng(1))
    engine.set_positions(x)
    x = engine.positions()
    potential_forces = engine.forces(None)
    bias_forces = engine.forces(hook) - potential_forces

    def potential(p: np.ndarray) -> np.ndarray:
        return system.potential(torch.as_tensor(p)).numpy()

    def bias(p: np.ndarray) -> np.ndarray:  # the CV network runs in float32: a wider step
        pt = torch.as_tensor(p)
        return hook.energy(engine.featurizer(pt))[0].detach().numpy()

    rng = np.random.default_rng(2)
    for atom, axis in zip(rng.choice(22, 8, replace=False), rng.integers(0, 3, 8)):
        for what, energy, forces, h, tol in (("potential", potential, potential_forces, 1e-5, 1e-3),
                                             ("bias", bias, bias_forces, 2e-4, 5e-2)):
            up, down = x.copy(), x.copy()
            up[:, atom, axis] += h
            down[:, atom, axis] -= h
            np.testing.assert_allclose(forces[:, atom, axis], -(energy(up) - energy(down)) / (2 * h), rtol=1e-3,
                                       atol=tol, err_msg=f"{what}, atom {atom}, axis {axis}")
    bias_only = bias_forces
    assert np.abs(bias_only).max() > 1.0  # the bias does push


def test_the_bias_acts_inside_openmm_as_k_times_its_force_every_k_steps(system):
    spec = _spec(walkers=2)
    engine = OpenMMEngine(system, make_featurizer(spec), 0.002, 1.0, 2, platform="Reference")
    engine.set_positions(system.start(["C7eq"], 2, 0.0, np.random.default_rng(0)))
    hook = _hook(spec)
    f = engine._evaluate(hook, engine.positions(), forces=True)[3]
    engine._set_bias_force(3 * f)
    inside = np.stack([c.getState(getForces=True, groups={1}).getForces(asNumpy=True)._value for c in engine.contexts])
    np.testing.assert_allclose(inside, 3 * f, rtol=1e-6, atol=1e-6)
    engine._set_bias_force(None)
    inside = np.stack([c.getState(getForces=True, groups={1}).getForces(asNumpy=True)._value for c in engine.contexts])
    assert not inside.any()


@pytest.mark.parametrize("bias_stride", [1, 3])
def test_a_run_continued_from_saved_state_repeats_the_uninterrupted_one_bit_for_bit(system, bias_stride):
    spec = _spec(bias_stride=bias_stride)
    start = system.start(["C7eq"], 3, 0.0, np.random.default_rng(0))
    whole = make_engine(spec, system)
    whole.set_positions(start)
    whole.draw_velocities(1)
    hook = _hook(spec)
    saved_hook = copy.deepcopy(hook)
    state = whole.state_dict()
    a = whole.run(60, 10, hook, bias_stride=bias_stride)
    b = whole.run(60, 10, hook, bias_stride=bias_stride)

    split = make_engine(spec, system)
    split.load_state_dict(state)
    first = split.run(60, 10, saved_hook, bias_stride=bias_stride)
    resumed = make_engine(spec, system)
    resumed.load_state_dict(split.state_dict())
    second = resumed.run(60, 10, saved_hook, bias_stride=bias_stride)
    for x, y in ((a, first), (b, second)):
        for key, value in x.as_dict().items():
            np.testing.assert_array_equal(value, getattr(y, key), err_msg=key)
    assert np.abs(b.positions[-1] - a.positions[0]).max() > 0.01  # it moved


def test_a_stream_key_fixes_the_noise_whatever_ran_before(system):
    spec = _spec()
    engine = make_engine(spec, system)
    engine.set_positions(system.start(["C7eq"], 3, 0.0, np.random.default_rng(0)))
    state = engine.state_dict()
    keyed = engine.run(30, 10, stream=(9, 1))
    engine.load_state_dict(state)
    engine.run(30, 10)  # another history
    engine.load_state_dict(state)
    again = engine.run(30, 10, stream=(9, 1))
    np.testing.assert_array_equal(keyed.positions, again.positions)
    engine.load_state_dict(state)
    other = engine.run(30, 10, stream=(9, 2))
    assert not np.array_equal(keyed.positions[-1], other.positions[-1])


def test_run_on_goes_on_with_the_keyed_stream_without_reinitialising(system, monkeypatch):
    """Shooting's short runs: after one keyed run, run_on continues the random stream instead of
    reinitialising every Context (OpenMM's only way to reseed), so a sequence of them is a pure
    function of the first key: two engines from the same state give the same frames bit for bit,
    and another first key gives other ones."""
    def sequence(key: int, count: list) -> np.ndarray:
        engine = make_engine(_spec(), system)
        engine.set_positions(system.start(["C7eq"], 3, 0.0, np.random.default_rng(0)))
        engine.draw_velocities(5)
        reseed = engine._reseed
        monkeypatch.setattr(engine, "_reseed", lambda k: (count.append(k), reseed(k)))
        frames = [engine.run(10, 10, stream=(key,))] + [engine.run_on(10, 10, stream=(i,)) for i in range(1, 4)]
        return np.concatenate([f.positions for f in frames])

    calls: list = []
    first, again, other = sequence(0, calls), sequence(0, []), sequence(1, [])
    assert len(calls) == 1  # the keyed run only
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first[-1], other[-1])
    assert first.shape == (4, 3, 22, 3) and not np.allclose(first[1], first[-1])


def test_torch_runs_a_small_molecules_bias_in_one_thread_and_big_batches_in_all(system):
    """8 walkers x 22 atoms is below torch's 32,768-element grain: a second thread only spins
    (4-5x slower on a loaded machine); the committor test's thousands of walkers and a particle
    system's pair terms use every cpu."""
    before = torch.get_num_threads()
    try:
        spec = _spec(walkers=8)
        spec["resources"]["cpus"] = 2
        torch.set_num_threads(2)
        make_engine(spec, system)
        assert torch.get_num_threads() == 1
        assert torch_threads(2, 5000, system.n_particles) == 2  # the committor test's shots
        assert torch_threads(2, 4, 256) == 2  # LJ nucleation: 4 walkers x 256 particles
    finally:
        torch.set_num_threads(before)


def test_dropping_walkers_keeps_the_others_where_they_are(system):
    engine = make_engine(_spec(), system)
    engine.set_positions(system.start(["C7eq", "C7ax"], 3, 0.0, np.random.default_rng(0)))
    before = engine.positions()
    engine.keep_walkers(np.array([2, 0]))
    np.testing.assert_array_equal(engine.positions(), before[[2, 0]])
    assert engine.n_walkers == 2 and engine.run(10, 10).positions.shape == (1, 2, 22, 3)


def test_spec_rules_for_a_molecule():
    raw = load_spec(SPEC)
    raw["campaign"].pop("schema")
    for change, message in (({"engine": {"name": "langevin"}}, "engine.name: 'alanine-dipeptide' runs on the 'openmm' engine"),
                            ({"features": {"kind": "coordinates"}}, "features.kind: a molecule"),
                            ({"features": {"dihedrals": ["phi", "chi9"]}}, "features.dihedrals: distinct names"),
                            ({"features": {"dihedrals": [], "distances": False}}, "features.dihedrals: no features"),
                            ({"bias": {"barrier": 4.0}}, "bias.barrier: OPES needs a barrier above 2 kT (4.98868), got 4.0"),
                            ({"engine": {"integrator": "overdamped"}}, "engine.integrator: the openmm engine runs Langevin"),
                            ({"engine": {"mass": 2.0}}, "engine.integrator: the openmm engine runs Langevin")):
        bad = copy.deepcopy(raw)
        for section, body in change.items():
            bad[section] = body if "kind" in body else {**bad[section], **body}
        with pytest.raises(SpecError, match="^" + re.escape(message)):
            validate(bad)
    mb = load_spec(ROOT / "workflows" / "mueller-brown-autoencoder.toml")
    mb["campaign"].pop("schema")
    mb["engine"]["name"] = "openmm"
    with pytest.raises(SpecError, match=r"^engine\.name: 'mueller-brown' runs on the 'langevin' engine"):
        validate(mb)
    mb["engine"].update(name="langevin", platform="CUDA")
    with pytest.raises(SpecError, match=r"^engine\.platform: the 'langevin' engine takes auto \(it runs in torch\), got 'CUDA'"):
        validate(mb)


def _tiny_spec(path: Path, workflow: str, **engine) -> dict:
    """A workflow cut down to 2 walkers, 2 iterations and 5 epochs, written as TOML to `path`."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_cli import to_toml

    spec = load_spec(ROOT / "workflows" / f"{workflow}.toml")
    spec["campaign"].pop("schema")
    spec["engine"].update(walkers=2, report_stride=20, **engine)
    spec["learner"].update(epochs=5, ensemble=1)
    spec["budget"]["max_iterations"] = 2
    spec["convergence"].update(min_iterations=2, committor_test=False)  # no 5,000 shots in a unit test
    spec["resources"]["cpus"] = 1
    path.write_text(to_toml(spec))
    return spec


@pytest.fixture(scope="module", params=["alanine-dipeptide-autoencoder", "alanine-dipeptide-committor"])
def tiny_campaign(request, tmp_path_factory) -> tuple[Path, dict, str, str]:
    """A tiny campaign of the workflow run to its end through project.py: (job folder, spec, workflow, stdout)."""
    from test_cli import env

    workflow, tmp_path = request.param, tmp_path_factory.mktemp("ad")
    spec = _tiny_spec(tmp_path / "ad.toml", workflow, initial_steps=400, steps=400, segment_steps=200)
    run = lambda *args: subprocess.run([sys.executable, str(ROOT / "project.py"), *args], cwd=tmp_path, env=env(),  # noqa: E731
                                       capture_output=True, text=True, timeout=600)
    assert run("init", "ad.toml").returncode == 0
    r = run("run")
    assert r.returncode == 0, r.stdout + r.stderr
    return next((tmp_path / "workspace").iterdir()), spec, workflow, r.stdout


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_a_tiny_campaign_runs_end_to_end_through_project_py(tiny_campaign):
    job, spec, workflow, stdout = tiny_campaign
    assert f"summary: {workflow} seed 0: budget at iteration 1, 1,600 walker steps" in stdout
    for it in ("iter-000", "iter-001"):
        assert (job / it / "samples.npz").is_file() and (job / it / "cv.pt").is_file()
    metrics = json.loads((job / "iter-001" / "metrics.json").read_text())
    assert list(metrics["region_free_energies"]) == ["phi < 0", "phi > 0"] and metrics["region_free_energies"]["phi < 0"] == 0.0
    assert (job / "iter-001" / "fes_states.png").stat().st_size > 10_000  # the Ramachandran plane with CV isolines
    fes = np.load(job / "iter-001" / "fes.npz")
    assert fes["F_xy"].shape == (36, 36) and np.nanmin(fes["F_xy"]) == 0.0
    walkers = job / "iter-001" / "walkers"
    stored = np.load(job / "iter-001" / "trajectory.npz")["positions"]  # (frames, walkers, 22, 3)
    dcd = md.load(str(walkers / "walker-01.dcd"), top=str(walkers / "topology.pdb"))
    assert sorted(p.name for p in walkers.iterdir()) == ["topology.pdb", "walker-00.dcd", "walker-01.dcd"]
    np.testing.assert_allclose(dcd.xyz, stored[:, 1], atol=1e-4)
    cv = torch.jit.load(str(job / "iter-001" / "cv.pt"))
    x = make_system(spec).representatives()
    assert torch.isfinite(cv(make_featurizer(spec)(torch.as_tensor(x)).float())).all()
    check_exports(job, dcd, cv, spec, workflow)


def check_exports(job, traj, cv, spec, workflow):
    """`cvcycle export`: plumed.dat's TORSION and DISTANCE atoms, evaluated by mdtraj on the walker's
    frames and fed through model.ptc, give the campaign's CV; mlcolvar's class loads cv.ckpt and
    gives the same CV."""
    from test_cli import env, mlcolvar_difference

    def export(form: str) -> None:  # in its own process, as a user runs it (mlcolvar stays out of this one)
        r = subprocess.run([sys.executable, "-m", "cvcycle", "export", str(job), "--format", form, "--out", str(job / form)],
                           capture_output=True, text=True, timeout=300, env=env())
        assert r.returncode == 0, r.stderr[-3000:]

    export("plumed")
    lines = (job / "plumed" / "plumed.dat").read_text().splitlines()
    torsions = {ln.split(":")[0]: [int(a) - 1 for a in ln.split("ATOMS=")[1].split(",")] for ln in lines if " TORSION " in ln}
    phi, psi = md.compute_phi(traj)[0][0], md.compute_psi(traj)[0][0]
    assert torsions == {"phi": list(phi), "psi": list(psi)}
    (args,) = [ln.split("ARG=")[1].split(",") for ln in lines if "PYTORCH_MODEL" in ln]
    columns = []
    for a in args:  # each feature as plumed.dat defines it, computed by mdtraj
        if a.startswith(("sin_", "cos_")):
            angle = md.compute_dihedrals(traj, [torsions[a[4:]]])[:, 0]
            columns.append(np.sin(angle) if a.startswith("sin") else np.cos(angle))
        else:
            (ln,) = [ln for ln in lines if ln.startswith(f"{a}: DISTANCE")]
            columns.append(md.compute_distances(traj, [[int(i) - 1 for i in ln.split("ATOMS=")[1].split(",")]])[:, 0])
    feats = torch.as_tensor(np.stack(columns, axis=1), dtype=torch.float32)
    ours = cv(make_featurizer(spec)(torch.as_tensor(traj.xyz, dtype=torch.float64)).float())
    np.testing.assert_allclose(torch.jit.load(str(job / "plumed" / "model.ptc"))(feats).detach(), ours.detach(), atol=2e-5)
    assert "OPES_METAD ARG=cv.node-0" in lines[-2] and "TEMP=300" in lines[-2]
    described = json.loads((job / "plumed" / "features.json").read_text())
    assert described["names"] == list(make_featurizer(spec).names) and described["length_unit"] == "nm"

    if importlib.util.find_spec("mlcolvar") is None:
        pytest.skip("mlcolvar is not installed (pip install -e '.[export]')")
    export("mlcolvar")
    info = json.loads((job / "mlcolvar" / "export.json").read_text())
    assert info["mlcolvar_class"] == ("AutoEncoderCV" if "autoencoder" in workflow else "RegressionCV")
    np.save(job / "feats.npy", feats.numpy())
    assert mlcolvar_difference(job / "mlcolvar" / "cv.ckpt", info["mlcolvar_class"], job / "feats.npy",
                               job / "iter-001" / "cv.pt") < 1e-6
    assert info["max_abs_difference"] < 1e-6 and info["frames_compared"] == traj.n_frames * 2  # both walkers


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_the_exported_plumed_input_gives_the_campaigns_cv_and_bias_in_plumed(tiny_campaign):
    """`cvcycle export --format plumed` run by `plumed driver` on the campaign's DCD (tests/plumed_driver.py)."""
    from plumed_driver import check_in_plumed, plumed_or_skip
    from test_cli import env

    plumed_or_skip()
    job, spec, _, _ = tiny_campaign
    out = job / "plumed-run"
    r = subprocess.run([sys.executable, "-m", "cvcycle", "export", str(job), "--format", "plumed", "--out", str(out)],
                       capture_output=True, text=True, timeout=300, env=env())
    assert r.returncode == 0, r.stderr[-3000:]
    dcd = job / "iter-001" / "walkers" / "walker-01.dcd"
    with md.formats.DCDTrajectoryFile(str(dcd)) as f:  # the positions as PLUMED reads them: float32 Å x 0.1 in double
        positions = f.read()[0].astype(np.float64) * 0.1
    got = check_in_plumed(job, out, positions, ["--mf_dcd", str(dcd)])
    (out / "plumed-check.json").write_text(json.dumps(got))
    kT = 8.314462618e-3 * spec["system"]["temperature"]
    # bias_formula: PLUMED's kB (0.0083144621 kJ/mol/K) is 6e-8 below CODATA's, which the campaign uses
    assert got["frames"] == len(positions) and got["as_written_before_deposition"] < 1e-6 and got["bias_formula"] < 1e-6
    # a tiny campaign's primed bias is rough on the scale of its grid: 0.01 kT (a smooth one: 3e-3, test_plumed_state)
    assert got["cv"] < 1e-6 and got["bias"] < 0.01 * kT and got["force_rel"] < 1e-4 and got["force_rel_grid"] < 0.2


def test_the_molecule_is_the_same_in_every_process(system):
    """OpenMM's Modeller places hydrogens at random before minimising them; cvcycle seeds it, so a
    campaign's starting structures, and hence its runs, repeat in a new process."""
    code = ("import hashlib, numpy as np; from cvcycle.systems.alanine_dipeptide import AlanineDipeptide; "
            "s = AlanineDipeptide(300.0, {}); print(hashlib.sha256(s.structure(-83.0, 74.0).tobytes()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip() == __import__("hashlib").sha256(system.structure(-83.0, 74.0).tobytes()).hexdigest()


def test_region_free_energies_and_binned_means():
    from cvcycle.routes.evaluate import binned_mean, region_free_energies

    w = np.array([1.0, 1.0, 2.0, 0.5])
    regions = {"a": np.array([1, 1, 0, 0], bool), "b": np.array([0, 0, 1, 1], bool), "c": np.zeros(4, bool)}
    assert region_free_energies(regions, w) == {"a": 0.0, "b": pytest.approx(-np.log(2.5 / 2.0)), "c": None}
    assert region_free_energies({}, w) == {}
    z = np.array([[-172.0, 11.0], [-175.0, 15.0], [100.0, -100.0]])
    edges = np.linspace(-180.0, 180.0, 37)
    m = binned_mean(z, np.array([1.0, 3.0, 5.0]), edges, edges)
    assert m.shape == (36, 36) and m[19, 0] == 2.0 and m[8, 28] == 5.0 and np.isnan(m).sum() == 36 * 36 - 2


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_a_campaign_killed_inside_its_simulations_ends_bit_for_bit_as_an_uninterrupted_one(tmp_path):
    """project.py run SIGKILLed (the whole process group) just after simulation segment lines,
    three times, then run to the end: every data, model, metrics, plot and DCD file equals an
    uninterrupted run's (the OpenMM Contexts continue from their checkpoints)."""
    import os
    import signal

    from digests import campaign_digests
    from test_cli import env
    from test_kill_resume import start_run, wait_for_line

    _tiny_spec(tmp_path / "ad.toml", "alanine-dipeptide-autoencoder", initial_steps=300, steps=400, segment_steps=100)
    jobs = {}
    for name in ("reference", "killed"):
        (tmp_path / name).mkdir()
        r = subprocess.run([sys.executable, str(ROOT / "project.py"), "init", str(tmp_path / "ad.toml")],
                           cwd=tmp_path / name, env=env(), capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        jobs[name] = tmp_path / name / "workspace" / r.stdout.split()[0]
    log = tmp_path / "reference.log"
    assert start_run(tmp_path / "reference", log, {}).wait(timeout=600) == 0, log.read_text()[-3000:]
    reference = campaign_digests(jobs["reference"], suffixes=(".npz", ".pt", ".json", ".png", ".pdb"))

    log = tmp_path / "killed.log"
    log.touch()
    for segment_lines in (1, 2, 2):  # inside iteration 0, at its end, inside iteration 1
        proc = start_run(tmp_path / "killed", log, {})
        lines = 0
        for _ in range(segment_lines):  # kill after the n-th segment line of this run
            assert wait_for_line(proc, log, "walker-steps/s", lines)
            lines = len(log.read_text().splitlines())
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert start_run(tmp_path / "killed", log, {}).wait(timeout=600) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert text.count("resuming at segment") >= 2 and "Traceback" not in text
    assert campaign_digests(jobs["killed"], suffixes=(".npz", ".pt", ".json", ".png", ".pdb")) == reference
    # DCD headers carry the time of writing: the coordinates must be equal
    dcds = sorted(p.relative_to(jobs["reference"]) for p in jobs["reference"].glob("iter-*/walkers/*.dcd"))
    assert len(dcds) == 4
    for rel in dcds:
        a, b = (md.load(str(job / rel), top=str(job / rel.parent / "topology.pdb")).xyz for job in jobs.values())
        np.testing.assert_array_equal(a, b)


def test_negated_velocities_retrace_the_path(system):
    """velocities() are at the positions' time, so negating them runs the dynamics backwards (what
    path sampling's backward halves assume): with negligible friction, 10 steps there and 10 back
    return to the start within 1e-4 nm and the kinetic energy within 1 %. Negating the half-step
    velocities the integrator keeps missed by 3e-3 nm and changed the kinetic energy by 10-25 %."""
    spec = _spec(walkers=1, friction=1e-6)
    engine = make_engine(spec, system)
    engine.set_positions(system.start(["C7eq"], 1, 0.0, np.random.default_rng(0)))
    engine.draw_velocities(3)
    engine.run(200, 200, stream=(0,))
    x0, v0 = engine.positions(), engine.velocities()
    engine.run_on(10, 10, stream=(1,))
    engine.set_positions(engine.positions(), -engine.velocities())
    engine.run_on(10, 10, stream=(2,))
    kinetic = lambda v: float((np.asarray(system.masses).reshape(-1, 1) * v[0] ** 2).sum())  # noqa: E731
    assert np.abs(engine.positions() - x0).max() < 1e-4
    assert kinetic(engine.velocities()) == pytest.approx(kinetic(v0), rel=0.01)
    engine.set_positions(x0, v0)  # and velocities() reads back what set_positions was given
    np.testing.assert_allclose(engine.velocities(), v0, atol=0.5)
