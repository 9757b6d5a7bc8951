"""The ranges a campaign spec accepts, field by field, and the rules on points, states and
moments (the surviving mutants of tools/mutation.py on spec.py were range bounds nothing pinned).

RANGES is the contract written out once more, like README.md's table of defaults: each bounded
field with its lowest and highest accepted value; the value just beyond a bound must be
rejected with a message naming the field. A bound changed in spec.py without changing it here
(and thinking about the campaigns whose state points it would invalidate) fails this test.
"""

from __future__ import annotations

import copy

import pytest

from cvcycle.errors import SpecError
from cvcycle.spec import validate

BASE = {
    "campaign": {"name": "ranges"},
    "system": {"potential": "mueller-brown", "scale": 0.1,
               "states": {"A": {"center": [-0.558, 1.442], "radius": 0.15},
                          "B": {"center": [0.623, 0.028], "radius": 0.15}}},
    "engine": {"steps": 1000, "initial_steps": 1000, "segment_steps": 1000, "report_stride": 10},
    "budget": {"max_iterations": 8},
    "convergence": {"min_iterations": 3},
}

# field: (low, just below low, high, just above high); None where a side is unbounded. Extra
# settings a value needs to be valid at all (other fields it must agree with) in EXTRA.
RANGES = {
    "campaign.seed": (0, -1, 2**63 - 1, 2**63),
    "learner.cv_dim": (1, 0, 2, 3),
    "learner.ensemble": (1, 0, 16, 17),
    "learner.reweight_power": (0.0, -1e-9, 1.0, 1.0 + 1e-9),
    "learner.validation_fraction": (0.0, -1e-9, 0.5, 0.5 + 1e-9),
    "learner.max_samples": (100, 99, None, None),
    "learner.weight_decay": (0.0, -1e-9, None, None),
    "bias.barrier": (None, 0.0, 500.0, 500.0 + 1e-9),
    "bias.bias_factor": (None, 1.0, None, None),
    "bias.grid_bins": (10, 9, 5000, 5001),
    "bias.explore_sigma": (None, 0.0, None, None),
    "bias.grid_margin": (0.0, -1e-9, 5.0, 5.0 + 1e-9),
    "bias.kolmogorov_lambda": (0.0, -1e-9, None, None),
    "paths.max_frames": (3, 2, None, None),
    "paths.extra_shots": (1, 0, None, None),
    "convergence.min_iterations": (2, 1, None, None),
    "convergence.cv_r2": (0.0, -1e-9, 1.0, 1.0 + 1e-9),
    "convergence.q_change": (0.0, -1e-9, 1.0, 1.0 + 1e-9),
    "convergence.fes_bins": (5, 4, 2000, 2001),
    "convergence.min_transitions": (0.0, -1e-9, None, None),
    "convergence.max_bias_stiffness": (None, 0.0, None, None),
    "convergence.test_mean": (0.0, -1e-9, 1.0, 1.0 + 1e-9),
    "convergence.test_width": (0.0, -1e-9, 1.0, 1.0 + 1e-9),
    "convergence.test_calibration": (0.0, -1e-9, 1.0, 1.0 + 1e-9),
    "resources.cpus": (1, 0, 1024, 1025),
    "resources.gpus": (0, -1, 64, 65),
    "resources.memory_gb": (None, 0.0, 100_000.0, 100_000.0 + 1e-6),
    "resources.walltime_hours": (1.0 / 60.0, 1.0 / 60.0 - 1e-9, 720.0, 720.0 + 1e-9),
    "analysis.grid_bins": (10, 9, 2000, 2001),
    "analysis.equilibration": (0.0, -1e-9, 0.9, 0.9 + 1e-9),
    "engine.start_spread": (0.0, -1e-9, None, None),
    "engine.walkers": (1, 0, 100_000, 100_001),
    "engine.steps": (10, 0, None, 10**12 + 10),  # (a trillion steps of 25 walkers do not fit resources.memory_gb)
    "engine.segment_steps": (10, 0, 10**9, 10**9 + 10),
    "system.temperature": (1e-3, 1e-3 - 1e-12, 1e3, 1e3 + 1e-9),
    "system.scale": (1e-6, 1e-6 - 1e-15, 1e6, 1e6 + 1e-6),
    "learner.epochs": (1, 0, 10**6, 10**6 + 1),
    "learner.batch_size": (1, 0, 10**8, 10**8 + 1),
    "bias.pace": (1, 0, 10**9, 10**9 + 1),
    "paths.moves": (1, 0, 10**7, 10**7 + 1),
    "budget.max_total_steps": (10, 0, 10**15, 10**15 + 1),  # 10: one walker's 10 first steps (EXTRA)
    "analysis.fes_window": (1, 0, 10_000, 10_001),
}
EXTRA = {
    "learner.cv_dim": {"learner": {"select": "reconstruction"}},  # a 2-D CV is ranked by reconstruction
    "bias.barrier": {"bias": {"kind": "metad"}},                   # OPES also needs barrier > 2 kT
    "bias.bias_factor": {"bias": {"kind": "metad"}},
    "system.temperature": {"bias": {"kind": "metad"}},               # OPES's barrier > 2 kT caps kT at 250
    "engine.walkers": {"budget": {"max_total_steps": 10**8}},        # iteration 0 must fit the budget
    "budget.max_total_steps": {"engine": {"walkers": 1, "initial_steps": 10}},
}


