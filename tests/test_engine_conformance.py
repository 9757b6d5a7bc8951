"""Engine conformance: what every engine must do, whatever it is built on.

Parametrised over the engine names a spec may ask for; an engine that is not part of this
version of cvcycle, or whose package is not installed, is skipped with the reason. The test
system is three particles in three dimensions with different masses in a harmonic well, so
Boltzmann and Maxwell statistics are known exactly; the bias is a nonlinear function of
non-Cartesian features, so its forces go through the featurizer's Jacobian. "openmm-reduced" is
the OpenMM engine on the same wells in reduced units, which OpenMM runs in other units
(`openmm_units`, as for Lennard-Jones particles in argon's): every statistic must come out the same.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from cvcycle.engines import make_engine
from cvcycle.errors import EngineUnavailable, SimulationError
from cvcycle.systems.base import System
from cvcycle.systems.lj_bulk import LJUnits

MASSES = np.array([1.0, 2.0, 4.0])
STIFFNESS = 2.0  # U = k/2 sum |r_i|^2; <x^2> = kT/k per coordinate
KT = 0.5


class HarmonicParticles(System):
    """Three particles in 3-D, each in its own isotropic harmonic well at the origin."""

    name, kT, n_particles, dim = "harmonic", KT, 3, 3
    states = {"A": {"center": [-1.0, 0.0], "radius": 0.3}, "B": {"center": [1.0, 0.0], "radius": 0.3}}

    @property
    def masses(self) -> np.ndarray:
        return MASSES

    def potential(self, positions: torch.Tensor) -> torch.Tensor:
        return 0.5 * STIFFNESS * (positions**2).sum(dim=(-1, -2))

    def state_coordinates(self, positions: np.ndarray) -> np.ndarray:
        return np.asarray(positions)[:, 0, :2]

    def start(self, where, n_walkers, spread, rng):
        return spread * rng.standard_normal((n_walkers, 3, 3))

    def openmm_system(self):
        """The same wells for the OpenMM engine (nm, amu, kJ/mol: kT = 0.5 kJ/mol is 60 K)."""
        return openmm_wells(STIFFNESS, MASSES)

    def hoomd_forces(self, hoomd, types):
        """The same wells for the HOOMD-blue engine: a Custom force in numpy (HOOMD-blue has no
        harmonic external field)."""

        class Wells(hoomd.md.force.Custom):
            def set_forces(self, timestep):
                with self._state.cpu_local_snapshot as snap:
                    x = np.array(snap.particles.position, copy=True)
                with self.cpu_local_force_arrays as arrays:
                    arrays.force[:] = -STIFFNESS * x
                    arrays.potential_energy[:] = 0.5 * STIFFNESS * (x**2).sum(axis=1)

        return [Wells()]


class ReducedHarmonicParticles(HarmonicParticles):
    """The same wells in reduced units; OpenMM runs them with a unit of length 0.3 nm, energy
    2 kJ/mol and mass 10 amu (so kT = 0.5 is 120 K)."""

    openmm_units = LJUnits(epsilon_kj=2.0, sigma_nm=0.3, mass_amu=10.0)

    def openmm_system(self):
        u = self.openmm_units
        return openmm_wells(STIFFNESS * u.epsilon_kj / u.sigma_nm**2, MASSES * u.mass_amu)


def openmm_wells(stiffness: float, masses: np.ndarray):
    """An openmm.System of particles of the masses, each in a harmonic well k/2 |r|^2 at the origin."""
    import openmm

    system = openmm.System()
    well = openmm.CustomExternalForce(f"{0.5 * stiffness}*(x^2 + y^2 + z^2)")
    for i, m in enumerate(masses):
        system.addParticle(float(m))
        well.addParticle(i, [])
    system.addForce(well)
    return system


class PairBias:
    """V = h tanh(|r_0 - r_1|^2 - |r_1 - r_2|)^2 on distance features, with no deposition."""

    def __init__(self, height: float = 0.7) -> None:
        self.height = height

    def energy(self, features: torch.Tensor, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        cv = (features[:, 0] ** 2 - features[:, 1])[:, None]
        return self.height * torch.tanh(cv[:, 0]) ** 2, cv

    def observe(self, step: int, cv: torch.Tensor) -> bool:
        return False

    def offset(self) -> float:
        return 0.0


class PairDistances(torch.nn.Module):
    """|r_0 - r_1| and |r_1 - r_2|: features that are not the coordinates."""

    names = ["d01", "d12"]

    def forward(self, positions: torch.Tensor, box: torch.Tensor | None = None) -> torch.Tensor:
        return torch.stack([(positions[..., 0, :] - positions[..., 1, :]).norm(dim=-1),
                            (positions[..., 1, :] - positions[..., 2, :]).norm(dim=-1)], dim=-1)


ENGINES = ["langevin", "openmm", "openmm-reduced", "hoomd"]
INTEGRATORS = {"langevin": ["overdamped", "underdamped"], "openmm": ["underdamped"], "openmm-reduced": ["underdamped"],
               "hoomd": ["underdamped"]}
CASES = [(e, i) for e in ENGINES for i in INTEGRATORS[e]]
# OpenMM cases that create 4,000 Contexts (one per walker) or call Python at every step of 400
# walkers take 1.5 min each, and HOOMD-blue calls the wells' Python force at every step of every
# walker: opt-in (pytest -m long); the rest of the suite runs by default
SLOW_OPENMM = [pytest.param(e, i, marks=pytest.mark.long) if e.startswith("openmm") or e == "hoomd" else (e, i)
               for e, i in CASES]
STATISTICS = [pytest.param(e, i, marks=pytest.mark.long) if e == "hoomd" else (e, i) for e, i in CASES]


def engine_for(name: str, integrator: str, walkers: int, seed: int = 7, dt: float = 0.01, featurizer=None):
    reduced = name == "openmm-reduced"
    name = "openmm" if reduced else name
    spec = {"campaign": {"name": "conformance", "seed": seed}, "resources": {"cpus": 1},
            "features": {"kind": "coordinates", "names": ["x0", "y1", "z2"]},
            "engine": {"name": name, "integrator": integrator, "dt": dt, "friction": 2.0, "mass": 1.0,
                       "walkers": walkers, "platform": "Reference" if name == "openmm" else "auto"}}
    try:
        engine = make_engine(spec, ReducedHarmonicParticles() if reduced else HarmonicParticles())
    except EngineUnavailable as exc:
        pytest.skip(f"engine '{name}': {exc}")
    if featurizer is not None:
        engine.featurizer = featurizer
    return engine


def start(walkers: int, seed: int = 0) -> np.ndarray:
    return 0.5 * np.random.default_rng(seed).standard_normal((walkers, 3, 3))


@pytest.mark.parametrize("name,integrator", STATISTICS)
def test_unbiased_run_samples_boltzmann_and_maxwell(name, integrator):
    n = 400
    eng = engine_for(name, integrator, n, dt=0.01)
    eng.set_positions(start(n))
    eng.run(1000, 1000)  # burn-in: 10 time units, several relaxation times at friction 2
    frames = eng.run(3000, 30)
    x = frames.positions  # (frames, walkers, N, d)
    per_walker = (x**2).mean(axis=0)  # time average per walker, (walkers, N, d)
    mean, se = per_walker.mean(axis=0), per_walker.std(axis=0, ddof=1) / np.sqrt(n)
    expected = KT / STIFFNESS
    # overdamped Leimkuhler-Matthews is exact for a harmonic well up to O(dt^2) = 1e-4
    assert np.all(np.abs(mean - expected) < 5 * se + 0.01 * expected), (mean, se)
    if integrator == "underdamped":
        v = eng.state_dict()["velocities"]  # (walkers, N, d): one draw per walker
        v2 = (v**2).mean(axis=(0, 2))
        np.testing.assert_allclose(v2, KT / MASSES, rtol=0.12)  # 1200 samples per particle: 4 % std


def assert_bias_forces(eng, pos: np.ndarray, bias, rtol: float) -> np.ndarray:
    """The engine's bias forces at `pos` are minus the autograd gradient of the bias energy of the
    features of `pos` (which the bias may also differentiate through the positions); returned."""
    eng.set_positions(pos)
    f_bias = eng.forces(bias) - eng.forces(None)
    x = torch.as_tensor(pos).requires_grad_(True)
    energy, _ = bias.energy(PairDistances()(x), x)
    (grad,) = torch.autograd.grad(energy.sum(), x)
    np.testing.assert_allclose(f_bias, -grad.numpy(), rtol=rtol, atol=rtol * 1e-3)
    assert np.abs(f_bias).max() > 0.05  # the check is not trivially satisfied by zero forces
    return f_bias


@pytest.mark.parametrize("name,integrator", CASES)
def test_bias_force_is_minus_gradient_of_bias_of_cv_of_features(name, integrator):
    n = 16
    eng = engine_for(name, integrator, n, featurizer=PairDistances())
    pos = start(n, seed=3)
    bias = PairBias()
    f_bias = assert_bias_forces(eng, pos, bias, 1e-9)
    # and against central finite differences of the bias energy, coordinate by coordinate
    h = 1e-6
    for w, i, a in ((0, 0, 0), (5, 1, 2), (11, 2, 1)):
        shifted = []
        for sign in (1.0, -1.0):
            p = pos.copy()
            p[w, i, a] += sign * h
            with torch.no_grad():
                shifted.append(float(bias.energy(PairDistances()(torch.as_tensor(p)))[0][w]))
        assert f_bias[w, i, a] == pytest.approx(-(shifted[0] - shifted[1]) / (2 * h), rel=1e-6, abs=1e-8)
    # the potential's own force: -k x
    np.testing.assert_allclose(eng.forces(None), -STIFFNESS * pos, rtol=1e-12)


class GradientBias(PairBias):
    """h |grad_x cv|^2 with respect to the positions (as the Kolmogorov bias): needs the positions
    the features were computed from, in the autograd graph."""

    def energy(self, features: torch.Tensor, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        cv = (features[:, 0] ** 2 - features[:, 1])[:, None]
        (g,) = torch.autograd.grad(cv.sum(), positions, create_graph=True)
        return self.height * (g**2).flatten(1).sum(1), cv


@pytest.mark.parametrize("name,integrator", CASES)
def test_engine_hands_the_bias_the_positions_its_features_came_from(name, integrator):
    assert_bias_forces(engine_for(name, integrator, 8, featurizer=PairDistances()), start(8, seed=5), GradientBias(), 1e-8)


@pytest.mark.parametrize("name,integrator", CASES)
def test_a_bias_of_the_positions_is_reported_between_its_evaluation_steps(name, integrator):
    """Frames reported at steps where the bias exerts no force (report_stride not a multiple of
    bias_stride) still record the bias of a hook that differentiates through the positions (the
    Kolmogorov bias), at the positions of the frame."""
    eng = engine_for(name, integrator, 4, featurizer=PairDistances())
    eng.set_positions(start(4, seed=6))
    frames = eng.run(6, 3, GradientBias(), bias_stride=2)
    assert frames.step.tolist() == [0, 3]  # step 3: reported, no bias force
    for pos, bias in zip(frames.positions, frames.bias):
        x = torch.as_tensor(pos).requires_grad_(True)
        expected = GradientBias().energy(PairDistances()(x), x)[0].detach().numpy()
        np.testing.assert_allclose(bias, expected, rtol=1e-10)
        assert np.abs(expected).max() > 1e-3


class LinearBias:
    """V = c x_0 on the first feature (x of particle 0), recording the steps it is observed at."""

    def __init__(self, slope: float) -> None:
        self.slope, self.observed = slope, []

    def energy(self, features: torch.Tensor, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.slope * features[:, 0], features[:, :1]

    def observe(self, step: int, cv: torch.Tensor) -> bool:
        self.observed.append(step)
        return False

    def offset(self) -> float:
        return 0.0


@pytest.mark.parametrize("name,integrator,bias_stride", [
    pytest.param(e, i, k, marks=pytest.mark.long) if (e.startswith("openmm") and k == 1) or e == "hoomd" else (e, i, k)
    for e, i in CASES for k in (1, 4)])
def test_biased_run_samples_the_biased_boltzmann_distribution(name, integrator, bias_stride):
    """A bias c x_0 shifts particle 0's x by -c/k and leaves its variance kT/k, whether the bias
    acts every step or as an impulse every `bias_stride` steps; it is observed at exactly the
    global steps that are multiples of bias_stride."""
    n, slope = 400, 0.6
    eng = engine_for(name, integrator, n, dt=0.01)
    eng.set_positions(start(n))
    bias = LinearBias(slope)
    eng.run(1001, 1001, bias, bias_stride=bias_stride)  # burn-in, ending off the stride
    bias.observed.clear()
    frames = eng.run(3000, 30, bias, bias_stride=bias_stride)
    assert bias.observed == [s for s in range(1001, 4001) if s % bias_stride == 0]
    x0 = frames.positions[:, :, 0, 0]  # (frames, walkers)
    per_walker = x0.mean(axis=0)
    mean, se = per_walker.mean(), per_walker.std(ddof=1) / np.sqrt(n)
    assert abs(mean + slope / STIFFNESS) < 5 * se + 0.01, (mean, se)
    var = ((x0 - x0.mean()) ** 2).mean()
    assert var == pytest.approx(KT / STIFFNESS, rel=0.05)
    # every reported frame carries the bias energy at its own configuration
    np.testing.assert_allclose(frames.bias, slope * x0, rtol=1e-12)
    # the other particles feel no bias
    assert abs(frames.positions[:, :, 1:, 0].mean()) < 0.02


@pytest.mark.parametrize("name,integrator", CASES)
def test_frames_have_the_contract_shapes_and_the_step_counter_continues(name, integrator):
    n = 5
    eng = engine_for(name, integrator, n, featurizer=PairDistances())
    eng.set_positions(start(n))
    eng.step = 1000
    frames = eng.run(40, 10, PairBias())
    assert frames.positions.shape == (4, n, 3, 3)
    assert frames.features.shape == (4, n, 2)
    assert frames.cv.shape == (4, n, 1)
    for key in ("potential", "bias", "log_weight"):
        assert getattr(frames, key).shape == (4, n), key
    np.testing.assert_array_equal(frames.step, [1000, 1010, 1020, 1030])
    assert eng.step == 1040
    np.testing.assert_allclose(frames.log_weight, frames.bias / KT, rtol=1e-12)  # offset 0
    later = eng.run(20, 10)
    np.testing.assert_array_equal(later.step, [1040, 1050])
    assert int(eng.state_dict()["step"]) == 1060


@pytest.mark.parametrize("bias_stride", [None, 3])
@pytest.mark.parametrize("name,integrator", CASES)
def test_save_restore_continues_the_same_trajectory(name, integrator, bias_stride):
    """Unbiased, and with a bias acting every 3rd global step across runs of 50 steps."""
    n = 8

    def run(eng, steps):
        if bias_stride is None:
            return eng.run(steps, 10)
        return eng.run(steps, 10, LinearBias(0.6), bias_stride=bias_stride)

    ref = engine_for(name, integrator, n)
    ref.set_positions(start(n))
    run(ref, 50)
    expected = run(ref, 50)
    first = engine_for(name, integrator, n)
    first.set_positions(start(n))
    run(first, 50)
    state = {k: np.array(v, copy=True) for k, v in first.state_dict().items()}
    for v in state.values():
        assert isinstance(v, np.ndarray) and v.dtype != object  # plain arrays, no pickles
    resumed = engine_for(name, integrator, n)
    resumed.load_state_dict(state)
    np.testing.assert_array_equal(resumed.state_dict()["positions"], state["positions"])  # the saved state itself
    got = run(resumed, 50)
    for key, val in expected.as_dict().items():
        if type(resumed).deterministic_restart:
            np.testing.assert_array_equal(val, got.as_dict()[key], err_msg=key)
        else:  # the same trajectory up to rounding (e.g. forces summed in another order)
            np.testing.assert_allclose(val, got.as_dict()[key], rtol=1e-9, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("name,integrator", CASES)
def test_keep_walkers_continues_the_kept_walkers(name, integrator):
    """Dropping walkers (shooting drops the committed trajectories) keeps the others' state."""
    eng = engine_for(name, integrator, 5)
    eng.set_positions(start(5))
    eng.run(20, 10)
    before = eng.state_dict()
    try:
        eng.keep_walkers(np.array([3, 0]))
    except NotImplementedError:
        pytest.skip(f"engine '{name}' cannot drop walkers (shooting then runs them all)")
    after = eng.state_dict()
    np.testing.assert_array_equal(after["positions"], before["positions"][[3, 0]])
    np.testing.assert_array_equal(after["velocities"], before["velocities"][[3, 0]])
    assert eng.n_walkers == 2 and eng.run(10, 5).positions.shape == (2, 2, 3, 3)


