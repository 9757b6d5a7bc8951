"""Internal coordinates of molecules: named dihedral angles (as sin, cos) and atom-pair distances.

Positions are (..., N, 3) with any leading frame/walker axes; ``box`` is None or the orthorhombic
box edges (3,) or (..., 3), and then every difference vector (the bond vectors of dihedrals too)
takes the minimum image. Dihedrals follow the IUPAC sign convention of mdtraj.compute_dihedrals;
their sine and cosine are formed without atan2 and are undefined (NaN) only when a-b-c or b-c-d
are collinear. Distances stay finite, with zero gradient, for coincident atoms.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from numbers import Integral

import torch

from .base import Featurizer


def _checked(kind: str, entries: Sequence[tuple[str, Sequence[int]]], size: int) -> list[tuple[str, list[int]]]:
    """Validate (name, atom indices) entries of one kind; return them as (str, list[int])."""
    out = []
    for entry in entries:
        try:
            name, atoms = entry
            atoms = list(atoms)
        except (TypeError, ValueError):
            raise ValueError(f"features.{kind}: each entry must be a (name, atom indices) pair, got {entry!r}") from None
        if not isinstance(name, str) or not name:
            raise ValueError(f"features.{kind}: names must be non-empty strings, got {name!r}")
        if len(atoms) != size:
            raise ValueError(f"features.{kind}: {name!r} needs exactly {size} atom indices, got {len(atoms)}: {atoms!r}")
        if not all(isinstance(a, Integral) and not isinstance(a, bool) and a >= 0 for a in atoms):
            raise ValueError(f"features.{kind}: {name!r} atom indices must be integers >= 0, got {atoms!r}")
        atoms = [int(a) for a in atoms]
        if len(set(atoms)) != size:
            raise ValueError(f"features.{kind}: {name!r} repeats an atom: {atoms!r}")
        out.append((name, atoms))
    return out


def _displacement(positions: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
                  box: torch.Tensor | None) -> torch.Tensor:
    """x_j - x_i for the index vectors i, j (length K), minimum image in ``box``: (..., K, 3)."""
    delta = positions[..., j, :] - positions[..., i, :]
    if box is None:
        return delta
    box = torch.as_tensor(box, dtype=delta.dtype, device=delta.device).unsqueeze(-2)
    return delta - box * torch.round(delta / box)


class InternalCoordinates(Featurizer):
    """Named dihedrals (4 atoms: sin_NAME, cos_NAME) then named pair distances (2 atoms: NAME).

    ``dihedral_atoms`` and ``distance_atoms`` are the indices as plain nested lists; the same
    indices live in the (non-persistent) long buffers ``dihedral_index`` (K, 4) and
    ``distance_index`` (M, 2), so ``.to(device)`` moves them.
    """

    def __init__(self, dihedrals: Sequence[tuple[str, Sequence[int]]] = (),
                 distances: Sequence[tuple[str, Sequence[int]]] = ()) -> None:
        super().__init__()
        dih = _checked("dihedrals", dihedrals, 4)
        dist = _checked("distances", distances, 2)
        if not dih and not dist:
            raise ValueError("features.dihedrals, features.distances: no features; give at least one "
                             "dihedral (name, 4 atoms) or distance (name, 2 atoms)")
        self.dihedral_names = [name for name, _ in dih]
        self.distance_names = [name for name, _ in dist]
        self.names = [f"{f}_{name}" for name in self.dihedral_names for f in ("sin", "cos")] + self.distance_names
        repeated = sorted({n for n in self.names if self.names.count(n) > 1})
        if repeated:
            raise ValueError(f"features.dihedrals, features.distances: duplicate feature names {repeated} "
                             f"(dihedral NAME gives sin_NAME and cos_NAME)")
        self.dihedral_atoms = [atoms for _, atoms in dih]
        self.distance_atoms = [atoms for _, atoms in dist]
        self.n_atoms = 1 + max(a for atoms in self.dihedral_atoms + self.distance_atoms for a in atoms)
        self.register_buffer("dihedral_index", torch.tensor(self.dihedral_atoms, dtype=torch.long).reshape(-1, 4),
                             persistent=False)
        self.register_buffer("distance_index", torch.tensor(self.distance_atoms, dtype=torch.long).reshape(-1, 2),
                             persistent=False)

    def dihedrals(self, positions: torch.Tensor, box: torch.Tensor | None = None) -> torch.Tensor:
        """sin and cos of the dihedrals, (..., K, 2)."""
        a, b, c, d = self.dihedral_index.unbind(-1)
        b1 = _displacement(positions, a, b, box)
        b2 = _displacement(positions, b, c, box)
        b3 = _displacement(positions, c, d, box)
        n1, n2 = torch.linalg.cross(b1, b2), torch.linalg.cross(b2, b3)
        x = (n1 * n2).sum(-1)
        y = torch.linalg.vector_norm(b2, dim=-1) * (b1 * n2).sum(-1)
        r = torch.hypot(x, y)
        return torch.stack([y / r, x / r], dim=-1)

    def distances(self, positions: torch.Tensor, box: torch.Tensor | None = None) -> torch.Tensor:
        """Pair distances, (..., M); sqrt of the squared norm clamped at the dtype's tiniest normal."""
        i, j = self.distance_index.unbind(-1)
        delta = _displacement(positions, i, j, box)
        return (delta * delta).sum(-1).clamp_min(torch.finfo(delta.dtype).tiny).sqrt()

    def forward(self, positions: torch.Tensor, box: torch.Tensor | None = None) -> torch.Tensor:
        if positions.dim() < 2 or positions.shape[-1] != 3 or positions.shape[-2] < self.n_atoms:
            raise ValueError(f"features: internal coordinates need positions shaped (..., N, 3) with "
                             f"N >= {self.n_atoms}, got {tuple(positions.shape)}")
        sincos = self.dihedrals(positions, box).flatten(-2)
        return torch.cat([sincos, self.distances(positions, box)], dim=-1)


def heavy_atom_pairs(names: Sequence[str], indices: Sequence[int]) -> list[tuple[str, tuple[int, int]]]:
    """All pairs i < j of the given atoms as (f"d_{names[i]}_{names[j]}", (indices[i], indices[j]))."""
    if len(names) != len(indices):
        raise ValueError(f"heavy_atom_pairs: {len(names)} names but {len(indices)} indices")
    return [(f"d_{names[i]}_{names[j]}", (int(indices[i]), int(indices[j])))
            for i, j in combinations(range(len(names)), 2)]
