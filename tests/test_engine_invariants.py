"""Engine properties outside the conformance suite's statistics (each found as a surviving mutant
of tools/mutation.py): the registry reports a missing package by name, the engine sets torch's
thread count, names its features, and hands a periodic system's box to the featurizer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cvcycle import engines
from cvcycle.engines import make_engine
from cvcycle.engines.langevin import LangevinEngine
from cvcycle.errors import EngineUnavailable
from cvcycle.systems.base import System


class Harmonic(System):
    """Two particles in 2-D in a harmonic well, optionally in a periodic box."""

    name, kT, n_particles, dim = "harmonic", 1.0, 2, 2
    states = {"A": {"center": [-1.0, 0.0], "radius": 0.3}, "B": {"center": [1.0, 0.0], "radius": 0.3}}

    def __init__(self, box=None) -> None:
        self._box = box

    @property
    def box(self):
        return self._box

    def potential(self, positions: torch.Tensor) -> torch.Tensor:
        return 0.5 * (positions**2).sum(dim=(-1, -2))

    def state_coordinates(self, positions):
        return np.asarray(positions)[:, 0, :2]

    def start(self, where, n_walkers, spread, rng):
        return spread * rng.standard_normal((n_walkers, 2, 2))


class Wrapped(torch.nn.Module):
    """The first particle's coordinates, wrapped into the box when one is given."""

    names = ["wx", "wy"]

    def forward(self, positions, box=None):
        p = positions[..., 0, :]
        return p if box is None else p - box * torch.floor(p / box)


def _spec(name: str = "langevin", cpus: int = 1) -> dict:
    return {"campaign": {"name": "t", "seed": 3}, "resources": {"cpus": cpus},
            "features": {"kind": "coordinates", "names": ["x0", "y1"]},
            "engine": {"name": name, "integrator": "overdamped", "dt": 0.01, "friction": 1.0, "mass": 1.0,
                       "walkers": 2}}


def test_an_engine_whose_package_is_missing_is_reported_by_name(monkeypatch):
    monkeypatch.setitem(engines._ENGINES, "fake", ("cvcycle.engines.langevin", "LangevinEngine",
                                                   "no_such_package_for_cvcycle_tests", "pip install fake-engine"))
    with pytest.raises(EngineUnavailable, match=r"no_such_package_for_cvcycle_tests', which is not installed "
                                                r"\(pip install fake-engine\)"):
        make_engine(_spec("fake"), Harmonic())
    # with its package present (numpy stands in) the engine is built
    monkeypatch.setitem(engines._ENGINES, "fake", ("cvcycle.engines.langevin", "LangevinEngine", "numpy", ""))
    assert isinstance(make_engine(_spec("fake"), Harmonic()), LangevinEngine)


def test_the_engine_sets_torch_threads_from_the_spec():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        make_engine(_spec(cpus=1), Harmonic())
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_feature_names_are_the_featurizers():
    engine = make_engine(_spec(), Harmonic())
    assert engine.feature_names == list(engine.featurizer.names) and len(engine.feature_names) == 2
    engine.featurizer = Wrapped()
    assert engine.feature_names == ["wx", "wy"]


def test_a_periodic_systems_box_reaches_the_featurizer():
    box = np.array([1.0, 2.0])
    engine = LangevinEngine(Harmonic(box), Wrapped(), dt=0.001, friction=1.0, n_walkers=2)
    pos = np.array([[[1.25, -0.5], [0.0, 0.0]], [[-0.25, 4.5], [0.0, 0.0]]])
    engine.set_positions(pos)
    frames = engine.run(2, 1)
    np.testing.assert_allclose(frames.features[0], [[0.25, 1.5], [0.75, 0.5]], atol=1e-12)
    open_engine = LangevinEngine(Harmonic(None), Wrapped(), dt=0.001, friction=1.0, n_walkers=2)
    open_engine.set_positions(pos)
    np.testing.assert_allclose(open_engine.run(2, 1).features[0], pos[:, 0], atol=1e-12)


class ShiftedBias:
    """V = 0.4 x0 on the features, with a reweighting offset c = 0.3 that never changes; counts
    the steps at which it was evaluated."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def energy(self, features, positions=None):
        return 0.4 * features[:, 0], features[:, :1]

    def observe(self, step, cv):
        self.steps.append(step)
        return False

    def offset(self):
        return 0.3


@pytest.mark.parametrize("integrator", ["overdamped", "underdamped"])
def test_log_weight_is_bias_minus_offset_over_kT_and_the_bias_acts_every_step(integrator):
    spec = _spec()
    spec["engine"]["integrator"] = integrator
    system = Harmonic()
    system.kT = 0.8
    engine = make_engine(spec, system)
    engine.set_positions(0.3 * np.random.default_rng(1).standard_normal((2, 2, 2)))
    hook = ShiftedBias()
    frames = engine.run(12, 4, hook)
    assert hook.steps == list(range(12))  # by default the bias is evaluated at every step
    np.testing.assert_allclose(frames.bias, 0.4 * frames.features[..., 0], rtol=1e-12)
    np.testing.assert_allclose(frames.log_weight, (frames.bias - 0.3) / 0.8, rtol=1e-12)


def test_an_unbiased_run_reports_no_cv_and_zero_bias():
    engine = make_engine(_spec(), Harmonic())
    engine.set_positions(np.zeros((2, 2, 2)))
    frames = engine.run(6, 3)
    assert frames.cv.shape == (2, 2, 0)
    assert np.all(frames.bias == 0.0) and np.all(frames.log_weight == 0.0)
