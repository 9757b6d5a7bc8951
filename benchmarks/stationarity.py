"""Frozen-bias stationarity test at several time steps, on the biases campaigns actually ran.

    python benchmarks/stationarity.py benchmarks/out/mueller-brown-autoencoder-seed0 \
        benchmarks/out/mueller-brown-committor-variational-seed0 --dt 2e-3 1e-3 5e-4

For each 2-D campaign: its latest CV (that of the last trained iteration, or of `--iteration`)
with the spec's bias primed to its steady state from the exact Boltzmann distribution (OPES, plus
the Kolmogorov bias where the spec has one), frozen; walkers start from the exact biased density
and run `--time` time units at each time step (`analysis.stationarity`). Printed per time step:
walker steps, chi^2 per bin of the CV-bin populations (about 1 when the ensemble is kept), the
worst |z|, mean |ln p / p_exact| against its noise floor, the worst bin's |ln p / p_exact|, and
pass/fail.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("jobs", nargs="+", help="2-D campaign directories that have trained a CV")
    parser.add_argument("--dt", type=float, nargs="+", default=[2e-3, 1e-3, 5e-4])
    parser.add_argument("--time", type=float, default=4.0, help="run length per walker in time units (default 4)")
    parser.add_argument("--walkers", type=int, default=1000)
    parser.add_argument("--iteration", type=int, default=None, help="whose CV (default: the last trained)")
    args = parser.parse_args(argv)

    import torch

    from cvcycle.analysis.stationarity import frozen_bias_test
    from cvcycle.campaign import Campaign
    from cvcycle.routes.data import inverse_mass
    from cvcycle.routes.fit import cv_of

    torch.set_num_threads(1)
    print("| campaign | CV of iteration | dt | walker steps | χ² / bin | max abs z | mean abs ln p/p_exact "
          "| noise floor | worst bin abs ln p/p_exact | passed |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for job in args.jobs:
        c = Campaign(job)
        trained = [k for k in range(100) if (c.iter_dir(k) / "model.npz").exists()]
        if not trained:
            parser.error(f"{job}: no iteration has trained a CV")
        k = args.iteration if args.iteration is not None else trained[-1]
        for dt in args.dt:
            r = frozen_bias_test(c.spec, cv_of(c, k), dt, args.time, args.walkers, seed=k, inverse_mass=inverse_mass(c.spec))
            print(f"| {c.path.name} | {k} | {dt:g} | {r['walker_steps']:,} | {r['chi2_per_bin']:.2f} | {r['max_abs_z']:.1f} | "
                  f"{r['mean_abs_log_ratio']:.3f} | {r['noise_floor']:.3f} | {r['max_abs_log_ratio']:.3f} | "
                  f"{'yes' if r['passed'] else 'no'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
