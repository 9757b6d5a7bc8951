"""Internal coordinates of molecules: dihedrals (sin, cos) and pair distances checked against
mdtraj (open and periodic), closed-form geometry, central differences and the featurizer contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cvcycle.features import Featurizer
from cvcycle.features.molecular import InternalCoordinates, heavy_atom_pairs

N_ATOMS, FRAMES, BOND = 12, 30, 0.15  # nm
DIHEDRALS = [("phi", [0, 1, 2, 3]), ("psi", [3, 4, 5, 6]), ("omega", [5, 6, 7, 8]),
             ("chi", [8, 9, 10, 11]), ("far", [2, 5, 9, 11])]
DISTANCES = [(f"d{i}_{j}", [i, j]) for i, j in
             [(0, 11), (0, 5), (1, 7), (2, 9), (3, 4), (3, 10), (4, 8), (5, 11), (6, 10), (1, 2)]]
TOL = 1e-5


# ---- references -------------------------------------------------------------------------------

def random_walks(frames: int, seed: int, bond: float = BOND) -> np.ndarray:
    """Independent random walks of N_ATOMS atoms with fixed bond length, (frames, N, 3) float32
    values in float64 (so mdtraj, which computes in float32, sees exactly the same numbers)."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(frames, N_ATOMS - 1, 3))
    steps *= bond / np.linalg.norm(steps, axis=-1, keepdims=True)
    start = rng.uniform(-0.2, 0.2, size=(frames, 1, 3))
    xyz = np.concatenate([start, start + np.cumsum(steps, axis=1)], axis=1)
    return xyz.astype(np.float32).astype(np.float64)


def trajectory(xyz: np.ndarray, box: np.ndarray | None = None):
    md = pytest.importorskip("mdtraj")
    top = md.Topology()
    residue = top.add_residue("MOL", top.add_chain())
    for k in range(N_ATOMS):
        top.add_atom(f"C{k}", md.element.carbon, residue)
    traj = md.Trajectory(xyz.astype(np.float32), top)
    if box is not None:
        traj.unitcell_lengths = np.broadcast_to(box, (len(xyz), 3)).astype(np.float32)
        traj.unitcell_angles = np.full((len(xyz), 3), 90.0, dtype=np.float32)
    return traj


def mdtraj_features(traj, periodic: bool) -> np.ndarray:
    """mdtraj's features in the featurizer's order: sin, cos of each dihedral, then distances."""
    md = pytest.importorskip("mdtraj")
    phi = md.compute_dihedrals(traj, np.array([a for _, a in DIHEDRALS]), periodic=periodic).astype(np.float64)
    dist = md.compute_distances(traj, np.array([a for _, a in DISTANCES]), periodic=periodic).astype(np.float64)
    sincos = np.stack([np.sin(phi), np.cos(phi)], axis=-1).reshape(len(phi), -1)
    return np.concatenate([sincos, dist], axis=-1)


def featurizer() -> InternalCoordinates:
    return InternalCoordinates(dihedrals=DIHEDRALS, distances=DISTANCES)


def max_deviation(xyz: np.ndarray, box: np.ndarray | None) -> tuple[float, float]:
    """Largest |ours - mdtraj| over the sin/cos outputs and over the distances."""
    ours = featurizer()(torch.as_tensor(xyz), None if box is None else torch.as_tensor(box)).numpy()
    ref = mdtraj_features(trajectory(xyz, box), periodic=box is not None)
    assert ours.shape == ref.shape == (FRAMES, 2 * len(DIHEDRALS) + len(DISTANCES))
    dev = np.abs(ours - ref)
    return float(dev[:, : 2 * len(DIHEDRALS)].max()), float(dev[:, 2 * len(DIHEDRALS):].max())


# ---- against mdtraj ---------------------------------------------------------------------------

def test_matches_mdtraj_without_box():
    xyz = random_walks(FRAMES, seed=1)
    dev_angles, dev_distances = max_deviation(xyz, None)
    assert dev_angles < TOL and dev_distances < TOL


