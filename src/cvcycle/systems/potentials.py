"""Analytic two-dimensional model potentials, written in torch so forces come from autograd."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .boxes import MODEL_BOXES

Tensor = torch.Tensor

# Mueller-Brown parameters (Mueller & Brown 1979).
_MB_A = (-200.0, -100.0, -170.0, 15.0)
_MB_a = (-1.0, -1.0, -6.5, 0.7)
_MB_b = (0.0, 0.0, 11.0, 0.6)
_MB_c = (-10.0, -10.0, -6.5, 0.7)
_MB_x0 = (1.0, 0.0, -0.5, -1.0)
_MB_y0 = (0.0, 0.5, 1.5, 1.0)


def mueller_brown(x: Tensor, y: Tensor) -> Tensor:
    """Mueller-Brown potential, unscaled (deepest minimum -146.70 at (-0.558, 1.442))."""
    total = torch.zeros_like(x)
    for A, a, b, c, x0, y0 in zip(_MB_A, _MB_a, _MB_b, _MB_c, _MB_x0, _MB_y0):
        dx, dy = x - x0, y - y0
        total = total + A * torch.exp(a * dx * dx + b * dx * dy + c * dy * dy)
    return total


def wolfe_quapp(x: Tensor, y: Tensor) -> Tensor:
    """Wolfe-Quapp potential: a curved reaction path on which straight-line CVs fail."""
    return x**4 + y**4 - 2 * x**2 - 4 * y**2 + x * y + 0.3 * x + 0.1 * y


def double_well(x: Tensor, y: Tensor) -> Tensor:
    """Symmetric double well in x (minima at x = +-1, barrier 1), harmonic in y."""
    return (x * x - 1.0) ** 2 + y * y


@dataclass(frozen=True)
class PotentialInfo:
    function: Callable[[Tensor, Tensor], Tensor]
    box: tuple[tuple[float, float], tuple[float, float]]  # plotting / reference grid ranges


POTENTIALS: dict[str, PotentialInfo] = {
    "mueller-brown": PotentialInfo(mueller_brown, MODEL_BOXES["mueller-brown"]),
    "wolfe-quapp": PotentialInfo(wolfe_quapp, MODEL_BOXES["wolfe-quapp"]),
    "double-well": PotentialInfo(double_well, MODEL_BOXES["double-well"]),
}


class Potential2D(torch.nn.Module):
    """scale * V(x, y) for a named analytic potential; input (n, 2), output (n,)."""

    def __init__(self, name: str, scale: float = 1.0) -> None:
        super().__init__()
        self.name = name
        self.scale = float(scale)
        self.info = POTENTIALS[name]

    def forward(self, pos: Tensor) -> Tensor:
        return self.scale * self.info.function(pos[..., 0], pos[..., 1])

    @property
    def box(self) -> tuple[tuple[float, float], tuple[float, float]]:
        return self.info.box

    def grid(self, bins: int = 200) -> tuple[Tensor, Tensor, Tensor]:
        """Grid axes (xs, ys) and energies V[i, j] = V(xs[j], ys[i]) over the potential's box."""
        (x0, x1), (y0, y1) = self.box
        xs = torch.linspace(x0, x1, bins, dtype=torch.float64)
        ys = torch.linspace(y0, y1, bins, dtype=torch.float64)
        X, Y = torch.meshgrid(xs, ys, indexing="xy")
        with torch.no_grad():
            V = self(torch.stack([X, Y], dim=-1))
        return xs, ys, V
