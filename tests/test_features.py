"""Featurizers: the contract, the registry, Cartesian coordinates and permutation-invariant
particle features, checked against plain-numpy loops, exact rational arithmetic and invariances."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from cvcycle.features import FEATURIZERS, Coordinates, Featurizer, make_featurizer
from cvcycle.features.particles import (CoordinationMoments, CoordinationNumbers, SortedCoordination,
                                        SortedPairDistances, pair_distances, switching)

R0, NN, MM = 1.5, 8, 16
PARTICLE_KINDS = ["coordination", "sorted_coordination", "coordination_moments", "sorted_distances"]


# ---- independent references -----------------------------------------------------------------

def np_pairs(frame: np.ndarray, box: np.ndarray | None) -> dict[tuple[int, int], float]:
    """Distance of every ordered pair i != j of one frame (N, d), minimum image by hand."""
    out = {}
    for i in range(len(frame)):
        for j in range(len(frame)):
            if i != j:
                delta = frame[j] - frame[i]
                if box is not None:
                    delta = delta - box * np.round(delta / box)
                out[i, j] = float(np.sqrt(np.sum(delta**2)))
    return out


def np_coordination(frame: np.ndarray, box=None, r0=R0, nn=NN, mm=MM) -> np.ndarray:
    c = np.zeros(len(frame))
    for (i, _), r in np_pairs(frame, box).items():
        c[i] += (1 - (r / r0) ** nn) / (1 - (r / r0) ** mm)
    return c


def np_moments(c: np.ndarray, moments=(2, 3)) -> np.ndarray:
    return np.array([np.mean((c - c.mean()) ** p) for p in moments])


def exact_switch(r: float, r0: float = R0, nn: int = NN, mm: int = MM) -> tuple[float, float]:
    """s(r) and s'(r) in exact rational arithmetic (r != r0)."""
    x = Fraction(r) / Fraction(r0)
    s = (1 - x**nn) / (1 - x**mm)
    ds = (-nn * x ** (nn - 1) * (1 - x**mm) + mm * x ** (mm - 1) * (1 - x**nn)) / (1 - x**mm) ** 2 / Fraction(r0)
    return float(s), float(ds)


def configs(n: int, d: int, frames: int, seed: int, width: float) -> np.ndarray:
    pos = np.random.default_rng(seed).uniform(0.0, width, size=(frames, n, d))
    for frame in pos:  # the numpy reference formula is only accurate away from r = r0
        assert min(abs(r - R0) for r in np_pairs(frame, None).values()) > 1e-6
    return pos