def _raw(field: str, value) -> dict:
    raw = copy.deepcopy(BASE)
    for section, body in EXTRA.get(field, {}).items():
        raw.setdefault(section, {}).update(body)
    section, key = field.split(".")
    raw.setdefault(section, {})[key] = value
    return raw


@pytest.mark.parametrize("field", sorted(RANGES))
def test_each_bound_is_accepted_and_the_value_beyond_it_rejected(field):
    low, below, high, above = RANGES[field]
    section, key = field.split(".")
    for ok in (low, high):
        if ok is not None:
            assert validate(_raw(field, ok))[section][key] == ok
    for bad in (below, above):
        if bad is not None:
            with pytest.raises(SpecError, match=rf"^{field}: "):
                validate(_raw(field, bad))


def test_memory_and_barrier_are_open_at_zero_and_bias_factor_at_one():
    one_frame = {"walkers": 1, "steps": 10, "initial_steps": 10, "segment_steps": 10}  # ~300 bytes: fits 1e-6 GB
    assert validate(_with(resources={"memory_gb": 1e-6}, engine=one_frame))["resources"]["memory_gb"] == 1e-6
    assert validate(_raw("bias.barrier", 1e-6))["bias"]["barrier"] == 1e-6
    assert validate(_raw("bias.bias_factor", 1.0 + 1e-9))["bias"]["bias_factor"] == 1.0 + 1e-9


@pytest.mark.parametrize("start", [[0.1, 0.2], ["A", "B"], "B", [1, 2]])
def test_a_start_is_a_state_a_list_of_states_or_a_point(start):
    assert validate(_raw("engine.start", start))["engine"]["start"] == start


@pytest.mark.parametrize("start", [[0.1], [0.1, 0.2, 0.3], [], ["A", 0.5], [True, 0.5], [float("inf"), 0.0]])
def test_other_starts_are_rejected(start):
    with pytest.raises(SpecError, match=r"^engine\.start: "):
        validate(_raw("engine.start", start))


def _moments(moments) -> dict:
    raw = copy.deepcopy(BASE)
    raw["system"] = {"potential": "lj7", "temperature": 0.1,
                     "states": {"A": {"center": [0.5, 0.0], "radius": 0.1}, "B": {"center": [0.7, 0.1], "radius": 0.1}}}
    raw["features"] = {"kind": "coordination_moments", "moments": moments}
    return raw


def test_moment_orders_are_integers_from_two():
    assert validate(_moments([2, 3, 4]))["features"]["moments"] == [2, 3, 4]
    for bad in ([], [1, 2], [2, 2.5], [True, 2], [0]):
        with pytest.raises(SpecError, match=r"^features\.moments: "):
            validate(_moments(bad))


def _with(**sections) -> dict:
    raw = copy.deepcopy(BASE)
    for section, body in sections.items():
        raw.setdefault(section, {}).update(body)
    return raw


def test_cross_field_rules_at_their_boundaries():
    # equal values: allowed where the rule is "at most", rejected where it is "below"/"above"
    assert validate(_with(engine={"steps": 10, "initial_steps": 10, "segment_steps": 10, "report_stride": 10}))
    assert validate(_with(convergence={"min_iterations": 8}, budget={"max_iterations": 8}))
    with pytest.raises(SpecError, match=r"^bias\.cv_range: "):
        validate(_with(bias={"cv_range": [0.5, 0.5]}))
    with pytest.raises(SpecError, match=r"^bias\.barrier: "):  # OPES needs barrier > 2 kT
        validate(_with(system={"temperature": 1.5}, bias={"kind": "opes", "barrier": 3.0}))
    assert validate(_with(system={"temperature": 1.5}, bias={"kind": "opes", "barrier": 3.0 + 1e-9}))
    assert validate(_with(bias={"kind": "metad", "barrier": 1.0}))  # metadynamics has no such rule
    raw = _moments([2])
    raw["features"].update(nn=8, mm=8)
    with pytest.raises(SpecError, match=r"^features\.nn: "):  # README: nn < mm
        validate(raw)
    raw["features"].update(nn=7, mm=8)
    assert validate(raw)["features"]["nn"] == 7


def test_an_unknown_featurizer_kind_is_rejected():
    for raw in (_with(features={"kind": "fourier"}), _moments([2])):  # a model potential, a particle system
        raw["features"] = {"kind": "fourier"}
        with pytest.raises(SpecError, match=r"^features\.kind: must be one of "):
            validate(raw)


def test_committor_test_levels_lie_strictly_between_0_and_1_besides_one_half():
    assert validate(_with(convergence={"test_levels": [0.1, 0.9]}))["convergence"]["test_levels"] == [0.1, 0.9]
    assert validate(_with(convergence={"test_levels": []}))["convergence"]["test_levels"] == []
    for bad in ([0.0], [1.0], [0.5], [-0.2], ["a"], [True], [0.1] * 10, [float("nan")]):
        with pytest.raises(SpecError, match=r"^convergence\.test_levels: "):
            validate(_with(convergence={"test_levels": bad}))


def test_hidden_layers_are_positive_and_particles_zero_means_all():
    assert validate(_with(learner={"hidden": [1, 5]}))["learner"]["hidden"] == [1, 5]
    for bad in ([0], [], [4, -1], [True]):
        with pytest.raises(SpecError, match=r"^learner\.hidden: "):
            validate(_with(learner={"hidden": bad}))
    raw = _moments([2])
    raw["features"]["particles"] = 0
    assert validate(raw)["features"]["particles"] == 7  # LJ7
    raw["features"]["particles"] = 6
    with pytest.raises(SpecError, match=r"^features\.particles: "):
        validate(raw)
