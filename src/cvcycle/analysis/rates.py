"""Rate constants from a committor, by transition path theory (overdamped Langevin dynamics).

With diffusion coefficient D = kT / gamma and the Boltzmann density rho, the reactive flux is
nu = D E_rho |grad q|^2 and the rate constant k_AB = nu / E_rho[1 - q], the flux per unit of
probability of having last visited A (E & Vanden-Eijnden). The flux through every isosurface
q = c is the same, nu = D E_rho[|grad q|^2 delta(q - c)], so nu is estimated as its average over
the isosurfaces c in `window` = (0.1, 0.9): E_rho[|grad q|^2 1(a < q < b)] / (b - a). For the
exact committor this is nu itself; for a learned one it uses only the transition region, where
the model was trained, and not the slight slopes a model keeps inside the basins, which the
large Boltzmann weight there would turn into a large error.
"""

from __future__ import annotations

import numpy as np

WINDOW = (0.1, 0.9)


def tpt_rate(q: np.ndarray, grad_sq: np.ndarray, weights: np.ndarray, diffusion: float,
             window: tuple[float, float] = WINDOW) -> float:
    """k_AB from q and |grad q|^2 at frames with Boltzmann weights (any normalisation)."""
    q, grad_sq, w = (np.asarray(a, dtype=np.float64).ravel() for a in (q, grad_sq, weights))
    lo, hi = window
    flux = diffusion * np.sum(w * grad_sq * ((q > lo) & (q < hi))) / (hi - lo)
    return float(flux / np.sum(w * (1.0 - q)))


def grid_tpt_rate(xs: np.ndarray, ys: np.ndarray, free_energy: np.ndarray, q: np.ndarray, diffusion: float,
                  window: tuple[float, float] = WINDOW) -> float:
    """k_AB of a committor q (ny, nx) on a regular grid with free energy (kT) F (ny, nx)."""
    gy, gx = np.gradient(q, ys, xs)
    return tpt_rate(q, gx**2 + gy**2, np.exp(-(free_energy - free_energy.min())), diffusion, window)
