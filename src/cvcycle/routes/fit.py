"""Fitting a learner's ensemble and keeping its best member, saving the kept model with its
TorchScript exports, and loading the CV a finished iteration trained."""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Callable

import numpy as np
import torch

from .. import io as cio
from ..campaign import Campaign
from ..checkpoints import CheckpointSeries
from ..errors import TrainingError
from ..forked import fork_map, usable_workers
from ..learn.train import TrainResult
from ..models.export import cv_module, export_committor, export_cv, load_model, save_model

Log = Callable[[str], None]


def save_trained(c: Campaign, k: int, model: Any, info: dict[str, Any], committor: bool = False) -> None:
    """Write iteration k's model, its TorchScript exports (with `committor`, q as committor.pt
    too) and training record; then analyze."""
    d = c.iter_dir(k)
    save_model(model, d / "model.npz")
    export_cv(model, d / "cv.pt")
    if committor:
        export_committor(model, d / "committor.pt")
    cio.write_json(d / "train.json", info)
    c.update_doc(phase="analyze")


Choose = Callable[[list[Any], list[tuple[float, ...]]], tuple[int, dict[str, Any]]]


def lowest(models: list[Any], scores: list[tuple[float, ...]]) -> tuple[int, dict[str, Any]]:
    """The member with the lowest score tuple (the first of equals), and nothing to record."""
    return min(range(len(scores)), key=lambda j: (scores[j], j)), {}


def train_ensemble(c: Campaign, k: int, log: Log, fit_member: Callable[[int, Any, CheckpointSeries, str, Log], TrainResult],
                   score: Callable[[Any], tuple[float, ...]], criterion: str, previous: Any,
                   choose: Choose = lowest) -> tuple[Any, dict[str, Any]]:
    """Train spec['learner']['ensemble'] members (the first warm-started from `previous`) and keep
    the one `choose` picks from the models and their `score`s (tuples, compared in order;
    `criterion` names their entries): by default the lowest; what `choose` returns besides the
    index is logged and added to the training record. With resources.cpus > 1 the members are
    fitted in that many processes at once: each is independent and seeded, so the results are
    the same bits; a member whose process was killed is fitted here, resuming from the
    checkpoints that process left."""
    cfg = c.spec["learner"]

    def fit(j: int, log: Log) -> TrainResult:
        init = previous if j == 0 else None
        label = f"iter {k} train {j + 1}/{cfg['ensemble']}{' (warm)' if init is not None else ''}"
        return fit_member(j, init, CheckpointSeries(c.iter_dir(k) / "train", f"member-{j}"), label, log)

    workers = min(usable_workers(c.spec["resources"]["cpus"]), cfg["ensemble"])
    if workers > 1:
        log(f"[iter {k} train] fitting {cfg['ensemble']} members in {workers} processes")
    forked = fork_map([partial(fit, j) for j in range(cfg["ensemble"])], workers, log)
    results = [r if r is not None else fit(j, log) for j, r in enumerate(forked)]
    diverged = {j: why for j, r in enumerate(results) if (why := _divergence(r))}
    if len(diverged) == len(results):
        raise TrainingError(f"iteration {k} train: every ensemble member diverged ("
                            + "; ".join(f"member {j + 1}: {why}" for j, why in diverged.items())
                            + f"); nothing was saved. learner.learning_rate = {cfg['learning_rate']:g} may be too large: "
                            "start a new campaign with a smaller one (`python project.py init SPEC.toml`)")
    for j, why in diverged.items():
        log(f"[iter {k} train] member {j + 1} diverged ({why}): left out of the choice")
    kept = [j for j in range(len(results)) if j not in diverged]
    scores = [score(r.model) if j in kept else (math.inf,) for j, r in enumerate(results)]
    pick = lowest if 0 in diverged else choose  # `choose` may favour member 0, the warm one
    chosen, record = pick([results[j].model for j in kept], [scores[j] for j in kept])
    best = kept[chosen]
    shown = ", ".join(" / ".join(f"{v:.3e}" for v in sc) for sc in scores)
    log(f"[iter {k} train] {criterion}: {shown}: keeping model {best + 1}")
    for key, value in record.items():
        log(f"[iter {k} train] {key}: {value}")
    r = results[best]
    finite = [[v if math.isfinite(v) else None for v in sc] for sc in scores]
    return r.model, {"train_loss": r.train_loss, "val_loss": r.val_loss, "best_epoch": r.best_epoch,
                     "seconds": r.seconds, "chosen": best, "criterion": criterion, "candidate_scores": finite, **record}


def _divergence(result: TrainResult) -> str | None:
    """Why a trained member is unusable (a non-finite training loss or parameter), or None."""
    bad_epochs = [e for e, loss in enumerate(result.train_loss, 1) if not math.isfinite(loss)]
    if bad_epochs:
        return f"training loss {result.train_loss[bad_epochs[0] - 1]} from epoch {bad_epochs[0]}"
    bad = [name for name, t in result.model.state_dict().items() if not torch.isfinite(t).all()]
    return f"non-finite parameters {', '.join(bad[:3])}" if bad else None


def cv_of(c: Campaign, k: int) -> torch.nn.Module:
    """CV_{k+1} as trained in iteration k, in eager mode: TorchScript's profiling executor
    re-optimises a module after its first calls and its gradients then change in the last bits,
    which would make a resumed simulation differ from an uninterrupted one. cv.pt is the export."""
    return cv_module(load_model(c.iter_dir(k) / "model.npz")).eval()


def eval_cv(model: torch.nn.Module, feats: np.ndarray) -> np.ndarray:
    """A CV module on features (n, f) -> (n, cv_dim), in float64 numpy."""
    with torch.no_grad():
        return model(torch.as_tensor(feats, dtype=torch.float32)).double().numpy()
