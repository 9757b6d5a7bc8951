"""Reference free energy of 2-D LJ7 on (mu2, mu3) at the workflow's temperature, by parallel tempering.

    python benchmarks/lj7_reference.py                      # ~3 min on 1 core (200,000 steps per replica)
    python benchmarks/lj7_reference.py --steps 1000000      # longer, tighter intervals
    python benchmarks/lj7_reference.py --steps 600000 --install   # the package's reference (as shipped)

Parallel tempering with the torch Langevin engine (BAOAB, dt = 0.005, friction 1): `--chains`
independent chains of `--temperatures` replicas each, geometric in kT from the workflow's kT to
`--kt-max`, run as one group of walkers. A replica at kT_k runs the potential scaled by kT/kT_k at
the engine's kT, whose configurational distribution is the Boltzmann one at kT_k (one engine, one
temperature); every `--swap` steps each chain attempts neighbour swaps (even and odd pairs in
turn), accepted with probability min(1, exp((1/kT_k - 1/kT_l)(U_k - U_l))), positions and velocities
exchanged (all replicas share the engine's kinetic temperature). The first `--burn` fraction is
discarded. States are the workflow's discs in (mu2, mu3), plus a split of the plane at mu3 =
`--split` (the hexagon basin above, the other shapes below).

Two estimates at the workflow's kT: 'direct', from its replicas only (95 % interval by the
leave-one-chain-out jackknife, which tolerates chains that never visited a state), and 'all T',
every replica reweighted to it by the multistate (MBAR/WHAM) estimator, solved per chain (95 %
Student-t interval over the independent chains). The hexagon (C0) escape rate is measured from
short unbiased runs at temperatures where they cross (`--rate-kts`).

Prints tables and writes an npz (--out): per-chain (mu2, mu3) histograms at the workflow's kT
(reweighted from all replicas, and direct), F = -ln p in kT (minimum 0) with its standard error,
populations, swap acceptances, the summary table and the escape counts.
"""

from __future__ import annotations

import argparse
import time
import tomllib
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from scipy.special import logsumexp

from cvcycle.engines.langevin import LangevinEngine
from cvcycle.features.particles import CoordinationMoments
from cvcycle.systems.lj7 import LJ7, MINIMA, lj_energy, confinement_energy

ROOT = Path(__file__).resolve().parents[1]
MU2, MU3 = np.linspace(0.2, 1.4, 61), np.linspace(-0.6, 1.8, 61)


class TemperedLJ7(LJ7):
    """LJ7 whose walker w feels scale[w] x U: at the engine's kT that samples exp(-U / (kT / scale[w]))."""

    def __init__(self, kT: float, states: dict, scale: np.ndarray) -> None:
        super().__init__(kT, states)
        self.scale = torch.as_tensor(scale, dtype=torch.float64)

    def potential(self, positions: torch.Tensor) -> torch.Tensor:
        return self.scale * (lj_energy(positions) + confinement_energy(positions))


def interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95 % Student-t interval of independent estimates."""
    values = np.asarray(values, dtype=np.float64)
    m, se = values.mean(), values.std(ddof=1) / np.sqrt(len(values))
    h = stats.t.ppf(0.975, len(values) - 1) * se
    return float(m), float(m - h), float(m + h)


def jackknife(counts: np.ndarray, f) -> tuple[float, float, float]:
    """f of the pooled rows of counts (chains, ...), with a 95 % leave-one-chain-out interval."""
    n = len(counts)
    full = f(counts.sum(0))
    loo = np.array([f(counts.sum(0) - c) for c in counts])
    h = stats.t.ppf(0.975, n - 1) * np.sqrt((n - 1) / n * ((loo - loo.mean()) ** 2).sum())
    return float(full), float(full - h), float(full + h)


def wham_log_weights(u: np.ndarray, beta: np.ndarray, beta0: float, tol: float = 1e-10) -> np.ndarray:
    """Log weights (n, K) at beta0 of samples of energies u (n, K) (column k drawn at beta[k], all
    columns equally long), by the multistate (MBAR/WHAM) estimator, solved by Newton's method on
    the reduced free energies f_k = -ln Z_k (f_0 = 0); normalised over all samples."""
    n = len(u)
    bu = beta[None, :] * u.reshape(-1, 1)  # (n K, K)
    # start: free-energy perturbation between neighbours, f_{k+1} - f_k = -ln <exp(-(beta_{k+1} - beta_k) U)>_k
    f = np.concatenate([[0.0], np.cumsum([-(logsumexp(-(beta[k + 1] - beta[k]) * u[:, k]) - np.log(n))
                                          for k in range(len(beta) - 1)])])

    def objective(f: np.ndarray) -> tuple[float, np.ndarray]:
        a = f[None, :] - bu
        lse = logsumexp(a, axis=1, keepdims=True)
        return float(lse.sum() - n * f.sum()), np.exp(a - lse)

    value, w = objective(f)
    for _ in range(100):  # Newton with backtracking on the convex objective
        grad = w.sum(axis=0) - n
        hess = np.diag(w.sum(axis=0)) - w.T @ w
        step = np.concatenate([[0.0], np.linalg.lstsq(hess[1:, 1:], grad[1:], rcond=None)[0]])
        t = 1.0
        while True:
            trial, w_trial = objective(f - t * step)
            if trial <= value + 1e-12 * abs(value) or t < 1e-8:
                break
            t *= 0.5
        f, value, w = f - t * step, trial, w_trial
        if np.abs(t * step).max() < tol:
            break
    else:
        raise RuntimeError("MBAR/WHAM: Newton iteration did not converge")
    logw = -beta0 * u.ravel() - logsumexp(f[None, :] - bu, axis=1)
    return (logw - logsumexp(logw)).reshape(u.shape)


def parallel_tempering(system: LJ7, temps: np.ndarray, chains: int, steps: int, swap: int, stride: int,
                       seed: int) -> dict[str, np.ndarray]:
    """Energies U (frames, chains, K) and state coordinates (frames, chains, K, 2) of the replica at
    each temperature, and the swap acceptance of each neighbour pair (K - 1,)."""
    k = len(temps)
    scale = np.tile(temps[0] / temps, chains)
    tempered = TemperedLJ7(system.kT, system.states, scale)
    engine = LangevinEngine(tempered, CoordinationMoments(7), dt=0.005, friction=1.0, n_walkers=chains * k,
                            integrator="underdamped", seed=seed)
    rng = np.random.default_rng(seed)
    engine.set_positions(np.stack([MINIMA["C0"]] * (chains * k)) + 0.02 * rng.standard_normal((chains * k, 7, 2)))
    beta = 1.0 / temps
    tried, accepted = np.zeros(k - 1), np.zeros(k - 1)
    energies, coords = [], []
    for block in range(steps // swap):
        frames = engine.run(swap, stride, stream=(block,))
        energies.append((frames.potential / scale).reshape(-1, chains, k))
        coords.append(frames.features.reshape(-1, chains, k, 2))
        state = engine.state_dict()
        x = torch.as_tensor(state["positions"].reshape(chains, k, 7, 2))
        u = (lj_energy(x) + confinement_energy(x)).numpy()
        perm = np.tile(np.arange(k), (chains, 1))
        for i in range(block % 2, k - 1, 2):
            delta = (beta[i] - beta[i + 1]) * (u[:, i] - u[:, i + 1])
            ok = np.log(rng.random(chains)) < np.minimum(delta, 0.0)
            tried[i] += chains
            accepted[i] += ok.sum()
            perm[ok, i], perm[ok, i + 1] = i + 1, i
        rows = (np.arange(chains)[:, None] * k + perm).ravel()
        state["positions"] = state["positions"][rows]
        state["velocities"] = state["velocities"][rows]
        engine.load_state_dict(state)
    return {"u": np.concatenate(energies), "z": np.concatenate(coords), "acceptance": accepted / np.maximum(tried, 1)}


def escape_rate(system: LJ7, kT: float, walkers: int, steps: int, seed: int) -> tuple[int, float]:
    """Transitions from the first state (C0) into another state, and the time whose last visited
    state was C0 (time unit sqrt(m sigma^2 / epsilon)), in unbiased runs from the C0 minimum at kT."""
    hot = LJ7(kT, system.states)
    engine = LangevinEngine(hot, CoordinationMoments(7), dt=0.005, friction=1.0, n_walkers=walkers,
                            integrator="underdamped", seed=seed)
    engine.set_positions(hot.start([hot.state_names[0]], walkers, 0.02, np.random.default_rng(seed)))
    stride = 10
    frames = engine.run(steps, stride)
    lab = hot.classify_coordinates(frames.features.reshape(-1, 2)).reshape(frames.features.shape[:2])
    escapes, time_in = 0, 0.0
    for w in lab.T:
        last = 0
        for s in w:
            if s >= 0 and s != last:
                escapes += last == 0
                last = s
            time_in += (last == 0) * stride * 0.005
    return escapes, time_in


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default=str(ROOT / "workflows" / "lj7-autoencoder.toml"))
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--temperatures", type=int, default=8)
    parser.add_argument("--kt-max", type=float, default=0.3)
    parser.add_argument("--steps", type=int, default=200000, help="steps per replica")
    parser.add_argument("--swap", type=int, default=100, help="steps between swap attempts")
    parser.add_argument("--burn", type=float, default=0.2)
    parser.add_argument("--split", type=float, default=0.6, help="mu3 dividing the hexagon basin from the rest")
    parser.add_argument("--rate-kts", type=float, nargs="*", default=[0.2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "lj7_reference.npz"))
    parser.add_argument("--install", action="store_true",
                        help="also write F(mu2, mu3) (rows mu3, columns mu2) as the package's LJ7 reference")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    sy = tomllib.loads(Path(args.spec).read_text())["system"]
    system = LJ7(sy["temperature"], sy["states"])
    names, n_states = system.state_names, len(system.state_names)
    temps = system.kT * (args.kt_max / system.kT) ** np.linspace(0.0, 1.0, args.temperatures)
    t0 = time.perf_counter()
    pt = parallel_tempering(system, temps, args.chains, args.steps, args.swap, 10, args.seed)
    seconds = time.perf_counter() - t0
    keep = slice(int(args.burn * len(pt["u"])), None)
    u, z = pt["u"][keep], pt["z"][keep]  # (frames, chains, K), (frames, chains, K, 2)
    label = system.classify_coordinates(z.reshape(-1, 2)).reshape(u.shape)
    low = z[..., 1] < args.split  # the other shapes' side of the mu3 dividing line

    # classes: the discs, outside every disc, and the mu3 split
    def populations(mask_w: np.ndarray) -> np.ndarray:
        return np.array([*[(mask_w * (label == j)).sum(0) for j in (*range(n_states), -1)], (mask_w * low).sum(0)])

    direct = populations(np.ones_like(u))  # (classes, chains, K): frame counts
    logw = np.stack([wham_log_weights(u[:, c], 1.0 / temps, 1.0 / system.kT) for c in range(args.chains)], axis=1)
    wham = populations(np.exp(logw)).sum(-1)  # (classes, chains): probabilities at the workflow's kT
    frames_per = len(u)

    print(f"\nLJ7 2-D parallel tempering: {args.chains} chains x {len(temps)} temperatures, {args.steps} steps "
          f"(dt 0.005) per replica, swaps every {args.swap}, first {args.burn:.0%} discarded; {seconds:.0f} s on 1 core\n")
    print("Populations per temperature (frames of all chains; discs of the spec, 'outside' = in none, "
          f"'mu3 < {args.split}' = the other shapes' side)\n")
    print("| kT | swap acc. to next | " + " | ".join(f"P({n})" for n in names) + f" | P(outside) | P(mu3 < {args.split}) |")
    print("|---|---|" + "---|" * (n_states + 2))
    for t, kt in enumerate(temps):
        acc = f"{pt['acceptance'][t]:.2f}" if t < len(temps) - 1 else "-"
        p = direct[:, :, t].sum(1) / (frames_per * args.chains)
        print(f"| {kt:.3f} | {acc} | " + " | ".join(f"{v:.4f}" for v in p) + " |")

    others = lambda p: p[1:n_states].sum()  # noqa: E731
    quantities = [
        (f"F({' + '.join(names[1:])}) - F({names[0]})", lambda p: -np.log(others(p) / p[0])),
        (f"F(mu3 < {args.split}) - F(mu3 >= {args.split})", lambda p: -np.log(p[-1] / (p[:-1].sum() - p[-1]))),
        *[(f"F({names[j]}) - F({names[0]})", lambda p, j=j: -np.log(p[j] / p[0])) for j in range(1, n_states)],
        (f"P({names[0]})", lambda p: p[0] / p[:-1].sum()),
        (f"P({' + '.join(names[1:])})", lambda p: others(p) / p[:-1].sum()),
        (f"P(mu3 < {args.split})", lambda p: p[-1] / p[:-1].sum()),
    ]
    print(f"\nAt kT = {system.kT}, free energies in kT, 95 % intervals: 'direct' from the kT = {system.kT} replicas "
          f"(leave-one-chain-out jackknife), 'all T' reweighting every replica (MBAR/WHAM per chain, Student t over "
          f"the {args.chains} chains)\n")
    print("| quantity | direct | all T (reweighted) |")
    print("|---|---|---|")
    results = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for label_q, f in quantities:
            d = jackknife(direct[:, :, 0].T, f)
            per_chain = np.array([f(wham[:, c]) for c in range(args.chains)])
            w = interval(per_chain) if np.all(np.isfinite(per_chain)) else (float("nan"),) * 3
            results[label_q] = (d, w)
            fmt = ".4f" if label_q.startswith("P(") else ".2f"
            print(f"| {label_q} | {d[0]:{fmt}} [{d[1]:{fmt}}, {d[2]:{fmt}}] | {w[0]:{fmt}} [{w[1]:{fmt}}, {w[2]:{fmt}}] |")

    # FES on (mu2, mu3) at the workflow's kT, from all replicas reweighted; per-chain histograms for errors
    hists = np.stack([np.histogram2d(z[:, c, :, 0].ravel(), z[:, c, :, 1].ravel(), bins=[MU2, MU3],
                                     weights=np.exp(logw[:, c]).ravel())[0] for c in range(args.chains)])
    direct_hists = np.stack([np.histogram2d(z[:, c, 0, 0], z[:, c, 0, 1], bins=[MU2, MU3])[0] for c in range(args.chains)])
    p = hists.mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        fes = -np.log(p)
        fes -= fes[np.isfinite(fes)].min()
        fes_se = hists.std(axis=0, ddof=1) / np.sqrt(args.chains) / p  # se(-ln p) = se(p) / p

    rates = []
    for kt in args.rate_kts:
        t1 = time.perf_counter()
        escapes, t_in = escape_rate(system, kt, 32, 6000, args.seed + 1)
        lo, hi = (stats.chi2.ppf(0.025, 2 * escapes) / 2 if escapes else 0.0), stats.chi2.ppf(0.975, 2 * escapes + 2) / 2
        rates.append((kt, escapes, t_in))
        print(f"\n{names[0]} escape rate, unbiased at kT = {kt}: {escapes} escapes into another state in {t_in:.0f} "
              f"time units spent in {names[0]} -> k = {escapes / t_in:.4f} [{lo / t_in:.4f}, {hi / t_in:.4f}] per time "
              f"unit sqrt(m sigma^2 / epsilon) (Poisson 95 %), {time.perf_counter() - t1:.0f} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, mu2_edges=MU2, mu3_edges=MU3, histograms=hists, direct_histograms=direct_hists, fes=fes,
             fes_se=fes_se, kT=system.kT, temperatures=temps, state_names=np.array(names), acceptance=pt["acceptance"],
             direct_counts=direct, wham_populations=wham,
             summary=np.array([[*d, *w] for d, w in results.values()]), summary_names=np.array(list(results)),
             escape=np.array(rates), seconds=seconds)
    if args.install:
        install_reference(hists, system.kT, args.steps)
    print(f"\nwrote {args.out} ({time.perf_counter() - t0:.0f} s in all)")
    return 0


def install_reference(hists: np.ndarray, kT: float, steps: int) -> None:
    """F(mu2, mu3) on bins twice as wide (30 x 30: the 6-10 kT region has bins with data in
    every chain), rows mu3 and columns mu2, with its standard error over the chains, as the
    package's LJ7 reference that campaigns at this kT report their FES against."""
    from cvcycle.systems.lj7 import REFERENCE

    chains = hists.shape[0]
    coarse = hists.reshape(chains, len(MU2) // 2, 2, len(MU3) // 2, 2).sum(axis=(2, 4))
    p = coarse.mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        fes = -np.log(p)
        fes -= fes[np.isfinite(fes)].min()
        fes_se = coarse.std(axis=0, ddof=1) / np.sqrt(chains) / p
    np.savez(REFERENCE, kT=np.float64(kT), mu2_edges=MU2[::2], mu3_edges=MU3[::2],
             fes=np.where(np.isfinite(fes), fes, np.nan).T, fes_se=fes_se.T, steps=np.int64(steps), chains=np.int64(chains))
    print(f"installed the reference F(mu2, mu3) as {REFERENCE}")


if __name__ == "__main__":
    raise SystemExit(main())
