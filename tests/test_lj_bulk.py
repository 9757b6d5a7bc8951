"""Bulk Lennard-Jones helpers (systems.lj_bulk): solid-like clusters against freud's SolidLiquid,
the truncated-and-shifted potential in torch against its OpenMM twin, the unit conversions against
openmm.unit, and the starting configurations.

Cluster configurations are float32-exact (freud computes in float32) with every pair distance at
least 1e-5 away from the cut-off, and each comparison first checks that both codes count the same
solid bonds, so a bond dot product at the threshold within float32 precision fails loudly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cvcycle.features import steinhardt as st
from cvcycle.systems import lj_bulk as lb
from test_steinhardt import float32_exact, pair_distances

FREUD = "freud-analysis is the reference: pip install -e '.[nucleation]'"
OPENMM = "OpenMM is the reference: pip install -e '.[openmm]'"
R_CUT, Q_THRESHOLD, SOLID_THRESHOLD = 1.5, 0.7, 7
SEED_RADIUS = 2.6  # 79 particles of FCC at density 1; the 55 within 2.25 sigma are solid-like


def rotation(axis: tuple[float, float, float], angle: float) -> np.ndarray:
    """Rotation matrix about the axis by the angle (Rodrigues)."""
    k = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def fcc_ball(radius: float = SEED_RADIUS) -> np.ndarray:
    """FCC sites (density 1, cube axes along x, y, z) within radius of a site at the origin."""
    lattice, box = lb.fcc_lattice((4, 4, 4), 1.0)
    lattice = lattice - box / 2  # box / 2 = 2 cells is a site
    return lattice[np.linalg.norm(lattice, axis=1) <= radius]


def seeded_liquid(box: list[float], centres: list[list[float]], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FCC balls (crystal nuclei) at the centres in a random liquid (density 0.8, particles >= 0.85
    apart) kept beyond SEED_RADIUS + 0.9 of the centres; positions, box and the ball of each particle
    (-1: liquid)."""
    box_ = np.asarray(box)
    liquid = lb.random_liquid(round(0.8 * np.prod(box_)), box_, 0.85, np.random.default_rng(seed))
    keep = np.ones(len(liquid), dtype=bool)
    for centre in centres:
        delta = liquid - centre
        delta -= box_ * np.round(delta / box_)
        keep &= np.linalg.norm(delta, axis=1) > SEED_RADIUS + 0.9
    ball = fcc_ball()
    positions = np.vstack([liquid[keep]] + [ball + centre for centre in centres])
    owner = np.concatenate([np.full(keep.sum(), -1)] + [np.full(len(ball), k) for k in range(len(centres))])
    return *float32_exact(positions, box_), owner


def partition(labels: np.ndarray) -> np.ndarray:
    """Cluster labels renumbered by first occurrence: equal arrays <=> equal partitions."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse]


def assert_clusters_match_freud(positions: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """solid_clusters equals freud's SolidLiquid clusters; returns our labels and sizes."""
    freud = pytest.importorskip("freud", reason=FREUD)
    assert np.abs(pair_distances(positions, box) - R_CUT).min() > 1e-5, "a pair at the cut-off within float32"
    reference = freud.order.SolidLiquid(6, q_threshold=Q_THRESHOLD, solid_threshold=SOLID_THRESHOLD)
    reference.compute((freud.box.Box.from_box(box.tolist()), positions.astype(np.float32)),
                      neighbors={"r_max": R_CUT})
    counts = st.num_connections(torch.tensor(positions), box, 6, R_CUT, Q_THRESHOLD).numpy()
    np.testing.assert_array_equal(counts, reference.num_connections,
                                  err_msg="solid-bond counts differ (a d_ij at the threshold within float32?)")
    labels, sizes = lb.solid_clusters(positions, box, R_CUT, 6, Q_THRESHOLD, SOLID_THRESHOLD)
    solid = reference.num_connections >= SOLID_THRESHOLD
    np.testing.assert_array_equal(labels >= 0, solid)
    # freud makes every liquid-like particle a cluster of its own
    assert (reference.cluster_sizes[reference.cluster_idx[~solid]] == 1).all()
    singletons = np.where(solid, labels, len(labels) + np.arange(len(labels)))
    np.testing.assert_array_equal(partition(singletons), partition(reference.cluster_idx))
    freud_sizes = np.sort(reference.cluster_sizes[np.unique(reference.cluster_idx[solid])])[::-1]
    np.testing.assert_array_equal(sizes, freud_sizes)
    np.testing.assert_array_equal(np.bincount(labels[solid], minlength=len(sizes)), sizes)
    largest = lb.largest_solid_cluster(positions, box, R_CUT, 6, Q_THRESHOLD, SOLID_THRESHOLD)
    assert largest == (reference.largest_cluster_size if solid.any() else 0)  # freud: 1 without solid particles
    return labels, sizes


