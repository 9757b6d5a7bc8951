"""An independent check of the transition-path-theory rate: brute-force transitions against the
grid's k_AB, on Mueller-Brown with a lower barrier (scale 0.05: the same landscape at half the
height, so unbiased walkers cross often enough to count).

    python benchmarks/rate_check.py --dt 2e-3 1e-3 --walkers 500 --time 120

Unbiased overdamped walkers (half started in A, half in B) run `--time` time units; after
`--burn` of them, every frame is labelled by the state last visited. TPT's k_AB = nu / E[1 - q]
is the rate per unit time spent having last visited A, so the brute-force estimate is the number
of A -> B transitions over the time spent with A as the last state (k_BA likewise), with a 95 %
interval from the spread between walkers (delta method for the ratio). The grid rates are
`analysis.rates.grid_tpt_rate` of the exact committor, as the campaigns report k_AB_exact.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def count(labels: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Transitions A -> B and B -> A per walker and frames with A and B as the last visited state,
    over frames (frames, walkers) of labels 0 (A), 1 (B), -1 (neither); `last` carries each
    walker's last state (-1: none yet) in and out."""
    n_ab, n_ba = np.zeros(labels.shape[1]), np.zeros(labels.shape[1])
    t_a, t_b = np.zeros(labels.shape[1]), np.zeros(labels.shape[1])
    for row in labels:
        inside = row >= 0
        n_ab += inside & (last == 0) & (row == 1)
        n_ba += inside & (last == 1) & (row == 0)
        last = np.where(inside, row, last)
        t_a += last == 0
        t_b += last == 1
    return n_ab, n_ba, t_a, t_b, last


def ratio_interval(n: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """sum n / sum t over walkers and the half-width of its 95 % interval (delta method)."""
    k = n.sum() / t.sum()
    resid = n - k * t
    se = np.sqrt(len(n) * (resid**2).sum() / (len(n) - 1)) / t.sum()
    return float(k), float(1.96 * se)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dt", type=float, nargs="+", default=[2e-3, 1e-3])
    parser.add_argument("--walkers", type=int, default=500)
    parser.add_argument("--time", type=float, default=120.0, help="time units per walker")
    parser.add_argument("--burn", type=float, default=5.0, help="time units left out at the start")
    parser.add_argument("--scale", type=float, default=0.05)
    args = parser.parse_args(argv)

    import torch

    from cvcycle.analysis.rates import grid_tpt_rate
    from cvcycle.analysis.reference import reference_from_spec
    from cvcycle.analysis.shooting import state_classifier
    from cvcycle.engines.langevin import LangevinEngine
    from cvcycle.spec import load_spec, validate
    from cvcycle.systems import make_system

    torch.set_num_threads(1)
    spec = load_spec("workflows/mueller-brown-committor-variational.toml")
    spec = validate({**spec, "system": {**spec["system"], "scale": args.scale}})
    D = spec["system"]["temperature"] / spec["engine"]["friction"]
    ref = reference_from_spec(spec, bins=481)
    exact_ab = grid_tpt_rate(ref.xs, ref.ys, ref.free_energy, ref.committor, D)
    exact_ba = grid_tpt_rate(ref.xs, ref.ys, ref.free_energy, 1.0 - ref.committor, D)
    classify = state_classifier(spec["system"]["states"])
    centres = np.array([s["center"] for s in spec["system"]["states"].values()])
    print(f"\nMueller-Brown x {args.scale}, kT {spec['system']['temperature']}, D {D}: grid TPT k_AB {exact_ab:.4e}, "
          f"k_BA {exact_ba:.4e} (481 x 481 grid)\n")
    print("| dt | walker steps | A→B transitions | k_AB brute force | / grid | B→A transitions | k_BA brute force | / grid |")
    print("|---|---|---|---|---|---|---|---|")
    for dt in args.dt:
        engine = LangevinEngine.from_spec({**spec, "engine": {**spec["engine"], "dt": dt, "walkers": args.walkers}},
                                          make_system(spec))
        engine.set_positions(centres[np.arange(args.walkers) % 2][:, None, :])
        engine.draw_velocities(1)
        stride, chunk = 2, 20_000
        steps, burn = int(round(args.time / dt)), int(round(args.burn / dt))
        engine.run(burn, burn)
        last = np.full(args.walkers, -1)
        totals = [np.zeros(args.walkers) for _ in range(4)]
        for start in range(0, steps, chunk):
            frames = engine.run(min(chunk, steps - start), stride)
            *parts, last = count(classify(frames.positions.reshape(-1, 1, 2)).reshape(len(frames.step), -1), last)
            totals = [a + b for a, b in zip(totals, parts)]
        n_ab, n_ba, t_a, t_b = totals
        (k_ab, h_ab), (k_ba, h_ba) = ratio_interval(n_ab, t_a * stride * dt), ratio_interval(n_ba, t_b * stride * dt)
        print(f"| {dt:g} | {steps * args.walkers:,} | {int(n_ab.sum())} | {k_ab:.4e} ± {h_ab:.1e} | "
              f"{k_ab / exact_ab:.3f} ± {h_ab / exact_ab:.3f} | {int(n_ba.sum())} | {k_ba:.4e} ± {h_ba:.1e} | "
              f"{k_ba / exact_ba:.3f} ± {h_ba / exact_ba:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
