"""Umbrella sampling of Lennard-Jones nucleation: F(n_largest) and its barrier, independent of any
learned CV, for comparison with a campaign's reweighted estimate.

    python benchmarks/nucleation_umbrella.py [--spec workflows/lj-nucleation-autoencoder.toml]
        [--set 'engine.name="hoomd"'] [--centers 0 72 6] [--kappa 0.1] [--steps 30000]
        [--start liquid crystal] [--seeds 0 1] [--campaign JOB] [--no-run] --out DIR

One walker per window, restrained by 0.5 kappa kT (n_s - c)^2 on the smooth number of solid-like
particles n_s (the last `steinhardt` feature, differentiable), run with the spec's engine, time
step, friction and `bias_stride`; the centre c moves from the walker's start to its window over
the first half of the equilibration (`analysis.equilibration` of the steps), whose frames are
left out. Every run (a start state and a seed) starts all windows from that state: from the
liquid the restraints grow a nucleus, from the crystal they melt it, so the two directions
bracket any hysteresis. MBAR (pymbar) pools the windows' frames into unbiased weights, and
F(n_largest) (the largest solid-like cluster, the system's state coordinate from freud's clusters)
is their histogram. The barrier is max F(n_largest) between the two states' discs (and below the
last window's centre plus a spacing, beyond which only its tail's few frames fall) minus F's
minimum in the liquid's. Printed per run: the barrier, the smallest overlap of neighbouring
windows, and per window the mean restraint force kappa (c - <n_s>), dF/dn_s where the window is in
equilibrium; then the mean and 95 % t-interval over the runs, an estimate only where the runs
agree. --campaign adds a campaign's own estimate (its reweighted F(n_largest, n_solid),
`cvcycle.load(job).fes()`, summed over n_solid). Writes DIR/umbrella-START-SEED.npz (per frame
n_s and n_largest, per window; kept, so --no-run reanalyses them) and DIR/F_n_largest.png.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from campaigns import override  # noqa: E402  (benchmarks/campaigns.py)
from pooling import mbar, mbar_weights  # noqa: E402  (benchmarks/pooling.py)


class Umbrellas:
    """The engine's bias hook: walker w restrained by 0.5 kappa (n_s - c_w(t))^2, n_s the last
    feature. The centre moves linearly from the walker's first n_s to centers[w] over the first
    `ramp` steps (a steered start: the full restraint on a crystal would throw particles out of
    the box), then stays there."""

    def __init__(self, centers: np.ndarray, kappa: float, ramp: int) -> None:
        self.target = torch.as_tensor(centers, dtype=torch.float64)
        self.kappa, self.ramp = float(kappa), int(ramp)
        self.first: torch.Tensor | None = None
        self.centers = self.target.clone()

    def energy(self, features: torch.Tensor, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        s = features[:, -1:]
        if self.first is None:
            self.first = s[:, 0].detach().clone()
            self.centers = self.first.clone()
        return 0.5 * self.kappa * (s[:, 0] - self.centers) ** 2, s

    def observe(self, step: int, cv: torch.Tensor) -> bool:
        if self.first is not None:
            f = min(1.0, step / self.ramp) if self.ramp > 0 else 1.0
            self.centers = self.first + f * (self.target - self.first)
        return False

    def offset(self) -> float:
        return 0.0


def run_windows(spec: dict, start: str, seed: int, centers: np.ndarray, kappa_kT: float, steps: int,
                chunk: int) -> dict[str, np.ndarray]:
    """Every window from `start`: per frame after equilibration, n_s (frames, windows) and n_largest."""
    from cvcycle.engines import make_engine
    from cvcycle.systems import make_system

    system = make_system(spec)
    en, kT = spec["engine"], spec["system"]["temperature"]
    engine = make_engine({**spec, "campaign": {**spec["campaign"], "seed": seed}}, system, walkers=len(centers))
    engine.set_positions(system.start([start], len(centers), 0.0, np.random.default_rng(seed)))
    engine.draw_velocities(seed)
    skip = int(spec["analysis"]["equilibration"] * steps)
    hook = Umbrellas(centers, kappa_kT * kT, ramp=skip // 2)
    n_s, n_largest, steps_of, t0 = [], [], [], time.time()
    while engine.step < steps:
        frames = engine.run(min(chunk, steps - engine.step), en["report_stride"], hook, bias_stride=en["bias_stride"])
        n_s.append(frames.features[..., -1])
        steps_of.append(frames.step)
        z = system.state_coordinates(frames.positions.reshape(-1, *frames.positions.shape[2:]))
        n_largest.append(z[:, 0].reshape(frames.features.shape[:2]))
        print(f"{start} seed {seed}: step {engine.step:,}/{steps:,}, mean n_s per window "
              f"{np.round(n_s[-1].mean(axis=0)).astype(int).tolist()}, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    kept = np.concatenate(steps_of) >= skip
    return {"n_s": np.concatenate(n_s)[kept], "n_largest": np.concatenate(n_largest)[kept],
            "centers": centers, "kappa_kT": np.array(kappa_kT), "seconds": np.array(time.time() - t0)}


def profile(run: dict[str, np.ndarray], edges: np.ndarray) -> tuple[np.ndarray, float]:
    """F(n_largest) in kT on the bins `edges` from the windows' frames pooled by MBAR (NaN where
    empty), and the smallest overlap of neighbouring windows (pymbar's overlap matrix; near 0: the
    windows do not connect and the profile's parts are not tied together)."""
    from cvcycle.analysis.fes import histogram_fes

    n_s, centers = run["n_s"], run["centers"]
    s = n_s.T.ravel()  # window-major, as MBAR's counts
    u_kn = 0.5 * float(run["kappa_kT"]) * (s[None, :] - centers[:, None]) ** 2
    counts = np.full(len(centers), n_s.shape[0])
    fit = mbar(u_kn, counts)
    F = histogram_fes(run["n_largest"].T.ravel(), mbar_weights(u_kn, counts, fit), [edges])
    return F, float(np.diagonal(fit.compute_overlap()["matrix"], 1).min())


def barrier(F: np.ndarray, mids: np.ndarray, liquid: float, crystal: float) -> tuple[float, float]:
    """(max F between the liquid's disc and the crystal's along n_largest (liquid < n < crystal) -
    min F inside the liquid's, where the maximum lies); NaN when no frame fell between."""
    between = np.where((mids > liquid) & (mids < crystal), F, np.nan)
    if np.isnan(between).all():
        return float("nan"), float("nan")
    k = np.nanargmax(between)
    return float(F[k] - np.nanmin(F[mids <= liquid])), float(mids[k])


def campaign_profile(job: str, edges: np.ndarray) -> np.ndarray:
    """A campaign's reweighted F(n_largest): its FES on (n_largest, n_solid) summed over n_solid
    (on the system's state plane, whose n_largest bins are `edges`)."""
    import cvcycle
    from cvcycle.analysis.fes import histogram_fes

    fes = cvcycle.load(job).fes()
    if not np.array_equal(fes.x_edges, edges):
        raise ValueError(f"{job}: its FES has other n_largest bins than the system's state plane")
    p = np.nansum(np.exp(-fes.F), axis=0)  # F is (y = n_solid, x = n_largest)
    return histogram_fes(0.5 * (edges[1:] + edges[:-1]), p, [edges])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default=str(ROOT / "workflows" / "lj-nucleation-autoencoder.toml"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--centers", type=float, nargs=3, default=[0.0, 72.0, 6.0], metavar=("FIRST", "LAST", "STEP"))
    ap.add_argument("--kappa", type=float, default=0.1, help="restraint stiffness, kT per (solid-like particle)^2")
    ap.add_argument("--steps", type=int, default=30000, help="steps per window")
    ap.add_argument("--chunk", type=int, default=5000, help="steps between progress lines")
    ap.add_argument("--start", nargs="+", default=["liquid", "crystal"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--campaign", action="append", default=[], metavar="JOB", help="a campaign's folder to compare")
    ap.add_argument("--no-run", action="store_true", help="analyse the runs stored in --out only")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from cvcycle import io as cio
    from cvcycle.analysis.intervals import format_interval
    from cvcycle.spec import load_spec, validate
    from cvcycle.systems import make_system

    torch.set_num_threads(1)
    spec = validate(override(load_spec(args.spec), args.set))
    system = make_system(spec)
    liquid_state, crystal_state = list(system.states.values())[:2]
    liquid = liquid_state["radius"]  # both discs' extent along n_largest
    crystal = crystal_state["center"][0] - crystal_state["radius"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    first, last, step = args.centers
    centers = np.arange(first, last + step / 2, step)
    edges = system.state_plane()[0]  # the campaign's FES bins of n_largest
    mids = 0.5 * (edges[1:] + edges[:-1])
    profiles, rows, runs = {}, [], {}
    for start in args.start:
        for seed in args.seeds:
            path = out / f"umbrella-{start}-{seed}.npz"
            if path.is_file():  # a finished run is kept: rerun the analysis alone
                run = dict(cio.read_npz(path))
            elif args.no_run:
                continue
            else:
                run = run_windows(spec, start, seed, centers, args.kappa, args.steps, args.chunk)
                cio.write_npz(path, **run)
            runs[(start, seed)] = run
            F, overlap = profile(run, edges)
            F[mids > last + step] = np.nan  # beyond the last window: a few frames of its tail, weighted up by its restraint
            profiles[f"umbrella from the {start}, seed {seed}"] = F
            rows.append((f"umbrella from the {start}, seed {seed}", *barrier(F, mids, liquid, crystal), overlap,
                         float(run["seconds"])))
    for job in args.campaign:
        F = campaign_profile(job, edges)
        profiles[f"campaign {Path(job).name}"] = F
        rows.append((f"campaign {Path(job).name}", *barrier(F, mids, liquid, crystal), float("nan"), float("nan")))
    settings = "".join(f" --set '{s}'" for s in args.set)
    print(f"\n{args.spec}{settings}: {len(centers)} windows on n_s from {first:g} to {last:g}, kappa {args.kappa:g} kT, "
          f"{args.steps:,} steps each ({spec['engine']['name']} engine)\n")
    print("| estimate | barrier F(n*) - F(liquid) (kT) | n* (largest cluster at the top) "
          "| smallest overlap of neighbouring windows | wall time (s) |")
    print("|---|---|---|---|---|")
    edge = mids[mids <= last + step].max()
    for name, b, n_star, overlap, seconds in rows:
        top = " (the windows' last bin: no top inside their range)" if name.startswith("umbrella") and n_star >= edge else ""
        print(f"| {name} | {b:.1f} | {n_star:.0f}{top} | {overlap:.3f} | {seconds:,.0f} |")
    print("\nPer window (kept frames): the restraint's centre, mean n_s, mean n_largest, and the mean restraint "
          "force kappa (c - <n_s>), which equals dF/dn_s (kT per particle) where the window is in equilibrium "
          "(umbrella integration):\n")
    for (start, seed), run in runs.items():
        c, m = run["centers"], run["n_s"].mean(axis=0)
        print(f"- from the {start}, seed {seed}: " + "; ".join(
            f"{ci:g}: {mi:.0f}, {li:.0f}, {float(run['kappa_kT']) * (ci - mi):+.2f}"
            for ci, mi, li in zip(c, m, run["n_largest"].mean(axis=0))))
    print()
    umbrella = [b for name, b, *_ in rows if name.startswith("umbrella")]
    print(f"| umbrella, mean and 95 % t-interval over runs | {format_interval(umbrella, '.1f')} | | | |")
    plot(profiles, mids, (liquid, crystal), out / "F_n_largest.png", spec)


def plot(profiles: dict[str, np.ndarray], mids: np.ndarray, bounds: tuple[float, float], path: Path, spec: dict) -> None:
    """F(n_largest) of every estimate, zero at the liquid's minimum; dotted lines where the liquid's
    disc ends and the crystal's begins."""
    from cvcycle.analysis.plots import PALETTE, _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (name, F) in enumerate(profiles.items()):
        ax.plot(mids, F - np.nanmin(F[mids <= bounds[0]]), "o-" if name.startswith("umbrella") else "s--",
                ms=3, color=PALETTE[i % len(PALETTE)], label=name)
    for x in bounds:
        ax.axvline(x, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel("largest solid-like cluster n_largest (particles)")
    ax.set_ylabel("F(n_largest) - F(liquid) (kT)")
    s = spec["system"]
    ax.set_title(f"LJ nucleation, N = {4 * s['cells'] ** 3}, density {s['density']:g}, kT = {s['temperature']:g} (NVT)",
                 fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


if __name__ == "__main__":
    main()
