"""How good a 1-D CV is as a reaction coordinate, from Boltzmann-weighted samples alone.

The committor q minimises the Kolmogorov functional K[f] = E_Boltzmann |grad_x f|^2 over all f
with f = 0 on A and f = 1 on B. Restricted to functions of a CV s, the minimum has a closed form:
with G(s) = E[|grad_x s|^2 delta(s(x) - s)], the best f has f'(s) proportional to 1 / G(s) and

    K_s = 1 / integral_{s_A}^{s_B} ds / G(s)  >=  K[q],

with equality when s is a monotone function of q. K_s does not change under monotone maps of s,
so autoencoders with different bottleneck scales compare fairly, and a lower K_s means a CV whose
isolines lie closer to the committor's where it matters, across the barrier (G is smallest there).
The integral is estimated with bins of equal sample count between the states' CV values.
|grad_x s|^2 is taken in the dynamics' metric: the positions' own when all coordinates diffuse
alike (overdamped Langevin with one friction, as for the 2-D potentials), else weighted by each
particle's inverse mass (underdamped Langevin with friction gamma: D_i = kT / (m_i gamma)).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..features.base import frames_per_chunk

MIN_FRAMES_PER_BIN = 20
MAX_BINS = 100


def cv_and_grad_sq(cv: Callable[[torch.Tensor], torch.Tensor], featurizer: torch.nn.Module, positions: np.ndarray,
                   chunk: int | None = None, inverse_mass: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A scalar CV of features and |grad_x s|^2 with respect to the positions (n, N, d), at
    frames (n, ...); with `inverse_mass` (N,), sum_i |grad_i s|^2 / m_i. `chunk` frames at a
    time (default: features.base.frames_per_chunk)."""
    chunk = chunk or frames_per_chunk(featurizer, positions.shape[1])
    s_out, g_out = [], []
    for start in range(0, len(positions), chunk):
        x = torch.as_tensor(positions[start:start + chunk], dtype=torch.float64).requires_grad_(True)
        s = cv(featurizer(x).float())[:, 0]
        (g,) = torch.autograd.grad(s.sum(), x)
        if inverse_mass is not None:
            g = g * torch.as_tensor(inverse_mass, dtype=torch.float64)[:, None].sqrt()
        s_out.append(s.detach().double().numpy())
        g_out.append((g * g).reshape(len(x), -1).sum(1).numpy())
    return np.concatenate(s_out), np.concatenate(g_out)


def cv_kolmogorov(s: np.ndarray, grad_sq: np.ndarray, weights: np.ndarray, s_a: float, s_b: float) -> float:
    """K_s of a CV with values s, |grad_x s|^2 and Boltzmann weights (summing to 1) at samples, and
    values s_a, s_b at the two states; inf when fewer than MIN_FRAMES_PER_BIN * 5 samples lie between
    or a bin has no weight."""
    lo, hi = min(s_a, s_b), max(s_a, s_b)
    inside = (s > lo) & (s < hi)
    bins = min(MAX_BINS, int(inside.sum()) // MIN_FRAMES_PER_BIN)
    if bins < 5 or not hi > lo:
        return float("inf")
    edges = np.concatenate([[lo], np.quantile(s[inside], np.arange(1, bins) / bins), [hi]])
    idx = np.clip(np.searchsorted(edges, s[inside], side="right") - 1, 0, bins - 1)
    g = np.bincount(idx, weights=(weights * grad_sq)[inside], minlength=bins)
    if not np.all(g > 0):
        return float("inf")
    return float(1.0 / np.sum(np.diff(edges) ** 2 / g))


def bootstrap_kolmogorov(cvs: list[tuple[np.ndarray, np.ndarray, float, float]], weights: np.ndarray, blocks: np.ndarray,
                         resamples: int, seed: int) -> np.ndarray:
    """K_s of several CVs, each (s, grad_sq, s_a, s_b) on the same frames with Boltzmann `weights`,
    on `resamples` bootstrap resamples of whole blocks of frames (`blocks` (n,): a block id per
    frame, e.g. its walker, whose frames are correlated in time) drawn with replacement. Every CV
    sees the same resamples, so differences between columns are paired: (resamples, len(cvs))."""
    rng = np.random.default_rng(seed)
    _, inverse = np.unique(blocks, return_inverse=True)
    rows_of = [np.flatnonzero(inverse == b) for b in range(inverse.max() + 1)]
    out = np.empty((resamples, len(cvs)))
    for r in range(resamples):
        rows = np.concatenate([rows_of[b] for b in rng.integers(len(rows_of), size=len(rows_of))])
        w = weights[rows] / weights[rows].sum()
        for j, (s, grad_sq, s_a, s_b) in enumerate(cvs):
            out[r, j] = cv_kolmogorov(s[rows], grad_sq[rows], w, s_a, s_b)
    return out