@pytest.mark.parametrize("box_kind", ["shared", "per_frame"])
def test_matches_mdtraj_with_periodic_box(box_kind):
    rng = np.random.default_rng(2)
    box = np.array([0.62, 0.7, 0.66]) if box_kind == "shared" else rng.uniform(0.6, 0.75, size=(FRAMES, 3))
    box = box.astype(np.float32).astype(np.float64)
    unwrapped = random_walks(FRAMES, seed=3)
    frame_box = np.broadcast_to(box, (FRAMES, 3))[:, None, :]
    xyz = (unwrapped % frame_box).astype(np.float32).astype(np.float64)  # molecules straddle the box
    # minimum image matters: for distances, and for the bond vectors of the dihedrals
    i, j = np.array([a for _, a in DISTANCES]).T
    raw = np.linalg.norm(xyz[:, j] - xyz[:, i], axis=-1)
    assert (raw > frame_box.min(axis=-1) / 2).any()
    quads = np.array([a for _, a in DIHEDRALS])
    bonds = xyz[:, quads[:, 1:]] - xyz[:, quads[:, :-1]]
    assert (np.abs(bonds) > frame_box[:, :, None, :] / 2).any()

    dev_angles, dev_distances = max_deviation(xyz, box)
    assert dev_angles < TOL and dev_distances < TOL
    # the wrapped, periodic dihedrals of bonded atoms (all but "far") are those of the unwrapped molecule
    feat = featurizer()
    k = 2 * (len(DIHEDRALS) - 1)
    torch.testing.assert_close(feat(torch.as_tensor(unwrapped % frame_box), torch.as_tensor(box))[:, :k],
                               feat(torch.as_tensor(unwrapped))[:, :k], rtol=0, atol=1e-12)


# ---- closed-form geometry ---------------------------------------------------------------------

@pytest.mark.parametrize("phi", [0.0, 0.5, np.pi / 2, 2.0, np.pi, -np.pi / 3, -2.5])
def test_dihedral_sign_convention(phi):
    """a-b-c-d with b-c along +z: d rotated by +phi about +z (right-handed) is a dihedral of +phi."""
    pos = torch.tensor([[1.0, 0, 0], [0, 0, 0], [0, 0, 1.3], [2 * np.cos(phi), 2 * np.sin(phi), 1.3]],
                       dtype=torch.float64)
    out = InternalCoordinates(dihedrals=[("t", [0, 1, 2, 3])], distances=[("ad", [0, 3])])(pos)
    expected = [np.sin(phi), np.cos(phi), np.sqrt((2 * np.cos(phi) - 1) ** 2 + (2 * np.sin(phi)) ** 2 + 1.3**2)]
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-14)


# ---- gradients --------------------------------------------------------------------------------

@pytest.mark.parametrize("periodic", [False, True])
def test_gradients_match_central_differences(periodic):
    box = torch.tensor([0.62, 0.7, 0.66], dtype=torch.float64) if periodic else None
    xyz = random_walks(3, seed=4)
    if periodic:
        xyz = xyz % box.numpy()
    feat = featurizer()
    weights = torch.as_tensor(np.random.default_rng(5).normal(size=len(feat.names)))

    def scalar(x: torch.Tensor) -> torch.Tensor:
        return (feat(x, box) * weights).sum()

    pos = torch.as_tensor(xyz).requires_grad_(True)
    (grad,) = torch.autograd.grad(scalar(pos), pos)
    h, numeric = 1e-6, torch.zeros_like(grad)
    with torch.no_grad():
        for index in np.ndindex(*pos.shape):
            plus, minus = pos.detach().clone(), pos.detach().clone()
            plus[index] += h
            minus[index] -= h
            numeric[index] = (scalar(plus) - scalar(minus)) / (2 * h)
    assert torch.linalg.vector_norm(grad - numeric) / torch.linalg.vector_norm(grad) < 1e-6
    assert (grad != 0).all()  # every atom enters some feature


def test_coincident_atoms_give_finite_distance_gradients():
    pos = torch.as_tensor(random_walks(1, seed=6)[0])
    pos[7] = pos[1]
    pos.requires_grad_(True)
    out = InternalCoordinates(distances=[("d", [1, 7]), ("e", [0, 7])])(pos)
    assert out[0] < 1e-150
    (grad,) = torch.autograd.grad(out.sum(), pos)
    assert torch.isfinite(grad).all()


# ---- contract ---------------------------------------------------------------------------------

def test_names_order_and_saved_indices():
    feat = featurizer()
    assert isinstance(feat, Featurizer)
    assert feat.names[:4] == ["sin_phi", "cos_phi", "sin_psi", "cos_psi"]
    assert feat.names[2 * len(DIHEDRALS):] == [name for name, _ in DISTANCES]
    assert len(feat.names) == 2 * len(DIHEDRALS) + len(DISTANCES)
    assert json.loads(json.dumps([feat.dihedral_atoms, feat.distance_atoms])) == [
        [a for _, a in DIHEDRALS], [a for _, a in DISTANCES]]
    assert feat.dihedral_index.dtype == torch.long and feat.dihedral_index.shape == (len(DIHEDRALS), 4)
    assert feat.distance_index.dtype == torch.long and feat.distance_index.shape == (len(DISTANCES), 2)
    assert {name for name, _ in feat.named_buffers()} == {"dihedral_index", "distance_index"}
    only = InternalCoordinates(dihedrals=DIHEDRALS[:1])
    assert only.names == ["sin_phi", "cos_phi"] and only.distance_index.shape == (0, 2)
    pos = torch.as_tensor(random_walks(2, seed=7))
    assert InternalCoordinates(distances=DISTANCES[:2])(pos).shape == (2, 2)
    assert only(pos).shape == (2, 2)


