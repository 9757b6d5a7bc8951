"""Route `autoencoder`: biased simulation along CV_k, then an ensemble of autoencoders on the
reweighted samples; the 1-D (or 2-D) bottleneck is CV_{k+1}. Members are ranked by the
Kolmogorov functional K_s of their CV (or the held-out reconstruction loss); convergence needs
CV_{k+1} to agree with CV_k (linear R^2)."""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Callable

import numpy as np
import torch

from .. import io as cio
from ..campaign import Campaign
from ..checkpoints import CheckpointSeries
from ..features import make_featurizer
from ..learn.cv_kolmogorov import bootstrap_kolmogorov, cv_and_grad_sq, cv_kolmogorov
from ..learn.train import TrainResult, normalize_cv, reconstruction_loss, train_autoencoder
from .base import BIASED_FILES, Route
from .data import TrainingSet, inverse_mass, state_features, training_header, training_set
from .evaluate import Agreement, analyze_biased, fmt, linear_r2
from .fit import Choose, eval_cv, lowest, save_trained, train_ensemble
from .simulate import driving_cv, simulate

Log = Callable[[str], None]
TRUST_R2 = 0.9  # an autoencoder member's CV must agree this well with CV_k for K_s to rank it
BOOTSTRAP_RESAMPLES = 200  # of the walkers, for K_s's error in the ranking
PREFER_LEVEL = 0.95  # a fresh member replaces the warm one when its K_s is lower in this share of them


def train(c: Campaign, k: int, log: Log = print, deadline: float | None = None) -> None:
    """Train CV_{k+1} on the samples of iterations 0..k and export it; with a `deadline`, stop at
    an epoch checkpoint when the walltime budget is nearly spent."""
    t = training_set(c, k)
    log(training_header(c, k, t))

    def member(j: int, init: Any, checkpoints: CheckpointSeries, label: str, log: Log) -> TrainResult:
        return autoencoder_member(c, k, t, j, init, log, label, checkpoints, deadline)

    criterion, score, choose = autoencoder_score(c, k, t)
    model, info = train_ensemble(c, k, log, member, score, criterion, t.previous, choose)
    normalize_cv(model, t.feats[t.pool], state_features(c.spec, t.labels, t.feats))
    save_trained(c, k, model, {**info, "samples": len(t.pool)})


def autoencoder_member(c: Campaign, k: int, t: TrainingSet, j: int, init: Any = None, log: Log = print, label: str = "train",
                       checkpoints: CheckpointSeries | None = None, deadline: float | None = None) -> TrainResult:
    """Member j of iteration k's autoencoder ensemble, fitted to t's pool from its own derived seed
    (from `init`'s weights when given)."""
    return train_autoencoder(t.feats[t.pool], t.weights[t.pool], c.spec["learner"], cio.derive_seed(c.seed, k, 3_000_017 + j),
                             log, label, init, checkpoints, deadline)


