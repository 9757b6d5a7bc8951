"""Permutation-invariant features of N particles: pair distances and coordination numbers.

All functions take positions (..., N, d) and an optional orthorhombic box (d,) or (..., d)
(minimum-image convention). Only the N(N-1)/2 pairs i < j are formed, so self-pairs never enter
a square root; distinct particles must not coincide (r = 0 has no gradient). The switching
function is evaluated in a form that is finite, accurate and smooth at r = r0 and that does not
overflow for distant particles, in float32 and float64 alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import Featurizer


def pair_displacements(positions: torch.Tensor, box: torch.Tensor | None = None) -> torch.Tensor:
    """Displacements x_j - x_i of the pairs i < j (row-major order), shaped (..., N(N-1)/2, d)."""
    i, j = torch.triu_indices(positions.shape[-2], positions.shape[-2], offset=1, device=positions.device)
    delta = positions[..., j, :] - positions[..., i, :]
    if box is None:
        return delta
    box = torch.as_tensor(box, dtype=delta.dtype, device=delta.device).unsqueeze(-2)
    return delta - box * torch.round(delta / box)


def pair_distances(positions: torch.Tensor, box: torch.Tensor | None = None) -> torch.Tensor:
    """Distances of the pairs i < j (row-major order), shaped (..., N(N-1)/2)."""
    return torch.linalg.vector_norm(pair_displacements(positions, box), dim=-1)


def switching(r: torch.Tensor, r0: float, nn: float, mm: float) -> torch.Tensor:
    """Rational switching function s(r) = (1 - (r/r0)^nn) / (1 - (r/r0)^mm), 0 < nn < mm.

    With t = log(r/r0) and u = -|t|, s = exp((nn - mm) max(t, 0)) expm1(nn u) / expm1(mm u),
    which neither cancels nor overflows. Where |mm t| < eps^(1/3) (0/0 at t = 0, and a gradient
    losing digits close to it) the second-order Taylor series in t is used; it has the limit
    s(r0) = nn/mm and s'(r0) = nn (nn - mm) / (2 mm r0).
    """
    t = torch.log(r / r0)
    near = (mm * t).abs() < torch.finfo(t.dtype).eps ** (1 / 3)
    u = torch.where(near, -1.0, -t.abs())  # keeps the unused branch (and its gradient) finite
    far = torch.exp((nn - mm) * t.clamp_min(0.0)) * torch.expm1(nn * u) / torch.expm1(mm * u)
    taylor = nn / mm * (1 + (nn - mm) * t / 2 + (nn - mm) * (2 * nn - mm) * t**2 / 12)
    return torch.where(near, taylor, far)


class ParticleFeaturizer(Featurizer):
    """Base of featurizers of a fixed number of particles (their names depend on it)."""

    def __init__(self, n_particles: int) -> None:
        super().__init__()
        if not (isinstance(n_particles, int) and not isinstance(n_particles, bool) and n_particles >= 2):
            raise ValueError(f"features.particles: must be an integer >= 2, got {n_particles!r}")
        self.n_particles = n_particles

    def check(self, positions: torch.Tensor) -> None:
        """Raise ValueError unless positions hold `n_particles` particles."""
        if positions.dim() < 2 or positions.shape[-2] != self.n_particles:
            raise ValueError(f"features.particles: featurizer built for {self.n_particles} particles, "
                             f"got positions shaped {tuple(positions.shape)}, expected (..., N, d)")


class CoordinationNumbers(ParticleFeaturizer):
    """Coordination numbers c_i = sum_{j != i} s(r_ij), names c0..c{N-1}."""

    def __init__(self, n_particles: int, r0: float = 1.5, nn: float = 8, mm: float = 16) -> None:
        super().__init__(n_particles)
        if not r0 > 0:
            raise ValueError(f"features.r0: must be > 0, got {r0!r}")
        if not 0 < nn < mm:
            raise ValueError(f"features.nn, features.mm: must satisfy 0 < nn < mm, got nn={nn!r}, mm={mm!r}")
        self.r0, self.nn, self.mm = float(r0), float(nn), float(mm)
        self.names = [f"c{i}" for i in range(n_particles)]

    def coordination(self, positions: torch.Tensor, box: torch.Tensor | None = None) -> torch.Tensor:
        """Coordination numbers (..., N)."""
        self.check(positions)
        n = self.n_particles
        s = switching(pair_distances(positions, box), self.r0, self.nn, self.mm)
        i, j = torch.triu_indices(n, n, offset=1, device=positions.device)
        return s.new_zeros(*s.shape[:-1], n).index_add(-1, i, s).index_add(-1, j, s)

    def forward(self, positions: torch.Tensor, box: torch.Tensor | None = None) -> torch.Tensor:
        return self.coordination(positions, box)


class SortedCoordination(CoordinationNumbers):
    """Coordination numbers sorted ascending, names c(1)..c(N)."""

    def __init__(self, n_particles: int, r0: float = 1.5, nn: float = 8, mm: float = 16) -> None:
        super().__init__(n_particles, r0, nn, mm)
        self.names = [f"c({k})" for k in range(1, n_particles + 1)]

    def forward(self, positions: torch.Tensor, box: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sort(self.coordination(positions, box), dim=-1).values


class CoordinationMoments(CoordinationNumbers):
    """Central moments mu_p = mean_i (c_i - mean_k c_k)^p of the coordination numbers, names mu{p}.

    With N = 7 and the defaults (r0 = 1.5, nn = 8, mm = 16, moments [2, 3]) these are the
    classic collective variables of the Lennard-Jones heptamer (Tribello, Ceriotti and
    Parrinello, PNAS 2010; Tiwary and Berne, SGOOP).
    """

    def __init__(self, n_particles: int, r0: float = 1.5, nn: float = 8, mm: float = 16,
                 moments: Sequence[int] = (2, 3)) -> None:
        super().__init__(n_particles, r0, nn, mm)
        if not moments or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 2 for p in moments):
            raise ValueError(f"features.moments: must be a non-empty list of integers >= 2, got {moments!r}")
        self.moments = list(moments)
        self.names = [f"mu{p}" for p in self.moments]

    def forward(self, positions: torch.Tensor, box: torch.Tensor | None = None) -> torch.Tensor:
        c = self.coordination(positions, box)
        deviation = c - c.mean(dim=-1, keepdim=True)
        return torch.stack([(deviation**p).mean(dim=-1) for p in self.moments], dim=-1)


class SortedPairDistances(ParticleFeaturizer):
    """Pair distances sorted ascending, names d(1)..d(N(N-1)/2)."""

    def __init__(self, n_particles: int) -> None:
        super().__init__(n_particles)
        self.names = [f"d({k})" for k in range(1, n_particles * (n_particles - 1) // 2 + 1)]

    def forward(self, positions: torch.Tensor, box: torch.Tensor | None = None) -> torch.Tensor:
        self.check(positions)
        return torch.sort(pair_distances(positions, box), dim=-1).values
