"""How much does a learned committor change between trainings on the same data?

    python benchmarks/committor_noise.py JOB --iteration K [--seeds 3]

The variational route's q_change check compares CV_{K+1} with CV_K (RMS change of q over
iteration K's frames where either model has 0.05 < q < 0.95) against convergence.q_change. This
retrains iteration K's committor --seeds times on exactly the campaign's training set (the same
warm start from iteration K - 1's model, the same frames and weights, only the training's random
stream differs) and prints the same RMS between every pair of retrainings (the floor set by
training alone), and between each and CV_K, beside the campaign's own q_change. A limit below
the floor is passed by chance.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import numpy as np
import torch

from cvcycle import io as cio
from cvcycle.checkpoints import CheckpointSeries
from cvcycle.features import make_featurizer
from cvcycle.learn.committor import feature_metric, train_committor
from cvcycle.models.export import load_model
from cvcycle.routes.data import flat, inverse_mass, load_samples, training_set
from cvcycle.routes.evaluate import fmt, q_change_rms
from cvcycle.show import find_campaign


def logit(model: torch.nn.Module, feats: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(feats, dtype=torch.float32)).double().numpy()[:, 0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("job", help="job directory, or job id / unique prefix under ./workspace/")
    ap.add_argument("--iteration", type=int, required=True, help="K >= 1: retrain iteration K's committor")
    ap.add_argument("--seeds", type=int, default=3, help="retrainings, each with its own random stream")
    args = ap.parse_args()
    c, k = find_campaign(args.job), args.iteration
    cfg = c.spec["learner"]
    t = training_set(c, k)
    metric = feature_metric(make_featurizer(c.spec), t.pos, inverse_mass(c.spec))
    sub = (lambda idx: None) if metric is None else (lambda idx: metric[idx])
    labels = np.where(t.labels < 2, t.labels, -1)  # A = 0, B = 1, as the route trains
    latest = flat(load_samples(c, k), "features")  # iteration k's frames, as the q_change check takes them
    old = logit(load_model(c.iter_dir(k - 1) / "model.npz"), latest)
    own = logit(load_model(c.iter_dir(k) / "model.npz"), latest)
    recorded = cio.read_json(c.iter_dir(k) / "metrics.json").get("q_change")
    z = []
    with tempfile.TemporaryDirectory() as tmp:
        for j in range(args.seeds):
            r = train_committor(t.feats[t.pool], t.weights[t.pool], labels[t.pool], cfg,
                                cio.derive_seed(c.seed, k, 9_000_001 + j), sub(t.pool), lambda _: None, f"seed {j}",
                                t.previous, CheckpointSeries(Path(tmp) / f"seed-{j}", "checkpoint"))
            z.append(logit(r.model, latest))
            print(f"retraining {j}: RMS q change from CV_{k} {fmt(q_change_rms(z[-1], old))}, "
                  f"from the campaign's CV_{k + 1} {fmt(q_change_rms(z[-1], own))}", flush=True)
    pairs = [p for a, b in itertools.combinations(z, 2) if (p := q_change_rms(a, b)) is not None]
    if not pairs:
        raise SystemExit(f"no frame of iteration {k} has 0.05 < q < 0.95 under any retraining: no change to measure")
    print(f"\ncampaign {c.id}, iteration {k}: {len(t.pool)} training frames, {len(latest)} frames of iteration {k}")
    print("| quantity | RMS q change |\n|---|---|")
    print(f"| the campaign's q_change (CV_{k + 1} vs CV_{k}), as recorded | {fmt(recorded)} |")
    print(f"| the same, recomputed here | {fmt(q_change_rms(own, old))} |")
    print(f"| between retrainings on the same data (floor), mean over {len(pairs)} pairs | {np.mean(pairs):.4f} "
          f"(min {min(pairs):.4f}, max {max(pairs):.4f}) |")
    print(f"| limit (convergence.q_change) | {c.spec['convergence']['q_change']} |")


if __name__ == "__main__":
    main()
