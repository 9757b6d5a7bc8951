"""The HOOMD-blue engine on the lj-nucleation system: HOOMD's Lennard-Jones against the torch
potential, the bias of Steinhardt features as velocity kicks, the Langevin temperature, bit-for-bit
continuation from saved state, OpenMM and HOOMD-blue sampling the same liquid, and a tiny campaign
through project.py. Skipped where HOOMD-blue is not installed (it is on conda-forge, not PyPI)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

hoomd = pytest.importorskip("hoomd", reason="HOOMD-blue is not installed (conda install -c conda-forge 'hoomd>=4.8')")

from cvcycle.engines import make_engine  # noqa: E402
from cvcycle.engines.hoomd_engine import HOOMDEngine  # noqa: E402
from cvcycle.errors import SimulationError  # noqa: E402
from cvcycle.features import make_featurizer  # noqa: E402
from cvcycle.spec import load_spec  # noqa: E402
from cvcycle.systems import make_system  # noqa: E402
from test_lj_nucleation import SPEC, _OrderBias, run_tiny_campaign  # noqa: E402


@pytest.fixture(scope="module")
def spec() -> dict:
    s = load_spec(SPEC)
    s["engine"].update(name="hoomd", platform="CPU")
    return s


@pytest.fixture(scope="module")
def system(spec):
    return make_system(spec)


def _engine(spec, system, walkers: int = 2, seed: int = 3) -> HOOMDEngine:
    return HOOMDEngine(system, make_featurizer(spec), 0.005, 1.0, walkers, seed=seed, platform="CPU")


def test_hoomd_forces_are_the_torch_potential_and_bias(spec, system):
    engine = _engine(spec, system)
    x = system.start(["liquid", "crystal"], 2, 0.03, np.random.default_rng(1))
    engine.set_positions(x)
    np.testing.assert_allclose(engine.positions(), x, rtol=0, atol=1e-12)  # unwrapped as given
    xt = torch.as_tensor(x).requires_grad_(True)
    u = system.potential(xt)
    (grad,) = torch.autograd.grad(u.sum(), xt)
    np.testing.assert_allclose(engine._potentials(), u.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(engine.forces(None), -grad.numpy(), rtol=1e-8, atol=1e-8)
    bias = _OrderBias()
    (bias_grad,) = torch.autograd.grad(bias.energy(make_featurizer(spec)(xt))[0].sum(), xt)
    np.testing.assert_allclose(engine.forces(bias) - engine.forces(None), -bias_grad.numpy(), rtol=1e-9, atol=1e-10)


def test_the_bias_kicks_the_velocities_by_dt_f_over_m(spec, system):
    """The held bias forces change the velocities by dt F / m at the start of the next step (the
    impulse of multiple time stepping), in tag order whatever HOOMD-blue's particle order, once."""
    engine = _engine(spec, system, walkers=1)
    engine.set_positions(system.start(["crystal"], 1, 0.03, np.random.default_rng(2)))
    f = engine._evaluate(_OrderBias(), engine.positions(), forces=True)[3]
    engine._set_bias_force(100.0 * f)
    engine._apply_kick()
    np.testing.assert_allclose(engine.velocities(), engine.dt * 100.0 * f, rtol=1e-12, atol=1e-15)  # from rest
    engine._apply_kick()  # consumed: no second kick
    np.testing.assert_allclose(engine.velocities(), engine.dt * 100.0 * f, rtol=1e-12, atol=1e-15)
    assert engine.kick is None


def test_the_kinetic_temperature_is_the_spec_kT(spec, system):
    engine = _engine(spec, system)
    engine.set_positions(system.start(["liquid", "crystal"], 2, 0.0, np.random.default_rng(3)))
    engine.draw_velocities(5)
    engine.run(2000, 2000)  # 10 tau
    v = engine.velocities()
    kinetic_t = (v**2).sum(axis=(1, 2)) / (3 * system.n_particles)
    assert np.all(np.abs(kinetic_t / system.kT - 1) < 0.2), kinetic_t


