"""Variational committor learning (Kolmogorov functional with boundary conditions).

The committor q minimises K[q] = E_Boltzmann |grad_x q|^2 subject to q = 0 on A and q = 1 on B.
With q = sigmoid(f(features)) and biased samples reweighted to the Boltzmann distribution, the
loss is K[q] / K_ref + boundary_weight * (mean over frames in A of q^2 + mean over frames in B of
(1 - q)^2). K_ref is K of the starting model on the same data (the previous committor when
training is warm-started), so the two terms keep comparable sizes whatever the barrier height;
a logarithm of K instead would be unbounded below and let q collapse to a constant.

|grad_x q|^2 = g^T M g with g = dq/dfeatures and M = J J^T the metric of the features
(J = d features / d positions; the identity for Cartesian coordinates).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ..checkpoints import CheckpointSeries
from ..features.base import frames_per_chunk
from ..models.committor import CommittorNet
from .train import TrainResult, fit, initialize


def feature_metric(featurizer: torch.nn.Module, positions: np.ndarray,
                   inverse_mass: np.ndarray | None = None, chunk: int | None = None) -> np.ndarray | None:
    """M = J D J^T per frame, (n, f, f), for features of positions (n, N, d), with D the
    dynamics' diffusion metric: the identity, or `inverse_mass` (N,) per particle; None when the
    features are the coordinates themselves and D is the identity (M = identity). Computed
    `chunk` frames at a time (default: features.base.frames_per_chunk), so that memory does not
    grow with the number of frames.

    J comes from one backward pass per feature over a whole chunk (a frame's features depend on
    its own positions only), which works for featurizers with data-dependent steps such as a
    neighbour search, where torch.func.vmap does not."""
    x = torch.as_tensor(positions, dtype=torch.float64)
    f = featurizer(x[:1])
    if inverse_mass is None and f.shape[1] == x[0].numel() and torch.equal(f.reshape(-1), x[:1].reshape(-1)):
        return None
    chunk = chunk or frames_per_chunk(featurizer, x.shape[1])
    scale = None if inverse_mass is None else torch.as_tensor(inverse_mass, dtype=torch.float64)[:, None]
    out = np.empty((len(x), f.shape[1], f.shape[1]))
    for start in range(0, len(x), chunk):
        jac = _jacobian(featurizer, x[start:start + chunk])  # (n, f, *pos)
        weighted = jac if scale is None else jac * scale
        flat = jac.reshape(len(jac), jac.shape[1], -1)
        out[start:start + len(jac)] = (weighted.reshape(flat.shape) @ flat.transpose(1, 2)).numpy()
    return out


def _jacobian(featurizer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """d features / d positions for frames x (n, *pos): (n, f, *pos), one backward pass per
    feature through its block of the featurizer's graph (features.base.Featurizer.blocks)."""
    p = x.clone().requires_grad_(True)
    blocks = featurizer.blocks(p) if hasattr(featurizer, "blocks") else [featurizer(p)]
    rows = [torch.autograd.grad(block[:, a].sum(), p, retain_graph=True, allow_unused=True, materialize_grads=True)[0]
            for block in blocks for a in range(block.shape[1])]  # a feature that does not depend on the positions: zero
    return torch.stack(rows, 1)


