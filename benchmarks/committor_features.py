"""Is a learned committor's offset from p_B a matter of its features?

    python benchmarks/committor_features.py JOB --iteration 9 --variant more=continue \
        --variant base=phi,psi --variant omega=phi,psi,omega0,omega1 [--epochs 2000] [--seed 0] [--out DIR]

The variational route minimises the Kolmogorov functional over functions of the features; with
features that miss a slow degree of freedom the minimiser is the best committor in their span,
whose q = 1/2 isosurface need not have p_B = 1/2. For each variant (a name and the dihedrals it
uses, with the campaign's own distances) this copies the campaign's iterations 0..K (samples
and stored positions only) into DIR/NAME, recomputes every frame's features from its
positions, trains iteration K's committor afresh (cold start, the campaign's learner settings
and weights) and runs the committor histogram test on it (50 points at predicted q = 1/2, 100
shots each). A variant with the campaign's own dihedrals is the control: it measures what a
cold-started retraining alone does. The variant NAME=continue instead goes on training iteration
K's own model (the campaign's features) for --epochs more: whether the campaign's training had
reached the functional's minimum. Prints one row per variant.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import time
from pathlib import Path

import torch

from cvcycle import io as cio
from cvcycle.analysis.committor_histogram import committor_histogram
from cvcycle.campaign import Campaign
from cvcycle.features import make_featurizer
from cvcycle.routes.variational import train
from cvcycle.show import find_campaign

STATEPOINT, DOCUMENT = "signac_statepoint.json", "signac_job_document.json"


def variant_campaign(c: Campaign, k: int, dihedrals: list[str] | None, epochs: int, seed: int, dst: Path) -> Campaign:
    """A copy of iterations 0..k of `c` in `dst` whose features use `dihedrals`, recomputed from
    the stored positions (every frame's: the workflow stores them all), training cold-started for
    `epochs`; with dihedrals None, the campaign's features and iteration k's model to go on from."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    point = cio.read_json(c.path / STATEPOINT)
    spec = copy.deepcopy(point["spec"])
    spec["features"]["dihedrals"] = dihedrals or spec["features"]["dihedrals"]
    spec["learner"]["warm_start"] = dihedrals is None
    spec["learner"]["epochs"] = epochs
    spec["campaign"]["seed"] = seed
    cio.write_json(dst / STATEPOINT, {**point, "spec": spec})
    shutil.copy2(c.path / DOCUMENT, dst / DOCUMENT)
    v = Campaign(dst)
    featurizer = make_featurizer(v.spec)
    for i in range(k + 1):
        src, out = c.iter_dir(i), v.iter_dir(i)
        out.mkdir(parents=True)
        shutil.copy2(src / "trajectory.npz", out / "trajectory.npz")
        samples = cio.read_npz(src / "samples.npz")
        t = cio.read_npz(src / "trajectory.npz")
        if len(t["frame"]) != len(samples["step"]):
            raise SystemExit(f"{src}: positions stored for {len(t['frame'])} of {len(samples['step'])} frames; "
                             "features cannot be recomputed for all")
        with torch.no_grad():
            feats = featurizer(torch.as_tensor(t["positions"])).numpy().astype(samples["features"].dtype)
        cio.write_npz(out / "samples.npz", **{**{key: val for key, val in samples.items() if key != "__sha256__"},
                                              "features": feats})
    if dihedrals is None:  # train(v, k) warm-starts from iteration k - 1's model
        for suffix in ("", ".json"):
            shutil.copy2(c.iter_dir(k) / f"model.npz{suffix}", v.iter_dir(k - 1) / f"model.npz{suffix}")
    return v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("job", help="job directory, or job id / unique prefix under ./workspace/")
    ap.add_argument("--iteration", type=int, required=True, help="K: retrain iteration K's committor")
    ap.add_argument("--variant", action="append", required=True, metavar="NAME=DIHEDRAL,...",
                    help="a variant: its name and the dihedrals its features use, or 'continue' (repeatable)")
    ap.add_argument("--epochs", type=int, default=200, help="training epochs of every variant")
    ap.add_argument("--seed", type=int, default=0, help="campaign seed of the copies (training and test streams)")
    ap.add_argument("--out", default="committor-features", help="folder for the copies and their tests")
    args = ap.parse_args()
    c = find_campaign(args.job)
    print(f"campaign {c.id}, iteration {args.iteration}, features {c.spec['features']}")
    rows = []
    for item in args.variant:
        name, _, dihedrals = item.partition("=")
        dst = Path(args.out) / name
        t0 = time.perf_counter()
        v = variant_campaign(c, args.iteration, None if dihedrals == "continue" else dihedrals.split(","),
                             args.epochs, args.seed, dst)
        train(v, args.iteration, log=lambda line: print(line, flush=True))
        t1 = time.perf_counter()
        r = committor_histogram(v, shots=100, points=50, iteration=args.iteration, seed=0,
                                log=lambda line: print(line, flush=True), out=dst)
        used = ", ".join(v.spec["features"]["dihedrals"]) + " (continued)" * (dihedrals == "continue")
        rows.append(f"| {name} | {used} | {len(make_featurizer(v.spec).names)} | {r['p_B_mean']:.3f} "
                    f"| {r['p_B_std_intrinsic']:.3f} | {t1 - t0:.0f} | {time.perf_counter() - t1:.0f} |")
        print(rows[-1], flush=True)
    print("\n| variant | dihedrals | features | p_B at predicted q = 1/2 | intrinsic width | train s | test s |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
