"""Differentiable Steinhardt bond-order parameters and solid-bond counts in a periodic box.

Local crystalline order of particles in an orthorhombic periodic box (minimum-image convention),
as torch functions of the positions that autograd differentiates, for collective variables of
crystal nucleation (e.g. of Lennard-Jones particles):

* q_l(i): Steinhardt, Nelson & Ronchetti, Phys. Rev. B 28, 784 (1983),
  q_lm(i) = sum_j s(r_ij) Y_lm(r_ij / |r_ij|) / sum_j s(r_ij) and
  q_l(i) = sqrt(4 pi / (2l + 1) sum_m q_lm(i)^2);
* the averaged qbar_l(i): Lechner & Dellago, J. Chem. Phys. 129, 114707 (2008),
  qbar_lm(i) = (q_lm(i) + sum_j s(r_ij) q_lm(j)) / (1 + sum_j s(r_ij));
* solid bonds: ten Wolde, Ruiz-Montero & Frenkel, J. Chem. Phys. 104, 9932 (1996): the bond i-j
  is solid when d_ij = q_l(i).q_l(j) / (|q_l(i)| |q_l(j)|) > q_threshold, a particle is solid
  when it has at least solid_threshold solid bonds.

Conventions:

* Positions are (N, 3) for one frame or (F, N, 3) for F frames of the same N and box; results
  carry the same leading axis. ``box`` holds the three edge lengths and is the same for all frames;
  the cut-off must be below half the shortest edge (a single image of each neighbour).
* Neighbours j of i are the particles j != i at minimum-image distance r_ij < r_cut (strict, as
  freud's ``r_max``); r_ij = x_j - x_i wrapped into the box.
* s(r) = 1 below r_on, 0 from r_cut on, and 1 - t^3 (10 - 15 t + 6 t^2) with
  t = (r - r_on) / (r_cut - r_on) in between (the C^2 quintic "smootherstep"). r_on = r_cut
  (or None) is the hard cut-off, for which q_l, qbar_l and the solid-bond counts equal freud's
  ``Steinhardt(l, average)`` and ``SolidLiquid(l, q_threshold, solid_threshold).num_connections``
  with ``neighbors={'r_max': r_cut}``; a particle is solid-like there when its count is
  >= solid_threshold, the particles freud's SolidLiquid clusters.
* Y_lm are the real spherical harmonics, columns m = -l..l: sqrt(2) N_lm P_l^|m|(z) times
  Im (x + iy)^|m| (m < 0) or Re (x + iy)^m (m > 0), and N_l0 P_l(z) at m = 0, built from the
  components of the unit vector (no angles, smooth at the poles) and without the Condon-Shortley
  phase. They are a unitary change of basis of the complex Y_lm, so q_l and the dot products
  d_ij are those of the complex harmonics; sum_m Y_lm^2 = (2l + 1) / (4 pi).
* A particle without neighbours (sum_j s(r_ij) = 0) gets q_lm = 0, so q_l = 0, qbar_l = 0 and no
  bonds, where freud reports NaN; with r_on < r_cut its q_l jumps from 0 as the first neighbour
  enters (isolated particles do not occur in a dense fluid). Zero-norm vectors (|q_l| = 0) give
  d_ij = 0 and zero gradients instead of NaN.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from .base import Featurizer

BoxLike = torch.Tensor | Sequence[float]


def _box(box: BoxLike, like: torch.Tensor) -> torch.Tensor:
    box = torch.as_tensor(box, dtype=like.dtype, device=like.device)
    if box.shape != (3,) or not bool((box > 0).all()):
        raise ValueError(f"box: expected three positive edge lengths, got {box.tolist()}")
    return box


def displacements(positions: torch.Tensor, box: BoxLike, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Minimum-image displacements r_ij = x_j - x_i of the pairs (i, j), shaped (P, 3); positions (N, 3)."""
    box = _box(box, positions)
    delta = positions[j] - positions[i]
    return delta - box * torch.round(delta / box)


