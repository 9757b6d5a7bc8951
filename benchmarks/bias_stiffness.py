"""Does the bias-stiffness check (analysis.bias_stiffness) see what the exact stationarity test sees?

    python benchmarks/bias_stiffness.py WORKSPACE [WORKSPACE ...] [--time 4] [--walkers 1000]

For every 2-D campaign under the workspaces (any status, at least one biased iteration analysed):
the 99th percentile of the step stiffness s on the frames of its last biased iteration, under
the bias that ran it (its CV and the bias state saved at the iteration's end), next to the exact
frozen-bias stationarity test (analysis.stationarity) of the same CV at the campaign's dt, and
what the campaign's reweighted estimates came to against the exact answers (FES RMSE, k_AB /
exact). One row per campaign, sorted by stiffness.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workspaces", nargs="+", type=Path)
    parser.add_argument("--time", type=float, default=4.0, help="stationarity run length in time units (default 4)")
    parser.add_argument("--walkers", type=int, default=1000)
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from cvcycle.analysis.stationarity import frozen_bias_test
    from cvcycle.errors import WorkspaceError
    from cvcycle.results import Results
    from cvcycle.campaign import Campaign
    from cvcycle.routes.data import inverse_mass
    from cvcycle.routes.evaluate import iteration_stiffness
    from cvcycle.routes.fit import cv_of

    torch.set_num_threads(1)
    rows = []
    for ws in args.workspaces:
        for path in sorted(p for p in ws.iterdir() if (p / "signac_statepoint.json").is_file()):
            try:
                r = Results(Campaign(path))
            except WorkspaceError as exc:
                print(f"skipped {path.name}: {exc}", file=sys.stderr)
                continue
            biased = [h["iteration"] for h in r.history if h["iteration"] > 0]
            if not biased or r.spec["system"].get("potential") is None:
                continue
            k, h = biased[-1], r.history[-1]
            s = iteration_stiffness(r.campaign, k)
            test = frozen_bias_test(r.spec, cv_of(r.campaign, k - 1), r.spec["engine"]["dt"], args.time, args.walkers,
                                    seed=k, inverse_mass=inverse_mass(r.spec))
            ratio = h["rate_AB"] / h["rate_AB_exact"] if h.get("rate_AB") and h.get("rate_AB_exact") else None
            label = f"{ws.name}/{path.name[:8] if len(path.name) == 32 else path.name[-5:]}"  # a job id or a seed folder
            rows.append((s, label, r.spec["campaign"]["name"], r.spec["engine"]["dt"], r.spec["bias"]["sigma"], r.status, k,
                         test["chi2_per_bin"], test["passed"], h.get("fes_rmse_exact"), ratio))
            print(f"{label}: stiffness {s:.2f}, chi2 {test['chi2_per_bin']:.1f}", file=sys.stderr, flush=True)
    print("| campaign | spec | dt | bias.sigma | status | iteration | stiffness p99 | frozen-bias χ²/bin | stationary "
          "| FES RMSE (kT) | k_AB / exact |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s, job, name, dt, sigma, status, k, chi2, passed, fes, ratio in sorted(rows, key=lambda row: row[0]):
        print(f"| {job} | {name} | {dt:g} | {sigma:g} | {status} | {k} | {s:.2f} | {chi2:.1f} | {'yes' if passed else 'no'} "
              f"| {'-' if fes is None else f'{fes:.3f}'} | {'-' if ratio is None else f'{ratio:.2f}'} |")
    stiff = np.array([row[0] for row in rows])
    ok = np.array([row[8] for row in rows])
    if ok.any() and (~ok).any():
        print(f"\nstationary: stiffness p99 {stiff[ok].min():.2f}-{stiff[ok].max():.2f}; "
              f"not stationary: {stiff[~ok].min():.2f}-{stiff[~ok].max():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
