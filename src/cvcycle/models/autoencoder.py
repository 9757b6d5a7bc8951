"""Autoencoder whose bottleneck is the collective variable.

Inputs are standardised with stored mean/std; the bottleneck is mapped affinely so that the
training data span [-1, 1] per CV component and state A lies at lower CV than state B.
Everything that defines the model lives in buffers and parameters, so a state_dict plus the
architecture (a small JSON-able dict) restores it exactly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "elu": nn.ELU, "softplus": nn.Softplus}


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class AutoEncoder(nn.Module):
    def __init__(self, n_features: int, cv_dim: int, hidden: list[int], activation: str = "tanh") -> None:
        super().__init__()
        self.architecture = {"n_features": n_features, "cv_dim": cv_dim, "hidden": list(hidden), "activation": activation}
        self.encoder = mlp([n_features, *hidden, cv_dim], activation)
        self.decoder = mlp([cv_dim, *reversed(hidden), n_features], activation)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.register_buffer("cv_shift", torch.zeros(cv_dim))
        self.register_buffer("cv_scale", torch.ones(cv_dim))

    @classmethod
    def from_architecture(cls, arch: dict[str, Any]) -> "AutoEncoder":
        return cls(arch["n_features"], arch["cv_dim"], arch["hidden"], arch["activation"])

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.standardize(x))

    def cv(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised collective variable, (n, n_features) -> (n, cv_dim)."""
        return (self.latent(x) - self.cv_shift) * self.cv_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction in standardised feature space."""
        return self.decoder(self.latent(x))


class CVExport(nn.Module):
    """The CV alone, as exported to TorchScript: float (n, n_features) -> (n, cv_dim)."""

    def __init__(self, model: AutoEncoder) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.register_buffer("mean", model.mean.clone())
        self.register_buffer("std", model.std.clone())
        self.register_buffer("cv_shift", model.cv_shift.clone())
        self.register_buffer("cv_scale", model.cv_scale.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.mean.dtype)
        return (self.encoder((x - self.mean) / self.std) - self.cv_shift) * self.cv_scale
