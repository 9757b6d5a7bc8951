"""How much of an autoencoder CV's committor quality is training noise?

Retrains iteration k of a finished autoencoder campaign on its exact training set (same frames,
weights, pool and held-out split) with N members: member 0 warm-started from CV_k as in the
campaign, members 1.. from fresh initialisations with the campaign's own derived seeds (1 and 2
are the campaign's other ensemble members). Prints, per member, the scores by which the campaign
picks its CV (learner.select: the Kolmogorov functional K_s of the CV, then the held-out
reconstruction loss; or that loss alone) and the committor quality of the CV against the exact
grid committor, next to the straight-line references on the same grid.

    python benchmarks/cv_training_spread.py benchmarks/out/mueller-brown-autoencoder-seed1 --members 6
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", help="a finished 2-D autoencoder campaign directory with a 1-D CV")
    parser.add_argument("--iteration", type=int, default=None, help="iteration to retrain (default: the last)")
    parser.add_argument("--members", type=int, default=6)
    args = parser.parse_args(argv)

    import torch

    from cvcycle.routes.autoencoder import autoencoder_member, autoencoder_score
    from cvcycle.routes.data import state_features, training_set
    from cvcycle.routes.evaluate import campaign_reference
    from cvcycle.routes.fit import eval_cv
    from cvcycle.analysis.benchmark import straight_line_quality
    from cvcycle.analysis.quality import cv_committor_quality
    from cvcycle.campaign import Campaign
    from cvcycle.errors import CvcycleError
    from cvcycle.features import make_featurizer
    from cvcycle.learn.train import normalize_cv
    from cvcycle.models.export import cv_module

    torch.set_num_threads(1)
    try:
        c = Campaign(args.job)
    except CvcycleError as exc:
        parser.error(str(exc))
    if c.spec["learner"]["kind"] != "autoencoder" or c.spec["learner"]["cv_dim"] != 1:
        parser.error(f"{c.path} is not a campaign with a 1-D autoencoder CV")
    history = c.progress()["history"]
    if not history:
        parser.error(f"{c.path} has no finished iteration")
    k = history[-1]["iteration"] if args.iteration is None else args.iteration
    if not (c.iter_dir(k) / "model.npz").is_file():
        parser.error(f"{c.path}: iteration {k} has not been trained (trained: 0..{history[-1]['iteration']})")
    t = training_set(c, k)
    ref = campaign_reference(c)
    q, F = ref.committor.ravel(), ref.free_energy.ravel()
    grid_features = make_featurizer(c.spec)(torch.as_tensor(ref.points)[:, None, :]).detach().numpy()
    states = state_features(c.spec, t.labels, t.feats)

    criterion, score, _ = autoencoder_score(c, k, t)
    columns = criterion.split(" / ")
    print(f"\n{c.id}: iteration {k}, {len(t.pool)} training frames from iterations {t.used}\n")
    print(f"| member | start | {' | '.join(columns)} | committor R² | width |")
    print("|---|---|" + "---|" * (len(columns) + 2))
    rows = []
    for j in range(args.members):
        init = t.previous if j == 0 else None
        r = autoencoder_member(c, k, t, j, init, log=lambda s: None)
        scores = score(r.model)
        normalize_cv(r.model, t.feats[t.pool], states)
        m = cv_committor_quality(eval_cv(cv_module(r.model).eval(), grid_features)[:, 0], q, F)
        rows.append((scores, m["r2"], m["width"]))
        shown = " | ".join(f"{v:.4e}" for v in scores)
        print(f"| {j} | {'warm' if init is not None else 'fresh'} | {shown} | {m['r2']:.4f} | {m['width']:.3f} |", flush=True)
    r2, width = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
    print(f"| all {len(rows)} | |{' |' * len(columns)} {r2.mean():.4f} ± {r2.std(ddof=1) if len(rows) > 1 else 0:.4f} "
          f"| {width.mean():.3f} ± {width.std(ddof=1) if len(rows) > 1 else 0:.3f} |")
    refs = straight_line_quality(c.spec)
    print("\nReferences (R² / width): " + ", ".join(f"{name} {m['r2']:.4f} / {m['width']:.3f}" for name, m in refs.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
