"""How shots from a configuration must start, and how large the time-step error of p_B is.

    python benchmarks/shooting_statistics.py                  # 150 points x 100 shots per row
    python benchmarks/shooting_statistics.py --points 50 --shots 40 --dts 2e-3
    python benchmarks/shooting_statistics.py --integrators overdamped --points 300 --shots 200 --dts 2e-3 1e-3 5e-4 2.5e-4

Points: grid points of Mueller-Brown (the default workflows' V/10, kT = 1) whose exact committor
(the grid solution of the Smoluchowski equation on 4 x analysis.grid_bins + 1 bins) lies in
[0.45, 0.55], drawn with their Boltzmann weights without replacement, F - Fmin <= 12 kT. From each,
`--shots` trajectories are run until they enter A or B (states checked every 10 steps, as in
every shooting stage of cvcycle). Rows, for the overdamped (Leimkuhler-Matthews) and the
underdamped (BAOAB, friction 1, mass 1) integrator:

- `drawn`: what cvcycle's shots do (`Engine.draw_velocities`): Maxwell-Boltzmann velocities, or a
  fresh last noise term for the overdamped scheme. Mean p_B - exact q over the points, with a 95 %
  interval over the points, at each time step: the time-step error of p_B (for the underdamped
  integrator the exact q is the overdamped committor, so the difference is not an error; its change
  with dt is).
- `at rest`: the earlier convention, zero velocity (zero last noise), at the first time step.
- two halves: pairs of trajectories from one point as a two-way shooting move starts them, the
  second half with the first one's velocity (overdamped: last noise) negated, against two
  independent draws: the fraction of pairs whose halves end in different states, with the
  2 p (1 - p) that independent trials give (p from the `drawn` row of the same points).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def transition_points(spec: dict, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n grid points with exact q in [0.45, 0.55] and F <= 12 kT, Boltzmann-weighted, and their q."""
    from cvcycle.analysis.reference import reference_from_spec

    ref = reference_from_spec(spec, bins=4 * spec["analysis"]["grid_bins"] + 1)
    q, F = ref.committor.ravel(), ref.free_energy.ravel()
    shell = np.flatnonzero((q >= 0.45) & (q <= 0.55) & (F <= 12.0))
    w = np.exp(-F[shell])
    pick = np.random.default_rng(seed).choice(shell, n, replace=False, p=w / w.sum())
    return ref.points[pick], q[pick]


def shots(spec: dict, points: np.ndarray, n_shots: int, seed: int, start: Callable | None = None) -> np.ndarray:
    """Outcomes (points, shots) of cvcycle's shoot(); `start(engine, seed)` replaces how the
    trajectories get their velocities (default: the engine's draw_velocities)."""
    from cvcycle.analysis.shooting import shoot
    from cvcycle.engines import make_engine
    from cvcycle.systems import make_system

    system = make_system(spec)
    engine = make_engine(spec, system, walkers=len(points) * n_shots)
    if start is not None:
        engine.draw_velocities = lambda s: start(engine, s)
    outcomes, _ = shoot(engine, points[:, None, :], n_shots, system.classify_ab, seed, 200_000, compact=True)
    return outcomes


def at_rest(engine, seed: int) -> None:
    """Zero velocity and zero last noise: what set_positions leaves."""


def mirrored(engine, seed: int) -> None:
    """Fresh velocities for the first half of each pair (even walkers) and the same ones negated for
    the second (odd walkers), as OPS's two-way shooting starts its backward half."""
    from cvcycle.engines.langevin import LangevinEngine

    LangevinEngine.draw_velocities(engine, seed)
    state = engine.state_dict()
    for key in ("velocities", "noise"):
        state[key][1::2] = -state[key][0::2]
    engine.load_state_dict(state)


def interval(diff: np.ndarray) -> str:
    m, half = diff.mean(), 1.96 * diff.std(ddof=1) / math.sqrt(len(diff))
    return f"{m:+.4f} [{m - half:+.4f}, {m + half:+.4f}]"


def main() -> None:
    from cvcycle.analysis.shooting import committed_fraction
    from cvcycle.spec import load_spec, validate

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=150)
    ap.add_argument("--shots", type=int, default=100, help="trajectories per point (an even number)")
    ap.add_argument("--dts", type=float, nargs="+", default=[2e-3, 1e-3, 5e-4])
    ap.add_argument("--integrators", nargs="+", default=["overdamped", "underdamped"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    base = validate(load_spec(ROOT / "workflows" / "mueller-brown-autoencoder.toml"))
    points, q = transition_points(base, args.points, args.seed)
    print(f"{args.points} points with exact q in [0.45, 0.55] (mean {q.mean():.4f}), {args.shots} shots each\n")
    print("| integrator | dt | start | mean p_B - exact q [95 %] | halves in different states | 2p(1-p) | s |")
    print("|---|---|---|---|---|---|---|")
    for integrator in args.integrators:
        for dt in args.dts:
            spec = {**base, "engine": {**base["engine"], "integrator": integrator, "dt": dt, "friction": 1.0,
                                       "mass": 1.0}}
            rows = [("drawn", None)] + ([("at rest", at_rest), ("two halves, mirrored", mirrored)]
                                        if dt == args.dts[0] else [])
            p_drawn = None
            for label, start in rows:
                t0 = time.perf_counter()
                out = shots(spec, points, args.shots, args.seed + 1, start)
                p = committed_fraction(out)
                if start is None:
                    p_drawn = p
                    independent = out[:, 0::2] != out[:, 1::2]  # independent pairs
                    differ, expected = f"{independent.mean():.3f}", f"{np.mean(2 * p * (1 - p)):.3f}"
                elif start is mirrored:
                    differ = f"{(out[:, 0::2] != out[:, 1::2]).mean():.3f}"
                    expected = f"{np.mean(2 * p_drawn * (1 - p_drawn)):.3f}"
                else:
                    differ = expected = "-"
                print(f"| {integrator} | {dt:g} | {label} | {interval(p - q)} | {differ} | {expected} | "
                      f"{time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
