"""Steinhardt q_l, Lechner-Dellago qbar_l and ten Wolde-Frenkel solid bonds (features.steinhardt).

References: freud-analysis (Steinhardt, SolidLiquid) on a perfect and a noisy FCC crystal and a
dense random fluid in a non-cubic box, the textbook q4 and q6 of FCC, the addition theorem of the
spherical harmonics, finite differences (gradcheck), and the symmetries of the descriptors.
Configurations are float32-exact (freud computes in float32) and keep every pair distance at least
1e-5 away from the cut-off, so the hard neighbour lists of both codes agree.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from cvcycle.features import steinhardt as st

R_CUT = 1.5
FCC_Q4, FCC_Q6 = 0.19094, 0.57452
FREUD_TOL = 1e-5
FREUD = "freud-analysis is not installed (pip install freud-analysis); it is only the reference implementation"


def float32_exact(positions: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box and positions wrapped into [-L/2, L/2), both representable in float32."""
    box = np.asarray(box, dtype=float).astype(np.float32).astype(np.float64)
    wrapped = positions - box * np.round(positions / box)
    return wrapped.astype(np.float32).astype(np.float64), box


def fcc(replicas: int, noise: float = 0.0, seed: int = 0, density: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """FCC crystal of 4 replicas^3 particles at the given number density, with Gaussian noise."""
    a = (4 / density) ** (1 / 3)
    basis = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    cells = np.array(list(itertools.product(range(replicas), repeat=3)))
    positions = a * (cells[:, None, :] + basis).reshape(-1, 3)
    positions += noise * np.random.default_rng(seed).standard_normal(positions.shape)
    return float32_exact(positions, np.full(3, a * replicas))


def liquid(n: int = 400, box: tuple[float, float, float] = (6.7, 8.0, 9.33), d_min: float = 0.85,
           seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random sequential addition of n particles at least d_min apart (number density ~0.8)."""
    rng, box_ = np.random.default_rng(seed), np.array(box)
    positions = np.empty((0, 3))
    while len(positions) < n:
        trial = rng.uniform(0, 1, 3) * box_
        delta = positions - trial
        delta -= box_ * np.round(delta / box_)
        if not len(positions) or (delta * delta).sum(-1).min() > d_min**2:
            positions = np.vstack([positions, trial])
    return float32_exact(positions, box_)


def pair_distances(positions: np.ndarray, box: np.ndarray) -> np.ndarray:
    """All minimum-image distances, (N, N), inf on the diagonal."""
    delta = positions[None, :, :] - positions[:, None, :]
    delta -= box * np.round(delta / box)
    distance = np.sqrt((delta * delta).sum(-1))
    np.fill_diagonal(distance, np.inf)
    return distance


def checked(system: tuple[np.ndarray, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch float64 positions and box, after asserting no pair is within 1e-5 of R_CUT."""
    positions, box = system
    assert np.abs(pair_distances(positions, box) - R_CUT).min() > 1e-5
    return torch.tensor(positions), torch.tensor(box)


SYSTEMS = {"fcc": lambda: fcc(4), "noisy_fcc": lambda: fcc(4, noise=0.05, seed=1),
           "melting_fcc": lambda: fcc(5, noise=0.12, seed=2), "liquid": lambda: liquid()}


@pytest.fixture(scope="module", params=list(SYSTEMS))
def system(request: pytest.FixtureRequest) -> tuple[str, torch.Tensor, torch.Tensor]:
    return (request.param, *checked(SYSTEMS[request.param]()))


@pytest.fixture(scope="module")
def small() -> tuple[torch.Tensor, torch.Tensor]:
    """32 particles, FCC with noise 0.1: pairs on both sides of r_on = 1.2 and r_cut = 1.5."""
    return checked(fcc(2, noise=0.1, seed=3))


def freud_system(freud, positions: torch.Tensor, box: torch.Tensor):
    return freud.box.Box.from_box(box.tolist()), positions.numpy().astype(np.float32)


# --- neighbour search ---------------------------------------------------------------------------

@pytest.mark.parametrize("positions, box, r_max", [
    pytest.param(*liquid(), 1.5, id="liquid-cells-4x5x6"),
    pytest.param(*fcc(5, noise=0.1), 1.2, id="fcc-cubic-cells-6"),
    pytest.param(*liquid(60, (4.0, 8.0, 8.0), seed=1), 1.5, id="non-cubic-two-cells-along-x"),
    pytest.param(*liquid(40, (3.5, 3.5, 3.5), seed=2), 1.5, id="small-box-all-pairs"),
    pytest.param(np.random.default_rng(3).uniform(0, 20, (64, 3)), np.full(3, 20.0), 1.5, id="dilute-capped-cells"),
])
def test_cell_list_equals_brute_force(positions: np.ndarray, box: np.ndarray, r_max: float) -> None:
    i, j = st.neighbor_pairs(torch.tensor(positions), torch.tensor(box), r_max)
    expected = np.argwhere(pair_distances(positions, box) < r_max)  # row-major: sorted by (i, j)
    assert len(expected) > 0
    np.testing.assert_array_equal(torch.stack([i, j], -1).numpy(), expected)


def test_displacements_are_minimum_image() -> None:
    box = torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64)
    x = torch.tensor([[0.1, 0.1, 0.1], [1.9, 2.8, 3.9]], dtype=torch.float64)
    r = st.displacements(x, box, torch.tensor([0]), torch.tensor([1]))
    torch.testing.assert_close(r, torch.tensor([[-0.2, -0.3, -0.2]], dtype=torch.float64), rtol=0, atol=1e-12)


# --- spherical harmonics and switching function ----------------------------------------------------

def unit_vectors() -> torch.Tensor:
    """Random unit vectors plus the poles and points on the equator and next to the poles."""
    special = torch.tensor([[0, 0, 1.0], [0, 0, -1.0], [1.0, 0, 0], [0, 1.0, 0], [1e-9, 0, 1.0], [0, -1e-9, -1.0]])
    v = torch.cat([torch.randn(200, 3, generator=torch.Generator().manual_seed(0)), special]).double()
    return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)