# --- starting configurations ---------------------------------------------------------------------------------

def test_fcc_lattice_density_and_neighbours() -> None:
    positions, box = lb.fcc_lattice((3, 4, 5), 1.05)
    assert positions.shape == (4 * 60, 3)
    assert len(positions) / np.prod(box) == pytest.approx(1.05, rel=1e-14)
    assert (positions >= 0).all() and (positions < box).all()
    distance = np.sort(pair_distances(positions, box), axis=1)
    a = (4 / 1.05) ** (1 / 3)
    np.testing.assert_allclose(distance[:, :12], a / math.sqrt(2), rtol=1e-12)
    np.testing.assert_allclose(distance[:, 12:18], a, rtol=1e-12)  # the 6 second neighbours
    with pytest.raises(ValueError, match="n_cells"):
        lb.fcc_lattice((4, 4), 1.0)


def test_random_liquid() -> None:
    box = np.array([5.0, 6.0, 7.0])
    positions = lb.random_liquid(150, box, 0.9, np.random.default_rng(3))
    assert positions.shape == (150, 3) and (positions >= 0).all() and (positions < box).all()
    assert pair_distances(positions, box).min() >= 0.9
    np.testing.assert_array_equal(positions, lb.random_liquid(150, box, 0.9, np.random.default_rng(3)))
    with pytest.raises(ValueError, match="placed .* of 100 particles .* in 5000 trials"):
        lb.random_liquid(100, np.full(3, 3.0), 1.0, np.random.default_rng(0), max_trials=5000)


# --- solid-like clusters against freud -------------------------------------------------------------------

def test_perfect_fcc_is_one_cluster() -> None:
    positions, box = float32_exact(*lb.fcc_lattice((4, 4, 4), 1.0))
    labels, sizes = assert_clusters_match_freud(positions, box)
    assert sizes.tolist() == [256] and (labels == 0).all()
    same, _ = lb.solid_clusters(torch.tensor(positions), torch.tensor(box))  # torch in, same result
    np.testing.assert_array_equal(same, labels)


def test_liquid_has_no_cluster() -> None:
    positions, box = float32_exact(lb.random_liquid(400, (6.7, 8.0, 9.33), 0.85, np.random.default_rng(0)),
                                   np.array([6.7, 8.0, 9.33]))
    _, sizes = assert_clusters_match_freud(positions, box)
    assert sizes.sum() <= 4 and lb.largest_solid_cluster(positions, box) <= 2


def test_crystal_nucleus_in_liquid() -> None:
    positions, box, owner = seeded_liquid([11.0, 11.5, 12.0], [[5.5, 5.75, 6.0]], seed=3)
    labels, sizes = assert_clusters_match_freud(positions, box)
    n_seed = (owner == 0).sum()
    assert 50 <= n_seed <= 80 and sizes[0] >= 0.6 * n_seed
    assert (owner[labels == 0] == 0).all()  # the largest cluster is (the core of) the nucleus


def test_two_separated_nuclei() -> None:
    positions, box, owner = seeded_liquid([15.0, 10.0, 10.5], [[3.75, 5.0, 5.25], [11.25, 5.0, 5.25]], seed=4)
    labels, sizes = assert_clusters_match_freud(positions, box)
    n_seed = (owner == 0).sum()
    assert len(sizes) >= 2 and sizes[1] >= 0.6 * n_seed and sizes[2:].sum() <= 4
    assert {int(owner[labels == 0][0]), int(owner[labels == 1][0])} == {0, 1}
    assert all(len(set(owner[labels == k])) == 1 for k in (0, 1))


