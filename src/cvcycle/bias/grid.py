"""A function tabulated on a regular 1-D or 2-D grid, linearly interpolated and differentiable.

Biases are tabulated rather than summed over every deposited kernel: evaluation costs the same
after a million depositions as after one. Outside the grid the value is clamped to the edge
(no force), so the grid must cover the CV range that sampling reaches (see bias.grid_margin).
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


class Grid:
    def __init__(self, lows: list[float], highs: list[float], bins: int) -> None:
        self.dim = len(lows)
        if self.dim not in (1, 2):
            raise ValueError("grids are 1-D or 2-D")
        self.lows = torch.tensor(lows, dtype=torch.float64)
        self.highs = torch.tensor(highs, dtype=torch.float64)
        self.bins = bins
        self.spacing = (self.highs - self.lows) / (bins - 1)
        self.axes = [torch.linspace(float(lo), float(hi), bins, dtype=torch.float64) for lo, hi in zip(lows, highs)]
        mesh = torch.meshgrid(*self.axes, indexing="ij")
        self.points = torch.stack(mesh, dim=-1).reshape(-1, self.dim)  # (bins**dim, dim)
        self.cell = float(torch.prod(self.spacing))

    def interpolate(self, values: Tensor, s: Tensor) -> Tensor:
        """Values at points s (n, dim), differentiable in s."""
        t = (s - self.lows) / self.spacing
        # a non-finite CV (a diverged walker) reads cell 0 and gives a NaN value, which the engine
        # reports as a divergence; cast to an index it would be out of bounds
        i = torch.nan_to_num(t.detach(), nan=0.0, posinf=self.bins - 2, neginf=0.0).floor().clamp(0, self.bins - 2)
        f = (t - i).clamp(0.0, 1.0)
        i = i.long()
        if self.dim == 1:
            v0, v1 = values[i[:, 0]], values[i[:, 0] + 1]
            return v0 + (v1 - v0) * f[:, 0]
        ix, iy, fx, fy = i[:, 0], i[:, 1], f[:, 0], f[:, 1]
        v00, v10 = values[ix, iy], values[ix + 1, iy]
        v01, v11 = values[ix, iy + 1], values[ix + 1, iy + 1]
        return (v00 * (1 - fx) + v10 * fx) * (1 - fy) + (v01 * (1 - fx) + v11 * fx) * fy

    def gaussians(self, centers: Tensor, sigma: float, heights: Tensor) -> Tensor:
        """Sum of Gaussian kernels sum_k h_k exp(-|g - c_k|^2 / 2 sigma^2) on the grid."""
        centers, heights = centers.to(torch.float64), heights.to(torch.float64)
        total = torch.zeros(len(self.points), dtype=torch.float64)
        chunk = len(centers)
        if len(self.points) * len(centers) > 2**25:  # bounded memory for 2-D grids and many kernels
            chunk = max(1, 2**22 // len(self.points))
        for start in range(0, len(centers), chunk):
            d2 = torch.cdist(self.points, centers[start:start + chunk]) ** 2  # (n_grid, chunk)
            total += torch.exp(-0.5 * d2 / sigma**2) @ heights[start:start + chunk]
        return total.reshape([self.bins] * self.dim)

    def nearest(self, s: Tensor) -> Tensor:
        """Flat index of the grid point nearest to each of s (n, dim)."""
        idx = ((s - self.lows) / self.spacing).round().long().clamp(0, self.bins - 1)
        if self.dim == 1:
            return idx[:, 0]
        return idx[:, 0] * self.bins + idx[:, 1]
