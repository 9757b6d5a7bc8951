"""Importance weights of biased samples and their combination across iterations."""

from __future__ import annotations

import numpy as np


def normalized_weights(log_weight: np.ndarray, power: float = 1.0) -> np.ndarray:
    """exp(power * log_weight), normalised to sum 1 (computed stably)."""
    a = power * np.asarray(log_weight, dtype=np.float64)
    w = np.exp(a - a.max())
    return w / w.sum()


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2."""
    w = np.asarray(weights, dtype=np.float64)
    return float(w.sum() ** 2 / (w * w).sum())


def combine_iterations(log_weights: list[np.ndarray], power: float = 1.0,
                       quality: list[float] | None = None) -> np.ndarray:
    """Weights for the concatenated samples of several biased runs, summing to 1.

    Each run is reweighted on its own (its weights sum to 1), then runs are mixed in proportion
    to effective sample size x `quality` (e.g. the number of state-to-state transitions): any
    positive mixture of per-run estimates is consistent, and this one gives little say to runs
    dominated by a few samples or that rarely crossed between states.
    """
    per_run = [normalized_weights(lw, power) for lw in log_weights]
    share = np.array([effective_sample_size(w) for w in per_run])
    if quality is not None:
        share = share * np.asarray(quality, dtype=np.float64)
    if not share.sum() > 0:
        share = np.ones(len(per_run))
    return np.concatenate([w * e for w, e in zip(per_run, share)]) / share.sum()
