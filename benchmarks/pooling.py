"""Pooling biased iterations: today's per-run mixture against MBAR, on finished 2-D campaigns.

    python benchmarks/pooling.py benchmarks/out/mueller-brown-autoencoder-seed*

The campaigns' estimator (`learn.reweight.combine_iterations`) normalises each run's weights on
its own and mixes runs by effective sample size x transitions: consistent only if each run alone
samples both states in their equilibrium proportion. MBAR (pymbar) treats every iteration as a
thermodynamic state, the potential plus that iteration's final bias on its CV, and solves for the
states' free energies from all frames at once; a run that crossed once then still contributes its
frames in the right proportion. Both use what the campaign's last analysis used: the
equilibrated frames of its FES iterations (the last analysis.fes_window that crossed); MBAR also
with every iteration (the unbiased first one included). Frames of an iteration were sampled under
its bias as it grew; MBAR takes the final bias for all of them (OPES is primed from the previous
iterations, so it moves little within one).

Per campaign: the reweighted FES on (x, y) against the exact one (RMSE over F - Fmin <= the spec's
convergence.fes_cutoff, as the campaign reports it) and F(B) - F(A) against the exact value; then
the mean and 95 % t-interval over the campaigns given.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np


def bias_energies(c, its: list[int], feats: np.ndarray) -> np.ndarray:
    """u_kn: each iteration's final bias (kT units) at every frame; zero for the unbiased iteration 0."""
    import torch

    from cvcycle.routes.fit import eval_cv
    from cvcycle.routes.simulate import final_bias_hook

    spec = c.spec
    if spec["bias"]["kolmogorov_lambda"] > 0:
        raise SystemExit(f"{c.path}: the Kolmogorov bias is not part of this comparison")
    u = np.zeros((len(its), len(feats)))
    for row, i in enumerate(its):
        if i == 0:
            continue
        hook = final_bias_hook(c, i)
        with torch.no_grad():
            u[row] = hook.bias(torch.as_tensor(eval_cv(hook.cv_model, feats))).numpy() / spec["system"]["temperature"]
    return u


def mbar(u_kn: np.ndarray, counts: np.ndarray) -> Any:
    """pymbar's MBAR solved for frames pooled from states with reduced bias u_kn (K, N)."""
    import pymbar

    return pymbar.MBAR(u_kn, counts, solver_protocol="robust")


def mbar_weights(u_kn: np.ndarray, counts: np.ndarray, fit: Any = None) -> np.ndarray:
    """Weights of the unbiased state for frames pooled from states with reduced bias u_kn (K, N),
    from `fit` (`mbar(u_kn, counts)`, solved here when not given)."""
    from scipy.special import logsumexp

    f_k = (fit if fit is not None else mbar(u_kn, counts)).f_k
    log_w = -logsumexp(f_k[:, None] - u_kn, b=counts[:, None], axis=0)
    w = np.exp(log_w - log_w.max())
    return w / w.sum()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("jobs", nargs="+", help="finished 2-D campaign directories")
    args = parser.parse_args(argv)

    from cvcycle.analysis.fes import aligned_rmse, histogram_fes, state_free_energies
    from cvcycle.analysis.shooting import state_classifier
    from cvcycle.campaign import Campaign
    from cvcycle.routes.data import equilibrated, fes_iterations, flat, load_samples, mixture_weights, transitions
    from cvcycle.routes.evaluate import campaign_reference
    from cvcycle.systems import make_system

    rows = []
    print("| campaign | iterations | FES its | FES RMSE mixture | MBAR (FES its) | MBAR (all) "
          "| ΔF(B−A) error mixture | MBAR (FES its) | MBAR (all) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for job in args.jobs:
        c = Campaign(job)
        spec, k = c.spec, c.progress()["history"][-1]["iteration"]
        system = make_system(spec)
        data = [load_samples(c, i) for i in range(k + 1)]
        crossings = [transitions(d) for d in data]
        eq = [equilibrated(d, spec["analysis"]["equilibration"]) for d in data]
        fes_its = fes_iterations(crossings, spec["analysis"]["fes_window"])
        xe, ye, F_ref = system.reference_fes(spec["analysis"]["grid_bins"] // 2)
        ref = campaign_reference(c)
        p = np.exp(-(ref.free_energy.ravel() - ref.free_energy.min()))
        labels = state_classifier(spec["system"]["states"])(ref.points)
        exact_dF = float(-np.log(p[labels == 1].sum() / p[labels == 0].sum()))

        def scores(its: list[int], w: np.ndarray) -> tuple[float, float]:
            z = np.concatenate([flat(eq[i], "state_coordinates") for i in its])
            rmse, _ = aligned_rmse(histogram_fes(z, w, [xe, ye]), F_ref, F_ref <= spec["convergence"]["fes_cutoff"])
            lab = np.concatenate([flat(eq[i], "state") for i in its])
            dF = state_free_energies(lab, w, list(system.states))[list(system.states)[1]]
            return rmse, (np.nan if dF is None else dF - exact_dF)

        def mbar(its: list[int]) -> tuple[float, float]:
            feats = np.concatenate([flat(eq[i], "features") for i in its])
            counts = np.array([len(flat(eq[i], "features")) for i in its], dtype=float)
            return scores(its, mbar_weights(bias_energies(c, its, feats), counts))

        result = [*scores(fes_its, mixture_weights(eq, fes_its, crossings)), *mbar(fes_its), *mbar(list(range(k + 1)))]
        rmse, dF = result[0::2], result[1::2]
        rows.append(result)
        print(f"| {c.path.name} | {k + 1} | {fes_its} | " + " | ".join(f"{v:.3f}" for v in rmse) + " | "
              + " | ".join(f"{v:+.3f}" for v in dF) + " |", flush=True)
    a = np.array(rows)
    if len(a) > 1:
        from scipy import stats

        half = stats.t.ppf(0.975, len(a) - 1) * a.std(axis=0, ddof=1) / np.sqrt(len(a))
        cells = [f"{m:.3f} ± {h:.3f}" for m, h in zip(a.mean(axis=0), half)]
        abs_dF = np.abs(a[:, 1::2])
        print(f"| mean ± 95 % ({len(a)}) | | | {' | '.join(cells[0::2])} | {' | '.join(cells[1::2])} |")
        print(f"| mean abs ΔF error | | | | | | {' | '.join(f'{v:.3f}' for v in abs_dF.mean(axis=0))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
