"""Cartesian coordinates of chosen particles as features."""

from __future__ import annotations

import re

import torch

from .base import Featurizer

AXES = ("x", "y", "z")
_NAME = re.compile(r"([xyz])(\d*)")


class Coordinates(Featurizer):
    """Select named coordinates: "x", "y", "z" of particle 0, or "x3", "y0", ... of particle i.

    Positions are (..., N, d). Inputs with fewer than three axes are the one-particle layout of
    the 2-D model potentials, (n, d) or (d,), read as (n, 1, d): a single frame of N > 1
    particles must therefore be passed as (1, N, d). The coordinates are not wrapped into
    ``box``, which is accepted for the contract and ignored.
    """

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = list(names)
        parsed = [_parse(n) for n in self.names]
        self.max_particle = max((p for p, _ in parsed), default=0)
        self.max_axis = max((a for _, a in parsed), default=0)
        self.register_buffer("particle", torch.tensor([p for p, _ in parsed], dtype=torch.long), persistent=False)
        self.register_buffer("axis", torch.tensor([a for _, a in parsed], dtype=torch.long), persistent=False)

    def forward(self, positions: torch.Tensor, box: torch.Tensor | None = None) -> torch.Tensor:
        if positions.dim() < 3:
            positions = positions.unsqueeze(-2)
        n, d = positions.shape[-2:]
        if self.max_particle >= n or self.max_axis >= d:
            raise ValueError(f"features.names: {self.names} need particle {self.max_particle} and axis "
                             f"{AXES[self.max_axis]!r}, but positions hold {n} particle(s) in {d} dimensions")
        return positions[..., self.particle, self.axis]


def _parse(name: str) -> tuple[int, int]:
    """'y3' -> (particle 3, axis 1); 'x' -> (0, 0)."""
    match = _NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(f"features.names: unknown coordinate {name!r}; expected 'x', 'y' or 'z', "
                         f"optionally followed by a particle index, e.g. 'x3'")
    return int(match[2] or 0), AXES.index(match[1])