def random_rotation(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


CASES = [(7, 2, 3.0), (13, 3, 3.5)]  # (N, d, cube width of the random configurations)


# ---- particle features against numpy ----------------------------------------------------------

@pytest.mark.parametrize("n, d, width", CASES)
@pytest.mark.parametrize("box_kind", [None, "shared", "per_frame"])
def test_coordination_and_moments_match_numpy_loops(n, d, width, box_kind):
    pos = configs(n, d, frames=4, seed=n, width=width)
    boxes = {None: None, "shared": np.full(d, width),
             "per_frame": width * np.random.default_rng(1).uniform(0.9, 1.1, size=(4, d))}[box_kind]
    frame_box = (lambda k: None) if boxes is None else (lambda k: boxes if boxes.ndim == 1 else boxes[k])
    box_t = None if boxes is None else torch.as_tensor(boxes)
    c_ref = np.stack([np_coordination(pos[k], frame_box(k)) for k in range(4)])
    pos_t = torch.as_tensor(pos)

    np.testing.assert_allclose(CoordinationNumbers(n)(pos_t, box_t).numpy(), c_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(SortedCoordination(n)(pos_t, box_t).numpy(), np.sort(c_ref, axis=-1), rtol=0, atol=1e-12)
    moments = CoordinationMoments(n, moments=[2, 3, 4])(pos_t, box_t).numpy()
    np.testing.assert_allclose(moments, np.stack([np_moments(c, (2, 3, 4)) for c in c_ref]), rtol=0, atol=1e-12)
    d_ref = np.stack([np.sort([r for (i, j), r in np_pairs(pos[k], frame_box(k)).items() if i < j]) for k in range(4)])
    np.testing.assert_allclose(SortedPairDistances(n)(pos_t, box_t).numpy(), d_ref, rtol=0, atol=1e-12)


def test_spec_parameters_reach_the_featurizer():
    spec = {"features": {"kind": "coordination_moments", "particles": 13, "r0": 1.2, "nn": 6, "mm": 12,
                         "moments": [2, 3, 4]}}
    feat = make_featurizer(spec)
    assert feat.names == ["mu2", "mu3", "mu4"]
    pos = np.random.default_rng(5).uniform(0.0, 3.0, size=(13, 3))
    expected = np_moments(np_coordination(pos, r0=1.2, nn=6, mm=12), (2, 3, 4))
    np.testing.assert_allclose(feat(torch.as_tensor(pos)).numpy(), expected, rtol=0, atol=1e-12)


# ---- invariances -------------------------------------------------------------------------------

def invariant_features(n: int) -> list[Featurizer]:
    return [SortedCoordination(n), CoordinationMoments(n), SortedPairDistances(n)]


@pytest.mark.parametrize("n, d, width", CASES)
def test_permutation_invariance_and_equivariance(n, d, width):
    pos = torch.as_tensor(configs(n, d, frames=3, seed=10 + n, width=width))
    box = torch.full((d,), width, dtype=torch.float64)
    perm = torch.as_tensor(np.random.default_rng(2).permutation(n))
    for feat in invariant_features(n):
        for b in (None, box):
            torch.testing.assert_close(feat(pos[:, perm], b), feat(pos, b), rtol=0, atol=1e-13)
    c = CoordinationNumbers(n)
    torch.testing.assert_close(c(pos[:, perm]), c(pos)[:, perm], rtol=0, atol=1e-13)


@pytest.mark.parametrize("n, d, width", CASES)
def test_translation_and_rotation_invariance(n, d, width):
    pos = configs(n, d, frames=3, seed=20 + n, width=width)
    moved = pos @ random_rotation(d, seed=n).T + np.random.default_rng(3).normal(scale=5.0, size=d)
    for feat in [CoordinationNumbers(n), *invariant_features(n)]:
        torch.testing.assert_close(feat(torch.as_tensor(moved)), feat(torch.as_tensor(pos)), rtol=0, atol=1e-12)


def test_minimum_image_distance_across_the_boundary():
    pos = torch.tensor([[0.1, 2.0], [4.8, 2.0]], dtype=torch.float64)
    box = torch.tensor([5.0, 5.0], dtype=torch.float64)
    torch.testing.assert_close(pair_distances(pos, box), torch.tensor([0.3], dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(pair_distances(pos), torch.tensor([4.7], dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("n, d, width", CASES)
def test_shifting_a_particle_by_a_box_vector_changes_nothing(n, d, width):
    pos = torch.as_tensor(configs(n, d, frames=2, seed=30 + n, width=width))
    box = torch.as_tensor(np.linspace(width, 1.2 * width, d))
    shifted = pos.clone()
    shifted[:, 3] += box * torch.as_tensor([1.0, -2.0, 3.0][:d], dtype=torch.float64)
    for feat in [CoordinationNumbers(n), *invariant_features(n)]:
        torch.testing.assert_close(feat(shifted, box), feat(pos, box), rtol=0, atol=1e-12)


# ---- switching function and gradients ----------------------------------------------------------

@pytest.mark.parametrize("r0, nn, mm", [(R0, NN, MM), (1.2, 6, 10), (0.7, 3, 7)])  # mm = 2 nn zeroes the t^2 term
def test_switching_matches_exact_arithmetic_around_r0(r0, nn, mm):
    offsets = [sign * 10.0**-e for e in np.arange(1.0, 15.5, 0.25) for sign in (1, -1)]
    r = torch.tensor([r0 * (1 + o) for o in offsets], dtype=torch.float64, requires_grad=True)
    s = switching(r, r0, nn, mm)
    (ds,) = torch.autograd.grad(s.sum(), r)
    exact = np.array([exact_switch(float(v), r0, nn, mm) for v in r.detach()])
    np.testing.assert_allclose(s.detach().numpy(), exact[:, 0], rtol=1e-14)
    np.testing.assert_allclose(ds.numpy(), exact[:, 1], rtol=1e-9)


def test_switching_at_r0_has_the_limit_value_and_slope():
    for d in (2, 3):
        pos = torch.zeros(2, d, dtype=torch.float64)
        pos[1, -1] = R0  # exactly r = r0
        pos.requires_grad_(True)
        c = CoordinationNumbers(2)(pos)
        (grad,) = torch.autograd.grad(c[0], pos)
        torch.testing.assert_close(c.detach(), torch.tensor([NN / MM] * 2, dtype=torch.float64), rtol=0, atol=1e-15)
        slope = NN * (NN - MM) / (2 * MM * R0)  # -4/3
        expected = torch.zeros(2, d, dtype=torch.float64)
        expected[1, -1], expected[0, -1] = slope, -slope
        torch.testing.assert_close(grad, expected, rtol=0, atol=1e-12)


def test_far_particles_keep_finite_values_and_gradients_in_float32():
    pos = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0e3, 0.0], [0.0, 1.0e10]], dtype=torch.float32, requires_grad=True)
    feat = CoordinationMoments(4)
    out = feat(pos)
    (grad,) = torch.autograd.grad(out.sum(), pos)
    assert out.dtype == torch.float32 and torch.isfinite(out).all() and torch.isfinite(grad).all()


@pytest.mark.parametrize("featurizer", [CoordinationNumbers, SortedCoordination, CoordinationMoments, SortedPairDistances])
@pytest.mark.parametrize("periodic", [False, True])
def test_gradients_match_central_differences(featurizer, periodic):
    pos = torch.as_tensor(configs(7, 2, frames=2, seed=40, width=3.0))
    pos[:, 1] = pos[:, 0] + torch.tensor([R0, 0.0], dtype=torch.float64)   # one pair exactly at r0
    pos[:, 2] = pos[:, 0] + torch.tensor([0.0, 0.05], dtype=torch.float64)  # a close pair
    box = torch.tensor([3.3, 3.7], dtype=torch.float64) if periodic else None
    feat = featurizer(7)
    torch.testing.assert_close(pair_distances(pos, box)[:, 0], torch.full((2,), R0, dtype=torch.float64),
                               rtol=0, atol=0)
    assert torch.autograd.gradcheck(lambda x: feat(x, box), (pos.requires_grad_(True),), eps=1e-6, atol=1e-8)


# ---- contract ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", PARTICLE_KINDS)
def test_particle_featurizers_keep_the_contract(kind):
    feat = make_featurizer({"features": {"kind": kind}})  # optional keys absent: defaults, N = 7
    assert isinstance(feat, Featurizer) and feat.n_particles == 7
    pos = torch.rand(2, 3, 7, 3, dtype=torch.float32) * 3
    out = feat(pos, torch.tensor([3.0, 3.0, 3.0]))
    assert out.shape == (2, 3, len(feat.names)) and out.dtype == torch.float32
    with pytest.raises(ValueError, match="features.particles"):
        feat(torch.rand(5, 6, 3))


def test_default_names():
    system_kinds = {"internal", "steinhardt"}
    names = {kind: make_featurizer({"features": {"kind": kind}}).names for kind in FEATURIZERS if kind not in system_kinds}
    assert names == {"coordinates": ["x", "y"], "coordination": [f"c{i}" for i in range(7)],
                     "sorted_coordination": [f"c({k})" for k in range(1, 8)], "coordination_moments": ["mu2", "mu3"],
                     "sorted_distances": [f"d({k})" for k in range(1, 22)]}
    # a molecule's features are named after its atoms (tests/test_openmm_engine.py), crystalline order
    # takes the system's box (tests/test_lj_nucleation.py)
    assert set(FEATURIZERS) - set(names) == system_kinds


def test_unknown_kind_names_the_field_and_the_known_kinds():
    with pytest.raises(ValueError, match=r"features\.kind: unknown featurizer 'foo' \(known: coordinates, .*sorted_distances"):
        make_featurizer({"features": {"kind": "foo"}})


@pytest.mark.parametrize("features, field", [({"r0": 0.0}, "features.r0"), ({"nn": 16, "mm": 8}, "features.nn"),
                                             ({"moments": [1]}, "features.moments"), ({"particles": 1}, "features.particles")])
def test_bad_parameters_name_the_field(features, field):
    with pytest.raises(ValueError, match=field):
        make_featurizer({"features": {"kind": "coordination_moments", **features}})


# ---- coordinates -------------------------------------------------------------------------------

def test_coordinates_are_bit_identical_for_one_particle_layouts():
    x = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for names, columns in ((["x", "y"], [0, 1]), (["y", "x"], [1, 0]), (["y"], [1])):
        reference = torch.stack([x[:, k] for k in columns], dim=-1)
        feat = make_featurizer({"features": {"kind": "coordinates", "names": names}})
        assert torch.equal(feat(x), reference)
        assert torch.equal(feat(x.unsqueeze(1)), reference)
        assert torch.equal(feat(x, torch.tensor([1.0, 1.0])), reference)  # box is ignored


def test_coordinates_select_particles_and_axes():
    pos = torch.randn(4, 3, 5, 3, dtype=torch.float64, requires_grad=True)
    feat = Coordinates(["x3", "y0", "z2", "z"])
    out = feat(pos)
    assert torch.equal(out, torch.stack([pos[..., 3, 0], pos[..., 0, 1], pos[..., 2, 2], pos[..., 0, 2]], dim=-1))
    (grad,) = torch.autograd.grad(out[..., 0].sum(), pos)
    assert grad[..., 3, 0].eq(1).all() and grad.sum() == 12


def test_coordinates_errors_name_the_field():
    with pytest.raises(ValueError, match=r"features\.names: unknown coordinate 'q'"):
        Coordinates(["x", "q"])
    with pytest.raises(ValueError, match=r"features\.names: .*1 particle\(s\) in 2 dimensions"):
        Coordinates(["z"])(torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"features\.names: .*particle 9"):
        Coordinates(["x9"])(torch.zeros(3, 5, 2))
