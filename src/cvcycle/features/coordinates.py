"""Cartesian coordinates of a 2-D system as features."""

from __future__ import annotations

import torch

AXES = ("x", "y")


class Coordinates(torch.nn.Module):
    """Select named coordinates: positions (n, 2) -> features (n, len(names))."""

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = list(names)
        self.register_buffer("index", torch.tensor([AXES.index(n) for n in self.names]), persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return positions.index_select(-1, self.index)