@pytest.mark.parametrize("name,integrator", SLOW_OPENMM)
def test_drawn_velocities_start_every_trajectory_as_a_regular_one(name, integrator):
    """After draw_velocities (what a shot starts with), velocities are Maxwell-Boltzmann at the
    system's kT and the first step from a configuration is as wide as the second, for the
    underdamped and the overdamped scheme alike (without it, a BAOAB shot starts at rest and an
    overdamped one's first step has half the noise). The draw is a pure function of its seed."""
    n = 4000
    eng = engine_for(name, integrator, n, dt=0.01)
    eng.set_positions(np.zeros((n, 3, 3)))
    eng.draw_velocities(11)
    v0 = eng.state_dict()["velocities"].copy()
    if integrator == "underdamped":
        np.testing.assert_allclose((v0**2).mean(axis=(0, 2)), KT / MASSES, rtol=0.06)  # 12,000 samples each: 1.3 %
    frames = eng.run(2, 1)
    x0, x1, x2 = frames.positions[0], frames.positions[1], eng.state_dict()["positions"]
    first, second = ((x1 - x0) ** 2).mean(axis=(0, 2)), ((x2 - x1) ** 2).mean(axis=(0, 2))
    np.testing.assert_allclose(first / second, 1.0, atol=0.1)  # 12,000 samples per ratio: 2 % std
    again = engine_for(name, integrator, n, dt=0.01)
    again.set_positions(np.zeros((n, 3, 3)))
    again.draw_velocities(11)
    np.testing.assert_array_equal(again.state_dict()["velocities"], v0)
    again.draw_velocities(12)
    again.run(1, 1)
    assert not np.array_equal(again.state_dict()["positions"], x1)