def _cells(box: torch.Tensor, r_max: float, n: int) -> torch.Tensor:
    """Cells per axis, each of side >= r_max, at most max(3, ceil(n^(1/3))) per axis (O(N) cells)."""
    cap = max(3, math.ceil(n ** (1 / 3)))
    return torch.floor(box / r_max).long().clamp(max=cap)


def _cell_candidates(positions: torch.Tensor, box: torch.Tensor, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ordered pairs (i, j), j != i, of particles in the same or adjacent cells (>= 3 cells per axis)."""
    n, device = positions.shape[0], positions.device
    fraction = positions / box
    cell = ((fraction - torch.floor(fraction)) * cells).long().clamp(max=cells - 1)
    strides = torch.stack([cells[1] * cells[2], cells[2], torch.ones_like(cells[2])])
    cell_id = (cell * strides).sum(-1)
    order = torch.argsort(cell_id)
    counts = torch.bincount(cell_id, minlength=int(cells.prod()))
    starts = torch.cumsum(counts, 0) - counts
    shifts = torch.tensor(list(itertools.product((-1, 0, 1), repeat=3)), device=device)
    adjacent = (((cell[:, None, :] + shifts) % cells) * strides).sum(-1).reshape(-1)  # (N * 27,)
    sizes = counts[adjacent]
    owner = torch.arange(n, device=device).repeat_interleave(27).repeat_interleave(sizes)
    first = starts[adjacent].repeat_interleave(sizes)
    block = torch.cumsum(sizes, 0) - sizes
    rank = torch.arange(int(sizes.sum()), device=device) - block.repeat_interleave(sizes)
    other = order[first + rank]
    keep = other != owner
    return owner[keep], other[keep]


def neighbor_pairs(positions: torch.Tensor, box: BoxLike, r_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ordered pairs (i, j), i != j, at minimum-image distance < r_max, both directions, sorted by (i, j).

    positions (N, 3). A cell list (cells of side >= r_max, 27 neighbouring cells) makes this O(N);
    boxes with fewer than 3 cells along an axis fall back to all N(N-1) pairs. Not differentiable
    (index tensors); requires r_max <= min(box) / 2.
    """
    box = _box(box, positions)
    if not 0 < r_max <= float(box.min()) / 2:
        raise ValueError(f"r_max: must be in (0, min(box)/2] = (0, {float(box.min()) / 2}], got {r_max}")
    with torch.no_grad():
        positions = positions.detach()
        n = positions.shape[0]
        cells = _cells(box, r_max, n)
        if bool((cells < 3).any()):
            i, j = torch.nonzero(~torch.eye(n, dtype=torch.bool, device=positions.device), as_tuple=True)
        else:
            i, j = _cell_candidates(positions, box, cells)
        close = torch.linalg.vector_norm(displacements(positions, box, i, j), dim=-1) < r_max
        i, j = i[close], j[close]
        order = torch.argsort(i * n + j)
        return i[order], j[order]


def smooth_cutoff(r: torch.Tensor, r_on: float, r_cut: float) -> torch.Tensor:
    """s(r): 1 for r <= r_on, 0 for r >= r_cut, C^2 quintic 1 - t^3 (10 - 15 t + 6 t^2) between.

    r_on == r_cut is the hard step s = [r < r_cut] (constant, no gradient)."""
    if not 0 <= r_on <= r_cut:
        raise ValueError(f"r_on, r_cut: need 0 <= r_on <= r_cut, got r_on={r_on}, r_cut={r_cut}")
    if r_on == r_cut:
        return (r < r_cut).to(r.dtype)
    t = ((r - r_on) / (r_cut - r_on)).clamp(0.0, 1.0)
    return 1 - t**3 * (10 - 15 * t + 6 * t * t)


def _legendre_ratio(z: torch.Tensor, l: int, m: int) -> torch.Tensor:
    """P_l^m(z) / (1 - z^2)^(m/2) (a polynomial in z, no Condon-Shortley phase) by the l-recurrence."""
    previous = torch.zeros_like(z)
    current = torch.full_like(z, float(math.prod(range(1, 2 * m, 2))))  # (2m - 1)!!
    for k in range(m + 1, l + 1):
        previous, current = current, ((2 * k - 1) * z * current - (k + m - 1) * previous) / (k - m)
    return current


def real_spherical_harmonics(unit: torch.Tensor, l: int) -> torch.Tensor:
    """Real Y_lm of unit vectors (..., 3), shaped (..., 2l + 1), columns m = -l..l (module docstring)."""
    if not (isinstance(l, int) and l >= 0):
        raise ValueError(f"l: must be an integer >= 0, got {l!r}")
    x, y, z = unit.unbind(-1)
    re, im = [torch.ones_like(x)], [torch.zeros_like(x)]  # Re, Im (x + iy)^m
    for _ in range(l):
        re, im = re + [x * re[-1] - y * im[-1]], im + [x * im[-1] + y * re[-1]]
    columns: dict[int, torch.Tensor] = {}
    for m in range(l + 1):
        norm = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - m) / math.factorial(l + m))
        radial = _legendre_ratio(z, l, m) * (norm if m == 0 else math.sqrt(2) * norm)
        columns[m] = radial * re[m]
        if m > 0:
            columns[-m] = radial * im[m]
    return torch.stack([columns[m] for m in range(-l, l + 1)], dim=-1)