def _q_and_grad_sq(model: CommittorNet, x: torch.Tensor, metric: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """q and |grad_x q|^2 per frame; differentiable in the parameters."""
    x = x.detach().requires_grad_(True)
    q = model.committor(x)
    (g,) = torch.autograd.grad(q.sum(), x, create_graph=True)
    return q, (g * g).sum(1) if metric is None else torch.einsum("bi,bij,bj->b", g, metric, g)


def kolmogorov_terms(model: CommittorNet, x: torch.Tensor, w: torch.Tensor, labels: torch.Tensor,
                     metric: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(weighted mean |grad q|^2, boundary error) on a batch; differentiable in the parameters."""
    q, sq = _q_and_grad_sq(model, x, metric)
    kol = (w * sq).mean()
    in_a, in_b = labels == 0, labels == 1
    boundary = (q[in_a] ** 2).sum() / in_a.sum().clamp_min(1) + ((1 - q[in_b]) ** 2).sum() / in_b.sum().clamp_min(1)
    return kol, boundary


def train_committor(features: np.ndarray, weights: np.ndarray, labels: np.ndarray, cfg: dict[str, Any], seed: int,
                    metric: np.ndarray | None = None, log: Callable[[str], None] = print, label: str = "train",
                    init: CommittorNet | None = None, checkpoints: CheckpointSeries | None = None,
                    deadline: float | None = None) -> TrainResult:
    """Fit q = sigmoid(f) to features (n, f) with Boltzmann weights (n,) and state labels (n,):
    0 in A, 1 in B, -1 elsewhere; `metric` (n, f, f) from `feature_metric`. `cfg` is the spec's
    [learner] section; `init`, `checkpoints` and `deadline` as for train_autoencoder."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(features, dtype=torch.float32)
    w = torch.as_tensor(weights / weights.mean(), dtype=torch.float32)
    lab = torch.as_tensor(labels)
    m = None if metric is None else torch.as_tensor(metric, dtype=torch.float32)
    model = CommittorNet(x.shape[1], cfg["hidden"], cfg["activation"])
    initialize(model, x, w, gen, init)
    alpha = cfg["boundary_weight"]
    k_ref = float(kolmogorov_terms(model, x, w, lab, m)[0].detach())
    if not k_ref > 0:
        k_ref = 1.0  # a constant starting model: any positive scale works

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        kol, boundary = kolmogorov_terms(model, x[idx], w[idx], lab[idx], None if m is None else m[idx])
        return kol / k_ref + alpha * boundary

    return fit(model, loss_of, len(x), cfg, gen, log, label, checkpoints, deadline)


def committor_and_grad_sq(model: CommittorNet, features: np.ndarray,
                          metric: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """q and |grad_x q|^2 of a model at frames (n, f); `metric` from `feature_metric`."""
    q, sq = _q_and_grad_sq(model, torch.as_tensor(features, dtype=torch.float32),
                           None if metric is None else torch.as_tensor(metric, dtype=torch.float32))
    return q.detach().double().numpy(), sq.detach().double().numpy()


def committor_terms(model: CommittorNet, features: np.ndarray, weights: np.ndarray, labels: np.ndarray,
                    metric: np.ndarray | None = None) -> tuple[float, float]:
    """(weighted mean |grad q|^2, boundary error) of a model on data, weights normalised to mean 1."""
    kol, boundary = kolmogorov_terms(model, torch.as_tensor(features, dtype=torch.float32),
                                     torch.as_tensor(weights / weights.mean(), dtype=torch.float32),
                                     torch.as_tensor(labels), None if metric is None else torch.as_tensor(metric, dtype=torch.float32))
    return float(kol.detach()), float(boundary.detach())


def _binomial_nll(model: CommittorNet, x: torch.Tensor, n_a: torch.Tensor, n_b: torch.Tensor) -> torch.Tensor:
    z = model(x)[:, 0]
    return -(n_b * torch.nn.functional.logsigmoid(z) + n_a * torch.nn.functional.logsigmoid(-z)).sum() / (n_a + n_b).sum()


def shooting_nll(model: CommittorNet, features: np.ndarray, n_a: np.ndarray, n_b: np.ndarray) -> float:
    """Negative log-likelihood per shot of shooting outcomes (n_a trajectories to A, n_b to B
    from each point) under q = model."""
    with torch.no_grad():
        return float(_binomial_nll(model, torch.as_tensor(features, dtype=torch.float32),
                                   torch.as_tensor(n_a, dtype=torch.float32), torch.as_tensor(n_b, dtype=torch.float32)))


def train_committor_shooting(features: np.ndarray, n_a: np.ndarray, n_b: np.ndarray, cfg: dict[str, Any], seed: int,
                             log: Callable[[str], None] = print, label: str = "train", init: CommittorNet | None = None,
                             checkpoints: CheckpointSeries | None = None, deadline: float | None = None) -> TrainResult:
    """Fit q = sigmoid(f) to shooting outcomes by their binomial likelihood: from the point with
    features x_i, n_b[i] trajectories reached B first and n_a[i] reached A (Jung, Covino & Hummer).
    `cfg` is the spec's [learner] section; `init`, `checkpoints` and `deadline` as for
    train_autoencoder."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(features, dtype=torch.float32)
    a = torch.as_tensor(n_a, dtype=torch.float32)
    b = torch.as_tensor(n_b, dtype=torch.float32)
    model = CommittorNet(x.shape[1], cfg["hidden"], cfg["activation"])
    initialize(model, x, torch.ones(len(x)), gen, init)
    return fit(model, lambda idx: _binomial_nll(model, x[idx], a[idx], b[idx]), len(x), cfg, gen, log, label,
               checkpoints, deadline)
