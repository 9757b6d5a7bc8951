"""The lj-nucleation system on the OpenMM engine: spec rules, starting states and their state
coordinates, the engine in reduced units against the torch potential (energies, forces, the bias
of Steinhardt features) and a tiny campaign end to end through project.py, with DCD files that
mdtraj reads with their periodic box."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

openmm = pytest.importorskip("openmm", reason="OpenMM is not installed (pip install -e \".[openmm]\")")

from cvcycle.engines.openmm_engine import OpenMMEngine  # noqa: E402
from cvcycle.errors import SpecError  # noqa: E402
from cvcycle.features import make_featurizer  # noqa: E402
from cvcycle.spec import NucleationSystemSpec, load_spec, typed, validate  # noqa: E402
from cvcycle.systems import lj_bulk as lb  # noqa: E402
from cvcycle.systems import make_system, n_particles  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "workflows" / "lj-nucleation-autoencoder.toml"


def _raw() -> dict:
    import tomllib

    return tomllib.loads(SPEC.read_text())


def _with(raw: dict, **changes) -> dict:
    """raw with dotted keys set, e.g. _with(raw, **{"system.cells": 3}), or whole sections replaced."""
    out = copy.deepcopy(raw)
    for key, value in changes.items():
        if "." not in key:
            out[key] = value
            continue
        section, field = key.split(".")
        out.setdefault(section, {})[field] = value
    return out


@pytest.fixture(scope="module")
def spec() -> dict:
    return load_spec(SPEC)


@pytest.fixture(scope="module")
def system(spec):
    return make_system(spec)


def test_the_workflow_validates_with_its_own_system_fields(spec):
    assert spec["system"]["cells"] == 4 and n_particles(spec) == 256
    assert type(typed(spec).system) is NucleationSystemSpec
    other = load_spec(ROOT / "workflows" / "lj7-autoencoder.toml")
    assert "cells" not in other["system"] and "density" not in other["system"]  # only this system's state points hold them


@pytest.mark.parametrize("changes, needle", [
    ({"features": {"kind": "coordinates"}}, "features.kind: 'lj-nucleation' takes kind = \"steinhardt\""),
    ({"system.cells": 3}, "system.r_cut: 2.5 sigma exceeds half the box edge (2.422 sigma with system.cells = 3"),
    ({"features.r_cut": 3.5}, "features.r_cut: 3.5 sigma exceeds half the box edge"),
    ({"features.r_on": 1.6}, "features.r_on: the switch starts at or below features.r_cut (1.5), got 1.6"),
    ({"engine.name": "langevin"}, "engine.name: 'lj-nucleation' runs on the 'openmm' or the 'hoomd' engine, got 'langevin'"),
    ({"engine.platform": "Reference", "engine.name": "hoomd"}, "engine.platform: the 'hoomd' engine takes auto or CPU or CUDA, "
                                                              "got 'Reference'"),
    ({"learner.kind": "committor", "learner.method": "shooting", "learner.reweight_power": 1.0},
     "learner.method: path sampling ('shooting') runs on 2-D model potentials and molecules so far"),
    ({"system.density": 2.0}, "system.density: must be <= 1.5, got 2.0"),
])
def test_spec_rules_name_the_field(changes, needle):
    with pytest.raises(SpecError) as info:
        validate(_with(_raw(), **changes))
    assert needle in str(info.value)


def test_steinhardt_features_need_a_bulk_system():
    raw = _with(validate_raw("mueller-brown-autoencoder"), features={"kind": "steinhardt"})
    with pytest.raises(SpecError, match="features.kind: 'steinhardt' describes bulk particles in a periodic box, "
                                        "not 'mueller-brown'"):
        validate(raw)


def validate_raw(workflow: str) -> dict:
    import tomllib

    return tomllib.loads((ROOT / "workflows" / f"{workflow}.toml").read_text())


def test_starts_are_a_liquid_and_the_crystal_in_their_states(system):
    rng = np.random.default_rng(0)
    x = system.start(["liquid", "crystal"], 4, 0.02, rng)
    assert x.shape == (4, 256, 3)
    z = system.state_coordinates(x)
    assert z[1].tolist() == z[3].tolist() == [256.0, 256.0]  # the (slightly shaken) FCC crystal
    assert z[0].max() <= 3 and z[2].max() <= 3  # random sequential addition: no crystalline order
    assert system.classify(x).tolist() == [0, 1, 0, 1]
    r = lb.solid_order_per_frame(x, system.box)
    np.testing.assert_array_equal(r, z)  # the state coordinates are the freud-checked cluster analysis
    shifted = system.start(["liquid"], 1, 0.0, np.random.default_rng(0))
    delta = shifted[:, None] - shifted[:, :, None]
    delta -= system.box * np.round(delta / system.box)
    d = np.linalg.norm(delta, axis=-1)[0][np.triu_indices(256, 1)]
    assert d.min() >= 0.85  # particles at least 0.85 sigma apart
    nowhere = make_system(_spec_with_states({"liquid": ([0.0, 0.0], 5.0), "a": ([300.0, 0.0], 10.0)}))
    with pytest.raises(ValueError, match="state 'a' is none of them"):
        nowhere.start(["a"], 1, 0.0, rng)


def test_a_state_between_starts_from_a_seeded_liquid():
    """A state centred at n_largest = 40 starts from an FCC seed in a random liquid whose largest
    solid-like cluster (freud) has at least 40 particles, no two particles closer than 0.85 sigma."""
    seeded = make_system(_spec_with_states({"liquid": ([0.0, 0.0], 5.0), "crystal": ([256.0, 256.0], 100.0),
                                            "nucleus": ([40.0, 40.0], 15.0)}))
    x = seeded.start(["nucleus"], 2, 0.0, np.random.default_rng(1))
    z = seeded.state_coordinates(x)
    assert np.all(z[:, 0] >= 40) and np.all(z[:, 0] < 120), z
    for frame in x:
        delta = frame[:, None] - frame[None]
        delta -= seeded.box * np.round(delta / seeded.box)
        assert np.linalg.norm(delta, axis=-1)[np.triu_indices(256, 1)].min() >= 0.85 - 1e-12
    sites = {tuple(np.round(p, 9)) for p in seeded.lattice % seeded.box}
    kept = sum(tuple(np.round(p, 9)) in sites for p in x[0] % seeded.box)
    assert 40 <= kept < 256  # the seed is made of lattice sites, the rest is liquid


def _spec_with_states(states: dict) -> dict:
    raw = _raw()
    raw["system"]["states"] = {name: {"center": c, "radius": r} for name, (c, r) in states.items()}
    return validate(raw)


class _OrderBias:
    """V = 50 (mean q6 - 0.3)^2 (mean q6 is the third feature from the end): no deposition."""

    def energy(self, features: torch.Tensor, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        cv = features[:, -3:-2]
        return 50.0 * (cv[:, 0] - 0.3) ** 2, cv

    def observe(self, step: int, cv: torch.Tensor) -> bool:
        return False

    def offset(self) -> float:
        return 0.0


def test_the_engine_runs_reduced_units_in_openmm(spec, system):
    """OpenMM runs argon's units; the engine's energies, forces and velocities are the reduced ones
    of the torch potential, and the kinetic temperature is the spec's kT."""
    engine = OpenMMEngine(system, make_featurizer(spec), 0.005, 1.0, 2, seed=3, platform="Reference")
    x = system.start(["liquid", "crystal"], 2, 0.03, np.random.default_rng(1))
    engine.set_positions(x)
    np.testing.assert_allclose(engine.positions(), x, rtol=1e-14, atol=1e-12)
    xt = torch.as_tensor(x).requires_grad_(True)
    u = system.potential(xt)
    (grad,) = torch.autograd.grad(u.sum(), xt)
    np.testing.assert_allclose(engine.forces(None), -grad.numpy(), rtol=1e-9, atol=1e-8)
    bias = _OrderBias()
    feats = make_featurizer(spec)(xt)
    (bias_grad,) = torch.autograd.grad(bias.energy(feats)[0].sum(), xt)
    f_bias = engine.forces(bias) - engine.forces(None)
    np.testing.assert_allclose(f_bias, -bias_grad.numpy(), rtol=1e-9, atol=1e-10)
    assert np.abs(f_bias).max() > 0.05
    engine.draw_velocities(4)
    frames = engine.run(400, 100, bias, bias_stride=10)
    np.testing.assert_allclose(frames.potential[0], u.detach().numpy(), rtol=1e-10)
    last = torch.as_tensor(frames.positions[-1])
    np.testing.assert_allclose(frames.potential[-1], system.potential(last).numpy(), rtol=1e-10)
    np.testing.assert_allclose(frames.bias[-1], bias.energy(make_featurizer(spec)(last))[0].numpy(), rtol=1e-10)
    engine.run(1600, 1600)  # 10 tau: the random liquid has given its excess energy to the thermostat
    v = engine.velocities()
    kinetic_t = (v**2).sum(axis=(1, 2)) / (3 * system.n_particles)
    assert np.all(np.abs(kinetic_t / system.kT - 1) < 0.2), kinetic_t  # 768 degrees of freedom: 5 % per walker