def test_clusters_connect_through_solid_bonds_only() -> None:
    """Two touching FCC grains, the second turned by 0.5 rad about z: solid-like particles of
    different grains are neighbours but share no solid bond, so freud (and solid_clusters) see two
    clusters where connecting every neighbour pair of solid-like particles would give one."""
    ball = fcc_ball()
    first = ball + [6.5 - 2.2, 4.5, 4.5]
    second = ball @ rotation((0, 0, 1), 0.5).T + [6.5 + 2.2, 4.5, 4.5]
    second = second[np.linalg.norm(second[:, None] - first, axis=-1).min(1) > 0.9]  # no overlaps
    positions, box = float32_exact(np.vstack([first, second]), np.array([13.0, 9.0, 9.0]))
    grain = np.arange(len(positions)) >= len(ball)
    labels, sizes = assert_clusters_match_freud(positions, box)
    assert len(sizes) == 2 and sizes[0] == 55 and sizes[1] >= 40
    assert set(labels[grain & (labels >= 0)]) == {1} and set(labels[~grain & (labels >= 0)]) == {0}
    solid = labels >= 0
    b = st.bonds(torch.tensor(positions), box, R_CUT)
    i, j = b.i.numpy(), b.j.numpy()
    across = solid[i] & solid[j] & (grain[i] != grain[j])
    assert across.any() and (st.bond_dot(b, st.local_qlm(b, 6)).numpy()[across] <= Q_THRESHOLD).all()


def test_largest_cluster_per_frame() -> None:
    lattice, box = lb.fcc_lattice((4, 4, 4), 1.0)
    rng = np.random.default_rng(4)
    frames = np.stack([lattice + noise * rng.standard_normal(lattice.shape) for noise in (0.0, 0.13, 0.15, 0.2)])
    expected = [lb.largest_solid_cluster(frame, box) for frame in frames]
    assert expected[0] == 256 and expected[-1] < expected[1] < 256
    largest = lb.largest_solid_cluster_per_frame(frames, box)
    assert largest.shape == (4,) and largest.tolist() == expected
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        lb.solid_clusters(frames, box)


# --- truncated-and-shifted Lennard-Jones ------------------------------------------------------------------

LJ_BOX = np.array([6.2, 6.8, 320 / (6.2 * 6.8)])  # 256 particles at density 0.8


@pytest.fixture(scope="module")
def lj_liquid() -> np.ndarray:
    return lb.random_liquid(256, LJ_BOX, 0.85, np.random.default_rng(1))


def pair_energy(r: float, r_cut: float = 2.5) -> float:
    return 4 * (r**-12 - r**-6) - 4 * (r_cut**-12 - r_cut**-6) if r < r_cut else 0.0


def openmm_energy_forces(positions: np.ndarray, box: np.ndarray, **kwargs) -> tuple[float, np.ndarray]:
    """OpenMM energy and forces of the reduced positions (Reference platform, double), reduced units."""
    openmm = pytest.importorskip("openmm", reason=OPENMM)
    unit = openmm.unit
    system = lb.openmm_lj_system(len(positions), box, **kwargs)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions * lb.ARGON.sigma_nm)
    state = context.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) / lb.ARGON.epsilon_kj
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    return energy, forces / lb.ARGON.force_kj_nm


def test_lj_energy_and_forces_match_openmm(lj_liquid: np.ndarray) -> None:
    x = torch.tensor(lj_liquid, requires_grad=True)
    energy = lb.lj_energy(x, LJ_BOX)
    (gradient,) = torch.autograd.grad(energy, x)
    reference_energy, reference_forces = openmm_energy_forces(lj_liquid, LJ_BOX)
    assert energy.item() == pytest.approx(reference_energy, rel=1e-6)
    forces = -gradient.numpy()
    assert np.abs(forces - reference_forces).max() <= 1e-5 * np.abs(reference_forces).max()
    np.testing.assert_allclose(forces.sum(0), 0, atol=1e-9)  # Newton's third law


def test_openmm_system_settings_and_dispersion_correction(lj_liquid: np.ndarray) -> None:
    openmm = pytest.importorskip("openmm", reason=OPENMM)
    system = lb.openmm_lj_system(256, LJ_BOX)
    (force,) = system.getForces()
    assert isinstance(force, openmm.CustomNonbondedForce)
    assert force.getNonbondedMethod() == openmm.CustomNonbondedForce.CutoffPeriodic
    assert not force.getUseSwitchingFunction() and not force.getUseLongRangeCorrection()
    assert force.getCutoffDistance().value_in_unit(openmm.unit.nanometer) == pytest.approx(2.5 * 0.3405)
    assert system.getNumParticles() == 256
    assert system.getParticleMass(255).value_in_unit(openmm.unit.dalton) == pytest.approx(39.948)
    vectors = system.getDefaultPeriodicBoxVectors()
    np.testing.assert_allclose([vectors[k][k].value_in_unit(openmm.unit.nanometer) for k in range(3)],
                               LJ_BOX * 0.3405, rtol=1e-12)
    plain, _ = openmm_energy_forces(lj_liquid, LJ_BOX)
    corrected, _ = openmm_energy_forces(lj_liquid, LJ_BOX, dispersion_correction=True)
    rho, r_cut = 256 / np.prod(LJ_BOX), 2.5
    tail = 8 / 3 * math.pi * 256 * rho * (r_cut**-9 / 3 - r_cut**-3)  # the standard Lennard-Jones tail
    assert corrected - plain == pytest.approx(tail, rel=1e-5)


