"""Exact references for overdamped dynamics on a 2-D potential: F = V and the committor.

The committor solves L q = 0 outside A and B (q = 0 on A, 1 on B). On a grid, L is the
generator of a detailed-balance jump process between neighbouring cells with rates
(D/h^2) exp(-beta (V_j - V_i) / 2), h the spacing along the jump's axis, which converges to the Smoluchowski operator as h -> 0.
The box edges reflect. One sparse linear solve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from ..systems.base import in_states
from ..systems.potentials import Potential2D


@dataclass
class GridReference:
    xs: np.ndarray          # (nx,)
    ys: np.ndarray          # (ny,)
    free_energy: np.ndarray  # (ny, nx), in kT, minimum 0
    committor: np.ndarray    # (ny, nx)

    @property
    def points(self) -> np.ndarray:
        X, Y = np.meshgrid(self.xs, self.ys, indexing="xy")
        return np.stack([X.ravel(), Y.ravel()], axis=1)

    def interpolate_committor(self, points: np.ndarray) -> np.ndarray:
        """The exact committor at arbitrary points (n, 2) inside the grid, bilinearly interpolated."""
        from scipy.interpolate import RegularGridInterpolator

        pts = np.asarray(points, dtype=np.float64)
        return RegularGridInterpolator((self.ys, self.xs), self.committor)(pts[:, ::-1])


def exact_reference(potential: Potential2D, kT: float, states: dict[str, dict], bins: int = 301,
                    a: str = "A", b: str = "B") -> GridReference:
    """Free energy (kT) and committor q_{A->B} on a bins x bins grid over the potential's box."""
    xs_t, ys_t, V_t = potential.grid(bins)
    xs, ys, V = xs_t.numpy(), ys_t.numpy(), V_t.numpy() / kT
    ny, nx = V.shape
    n = nx * ny
    idx = np.arange(n).reshape(ny, nx)
    hx, hy = xs[1] - xs[0], ys[1] - ys[0]
    rows, cols, rates = [], [], []
    for (di, dj), h in (((0, 1), hx), ((1, 0), hy)):  # x and y neighbours, both directions
        i0, i1 = idx[: ny - di, : nx - dj].ravel(), idx[di:, dj:].ravel()
        dv = V.ravel()[i1] - V.ravel()[i0]
        rows += [i0, i1]
        cols += [i1, i0]
        rates += [np.exp(-0.5 * dv) / h**2, np.exp(0.5 * dv) / h**2]
    rows, cols, rates = np.concatenate(rows), np.concatenate(cols), np.concatenate(rates)
    K = sp.csr_matrix((rates, (rows, cols)), shape=(n, n))
    L = K - sp.diags(np.asarray(K.sum(axis=1)).ravel())
    pts = np.stack(np.meshgrid(xs, ys, indexing="xy"), axis=-1).reshape(-1, 2)
    masks = in_states(pts, states)
    fixed = masks[a] | masks[b]
    if not masks[a].any() or not masks[b].any():
        raise ValueError("a state contains no grid point; enlarge its radius or the grid")
    q = np.where(masks[b], 1.0, 0.0)
    free = ~fixed
    L = L.tocsr()
    rhs = -L[free][:, fixed] @ q[fixed]
    q[free] = spla.spsolve(L[free][:, free].tocsc(), rhs)
    return GridReference(xs, ys, (V - V.min()).reshape(ny, nx), np.clip(q, 0, 1).reshape(ny, nx))


def reference_from_spec(spec: dict, bins: int = 301) -> GridReference:
    sy = spec["system"]
    names = list(sy["states"])
    return exact_reference(Potential2D(sy["potential"], sy["scale"]), sy["temperature"], sy["states"], bins,
                           names[0], names[1])


def boltzmann_bin_free_energy(potential: Potential2D, kT: float, x_edges: np.ndarray, y_edges: np.ndarray,
                              sub: int = 6) -> np.ndarray:
    """Exact free energy (kT, min 0) of histogram bins: -ln of the Boltzmann weight integrated over
    each bin (sub x sub points per bin), so it is comparable with a histogram estimate; +inf where
    that weight underflows (bins far above the minimum of a deep or scaled-up potential)."""
    fx = (x_edges[:-1, None] + (np.arange(sub) + 0.5) / sub * np.diff(x_edges)[:, None]).ravel()
    fy = (y_edges[:-1, None] + (np.arange(sub) + 0.5) / sub * np.diff(y_edges)[:, None]).ravel()
    X, Y = np.meshgrid(fx, fy, indexing="xy")
    with torch.no_grad():
        V = potential(torch.as_tensor(np.stack([X, Y], -1))).numpy() / kT
    ny, nx = len(y_edges) - 1, len(x_edges) - 1
    w = np.exp(-(V - V.min())).reshape(ny, sub, nx, sub).sum(axis=(1, 3))
    with np.errstate(divide="ignore"):
        F = -np.log(w)
    return F - F.min()
