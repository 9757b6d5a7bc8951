"""benchmarks/nucleation_umbrella.py's analysis on windows sampled exactly from a known F: MBAR's
pooled profile recovers F, and the barrier is read between the two states."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymbar", reason="pymbar is not installed (pip install -e '.[test]')")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from nucleation_umbrella import barrier, profile  # noqa: E402


def exact_windows(F: np.ndarray, centers: np.ndarray, kappa: float, frames: int, seed: int) -> dict[str, np.ndarray]:
    """Independent draws of n (integers 0 ... len(F) - 1) from exp(-F(n) - kappa (n - c)^2 / 2) per window."""
    rng = np.random.default_rng(seed)
    n = np.arange(len(F))
    draws = []
    for c in centers:
        p = np.exp(-F - 0.5 * kappa * (n - c) ** 2)
        draws.append(rng.choice(n, size=frames, p=p / p.sum()))
    x = np.stack(draws, axis=1).astype(float)  # (frames, windows)
    return {"n_s": x, "n_largest": x.copy(), "centers": centers.astype(float), "kappa_kT": np.array(kappa)}


def test_mbar_over_exact_windows_recovers_the_profile_and_its_barrier():
    n = np.arange(81)
    F = 9.0 * np.sin(np.pi * n / 100.0) ** 2 - 0.05 * n  # a top of ~7.5 kT at n ~ 47, then down
    run = exact_windows(F, np.arange(0.0, 81.0, 8.0), 0.1, 3000, seed=0)
    edges = np.arange(-0.5, 81.0, 1.0)
    F_hat, overlap = profile(run, edges)
    ok = np.isfinite(F_hat)
    assert ok.sum() > 75 and overlap > 0.05
    err = (F_hat - F_hat[0]) - (F - F[0])
    assert np.abs(err[ok]).max() < 0.35, np.round(err, 2)
    top, where = barrier(F_hat, n.astype(float), 5.0, 75.0)
    exact = F[(n > 5) & (n < 75)].max() - F[n <= 5].min()
    assert top == pytest.approx(exact, abs=0.3) and abs(where - n[np.argmax(np.where((n > 5) & (n < 75), F, -np.inf))]) <= 4


def test_no_frame_between_the_states_is_no_barrier():
    assert np.isnan(barrier(np.array([0.0, 1.0, np.nan]), np.arange(3.0), 1.0, 3.0)).all()
    assert barrier(np.array([0.0, 2.0, 1.0]), np.arange(3.0), 0.5, 3.0) == (2.0, 1.0)
