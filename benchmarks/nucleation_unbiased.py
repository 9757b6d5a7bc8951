"""Unbiased runs of a nucleation spec from its start state: does the liquid crystallise on its own?

The comparison for a nucleation campaign: walkers started as the campaign's are (a random liquid),
run with the campaign's engine, time step and friction but no bias, for as many steps per walker
as the campaign took, reporting per walker the largest solid-like cluster seen and the first step
in each state. Prints a markdown table.

    python benchmarks/nucleation_unbiased.py workflows/lj-nucleation-autoencoder.toml --steps 200000 \
        --walkers 4 [--set system.temperature=0.85]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from campaigns import override  # noqa: E402  (benchmarks/campaigns.py)
from cvcycle.engines import make_engine  # noqa: E402
from cvcycle.spec import load_spec, validate  # noqa: E402
from cvcycle.systems import make_system  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("spec")
    ap.add_argument("--steps", type=int, required=True, help="steps per walker")
    ap.add_argument("--walkers", type=int, default=None, help="default: the spec's engine.walkers")
    ap.add_argument("--chunk", type=int, default=5000, help="steps between progress lines")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    spec = validate(override(load_spec(args.spec), args.set))
    system = make_system(spec)
    en = spec["engine"]
    walkers = args.walkers or en["walkers"]
    engine = make_engine(spec, system, walkers=walkers)
    rng = np.random.default_rng(spec["campaign"]["seed"])
    engine.set_positions(system.start(en["start"], walkers, en["start_spread"], rng))
    engine.draw_velocities(spec["campaign"]["seed"])
    largest = np.zeros(walkers)
    first = {name: [None] * walkers for name in system.states}
    start = time.time()
    while engine.step < args.steps:
        n = min(args.chunk, args.steps - engine.step)
        frames = engine.run(n, en["report_stride"])
        z = system.state_coordinates(frames.positions.reshape(-1, *frames.positions.shape[2:]))
        z = z.reshape(len(frames.step), walkers, -1)
        largest = np.maximum(largest, z[..., 0].max(axis=0))
        labels = system.classify_coordinates(z.reshape(-1, z.shape[-1])).reshape(len(frames.step), walkers)
        for j, name in enumerate(system.states):
            for w in range(walkers):
                hit = np.flatnonzero(labels[:, w] == j)
                if first[name][w] is None and len(hit):
                    first[name][w] = int(frames.step[hit[0]])
        print(f"step {engine.step:,}/{args.steps:,}: largest cluster so far {largest.astype(int).tolist()}; "
              f"{time.time() - start:.0f} s", file=sys.stderr, flush=True)
    tau = spec["engine"]["dt"]
    settings = "".join(f" --set {item}" for item in args.set)
    print(f"{args.spec}{settings}: {walkers} unbiased walkers x {args.steps:,} steps "
          f"({args.steps * tau:g} time units each), {time.time() - start:.0f} s\n")
    print("| walker | largest solid cluster seen | " + " | ".join(f"first step in {n}" for n in system.states) + " |")
    print("|---|---|" + "---|" * len(system.states))
    for w in range(walkers):
        cells = [f"{first[n][w]:,}" if first[n][w] is not None else "never" for n in system.states]
        print(f"| {w} | {int(largest[w])} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
