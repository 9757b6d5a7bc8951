"""How good a reaction coordinate is a CV? Judged against the exact committor on a grid."""

from __future__ import annotations

import numpy as np


def cv_committor_quality(cv: np.ndarray, q: np.ndarray, free_energy: np.ndarray, n_bins: int = 50,
                         q_range: tuple[float, float] = (0.05, 0.95), f_max: float = 12.0) -> dict[str, float]:
    """R^2 of q explained by its conditional mean in CV bins, and the width (std of q) of the
    bin whose mean q is nearest 0.5.

    Grid points with q strictly inside q_range and free energy (kT, min 0) <= f_max; the CV is cut into
    n_bins bins holding equal numbers of grid points; means and variances are weighted by
    exp(-F). (This reading reproduces the calibration R^2 of x, -x + 0.5 y and q on
    Mueller-Brown; Boltzmann-equal bins let the intermediate basin, q ~ 0.95, take most bins.)
    """
    cv, q, F = (np.asarray(a, dtype=np.float64).ravel() for a in (cv, q, free_energy))
    keep = (q > q_range[0]) & (q < q_range[1]) & (F <= f_max)
    if keep.sum() < n_bins:
        raise ValueError(f"only {keep.sum()} grid points in the transition region; refine the grid")
    cv, q, w = cv[keep], q[keep], np.exp(-F[keep])
    # ties (e.g. a grid-aligned CV) are broken in a fixed pseudo-random order, not by position
    tiebreak = np.random.default_rng(0).permutation(len(cv))
    order = np.lexsort((tiebreak, cv))
    cv, q, w = cv[order], q[order], w[order]
    labels = (np.arange(len(cv)) * n_bins) // len(cv)
    wsum = np.bincount(labels, w, n_bins)
    mean = np.bincount(labels, w * q, n_bins) / np.maximum(wsum, 1e-300)
    resid = q - mean[labels]
    total = q - np.average(q, weights=w)
    r2 = 1.0 - np.sum(w * resid**2) / np.sum(w * total**2)
    var = np.bincount(labels, w * resid**2, n_bins) / np.maximum(wsum, 1e-300)
    mid = int(np.argmin(np.where(wsum > 0, np.abs(mean - 0.5), np.inf)))
    return {"r2": float(r2), "width": float(np.sqrt(var[mid])), "n_points": int(keep.sum())}


def committor_rmse(q_pred: np.ndarray, q: np.ndarray, free_energy: np.ndarray, q_range: tuple[float, float] = (0.05, 0.95),
                   f_max: float = 12.0) -> float:
    """RMSE of a learned committor against the exact one over grid points with q in q_range and
    free energy (kT, min 0) <= f_max, every point counting once."""
    q_pred, q, F = (np.asarray(a, dtype=np.float64).ravel() for a in (q_pred, q, free_energy))
    keep = (q > q_range[0]) & (q < q_range[1]) & (F <= f_max)
    return float(np.sqrt(np.mean((q_pred[keep] - q[keep]) ** 2)))