def run_tiny_campaign(tmp_path: Path, spec: dict) -> Path:
    """Two iterations of 2 walkers x 400 steps of the spec through `project.py init` and `run`, as a
    user runs them; the job folder."""
    from test_cli import env, to_toml

    small = copy.deepcopy(spec)
    small["engine"].update(walkers=2, initial_steps=400, steps=400, segment_steps=200, report_stride=20)
    small["learner"].update(epochs=5, ensemble=1)
    small["budget"]["max_iterations"] = 2
    small["convergence"]["min_iterations"] = 2
    (tmp_path / "nuc.toml").write_text(to_toml(small))
    run = lambda *args: subprocess.run([sys.executable, str(ROOT / "project.py"), *args], cwd=tmp_path, env=env(),  # noqa: E731
                                       capture_output=True, text=True, timeout=600)
    assert run("init", "nuc.toml").returncode == 0
    r = run("run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"summary: {spec['campaign']['name']} seed 0: budget at iteration 1, 1,600 walker steps" in r.stdout
    return next((tmp_path / "workspace").iterdir())


def test_a_tiny_campaign_runs_end_to_end_through_project_py(tmp_path, spec):
    import mdtraj as md

    job = run_tiny_campaign(tmp_path, spec)
    walkers = job / "iter-001" / "walkers"
    stored = np.load(job / "iter-001" / "trajectory.npz")["positions"]  # (frames, walkers, 256, 3), sigma
    dcd = md.load(str(walkers / "walker-01.dcd"), top=str(walkers / "topology.pdb"))
    sigma = lb.ARGON.sigma_nm
    np.testing.assert_allclose(dcd.xyz, stored[:, 1] * sigma, atol=2e-4)  # DCD stores float32 angstrom
    np.testing.assert_allclose(dcd.unitcell_lengths, np.tile(make_system(spec).box * sigma, (len(dcd), 1)), rtol=1e-6)
    assert (job / "iter-001" / "fes_states.png").stat().st_size > 10_000
    assert sorted(p.name for p in walkers.iterdir()) == ["nucleus.png", "topology.pdb", "walker-00.dcd", "walker-00.gsd",
                                                         "walker-01.dcd", "walker-01.gsd"]
    import gsd.hoomd

    with gsd.hoomd.open(str(walkers / "walker-01.gsd"), "r") as traj:
        box = make_system(spec).box
        assert len(traj) == len(stored)
        np.testing.assert_allclose(traj[0].configuration.box, [*box, 0, 0, 0], rtol=1e-7)  # float32
        unwrapped = np.stack([f.particles.position + f.particles.image * box for f in traj])
        np.testing.assert_allclose(unwrapped, stored[:, 1], atol=1e-5)  # float32 positions
        assert np.all(np.abs(traj[-1].particles.position) <= box / 2)
    assert (walkers / "nucleus.png").stat().st_size > 10_000  # a snapshot of the frame with the nucleus nearest N/5
    samples = np.load(job / "iter-001" / "samples.npz")
    assert samples["features"].shape[-1] == 33


def test_the_committor_workflow_learns_q_from_the_liquid_to_the_crystal(tmp_path):
    """workflows/lj-nucleation-committor.toml through project.py: iteration 0 runs a walker in the
    liquid and one in the crystal, biased along the solid-like count (bias.explore), the variational
    committor (through the steinhardt features' Jacobian) ranks every liquid frame below every crystal
    frame, and iteration 1 biases logit q."""
    import torch

    spec = load_spec(ROOT / "workflows" / "lj-nucleation-committor.toml")
    spec["learner"].update(max_samples=100)
    job = run_tiny_campaign(tmp_path, spec)
    samples = np.load(job / "iter-000" / "samples.npz")
    labels = samples["state"].reshape(-1)  # 0 liquid, 1 crystal
    assert set(labels.tolist()) == {0, 1}
    # iteration 0 is biased along the feature n_solid (the last steinhardt feature) from its first deposition
    assert spec["bias"]["explore"] == "n_solid"
    np.testing.assert_allclose(samples["cv"][..., 0], samples["features"][..., -1], rtol=1e-6, atol=1e-4)
    assert np.all(samples["bias"][1:] != samples["bias"][0])
    np.testing.assert_allclose(samples["log_weight"], samples["bias"] / spec["system"]["temperature"], rtol=1e-12)
    committor = torch.jit.load(str(job / "iter-001" / "committor.pt"))
    with torch.no_grad():
        q = committor(torch.as_tensor(samples["features"].reshape(len(labels), -1), dtype=torch.float32)).numpy().reshape(-1)
    # after 5 epochs: q orders every liquid frame below every crystal frame, on either side of 1/2 on average
    assert q[labels == 0].max() < q[labels == 1].min(), (q[labels == 0].max(), q[labels == 1].min())
    assert q[labels == 0].mean() < 0.5 < q[labels == 1].mean()
    later = np.load(job / "iter-001" / "samples.npz")
    assert np.all(later["bias"][1:] != 0)  # OPES on logit q acts from the first deposition
    # the analysis reports the share of the iteration's frames where its new committor is neither 0 nor 1
    with torch.no_grad():
        q1 = torch.jit.load(str(job / "iter-001" / "committor.pt"))(
            torch.as_tensor(later["features"].reshape(-1, later["features"].shape[-1]), dtype=torch.float32)).numpy()
    metrics = json.loads((job / "iter-001" / "metrics.json").read_text())
    assert metrics["transition_frames"] == pytest.approx(np.mean((q1 > 0.05) & (q1 < 0.95)), abs=1e-12)
