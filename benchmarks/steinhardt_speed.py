"""Cost of cvcycle's differentiable Steinhardt features against freud's own q6, side by side in one run.

    python benchmarks/steinhardt_speed.py [--sizes 512 4096 32768] [--repeats 5] [--threads 1]

For each N: an FCC crystal of Lennard-Jones particles at number density 0.95 with Gaussian noise of
0.08 sigma (a hot solid: ~12 neighbours within 1.5 sigma), and, timed interleaved (median over the
repeats, range in brackets): freud's Steinhardt(l=6) with its neighbour query (r_max = 1.5); cvcycle's
q6 (the same hard cut-off, forward only); q6 with the switched neighbours (r_on = 1.3) and its
gradient with respect to the positions (what a bias needs); and the campaign's whole feature
vector (33 features: soft histograms of q4, q6, qbar6, means, the smooth solid count) with its
gradient. Both on the CPU with the same number of threads. As a check that the two compute the same
thing: the particles whose q6 differs from freud's by more than 1e-4, and how many of those have a
neighbour within 1e-5 sigma of r_max (there freud's float32 distances and cvcycle's float64 ones can
disagree on whether the pair is a neighbour).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from cvcycle.features.steinhardt import SteinhardtFeatures, displacements, neighbor_pairs, steinhardt
from cvcycle.systems.lj_bulk import fcc_lattice


def configuration(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    cells = round((n / 4) ** (1 / 3))
    if 4 * cells**3 != n:
        raise SystemExit(f"--sizes: N must be 4 k^3 (an FCC crystal of k^3 cells), got {n}")
    x, box = fcc_lattice((cells, cells, cells), 0.95)
    x = x + np.random.default_rng(seed).normal(0.0, 0.08, x.shape)
    return np.mod(x, box), np.asarray(box, dtype=np.float64)


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 4000, 32000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import freud

    torch.set_num_threads(args.threads)
    freud.parallel.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, freud {freud.__version__}, {args.threads} thread(s), CPU; "
          f"median of {args.repeats} [min, max], ms")
    head = ["N", "freud q6", "cvcycle q6 (hard cut)", "q6 + gradient (switched)", "33 features + gradient",
            "q6 / freud", "features + gradient / freud", "q6 off freud's by > 1e-4 (of them at r_max)"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for n in args.sizes:
        x, box = configuration(n)
        fbox = freud.box.Box.cube(float(box[0]))
        fx = (x - box / 2).astype(np.float32)  # freud's box is centred on the origin
        pos = torch.as_tensor(x)
        feats = SteinhardtFeatures(box)

        def run_freud():
            return freud.order.Steinhardt(6).compute((fbox, fx), neighbors={"r_max": 1.5}).particle_order

        def run_q6():
            return steinhardt(pos, box, 6, 1.5)

        def run_q6_grad():
            p = pos.clone().requires_grad_()
            steinhardt(p, box, 6, 1.5, 1.3).sum().backward()

        def run_features_grad():
            p = pos.clone().requires_grad_()
            feats(p).sum().backward()

        paths = {"freud": run_freud, "q6": run_q6, "q6_grad": run_q6_grad, "features_grad": run_features_grad}
        for fn in paths.values():  # warm-up
            fn()
        times: dict[str, list[float]] = {k: [] for k in paths}
        for _ in range(args.repeats):  # interleaved, so load changes hit every path alike
            for k, fn in paths.items():
                times[k] += timed(fn, 1)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        cell = {k: f"{med[k]:.1f} [{min(v) * 1e3:.1f}, {max(v) * 1e3:.1f}]" for k, v in times.items()}
        off = np.flatnonzero(np.abs(run_q6().numpy() - run_freud()) > 1e-4)
        i, j = neighbor_pairs(pos, box, 1.6)
        r = torch.linalg.vector_norm(displacements(pos, torch.as_tensor(box), i, j), dim=-1)
        borderline = set(i[(r - 1.5).abs() < 1e-5].tolist())
        print(f"| {n} | {cell['freud']} | {cell['q6']} | {cell['q6_grad']} | {cell['features_grad']} | "
              f"{med['q6'] / med['freud']:.1f} | {med['features_grad'] / med['freud']:.1f} | "
              f"{len(off)} ({len(borderline.intersection(off.tolist()))}) |")


if __name__ == "__main__":
    main()