@pytest.mark.parametrize("bias_stride", [1, 10])
def test_a_run_continued_from_saved_state_repeats_the_uninterrupted_one_to_rounding(spec, system, bias_stride):
    """From saved state at step 0 bit for bit; from step 60 to rounding (the restored walker's new
    neighbour list sums forces in another order): without the saved accelerations, which carry the
    last Langevin step's drag and noise, positions differed by 0.05 sigma after 60 steps."""
    start = system.start(["liquid"], 2, 0.0, np.random.default_rng(0))
    whole = _engine(spec, system)
    whole.set_positions(start)
    whole.draw_velocities(1)
    state = whole.state_dict()
    a = whole.run(60, 10, _OrderBias(), bias_stride=bias_stride)
    b = whole.run(60, 10, _OrderBias(), bias_stride=bias_stride)
    split = _engine(spec, system)
    split.load_state_dict(state)
    first = split.run(60, 10, _OrderBias(), bias_stride=bias_stride)
    resumed = _engine(spec, system)
    resumed.load_state_dict({k: np.array(v, copy=True) for k, v in split.state_dict().items()})
    second = resumed.run(60, 10, _OrderBias(), bias_stride=bias_stride)
    for key, value in a.as_dict().items():
        np.testing.assert_array_equal(value, getattr(first, key), err_msg=key)
    np.testing.assert_allclose(second.positions, b.positions, rtol=0, atol=1e-12)
    np.testing.assert_allclose(second.bias, b.bias, rtol=1e-9, atol=1e-12)
    assert np.abs(b.positions[-1] - a.positions[0]).max() > 0.01  # it moved


class _Shove(_OrderBias):
    """V = 1e7 x_0 of walker 1's first particle: one kick throws it ~250 sigma, far beyond the box."""

    def energy(self, features: torch.Tensor, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        v, cv = super().energy(features)
        return v + 1e7 * positions[:, 0, 0] * torch.tensor([0.0, 1.0], dtype=torch.float64), cv


def test_a_particle_thrown_out_of_the_box_is_a_simulation_error_naming_the_walker(spec, system):
    """HOOMD-blue refuses a particle that moved more than a box in one step with a RuntimeError; the
    engine names the walker and the steps, as for non-finite positions."""
    engine = _engine(spec, system)
    engine.set_positions(system.start(["liquid"], 2, 0.0, np.random.default_rng(4)))
    with pytest.raises(SimulationError, match=r"by step 1, walker 1 \(after step 0\): HOOMD-blue stopped: "
                                              r"Particle with unique tag 0 is no longer in the simulation box"):
        engine.run(10, 10, _Shove())


@pytest.mark.long
def test_openmm_and_hoomd_sample_the_same_liquid(spec, system):
    """Mean potential energy per particle of the equilibrated liquid, 8 walkers x 40 tau each on
    both engines: equal within 4 standard errors (walker-to-walker)."""
    pytest.importorskip("openmm")
    means = {}
    for name in ("openmm", "hoomd"):
        s = copy.deepcopy(spec)
        s["engine"].update(name=name, platform="CPU")
        engine = make_engine(s, system, walkers=8)
        engine.set_positions(system.start(["liquid"], 8, 0.0, np.random.default_rng(7)))
        engine.draw_velocities(8)
        engine.run(2000, 2000)
        frames = engine.run(8000, 100)
        u = frames.potential.mean(axis=0) / system.n_particles  # per walker
        means[name] = (u.mean(), u.std(ddof=1) / np.sqrt(len(u)))
    (a, sa), (b, sb) = means.values()
    assert abs(a - b) < 4 * np.hypot(sa, sb), means


def test_a_tiny_campaign_runs_on_hoomd_through_project_py(tmp_path, spec):
    job = run_tiny_campaign(tmp_path, spec)
    assert (job / "iter-001" / "walkers" / "walker-01.gsd").is_file()
