"""Route `variational`: biased simulation along logit q_k, then q_{k+1} = sigmoid(f(features))
by minimising the Kolmogorov functional with A/B boundary terms on the Boltzmann-reweighted
samples; convergence needs q to stop changing (RMS change over the newest frames)."""

from __future__ import annotations

import time
from functools import partial
from typing import Any, Callable

import numpy as np

from .. import io as cio
from ..campaign import Campaign
from ..checkpoints import CheckpointSeries
from ..features import make_featurizer
from ..learn.committor import committor_terms, feature_metric, train_committor
from ..learn.train import TrainResult
from .base import BIASED_FILES, Route
from .data import inverse_mass, training_header, training_set
from .evaluate import Agreement, analyze_biased, fmt, q_change_rms
from .fit import save_trained, train_ensemble
from .simulate import simulate

Log = Callable[[str], None]


def train(c: Campaign, k: int, log: Log = print, deadline: float | None = None) -> None:
    """Train q_{k+1} on the samples of iterations 0..k and export it; with a `deadline`, stop at
    an epoch checkpoint when the walltime budget is nearly spent."""
    spec, cfg = c.spec, c.spec["learner"]
    t = training_set(c, k)
    log(training_header(c, k, t))
    feats, weights, pool, check = t.feats, t.weights, t.pool, t.check
    labels = np.where(t.labels < 2, t.labels, -1)  # A = 0, B = 1, other states and none -1
    # the metric of the frames drawn only (its Jacobian costs ~0.04 s per frame of 256 particles);
    # position_stride is 1 (spec), so positions and samples share their rows
    started = time.perf_counter()
    metric = feature_metric(make_featurizer(spec), t.pos[np.concatenate([pool, check])], inverse_mass(spec))
    if metric is not None and time.perf_counter() - started > 10.0:
        log(f"[iter {k} train] feature metric J D J^T of {len(metric)} frames: {time.perf_counter() - started:.0f} s")
    pool_metric, check_metric = (None, None) if metric is None else (metric[:len(pool)], metric[len(pool):])

    def member(j: int, init: Any, checkpoints: CheckpointSeries, label: str, log: Log) -> TrainResult:
        return train_committor(feats[pool], weights[pool], labels[pool], cfg, cio.derive_seed(c.seed, k, 3_000_017 + j),
                               pool_metric, log, label, init, checkpoints, deadline)

    k_first: float | None = None

    def score(model: Any) -> tuple[float]:  # held-out loss, with K in units of the first member's K
        nonlocal k_first
        kol, boundary = committor_terms(model, feats[check], weights[check], labels[check], check_metric)
        k_first = k_first or max(kol, 1e-300)
        return (kol / k_first + cfg["boundary_weight"] * boundary,)

    model, info = train_ensemble(c, k, log, member, score, "held-out loss", t.previous)
    save_trained(c, k, model, {**info, "samples": len(pool)}, committor=True)


def _measure(metrics: dict[str, Any], s_new: np.ndarray, s_old: np.ndarray | None, latest: slice) -> None:
    metrics["cv_r2"] = None  # logit q is compared through q itself
    metrics["q_change"] = q_change_rms(s_new[latest, 0], s_old[latest, 0]) if s_old is not None else None


AGREEMENT = Agreement(
    measure=_measure,
    check=lambda m, conv: {"q_change": m["q_change"] is not None and m["q_change"] <= conv["q_change"]},
    text=lambda m: f"committor change {fmt(m['q_change'])}, RMSE vs exact {fmt(m.get('committor_rmse'))}")

ROUTE = Route("variational", simulate, train, partial(analyze_biased, agreement=AGREEMENT, logit_q=True),
              {**BIASED_FILES, "train": BIASED_FILES["train"] + ("committor.pt",)},
              metric_keys=("q_change", "fes_change", "fes_rmse_exact", "committor_rmse"), logit_q=True)