def test_leading_axes_match_the_flat_computation():
    feat = featurizer()
    xyz = torch.as_tensor(random_walks(6, seed=8))
    box = torch.as_tensor(np.random.default_rng(9).uniform(0.6, 0.75, size=(6, 3)))
    flat = feat(xyz)
    out = feat(xyz.reshape(2, 3, N_ATOMS, 3))
    assert out.shape == (2, 3, len(feat.names))
    torch.testing.assert_close(out, flat.reshape(2, 3, -1), rtol=0, atol=0)
    torch.testing.assert_close(feat(xyz[4]), flat[4], rtol=0, atol=0)
    wrapped = xyz % box[:, None, :]
    torch.testing.assert_close(feat(wrapped.reshape(2, 3, N_ATOMS, 3), box.reshape(2, 3, 3)),
                               feat(wrapped, box).reshape(2, 3, -1), rtol=0, atol=0)


def test_float32_in_float32_out():
    feat = featurizer()
    xyz = torch.as_tensor(random_walks(FRAMES, seed=10))
    box = torch.tensor([0.62, 0.7, 0.66], dtype=torch.float64)
    for b in (None, box):
        out32 = feat(xyz.float(), b)
        assert out32.dtype == torch.float32
        torch.testing.assert_close(out32.double(), feat(xyz, b), rtol=0, atol=1e-4)
    pos = xyz.float().requires_grad_(True)
    (grad,) = torch.autograd.grad(feat(pos, box.float()).sum(), pos)
    assert grad.dtype == torch.float32 and torch.isfinite(grad).all()


def test_heavy_atom_pairs():
    pairs = heavy_atom_pairs(["C", "CA", "N"], [4, 9, 2])
    assert pairs == [("d_C_CA", (4, 9)), ("d_C_N", (4, 2)), ("d_CA_N", (9, 2))]
    feat = InternalCoordinates(distances=pairs)
    assert feat.names == ["d_C_CA", "d_C_N", "d_CA_N"] and feat.distance_atoms == [[4, 9], [4, 2], [9, 2]]
    assert heavy_atom_pairs(["C"], [0]) == []
    with pytest.raises(ValueError, match="2 names but 3 indices"):
        heavy_atom_pairs(["C", "N"], [0, 1, 2])


# ---- errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({}, r"no features"),
    ({"dihedrals": [], "distances": []}, r"no features"),
    ({"dihedrals": [("phi", [0, 1, 2])]}, r"features\.dihedrals: 'phi' needs exactly 4 atom indices, got 3"),
    ({"distances": [("d", [0, 1, 2])]}, r"features\.distances: 'd' needs exactly 2 atom indices, got 3"),
    ({"dihedrals": [("phi", [0, 1, 2, 3]), ("phi", [1, 2, 3, 4])]}, r"duplicate feature names \['cos_phi', 'sin_phi'\]"),
    ({"distances": [("d", [0, 1]), ("d", [1, 2])]}, r"duplicate feature names \['d'\]"),
    ({"dihedrals": [("phi", [0, 1, 2, 3])], "distances": [("sin_phi", [0, 1])]}, r"duplicate feature names \['sin_phi'\]"),
    ({"distances": [("d", [1, 1])]}, r"features\.distances: 'd' repeats an atom"),
    ({"distances": [("d", [0, -1])]}, r"integers >= 0"),
    ({"distances": [("d", [0, 1.5])]}, r"integers >= 0"),
    ({"distances": [("", [0, 1])]}, r"non-empty strings"),
    ({"distances": [[0, 1]]}, r"\(name, atom indices\) pair"),
])
def test_bad_constructor_input_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InternalCoordinates(**kwargs)


def test_numpy_integer_indices_are_accepted():
    feat = InternalCoordinates(distances=[("d", np.array([0, 3]))])
    assert feat.distance_atoms == [[0, 3]] and type(feat.distance_atoms[0][0]) is int


def test_too_few_atoms_is_an_error():
    with pytest.raises(ValueError, match=r"N >= 12, got \(5, 3\)"):
        featurizer()(torch.zeros(5, 3, dtype=torch.float64))