class Bonds(NamedTuple):
    """The neighbour graph of (flattened) frames: centre i, neighbour j, weight s(r_ij), unit r_ij."""

    i: torch.Tensor
    j: torch.Tensor
    weight: torch.Tensor
    unit: torch.Tensor
    n: int


def bonds(positions: torch.Tensor, box: BoxLike, r_cut: float, r_on: float | None = None) -> Bonds:
    """The neighbour graph of positions (N, 3) or (F, N, 3); frame f particle k is node f * N + k."""
    if positions.dim() not in (2, 3) or positions.shape[-1] != 3:
        raise ValueError(f"positions: expected (N, 3) or (F, N, 3), got {tuple(positions.shape)}")
    frames = positions.reshape(-1, *positions.shape[-2:])
    n = frames.shape[1]
    pairs = [neighbor_pairs(frame, box, r_cut) for frame in frames]
    i = torch.cat([p[0] + f * n for f, p in enumerate(pairs)])
    j = torch.cat([p[1] + f * n for f, p in enumerate(pairs)])
    r = displacements(frames.reshape(-1, 3), box, i, j)
    distance = torch.linalg.vector_norm(r, dim=-1)
    weight = smooth_cutoff(distance, r_cut if r_on is None else r_on, r_cut)
    return Bonds(i, j, weight, r / distance[:, None], frames.shape[0] * n)


def _sum_over_neighbors(b: Bonds, values: torch.Tensor) -> torch.Tensor:
    """sum_j values_ij per centre i, shaped (n, ...)."""
    return values.new_zeros(b.n, *values.shape[1:]).index_add(0, b.i, values)