def autoencoder_score(c: Campaign, k: int, t: TrainingSet) -> tuple[str, Callable[[Any], tuple[float, ...]], Choose]:
    """How iteration k's autoencoder ensemble ranks its members on t (lower is better), the name
    of each entry, and how it picks one: per spec, the Kolmogorov functional K_s of the 1-D CV on
    t's Boltzmann-weighted frames, then the held-out reconstruction loss; or the reconstruction
    loss alone.

    K_s judges a CV only where the data sample its isolines, so it is inf (and the reconstruction
    loss decides) until the runs used have crossed between the states convergence.min_transitions
    x walkers times (an unbiased first run that crossed once is not enough), and for a member whose CV
    disagrees with CV_k (in iteration 0 bias.explore's feature), the CV whose bias made the data
    (linear R^2 below TRUST_R2): a very different CV has isolines through regions the runs never
    visited, where the reweighted density is too low and K_s looks deceptively small. For the same reason K_s of biased frames
    leans towards CVs that differ from the biasing one, so a fresh member replaces the warm one
    (the continuation of CV_k) only when its K_s is lower in at least PREFER_LEVEL of paired
    bootstrap resamples of the walkers (`bootstrap_kolmogorov`)."""
    def reconstruction(m: Any) -> float:
        return reconstruction_loss(m, t.feats[t.check], t.weights[t.check])

    if c.spec["learner"]["select"] == "reconstruction":
        return "held-out reconstruction loss", lambda m: (reconstruction(m),), lowest
    criterion = "Kolmogorov K_s / held-out reconstruction loss"
    if t.transitions < max(1.0, c.spec["convergence"]["min_transitions"] * c.spec["engine"]["walkers"]):
        return criterion, lambda m: (math.inf, reconstruction(m)), lowest
    feat = make_featurizer(c.spec)
    ends = torch.as_tensor(np.stack(state_features(c.spec, t.labels, t.feats)), dtype=torch.float32)
    # K_s needs gradients through the positions: the frames whose positions are stored
    cv = driving_cv(c, k)  # the CV whose bias made iteration k's data (None: an unbiased iteration 0)
    driving = None if cv is None else eval_cv(cv, t.feats[t.pos_rows])
    boltzmann, weights = t.boltzmann[t.pos_rows], inverse_mass(c.spec)
    if len(t.pos_rows) < len(t.feats):  # a subset: K_s wants Boltzmann weights that sum to 1
        boltzmann = boltzmann / boltzmann.sum()
    evaluated: dict[int, tuple[np.ndarray, np.ndarray, float, float]] = {}  # by id(model): (s, grad_sq, s_a, s_b)

    def kolmogorov(m: Any) -> tuple[float, float]:
        s, grad_sq = cv_and_grad_sq(m.latent, feat, t.pos, inverse_mass=weights)
        if driving is not None and linear_r2(s, driving) < TRUST_R2:
            return math.inf, reconstruction(m)
        with torch.no_grad():
            s_a, s_b = m.latent(ends)[:2, 0].tolist()
        evaluated[id(m)] = (s, grad_sq, s_a, s_b)
        return cv_kolmogorov(s, grad_sq, boltzmann, s_a, s_b), reconstruction(m)

    def choose(models: list[Any], scores: list[tuple[float, ...]]) -> tuple[int, dict[str, Any]]:
        best, _ = lowest(models, scores)
        if t.previous is None or best == 0 or not math.isfinite(scores[0][0]):
            return best, {}
        trusted = [j for j, sc in enumerate(scores) if math.isfinite(sc[0])]
        boot = bootstrap_kolmogorov([evaluated[id(models[j])] for j in trusted], boltzmann,
                                    t.pos_rows % c.spec["engine"]["walkers"], BOOTSTRAP_RESAMPLES,
                                    cio.derive_seed(c.seed, k, 3_000_023))
        below = dict(zip(trusted, np.round(np.mean(boot < boot[:, :1], axis=0), 4).tolist()))
        return warm_unless_beaten(scores, below), {"ks_below_warm": [below.get(j) for j in range(len(models))]}

    return criterion, kolmogorov, choose


def warm_unless_beaten(scores: list[tuple[float, ...]], below: dict[int, float], level: float = PREFER_LEVEL) -> int:
    """Member 0, the warm one, unless some members' K_s is below its own in at least `level` of
    the paired resamples (`below`: that share per member); then the lowest-scoring of those."""
    better = [j for j, share in below.items() if share >= level]
    return min(better, key=lambda j: (scores[j], j)) if better else 0


def _measure(metrics: dict[str, Any], s_new: np.ndarray, s_old: np.ndarray | None, latest: slice) -> None:
    metrics["cv_r2"] = linear_r2(s_new, s_old) if s_old is not None else None


AGREEMENT = Agreement(measure=_measure,
                      check=lambda m, conv: {"cv_r2": m["cv_r2"] is not None and m["cv_r2"] >= conv["cv_r2"]},
                      text=lambda m: f"CV agreement R2 {fmt(m['cv_r2'])}")

ROUTE = Route("autoencoder", simulate, train, partial(analyze_biased, agreement=AGREEMENT), BIASED_FILES,
              metric_keys=("cv_r2", "fes_change", "fes_rmse_exact", "committor_r2"))
