"""Cost of the feature metric J J^T that the variational committor trains with, side by side in one run.

    python benchmarks/feature_metric_speed.py [--spec workflows/lj-nucleation-committor.toml]
        [--frames 32] [--repeats 3] [--threads 1]

The spec's featurizer (default: the nucleation workflow's 33 Steinhardt features of 256 particles)
on `--frames` configurations (an FCC crystal at the spec's density with Gaussian noise from 0.05 to
0.25 sigma, a hot solid to a melt). feature_metric takes one backward pass per feature; timed
interleaved (median over the repeats, range in brackets), per frame: the whole feature vector
back-propagated one frame at a time (the code before the featurizer's blocks and neighbour-list
chunks), the whole vector in the default chunk, the featurizer's blocks one frame at a time, and
the blocks in the default chunk (what campaigns run). Each variant's metric must equal the first's
to rounding: the largest relative difference is printed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from cvcycle.features import make_featurizer
from cvcycle.features.base import frames_per_chunk
from cvcycle.learn.committor import feature_metric
from cvcycle.spec import load_spec
from cvcycle.systems.lj_bulk import fcc_lattice


class WholeVector(torch.nn.Module):
    """The featurizer without its blocks: every column back-propagates through the whole graph."""

    def __init__(self, featurizer: torch.nn.Module) -> None:
        super().__init__()
        self.featurizer = featurizer

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.featurizer(positions)


def configurations(spec: dict, frames: int) -> np.ndarray:
    system = spec["system"]
    x, box = fcc_lattice((system["cells"],) * 3, system["density"])
    rng = np.random.default_rng(0)
    noise = np.linspace(0.05, 0.25, frames)
    return np.stack([np.mod(x + rng.normal(0.0, s, x.shape), box) for s in noise])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="workflows/lj-nucleation-committor.toml")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = load_spec(args.spec)
    featurizer = make_featurizer(spec)
    pos = configurations(spec, args.frames)
    chunk = frames_per_chunk(featurizer, pos.shape[1])
    variants = {"whole vector, 1 frame at a time": (WholeVector(featurizer), 1),
                f"whole vector, {chunk} frames at a time": (WholeVector(featurizer), chunk),
                "blocks, 1 frame at a time": (featurizer, 1),
                f"blocks, {chunk} frames at a time (default)": (featurizer, chunk)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    metrics: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name, (module, size) in variants.items():
            t0 = time.perf_counter()
            metrics[name] = feature_metric(module, pos, chunk=size)
            times[name].append((time.perf_counter() - t0) / len(pos))
    first = next(iter(metrics.values()))
    scale = np.abs(first).max()
    print(f"{args.spec}: {len(featurizer.names)} features of {pos.shape[1]} particles, {len(pos)} frames, "
          f"torch {torch.__version__}, {args.threads} thread(s), CPU; median of {args.repeats} [min, max]")
    print("| variant | s per frame | speed-up | max relative difference |")
    print("|---|---|---|---|")
    base = statistics.median(next(iter(times.values())))
    for name, t in times.items():
        med = statistics.median(t)
        diff = np.abs(metrics[name] - first).max() / scale
        print(f"| {name} | {med:.4f} [{min(t):.4f}, {max(t):.4f}] | {base / med:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
