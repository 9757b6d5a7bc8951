"""Time per step of the Lennard-Jones nucleation system on the OpenMM and HOOMD-blue engines,
unbiased and with the bias (Steinhardt features -> a learned-CV stand-in -> OPES) every step and
every k steps, for N = 500 ... 32,000 particles, measured side by side in one run.

    python benchmarks/nucleation_speed.py [--engines openmm hoomd] [--cells 5 10 20] [--strides 1 10]
                                          [--repeats 3] [--platform CPU]

N = 4 cells^3 (an FCC crystal fills the box at the workflow's density 0.95; the walker starts from
the random liquid). One walker, one thread (OpenMM's CPU platform, HOOMD-blue's CPU device, torch).
Each path runs n and then 2n steps on the same engine and takes (t(2n) - t(n)) / n, so a run's
fixed costs (its first frame's features, reseeding) cancel, after a warm-up run of n steps; n ~ --particle-steps / N with the bias
every step, k times that with the bias every k steps (as many evaluations), 10 times unbiased; the paths and repeats are interleaved
and the table gives the median. The bias: OPES (the workflow's settings, primed, depositing every
50 steps) on a 33 -> 32 -> 32 -> 1 tanh network of the workflow's 33 Steinhardt features, the shape
of a learned CV; its overhead is the biased minus the unbiased time per step. Engines that do not
import are left out with a line saying so.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from openmm_speed import prepared_engine  # noqa: E402  (benchmarks/openmm_speed.py)


def seconds_per_step(spec: dict, stride: int | None, n: int) -> float:
    """(t(2n) - t(n)) / n for one walker, unbiased (stride None) or biased every `stride` steps."""
    engine, hook = prepared_engine(spec, 1, stride is not None, start="liquid")
    engine.run(n, 2 * n + 1, hook, bias_stride=stride or 1)  # warm-up: HOOMD-blue's first run builds and tunes
    times = []
    for steps in (n, 2 * n):
        t0 = time.perf_counter()
        engine.run(steps, 2 * n + 1, hook, bias_stride=stride or 1)  # reports only its first frame
        times.append(time.perf_counter() - t0)
    return (times[1] - times[0]) / n


def steps_for(n_particles: int, particle_steps: float, multiple: int) -> int:
    """About particle_steps / N steps, at least `multiple`, rounded up to a multiple of it."""
    return multiple * max(1, math.ceil(particle_steps / n_particles / multiple))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engines", nargs="+", default=["openmm", "hoomd"])
    ap.add_argument("--cells", type=int, nargs="+", default=[5, 10, 20], help="N = 4 cells^3")
    ap.add_argument("--strides", type=int, nargs="+", default=[1, 10], help="bias every k steps")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--platform", default="CPU")
    ap.add_argument("--particle-steps", type=float, default=1e5,
                    help="n ~ this / N steps with the bias every step (k x that every k steps, 10 x unbiased)")
    args = ap.parse_args()
    from cvcycle.spec import load_spec

    base = load_spec(ROOT / "workflows" / "lj-nucleation-autoencoder.toml")
    engines = [e for e in args.engines if importlib.util.find_spec(e) is not None]
    for e in sorted(set(args.engines) - set(engines)):
        print(f"engine {e}: left out, the package '{e}' does not import here")
    k_max = max(args.strides)
    paths = [None, *args.strides]
    rows: dict[tuple[str, int, int | None], list[float]] = {}
    started = time.time()
    for repeat in range(args.repeats):
        for cells in args.cells:
            n_particles = 4 * cells**3
            for name in engines:
                spec = copy.deepcopy(base)
                spec["system"]["cells"] = cells
                spec["engine"].update(name=name, platform=args.platform)
                spec["resources"]["cpus"] = 1
                n_every = steps_for(n_particles, args.particle_steps, k_max)  # steps with the bias every step
                for stride in paths:  # as many bias evaluations on every biased path; unbiased 10 x the steps
                    n = n_every * (stride or 10)
                    rows.setdefault((name, n_particles, stride), []).append(seconds_per_step(spec, stride, n))
                print(f"repeat {repeat + 1}/{args.repeats}, {name}, N = {n_particles:,}: done, "
                      f"{time.time() - started:.0f} s", file=sys.stderr, flush=True)
    print(f"\nLennard-Jones nucleation system (workflows/lj-nucleation-autoencoder.toml), platform {args.platform}, "
          f"one walker, one thread; median of {args.repeats} interleaved repeats\n")
    head = " | ".join(f"bias every {k}: ms / step | overhead (us / step)" for k in args.strides)
    print(f"| engine | N | unbiased (ms / step) | {head} |")
    print("|---|---|---|" + "---|---|" * len(args.strides))
    for cells in args.cells:
        n_particles = 4 * cells**3
        for name in engines:
            plain = float(np.median(rows[(name, n_particles, None)]))
            cols = []
            for k in args.strides:
                t = float(np.median(rows[(name, n_particles, k)]))
                cols.append(f"{1e3 * t:,.2f} | {1e6 * (t - plain):,.0f}")
            print(f"| {name} | {n_particles:,} | {1e3 * plain:,.3f} | " + " | ".join(cols) + " |")


if __name__ == "__main__":
    main()