def test_lj_energy_translation_invariant_and_batched(lj_liquid: np.ndarray) -> None:
    x = torch.tensor(lj_liquid)
    energy = lb.lj_energy(x, LJ_BOX)
    shifted = torch.remainder(x + torch.tensor([3.1, -7.4, 12.9], dtype=torch.float64), torch.tensor(LJ_BOX))
    assert lb.lj_energy(shifted, LJ_BOX).item() == pytest.approx(energy.item(), rel=1e-12)
    both = lb.lj_energy(torch.stack([x, shifted + 0.5]), LJ_BOX)
    assert both.shape == (2,)
    torch.testing.assert_close(both, energy.expand(2), rtol=1e-12, atol=0)


def test_lj_energy_is_continuous_at_the_cutoff() -> None:
    box = torch.full((3,), 6.0, dtype=torch.float64)
    for r in (2.5 - 1e-9, 2.5, 2.5 + 1e-9, 2 ** (1 / 6), 1.1):
        x = torch.tensor([[1.0, 1.0, 1.0], [1.0 + r, 1.0, 1.0]], dtype=torch.float64)
        assert lb.lj_energy(x, box).item() == pytest.approx(pair_energy(r), rel=1e-12, abs=1e-12)
    assert abs(pair_energy(2.5 - 1e-9)) < 1e-10 and pair_energy(2 ** (1 / 6)) == pytest.approx(-1 + 0.0163169, abs=1e-7)
    sigma, epsilon = 1.3, 0.7  # r_cut in units of sigma
    x = torch.tensor([[1.0, 1.0, 1.0], [1.0 + 1.1 * sigma, 1.0, 1.0]], dtype=torch.float64)
    assert lb.lj_energy(x, torch.full((3,), 8.0), epsilon, sigma).item() == pytest.approx(epsilon * pair_energy(1.1))


def test_lj_energy_counts_the_minimum_image_pair() -> None:
    box = torch.tensor([5.5, 6.0, 7.0], dtype=torch.float64)
    across_x = torch.tensor([[0.3, 1.0, 1.0], [5.5 - 0.8, 1.0, 1.0]], dtype=torch.float64)  # 1.1 apart
    across_z = torch.tensor([[1.0, 1.0, 6.8], [1.0, 1.3, 0.2]], dtype=torch.float64)  # sqrt(0.3^2 + 0.4^2)
    assert lb.lj_energy(across_x, box).item() == pytest.approx(pair_energy(1.1), rel=1e-12)
    assert lb.lj_energy(across_z, box).item() == pytest.approx(pair_energy(0.5), rel=1e-12)
    with pytest.raises(ValueError, match="min\\(box\\)/2"):
        lb.lj_energy(across_x, box, r_cut=2.8)
    with pytest.raises(ValueError, match="min\\(box\\)/2"):
        lb.openmm_lj_system(2, box.numpy(), r_cut=2.8)


def test_argon_units() -> None:
    openmm = pytest.importorskip("openmm", reason=OPENMM)
    unit = openmm.unit
    argon = lb.ARGON
    epsilon = argon.epsilon_kj * unit.kilojoule_per_mole
    sigma, mass = argon.sigma_nm * unit.nanometer, argon.mass_amu * unit.dalton
    assert argon.temperature_k == pytest.approx(119.8, rel=1e-12)
    assert (epsilon / unit.MOLAR_GAS_CONSTANT_R).value_in_unit(unit.kelvin) == pytest.approx(119.8, rel=1e-9)
    assert argon.tau_ps == pytest.approx((sigma * unit.sqrt(mass / epsilon)).value_in_unit(unit.picosecond), rel=1e-12)
    assert argon.tau_ps == pytest.approx(2.156, abs=1e-3)
    pressure = (epsilon / sigma**3 / unit.AVOGADRO_CONSTANT_NA).value_in_unit(unit.bar)
    assert argon.pressure_bar == pytest.approx(pressure, rel=1e-12) and argon.pressure_bar == pytest.approx(419.0, abs=0.1)
    assert argon.force_kj_nm == pytest.approx((epsilon / sigma).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    assert 0.7 * argon.temperature_k == pytest.approx(83.86)  # T* = 0.7 in kelvin