@pytest.mark.parametrize("l", range(0, 13))
def test_addition_theorem(l: int) -> None:
    """sum_m Y_lm(u) Y_lm(v) = (2l+1)/(4 pi) P_l(u.v): the real Y_lm are an orthonormal basis of the
    degree-l harmonics, i.e. a unitary change of basis of the complex Y_lm."""
    u = unit_vectors()
    y = st.real_spherical_harmonics(u, l)
    assert y.shape == (len(u), 2 * l + 1)
    torch.testing.assert_close((y * y).sum(-1), torch.full((len(u),), (2 * l + 1) / (4 * math.pi),
                                                             dtype=torch.float64), rtol=1e-12, atol=0)
    legendre = np.polynomial.legendre.legval((u @ u.T).clamp(-1, 1).numpy(), [0] * l + [1])
    np.testing.assert_allclose((y @ y.T).numpy(), (2 * l + 1) / (4 * math.pi) * legendre, rtol=0, atol=1e-11)


def test_harmonics_smooth_at_the_poles() -> None:
    u = torch.tensor([[0, 0, 1.0], [0, 0, -1.0]], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(st.real_spherical_harmonics(u, 6).sum(), u)
    assert torch.isfinite(grad).all()
    torch.autograd.gradcheck(lambda v: st.real_spherical_harmonics(v, 6), (unit_vectors()[-6:].requires_grad_(),))


def test_smooth_cutoff_is_c2_and_hard_at_equal_radii() -> None:
    r = torch.tensor([1.0, 1.2, 1.2 + 1e-7, 1.35, 1.5 - 1e-7, 1.5, 1.7], dtype=torch.float64, requires_grad=True)
    s = st.smooth_cutoff(r, 1.2, 1.5)
    (ds,) = torch.autograd.grad(s.sum(), r, create_graph=True)
    (d2s,) = torch.autograd.grad(ds.sum(), r)
    np.testing.assert_allclose(s.detach().numpy(), [1, 1, 1, 0.5, 0, 0, 0], atol=1e-12)
    assert ds.detach().abs()[[0, 1, 2, 4, 5, 6]].max() < 1e-8 and d2s.abs()[[0, 1, 2, 4, 5, 6]].max() < 1e-3
    hard = st.smooth_cutoff(r.detach(), 1.5, 1.5)
    np.testing.assert_array_equal(hard.numpy(), (r.detach() < 1.5).double().numpy())


# --- agreement with freud and textbook values --------------------------------------------------------

@pytest.mark.parametrize("average", [False, True])
def test_perfect_fcc_values(average: bool) -> None:
    x, box = checked(fcc(3))
    for l, expected in ((4, FCC_Q4), (6, FCC_Q6)):
        q = st.steinhardt(x, box, l, R_CUT, average=average)
        np.testing.assert_allclose(q.numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("average", [False, True])
@pytest.mark.parametrize("l", [4, 6])
def test_steinhardt_matches_freud(system, l: int, average: bool) -> None:
    freud = pytest.importorskip("freud", reason=FREUD)
    _, x, box = system
    reference = freud.order.Steinhardt(l, average=average)
    reference.compute(freud_system(freud, x, box), neighbors={"r_max": R_CUT})
    q = st.steinhardt(x, box, l, R_CUT, average=average)
    np.testing.assert_allclose(q.numpy(), reference.particle_order, rtol=0, atol=FREUD_TOL)
    assert torch.equal(q, st.steinhardt(x, box, l, R_CUT, r_on=R_CUT, average=average))  # r_on = r_cut is hard


def test_solid_liquid_matches_freud(system) -> None:
    freud = pytest.importorskip("freud", reason=FREUD)
    name, x, box = system
    reference = freud.order.SolidLiquid(6, q_threshold=0.7, solid_threshold=7)
    reference.compute(freud_system(freud, x, box), neighbors={"r_max": R_CUT})
    b = st.bonds(x, box, R_CUT)
    qlm = st.local_qlm(b, 6)
    np.testing.assert_array_equal(torch.stack([b.i, b.j], -1).numpy(), reference.nlist[:])
    # freud evaluates Y_lm in float32 from the polar angle acos(z), which loses digits for bonds close
    # to the z axis (4e-5 in d_ij at 0.7 degrees in the liquid): bonds between particles with a neighbour
    # within 5.7 degrees of the z axis get a looser tolerance
    unit = b.unit.numpy()
    axial = np.zeros(len(x), dtype=bool)
    axial[b.i.numpy()[np.hypot(unit[:, 0], unit[:, 1]) < 0.1]] = True
    loose = axial[b.i.numpy()] | axial[b.j.numpy()]
    d = st.bond_dot(b, qlm).numpy()
    np.testing.assert_allclose(d[~loose], reference.ql_ij[~loose], rtol=0, atol=FREUD_TOL)
    np.testing.assert_allclose(d[loose], reference.ql_ij[loose], rtol=0, atol=1e-4)
    assert loose.mean() < 0.5
    counts = st.num_connections(x, box, 6, R_CUT, 0.7)
    np.testing.assert_array_equal(counts.numpy(), reference.num_connections)
    solid = st.n_solid(x, box, 6, R_CUT, 0.7, 7, bond_width=0.0, count_width=0.0)
    clustered = int((reference.cluster_sizes[reference.cluster_idx] > 1).sum())  # solid-like particles
    assert solid.item() == (reference.num_connections >= 7).sum() == clustered
    assert {"liquid": solid.item() < 5, "melting_fcc": 0 < solid.item() < 500}.get(name, solid.item() == 256)


def test_isolated_particle_has_zero_order_and_finite_gradients() -> None:
    """freud reports NaN for a particle without neighbours; here q_l = qbar_l = 0, with gradients."""
    x = torch.tensor([[0, 0, 0], [1.1, 0, 0], [0, 1.1, 0.1], [5, 5, 5]], dtype=torch.float64, requires_grad=True)
    q = st.steinhardt(x, [10.0] * 3, 6, R_CUT, r_on=1.2)
    qbar = st.steinhardt(x, [10.0] * 3, 6, R_CUT, r_on=1.2, average=True)
    assert q[3].item() == qbar[3].item() == 0 and q[:3].min() > 0.3
    (grad,) = torch.autograd.grad(q.sum() + qbar.sum() + st.n_solid(x, [10.0] * 3, 6, R_CUT, 0.7, 1, r_on=1.2), x)
    assert torch.isfinite(grad).all() and grad[3].abs().max() == 0


# --- gradients ----------------------------------------------------------------------------------------

def gradcheck(function, x: torch.Tensor, fast_mode: bool = False) -> None:
    """Autograd vs central differences (the whole Jacobian, or a random projection of it in fast mode),
    on a configuration where the gradient is far from zero (no saturated switch)."""
    y = x.clone().requires_grad_()
    out = function(y)
    (grad,) = torch.autograd.grad((out * torch.arange(1, out.numel() + 1).reshape(out.shape)).sum(), y)
    assert grad.abs().max() > 0.1
    assert torch.autograd.gradcheck(function, (x.clone().requires_grad_(),), eps=1e-6, atol=1e-8, rtol=1e-5,
                                    fast_mode=fast_mode)


def test_gradients_of_smooth_q6_and_qbar6(small) -> None:
    x, box = small
    gradcheck(lambda y: st.steinhardt(y, box, 6, R_CUT, r_on=1.2), x)
    gradcheck(lambda y: st.steinhardt(y, box, 6, R_CUT, r_on=1.2, average=True), x)


def test_gradients_of_n_solid_and_histogram(small) -> None:
    x, box = small
    gradcheck(lambda y: st.n_solid(y, box, 6, R_CUT, 0.7, 7, r_on=1.2), x)
    centers = torch.linspace(0.1, 0.6, 6, dtype=torch.float64)
    gradcheck(lambda y: st.soft_histogram(st.steinhardt(y, box, 6, R_CUT, r_on=1.2), centers, 0.1), x)


def test_gradients_of_feature_module(small) -> None:
    x, box = small
    gradcheck(st.SteinhardtFeatures(box, r_cut=R_CUT, r_on=1.2, n_bins=4), x[None], fast_mode=True)


# --- continuity and invariances -------------------------------------------------------------------------

def test_continuous_across_the_cutoff() -> None:
    """A 13th particle crossing r_cut changes q6 of the centre smoothly (r_on < r_cut) or by a jump (hard)."""
    centre_and_shell = torch.tensor(list(itertools.product((-1, 0, 1), repeat=3)), dtype=torch.float64)
    shell = centre_and_shell[(centre_and_shell.abs().sum(-1) == 2)] * 1.1 / math.sqrt(2)  # 12 FCC neighbours
    direction = torch.tensor([0.3, 0.5, 0.81], dtype=torch.float64)
    direction = direction / torch.linalg.vector_norm(direction)

    def q6_centre(distance: float, r_on: float | None) -> float:
        x = torch.cat([torch.zeros(1, 3, dtype=torch.float64), shell, distance * direction[None]])
        return st.steinhardt(x + 5, [10.0] * 3, 6, R_CUT, r_on=r_on)[0].item()

    inside, outside = R_CUT - 1e-9, R_CUT + 1e-9
    assert abs(q6_centre(inside, 1.2) - q6_centre(outside, 1.2)) < 1e-12
    assert abs(q6_centre(inside, None) - q6_centre(outside, None)) > 1e-3


def features(x: torch.Tensor, box: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-particle smooth q4, q6, qbar6 and solid-bond counts, and the module's features."""
    out = {f"q{l}{'bar' if avg else ''}": st.steinhardt(x, box, l, R_CUT, r_on=1.3, average=avg)
           for l, avg in ((4, False), (6, False), (6, True))}
    out["connections"] = st.num_connections(x, box, 6, R_CUT, 0.7, r_on=1.3, bond_width=0.05)
    out["module"] = st.SteinhardtFeatures(box)(x)
    return out


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-10) -> None:
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=key)


def random_rotation(seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.det(q) > 0 else -q


def test_rotation_invariance_in_an_open_box() -> None:
    x, _ = checked(fcc(3, noise=0.08, seed=4))  # a 108-particle crystallite in a box far larger than it
    x = x - x.mean(0)
    box = torch.full((3,), 40.0, dtype=torch.float64)
    rotated = x @ random_rotation(5).T
    assert_same(features(x, box), features(rotated, box))


def test_quarter_turn_of_a_periodic_cubic_box() -> None:
    x, box = checked(fcc(3, noise=0.08, seed=6))
    turned = torch.stack([-x[:, 1], x[:, 0], x[:, 2]], -1)
    assert_same(features(x, box), features(turned, box))


def test_translation_with_periodic_wrap() -> None:
    x, box = checked(liquid(200, (5.9, 6.4, 6.8), seed=7))
    shifted = torch.remainder(x + torch.tensor([3.3, -7.1, 0.4], dtype=torch.float64), box)
    assert_same(features(x, box), features(shifted, box))


def test_permutation_equivariance() -> None:
    x, box = checked(fcc(3, noise=0.08, seed=8))
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(9))
    a, b = features(x, box), features(x[order], box)
    assert_same({k: v[order] for k, v in a.items() if k != "module"}, {k: v for k, v in b.items() if k != "module"})
    torch.testing.assert_close(a["module"], b["module"], rtol=0, atol=1e-12)


# --- histogram and feature module ----------------------------------------------------------------------

def test_soft_histogram_normalised_and_sharp_limit() -> None:
    centers = torch.tensor([0.1, 0.3, 0.5], dtype=torch.float64)
    values = torch.tensor([[0.1, 0.5, 0.52, 2.0], [0.3, 0.3, 0.28, -1.0]], dtype=torch.float64)
    wide = st.soft_histogram(values, centers, 0.2)
    torch.testing.assert_close(wide.sum(-1), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-14)
    sharp = st.soft_histogram(values, centers, 0.01)
    torch.testing.assert_close(sharp, torch.tensor([[0.25, 0, 0.75], [0.25, 0.75, 0]], dtype=torch.float64),
                               rtol=0, atol=1e-12)


def test_feature_module_shapes_names_and_frames() -> None:
    crystal, box = checked(fcc(3, noise=0.05, seed=10))
    fluid = torch.tensor(liquid(108, (box[0].item(),) * 3, seed=11)[0])
    module = st.SteinhardtFeatures(box, n_bins=8)
    both = module(torch.stack([crystal, fluid]))
    assert both.shape == (2, len(module.names)) == (2, 3 * 8 + 3) and len(set(module.names)) == len(module.names)
    torch.testing.assert_close(both[1], module(fluid), rtol=0, atol=1e-12)
    solid = both[:, module.names.index("n_solid")]
    assert solid[0] > 100 and solid[1] < 5
    torch.testing.assert_close(both[:, :8].sum(-1), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-12)
    qbar = st.steinhardt(torch.stack([crystal, fluid]), box, 6, R_CUT, r_on=1.3, average=True)
    torch.testing.assert_close(both[:, module.names.index("mean_qbar6")], qbar.mean(-1), rtol=0, atol=1e-12)


def test_feature_metric_through_the_blocks_is_the_full_jacobian(small) -> None:
    """The six blocks concatenate to forward, and the metric J J^T that feature_metric builds one
    block at a time (each column back-propagated through its own branch) equals the Jacobian of the
    whole module; frames_per_chunk counts the neighbour list's pairs, not all N^2."""
    from cvcycle.features.base import frames_per_chunk
    from cvcycle.learn.committor import feature_metric

    x, box = small
    module = st.SteinhardtFeatures(box, r_cut=R_CUT, r_on=1.2, n_bins=4)
    frames = torch.stack([x, x + 0.03 * torch.sin(3.0 * x)])
    blocks = module.blocks(frames)
    assert [b.shape[-1] for b in blocks] == [4, 4, 4, 1, 1, 1]
    torch.testing.assert_close(torch.cat(blocks, -1), module(frames), rtol=0, atol=0)
    metric = feature_metric(module, frames.numpy())
    for f, frame in enumerate(frames):
        jac = torch.autograd.functional.jacobian(lambda p: module(p[None])[0], frame).reshape(len(module.names), -1)
        np.testing.assert_allclose(metric[f], (jac @ jac.T).numpy(), rtol=1e-10, atol=1e-12 * float(jac.abs().max()) ** 2)
    assert frames_per_chunk(module, 256) == 8 and frames_per_chunk(module, 8) == 1024
