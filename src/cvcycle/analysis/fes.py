"""Free-energy estimates from weighted samples: histograms in kT, and their comparison."""

from __future__ import annotations

import numpy as np


def histogram_fes(values: np.ndarray, weights: np.ndarray, edges: list[np.ndarray]) -> np.ndarray:
    """F = -ln p (kT, minimum 0) of weighted samples on a 1-D or 2-D histogram; NaN where empty.

    For 2-D input the result is indexed [iy, ix] (rows follow the second coordinate)."""
    values = np.asarray(values, dtype=np.float64).reshape(len(weights), -1)
    h, _ = np.histogramdd(values, bins=edges, weights=weights)
    if h.ndim == 2:
        h = h.T
    with np.errstate(divide="ignore"):
        F = -np.log(h / h.sum())
    F[~np.isfinite(F)] = np.nan
    return F - np.nanmin(F)


def aligned_rmse(estimate: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """RMSE (kT) between two free energies over `mask` after removing the best constant shift,
    and the fraction of masked bins where the estimate exists (coverage)."""
    mask = np.asarray(mask, dtype=bool)
    have = mask & np.isfinite(estimate) & np.isfinite(reference)
    if not have.any():
        return float("inf"), 0.0
    diff = estimate[have] - reference[have]
    return float(np.sqrt(np.mean((diff - diff.mean()) ** 2))), float(have.sum() / max(mask.sum(), 1))


def fes_change(F_new: np.ndarray, F_old: np.ndarray, cutoff: float) -> float:
    """RMS change (kT) between two estimates over bins where both are below `cutoff`."""
    mask = (F_new <= cutoff) & (F_old <= cutoff)
    if mask.sum() < 3:
        return float("inf")
    return aligned_rmse(F_new, F_old, mask)[0]


def state_free_energies(labels: np.ndarray, weights: np.ndarray, names: list[str]) -> dict[str, float | None]:
    """F(state) - F(first state) in kT for every other state and for all of them together
    ('others'), from weighted frames with state labels (index into `names`, -1 outside); None
    where a state (or the first) has no weight."""
    p = np.array([weights[labels == j].sum() for j in range(len(names))])
    out: dict[str, float | None] = {}
    for name, mass in [*zip(names[1:], p[1:]), ("others", p[1:].sum())]:
        out[name] = float(-np.log(mass / p[0])) if mass > 0 and p[0] > 0 else None
    return out