def _safe_norm(v: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over the last axis, 0 (with zero gradient) for the zero vector."""
    square = (v * v).sum(-1)
    positive = square > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, square, torch.ones_like(square))), 0.0)


def local_qlm(b: Bonds, l: int) -> torch.Tensor:
    """q_lm(i) = sum_j s_ij Y_lm(r_ij) / sum_j s_ij, shaped (n, 2l + 1); 0 without neighbours."""
    total = _sum_over_neighbors(b, b.weight)
    weighted = _sum_over_neighbors(b, b.weight[:, None] * real_spherical_harmonics(b.unit, l))
    return weighted / torch.where(total > 0, total, torch.ones_like(total))[:, None]


def average_qlm(b: Bonds, qlm: torch.Tensor) -> torch.Tensor:
    """Lechner-Dellago qbar_lm(i) = (q_lm(i) + sum_j s_ij q_lm(j)) / (1 + sum_j s_ij), shaped (n, 2l + 1)."""
    total = _sum_over_neighbors(b, b.weight)
    return (qlm + _sum_over_neighbors(b, b.weight[:, None] * qlm[b.j])) / (1 + total)[:, None]


def ql_from_qlm(qlm: torch.Tensor) -> torch.Tensor:
    """q_l = sqrt(4 pi / (2l + 1) sum_m q_lm^2) from (..., 2l + 1) vectors."""
    return math.sqrt(4 * math.pi / qlm.shape[-1]) * _safe_norm(qlm)


def bond_dot(b: Bonds, qlm: torch.Tensor) -> torch.Tensor:
    """Normalised d_ij = q_l(i).q_l(j) / (|q_l(i)| |q_l(j)|) for every bond, shaped (P,); 0 if a norm is 0."""
    norm = _safe_norm(qlm)
    denominator = norm[b.i] * norm[b.j]
    positive = denominator > 0
    dot = (qlm[b.i] * qlm[b.j]).sum(-1)
    return torch.where(positive, dot / torch.where(positive, denominator, torch.ones_like(denominator)), 0.0)


def _step(x: torch.Tensor, width: float) -> torch.Tensor:
    """[x > 0] for width 0, else the sigmoid of x / width."""
    return (x > 0).to(x.dtype) if width == 0 else torch.sigmoid(x / width)


def solid_bond_counts(b: Bonds, qlm: torch.Tensor, q_threshold: float, bond_width: float = 0.0) -> torch.Tensor:
    """Per-particle sum_j s_ij step(d_ij - q_threshold), shaped (n,); width 0: freud's num_connections."""
    return _sum_over_neighbors(b, b.weight * _step(bond_dot(b, qlm) - q_threshold, bond_width))


def solidity(counts: torch.Tensor, solid_threshold: int, count_width: float = 0.0) -> torch.Tensor:
    """step(counts - solid_threshold + 1/2): 1 for a solid-like particle (counts >= solid_threshold)."""
    return _step(counts - (solid_threshold - 0.5), count_width)


def _per_frame(values: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Reshape node values (F N, ...) to positions' leading axes: (N, ...) or (F, N, ...)."""
    return values.reshape(*positions.shape[:-1], *values.shape[1:])


def steinhardt_qlm(positions: torch.Tensor, box: BoxLike, l: int, r_cut: float, r_on: float | None = None,
                   average: bool = False) -> torch.Tensor:
    """Per-particle q_lm (or qbar_lm with average=True), shaped (..., N, 2l + 1)."""
    b = bonds(positions, box, r_cut, r_on)
    qlm = local_qlm(b, l)
    return _per_frame(average_qlm(b, qlm) if average else qlm, positions)


def steinhardt(positions: torch.Tensor, box: BoxLike, l: int, r_cut: float, r_on: float | None = None,
               average: bool = False) -> torch.Tensor:
    """Per-particle q_l (or the Lechner-Dellago qbar_l with average=True), shaped (..., N)."""
    return ql_from_qlm(steinhardt_qlm(positions, box, l, r_cut, r_on, average))


def num_connections(positions: torch.Tensor, box: BoxLike, l: int, r_cut: float, q_threshold: float,
                    r_on: float | None = None, bond_width: float = 0.0) -> torch.Tensor:
    """Solid bonds per particle, shaped (..., N): freud's SolidLiquid.num_connections for the defaults."""
    b = bonds(positions, box, r_cut, r_on)
    return _per_frame(solid_bond_counts(b, local_qlm(b, l), q_threshold, bond_width), positions)


def n_solid(positions: torch.Tensor, box: BoxLike, l: int, r_cut: float, q_threshold: float, solid_threshold: int,
            r_on: float | None = None, bond_width: float = 0.05, count_width: float = 0.5) -> torch.Tensor:
    """Smooth number of solid-like particles per frame, shaped (...): sum_i solidity(solid bond counts).

    Widths 0 and r_on = None give the integer count of particles with >= solid_threshold solid bonds."""
    b = bonds(positions, box, r_cut, r_on)
    counts = solid_bond_counts(b, local_qlm(b, l), q_threshold, bond_width)
    return _per_frame(solidity(counts, solid_threshold, count_width), positions).sum(-1)


def soft_histogram(values: torch.Tensor, centers: torch.Tensor, width: float) -> torch.Tensor:
    """Gaussian-kernel histogram of values (..., N) on bins centred at `centers` (B,), shaped (..., B).

    Each value spreads a unit mass over the bins, softmax_b(-(v - c_b)^2 / (2 width^2)) (values
    outside the range fall into the nearest bin), and the histogram is the mean over the N values,
    so it sums to 1."""
    centers = torch.as_tensor(centers, dtype=values.dtype, device=values.device)
    logits = -((values[..., None] - centers) ** 2) / (2 * width * width)
    return torch.softmax(logits, dim=-1).mean(-2)


DEFAULT_RANGES = {"q4": (0.0, 0.3), "q6": (0.1, 0.6), "qbar6": (0.0, 0.55)}


class SteinhardtFeatures(Featurizer):
    """Positions (F, N, 3) or (N, 3) -> crystalline-order features (F, len(names)) or (len(names),).

    Features, in order: soft histograms (`n_bins` bins each, Gaussian width = bin spacing) of
    q4, q6 and qbar6 on `ranges` (bin centres from lo to hi), the means of q6 and qbar6, and the
    smooth number of solid-like particles (l = 6, ten Wolde-Frenkel bonds). All use the switched
    neighbour weights s(r) between r_on and r_cut. The defaults suit Lennard-Jones particles near
    the triple point (first FCC shell at ~1.1 sigma, second at ~1.55 sigma). A ``box`` given to
    `forward` (three edge lengths) replaces the constructor's.
    """

    # neighbour pairs per centre, with room: ~13 within r_cut = 1.5 in the liquid at density 0.95, 12 in its FCC
    pairs_per_particle = 32

    def __init__(self, box: BoxLike, r_cut: float = 1.5, r_on: float = 1.3, q_threshold: float = 0.7,
                 solid_threshold: int = 7, n_bins: int = 10, ranges: dict[str, tuple[float, float]] | None = None,
                 bond_width: float = 0.05, count_width: float = 0.5) -> None:
        super().__init__()
        if not (isinstance(n_bins, int) and n_bins >= 2):
            raise ValueError(f"n_bins: must be an integer >= 2, got {n_bins!r}")
        self.register_buffer("box", _box(box, torch.zeros((), dtype=torch.float64)), persistent=False)
        self.r_cut, self.r_on = float(r_cut), float(r_on)
        self.q_threshold, self.solid_threshold = float(q_threshold), int(solid_threshold)
        self.bond_width, self.count_width = float(bond_width), float(count_width)
        ranges = {**DEFAULT_RANGES, **(ranges or {})}
        self.centers = {k: torch.linspace(*ranges[k], n_bins, dtype=torch.float64) for k in DEFAULT_RANGES}
        self.widths = {k: (ranges[k][1] - ranges[k][0]) / (n_bins - 1) for k in DEFAULT_RANGES}
        self.names = [f"h_{k}_{c:.3f}" for k in DEFAULT_RANGES for c in self.centers[k].tolist()] \
            + ["mean_q6", "mean_qbar6", "n_solid"]

    def forward(self, positions: torch.Tensor, box: torch.Tensor | None = None) -> torch.Tensor:
        return torch.cat(self.blocks(positions, box), dim=-1)

    def blocks(self, positions: torch.Tensor, box: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The three histograms, the two means and n_solid as six blocks: a column's gradient then
        flows back through its own order parameter only (a Jacobian ~3x faster than through all)."""
        b = bonds(positions, self.box if box is None else box, self.r_cut, self.r_on)
        q6lm = local_qlm(b, 6)
        order = {"q4": ql_from_qlm(local_qlm(b, 4)), "q6": ql_from_qlm(q6lm), "qbar6": ql_from_qlm(average_qlm(b, q6lm))}
        order = {k: _per_frame(v, positions) for k, v in order.items()}
        counts = solid_bond_counts(b, q6lm, self.q_threshold, self.bond_width)
        solid = _per_frame(solidity(counts, self.solid_threshold, self.count_width), positions).sum(-1)
        histograms = [soft_histogram(order[k], self.centers[k], self.widths[k]) for k in DEFAULT_RANGES]
        return histograms + [order["q6"].mean(-1, keepdim=True), order["qbar6"].mean(-1, keepdim=True), solid[..., None]]
