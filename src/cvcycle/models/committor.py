"""Committor network: q(x) = sigmoid(f(x)), with f = logit q the CV that the bias acts on.

As for the autoencoder, inputs are standardised with stored mean/std and everything that
defines the model is a buffer or parameter, so a state_dict plus the architecture restores it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .autoencoder import mlp


class CommittorNet(nn.Module):
    """features (n, n_features) -> logit q (n, 1); `committor` gives q itself."""

    def __init__(self, n_features: int, hidden: list[int], activation: str = "tanh") -> None:
        super().__init__()
        self.architecture = {"n_features": n_features, "hidden": list(hidden), "activation": activation}
        self.net = mlp([n_features, *hidden, 1], activation)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    @classmethod
    def from_architecture(cls, arch: dict[str, Any]) -> "CommittorNet":
        return cls(arch["n_features"], arch["hidden"], arch["activation"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.mean.dtype)
        return self.net((x - self.mean) / self.std)

    def committor(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self(x))[:, 0]


class CommittorExport(nn.Module):
    """The committor alone, as exported to TorchScript: float (n, n_features) -> q (n,) in [0, 1]."""

    def __init__(self, model: CommittorNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(x))[:, 0]
