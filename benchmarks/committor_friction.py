"""Does the committor histogram test of a learned committor depend on the shots' friction?

    python benchmarks/committor_friction.py JOB --iteration 9 --friction 1 5 20 [--out DIR]

The variational committor minimises the Kolmogorov functional of overdamped (diffusive) dynamics,
whose committor the underdamped Langevin dynamics of a campaign approaches only at high friction.
This runs the campaign's committor test (50 points at predicted q = 1/2, 100 shots each, the same
points and random stream for every friction) with `engine.friction` replaced, and prints one row
per friction: if the learned q's offset from p_B were inertial, it would shrink as friction grows.
Each test writes its committor_test.json / .png into DIR/friction-<value>.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

from cvcycle.analysis.committor_histogram import committor_histogram
from cvcycle.show import find_campaign


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("job", help="job directory, or job id / unique prefix under ./workspace/")
    ap.add_argument("--iteration", type=int, required=True, help="the iteration whose CV to test")
    ap.add_argument("--friction", type=float, nargs="+", required=True, help="engine.friction values (1/time)")
    ap.add_argument("--out", default="committor-friction", help="folder for the tests' files")
    args = ap.parse_args()
    c = find_campaign(args.job)
    print(f"campaign {c.id}, CV of iteration {args.iteration}, spec friction {c.spec['engine']['friction']:g}")
    print("| friction | p_B at predicted q = 1/2 (mean) | intrinsic width | s |\n|---|---|---|---|")
    for gamma in args.friction:
        c.spec = copy.deepcopy(c.spec)
        c.spec["engine"]["friction"] = gamma
        out = Path(args.out) / f"friction-{gamma:g}"
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        r = committor_histogram(c, shots=100, points=50, iteration=args.iteration, seed=0, log=lambda _: None, out=out)
        print(f"| {gamma:g} | {r['p_B_mean']:.3f} | {r['p_B_std_intrinsic']:.3f} | {time.perf_counter() - t0:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