@pytest.mark.parametrize("name,integrator", CASES)
def test_random_stream_is_a_pure_function_of_the_seed(name, integrator):
    n = 6

    def final(seed: int, stream=None) -> np.ndarray:
        eng = engine_for(name, integrator, n, seed=seed)
        eng.set_positions(start(n))
        eng.run(30, 10, stream=stream)
        return eng.state_dict()["positions"]

    np.testing.assert_array_equal(final(1), final(1))
    assert not np.array_equal(final(1), final(2))
    np.testing.assert_array_equal(final(1, (4, 2)), final(1, (4, 2)))
    assert not np.array_equal(final(1, (4, 2)), final(1, (4, 3)))


@pytest.mark.parametrize("name,integrator", CASES)
def test_nan_and_divergence_name_the_walker_and_step(name, integrator):
    n = 6
    eng = engine_for(name, integrator, n)
    pos = start(n)
    pos[4, 1, 2] = np.nan
    with pytest.raises(SimulationError, match=r"walker 4\b"):
        eng.set_positions(pos)
    # a time step far beyond the harmonic stability limit: every walker grows geometrically,
    # walker 3 from 1e150 times further out, so it overflows first
    eng = engine_for(name, integrator, n, dt=5.0)
    pos = start(n)
    pos[3] *= 1e150
    if name == "hoomd":  # HOOMD-blue keeps particles in a periodic box (32-bit image counts): refused up front
        with pytest.raises(SimulationError, match=r"walker 3\b.*box"):
            eng.set_positions(pos)
        pos[3] /= 1e148
    eng.set_positions(pos)
    eng.step = 500
    with pytest.raises(SimulationError) as info:
        eng.run(2000, 10)
    m = re.search(r"step (\d+), walker (\d+)", str(info.value))
    assert m is not None, str(info.value)
    assert 501 <= int(m.group(1)) <= 2500
    # in HOOMD-blue's periodic box the far walker wraps around like the others, and every walker's
    # velocity diverges at the same rate (drag x dt = 10 > 2): any walker may be the first named
    assert int(m.group(2)) == 3 or name == "hoomd"
