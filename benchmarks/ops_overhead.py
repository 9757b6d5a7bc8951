"""What openpathsampling costs on top of the engine in two-way shooting TPS, per frame stride.

    python benchmarks/ops_overhead.py                   # Mueller-Brown, strides 1, 10, 50, 30 moves each
    python benchmarks/ops_overhead.py --strides 10 --moves 100

For each stride (engine steps per OPS frame) it runs TPS through cvcycle.paths from the same
initial path and times every LangevinEngine.run call inside it; then it runs the pure one-walker
engine for the same number of steps, once as a single run() and once as one run(stride) per frame
(the bridge's call pattern without OPS). Columns: seconds per shooting move, of which engine time,
the share of OPS + bridge (everything but engine.run), and microseconds per engine step in TPS, in
a single run(), and in run(stride) calls. One torch thread; OPS is imported before timing.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cvcycle.engines import make_engine
from cvcycle.engines.langevin import LangevinEngine
from cvcycle.paths import initial_path, run_tps
from cvcycle.paths.tps import load_ops
from cvcycle.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
# Mueller-Brown: A, first saddle, intermediate minimum, second saddle, B
WAYPOINTS = np.array([[-0.558, 1.442], [-0.822, 0.624], [-0.05, 0.467], [0.212, 0.293], [0.623, 0.028]])


class EngineClock:
    """Total wall time spent inside LangevinEngine.run while installed."""

    def __init__(self) -> None:
        self.seconds, self._run = 0.0, LangevinEngine.run

    def __enter__(self) -> "EngineClock":
        clock, run = self, self._run

        def timed(engine, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return run(engine, *args, **kwargs)
            finally:
                clock.seconds += time.perf_counter() - t0

        LangevinEngine.run = timed
        return self

    def __exit__(self, *exc: object) -> None:
        LangevinEngine.run = self._run


def pure_engine(spec: dict, steps: int, stride: int) -> tuple[float, float]:
    """Seconds for `steps` steps of a one-walker engine: one run(), and run(stride) calls."""
    one = copy.deepcopy(spec)
    one["engine"]["walkers"] = 1
    engine = make_engine(one)
    engine.set_positions(WAYPOINTS[2:3])
    t0 = time.perf_counter()
    engine.run(steps, steps, seed=1)
    single = time.perf_counter() - t0
    engine.set_positions(WAYPOINTS[2:3])
    t0 = time.perf_counter()
    for i in range(steps // stride):
        engine.run(stride, stride, seed=i)
    return single, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default=str(ROOT / "workflows" / "mueller-brown-autoencoder.toml"))
    parser.add_argument("--strides", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--moves", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    spec = load_spec(args.spec)
    spec["resources"]["cpus"] = 1
    polyline = np.concatenate([np.linspace(a, b, 10, endpoint=False) for a, b in zip(WAYPOINTS[:-1], WAYPOINTS[1:])]
                              + [WAYPOINTS[-1:]])
    start = initial_path(polyline[:, None], spec["system"]["states"])
    t0 = time.perf_counter()
    load_ops()
    print(f"importing openpathsampling: {time.perf_counter() - t0:.1f} s (once per process, not in the table)")
    print(f"{'stride':>6} {'moves':>5} {'acc':>4} {'steps/move':>10} {'s/move':>7} {'engine s/move':>13} "
          f"{'OPS+bridge':>10} {'us/step TPS':>11} {'us/step run()':>13} {'us/step run(stride)':>19}")
    for stride in args.strides:
        with tempfile.TemporaryDirectory() as work, EngineClock() as clock:
            t0 = time.perf_counter()
            rec = run_tps(spec, start, args.moves, args.seed, Path(work), log=lambda line: None,
                          stride=stride, max_frames=max(20000 // stride, 50), chunk_moves=args.moves)
            wall = time.perf_counter() - t0
        steps = int(rec.steps.sum() + rec.extra_steps.sum())
        single, per_frame = pure_engine(spec, steps, stride)
        print(f"{stride:>6} {args.moves:>5} {int(rec.accepted.sum()):>4} {steps / args.moves:>10.0f} "
              f"{wall / args.moves:>7.3f} {clock.seconds / args.moves:>13.3f} {1 - clock.seconds / wall:>10.1%} "
              f"{1e6 * wall / steps:>11.0f} {1e6 * single / steps:>13.0f} {1e6 * per_frame / steps:>19.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
