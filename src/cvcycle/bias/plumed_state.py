"""An OPES bias as the STATE file that PLUMED's OPES_METAD restarts from (STATE_RFILE, RESTART=YES).

PLUMED's OPES_METAD keeps the reweighted CV density as a list of kernels,
P(s) = sum_k h_k [exp(-|s - c_k|^2 / 2 sigma_k^2) - exp(-cutoff^2 / 2)] / sum_weights, and biases with
V(s) = (1 - 1/gamma) kT log(P(s)/zed + epsilon). Ours (bias.methods.Opes) keeps the same unnormalised
kernel sum, with the same weights exp(V/kT), tabulated on a grid. It is written as one narrow kernel
per grid point: sigma = the grid spacing and height = the tabulated sum / sqrt(2 pi) per dimension
(Gaussians one spacing wide on a regular lattice sum to one within 1e-8), divided by the factor by
which smoothing over one spacing multiplies the density (from the discrete derivatives of its
logarithm: exact on exponential tails, where a Laplacian correction would turn negative). zed and
sum_weights (and sum_weights2, from which PLUMED takes the effective number of kernels) are ours,
so new PLUMED kernels (height exp(V/kT), the SIGMA of plumed.dat) add to the
density in the same units as the campaign's own depositions.

PLUMED recomputes zed as the mean of P over its kernel centres at its first deposition; ours is the
mean over the grid points that received a kernel centre. The two differ, which shifts V by a constant
(no force) wherever P/zed >> epsilon.
"""

from __future__ import annotations

import math

import torch

from .methods import Opes

# kernels whose density is below this fraction of epsilon * zed change V by less than 1e-3 kT
NEGLIGIBLE = 1e-3


def opes_state(bias: Opes, args: list[str], kernels: int) -> str:
    """The STATE file text for an OPES_METAD with ARG=`args` continuing `bias`, which stands for
    `kernels` deposited kernels (PLUMED's counter; it enters only PLUMED's reported rct and neff)."""
    grid = bias.grid
    if len(args) != grid.dim:
        raise ValueError(f"{len(args)} arguments for a {grid.dim}-D bias")
    d = bias.density
    # deconvolve the kernels' own width: for p = exp(f), smoothing by a Gaussian of width h multiplies p
    # by about exp(h^2 (f'' + f'^2) / 2), exactly so where f is linear (a steep tail) or quadratic
    log_d = torch.log(d)
    exponent = torch.zeros_like(d)
    for axis in range(grid.dim):
        n = d.shape[axis]
        before = torch.cat([log_d.narrow(axis, 0, 1), log_d.narrow(axis, 0, n - 1)], axis)  # edge repeated
        after = torch.cat([log_d.narrow(axis, 1, n - 1), log_d.narrow(axis, n - 1, 1)], axis)
        slope, curvature = (after - before) / 2, after - 2 * log_d + before  # per grid spacing
        term = -(curvature + slope**2) / 2
        exponent = exponent + torch.where(torch.isfinite(term), term, torch.zeros_like(term))  # no density, no term
    sharpened = d * torch.exp(exponent)
    density = sharpened.flatten() / (2.0 * math.pi) ** (grid.dim / 2)
    p, zed = bias.normalised_density()
    keep = torch.nonzero((p.flatten() / zed >= NEGLIGIBLE * bias.epsilon) & (density > 0)).flatten()
    cutoff = math.sqrt(2.0 * bias.barrier / bias.prefactor)  # PLUMED's default KERNEL_CUTOFF, in sigmas
    counter = max(1, int(kernels)) + 1  # PLUMED starts its count at 1
    head = [f"#! FIELDS time {' '.join(args)} {' '.join('sigma_' + a for a in args)} height",
            "#! SET action OPES_METAD_state",
            f"#! SET biasfactor {bias.gamma!r}",
            f"#! SET epsilon {bias.epsilon!r}",
            f"#! SET kernel_cutoff {cutoff!r}",
            "#! SET compression_threshold 1",
            f"#! SET zed {zed!r}",
            f"#! SET sum_weights {bias.weight_sum!r}",
            f"#! SET sum_weights2 {bias.weight_sum2!r}",
            f"#! SET counter {counter}"]
    sigmas = " ".join(format(float(h), ".17g") for h in grid.spacing)
    rows = [f"0 {' '.join(format(float(x), '.17g') for x in grid.points[j])} {sigmas} {float(density[j]):.17g}"
            for j in keep.tolist()]
    return "\n".join(head + rows) + "\n"

