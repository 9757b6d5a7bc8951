"""Training the autoencoder CV on (optionally reweighted) samples."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..checkpoints import CheckpointSeries
from ..timing import progress_time
from ..errors import WalltimeReached
from ..models.autoencoder import AutoEncoder


@dataclass
class TrainResult:
    model: torch.nn.Module
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0


def _weighted_mse(pred: torch.Tensor, target: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (w * ((pred - target) ** 2).sum(dim=1)).sum() / w.sum()


def train_autoencoder(features: np.ndarray, weights: np.ndarray, cfg: dict[str, Any], seed: int,
                      log: Callable[[str], None] = print, label: str = "train",
                      init: AutoEncoder | None = None, checkpoints: CheckpointSeries | None = None,
                      deadline: float | None = None) -> TrainResult:
    """Fit an autoencoder to features (n, f) with per-sample weights (n,), early-stopped on a
    held-out split. `cfg` is the spec's [learner] section. With `init` (the previous CV) training
    continues from its weights and input scaling, which keeps successive CVs consistent.
    `checkpoints` and `deadline` as for `fit`."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(features, dtype=torch.float32)
    w = torch.as_tensor(weights / weights.mean(), dtype=torch.float32)
    model = AutoEncoder(x.shape[1], cfg["cv_dim"], cfg["hidden"], cfg["activation"])
    initialize(model, x, w, gen, init)
    target = model.standardize(x)
    return fit(model, lambda idx: _weighted_mse(model(x[idx]), target[idx], w[idx]), len(x), cfg, gen, log, label,
               checkpoints, deadline)


def initialize(model: torch.nn.Module, x: torch.Tensor, w: torch.Tensor, gen: torch.Generator,
               init: torch.nn.Module | None = None) -> None:
    """Start from `init`'s weights and input scaling when it has the same architecture, else
    from a Xavier initialisation drawn from `gen` and the weighted mean/std of the inputs x."""
    with torch.no_grad():
        if init is not None and init.architecture == model.architecture:
            model.load_state_dict(init.state_dict())
            return
        for p in model.parameters():  # deterministic initialisation from the derived seed
            if p.dim() > 1:
                torch.nn.init.xavier_uniform_(p, generator=gen)
            else:
                p.zero_()
        mean = (w[:, None] * x).sum(0) / w.sum()
        model.mean.copy_(mean)
        model.std.copy_(((w[:, None] * (x - mean) ** 2).sum(0) / w.sum()).sqrt().clamp_min(1e-8))


def fit(model: torch.nn.Module, loss_of: Callable[[torch.Tensor], torch.Tensor], n: int, cfg: dict[str, Any],
        gen: torch.Generator, log: Callable[[str], None] = print, label: str = "train",
        checkpoints: CheckpointSeries | None = None, deadline: float | None = None) -> TrainResult:
    """Minimise `loss_of(indices)` over mini-batches of n samples with Adam, early-stopped on a
    held-out split (cfg: the spec's [learner] section); ends with the best validation state.
    With `checkpoints`, the full training state is saved every cfg["checkpoint_epochs"] epochs
    and at the end, and a call after an interruption resumes from the newest one bit for bit.
    With a `deadline` (time.monotonic() seconds) as well, training stops at a checkpoint with
    WalltimeReached when the next stretch of epochs would likely not finish before it."""
    perm = torch.randperm(n, generator=gen)
    n_val = int(round(cfg["validation_fraction"] * n))
    val, tr = perm[:n_val], perm[n_val:]
    opt = torch.optim.Adam(model.parameters(), lr=cfg["learning_rate"], weight_decay=cfg["weight_decay"])
    st = _TrainState()
    saved = checkpoints.latest(log) if checkpoints is not None else None
    if saved is not None:
        st = _restore(saved[1], model, opt, gen)
        log(f"[{label}] resuming at epoch {st.epoch}/{cfg['epochs']}{' (finished)' if st.done else ''}")
    t0 = last = time.perf_counter()
    first, started = st.epoch, time.monotonic()  # (for progress lines; perf_counter paces the checkpoints)
    while not st.done:
        model.train()
        order = tr[torch.randperm(len(tr), generator=gen)]
        total = 0.0
        for start in range(0, len(order), cfg["batch_size"]):
            idx = order[start:start + cfg["batch_size"]]
            loss = loss_of(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        model.eval()
        vloss = float(loss_of(val if n_val else tr).detach())
        epoch, st.epoch = st.epoch, st.epoch + 1
        st.train_loss.append(total / max(len(tr), 1))
        st.val_loss.append(vloss)
        if vloss < st.best * (1 - 1e-4):
            st.best, st.stale, st.best_epoch = vloss, 0, epoch
            st.best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            st.stale += 1
        early = st.stale >= cfg["patience"]
        st.done = early or st.epoch == cfg["epochs"]
        if epoch % 50 == 0 or st.done:
            log(f"[{label}] epoch {st.epoch:4d}/{cfg['epochs']}  loss {st.train_loss[-1]:.3e}  val {vloss:.3e}  "
                f"({progress_time(time.monotonic() - started, st.epoch - first, cfg['epochs'] - first, bound=not st.done)})")
        if early:
            log(f"[{label}] early stop: no validation improvement for {cfg['patience']} epochs")
        if st.done and st.best_state is not None:
            model.load_state_dict(st.best_state)
        if checkpoints is not None and (st.done or st.epoch % cfg["checkpoint_epochs"] == 0):
            checkpoints.write(st.epoch, **_snapshot(st, model, opt, gen))
            now = time.perf_counter()
            if deadline is not None and not st.done and time.monotonic() + 1.5 * (now - last) > deadline:
                raise WalltimeReached(f"[{label}] stopping at epoch {st.epoch}: walltime budget nearly spent")
            last = now
    return TrainResult(model, st.train_loss, st.val_loss, st.best_epoch, time.perf_counter() - t0)


@dataclass
class _TrainState:
    """What changes from epoch to epoch, besides the model, optimizer and random stream."""

    epoch: int = 0
    best: float = float("inf")
    stale: int = 0
    best_epoch: int = 0
    done: bool = False
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None


def _snapshot(st: _TrainState, model: torch.nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator) -> dict[str, np.ndarray]:
    arrays = {"epoch": np.array(st.epoch), "best": np.array(st.best), "stale": np.array(st.stale),
              "best_epoch": np.array(st.best_epoch), "done": np.array(st.done),
              "train_loss": np.array(st.train_loss, dtype=np.float64), "val_loss": np.array(st.val_loss, dtype=np.float64),
              "generator": gen.get_state().numpy()}
    arrays.update({f"model.{k}": v.numpy() for k, v in model.state_dict().items()})
    if st.best_state is not None:
        arrays.update({f"best.{k}": v.numpy() for k, v in st.best_state.items()})
    for i, slots in opt.state_dict()["state"].items():
        arrays.update({f"opt.{i}.{name}": v.numpy() for name, v in slots.items()})
    return arrays


def _restore(arrays: dict[str, np.ndarray], model: torch.nn.Module, opt: torch.optim.Optimizer,
             gen: torch.Generator) -> _TrainState:
    def group(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith(prefix)}

    model.load_state_dict(group("model."))
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in group("opt.").items():
        i, name = key.split(".", 1)
        opt_state.setdefault(int(i), {})[name] = v
    opt.load_state_dict({**opt.state_dict(), "state": opt_state})
    gen.set_state(torch.from_numpy(arrays["generator"].copy()))
    return _TrainState(epoch=int(arrays["epoch"]), best=float(arrays["best"]), stale=int(arrays["stale"]),
                       best_epoch=int(arrays["best_epoch"]), done=bool(arrays["done"]),
                       train_loss=arrays["train_loss"].tolist(), val_loss=arrays["val_loss"].tolist(),
                       best_state=group("best.") or None)


def reconstruction_loss(model: AutoEncoder, features: np.ndarray, weights: np.ndarray) -> float:
    """Weighted mean squared reconstruction error in units of the data's own standard deviation,
    so that models with different input scaling compare fairly."""
    x = torch.as_tensor(features, dtype=torch.float32)
    w = torch.as_tensor(weights, dtype=torch.float32)
    scale = x.std(dim=0).clamp_min(1e-8)
    with torch.no_grad():
        x_hat = model(x) * model.std + model.mean
        return float(_weighted_mse(x_hat / scale, x / scale, w))


def normalize_cv(model: AutoEncoder, features: np.ndarray, state_features: list[np.ndarray]) -> None:
    """Map the bottleneck so that the data span [-1, 1] (0.5 / 99.5 percentiles) and the first
    state has lower CV than the second, component by component."""
    with torch.no_grad():
        z = model.latent(torch.as_tensor(features, dtype=torch.float32)).numpy()
        lo, hi = np.percentile(z, 0.5, axis=0), np.percentile(z, 99.5, axis=0)
        scale = 2.0 / np.maximum(hi - lo, 1e-8)
        shift = (lo + hi) / 2.0
        za = model.latent(torch.as_tensor(state_features[0][None], dtype=torch.float32)).numpy()[0]
        zb = model.latent(torch.as_tensor(state_features[1][None], dtype=torch.float32)).numpy()[0]
        scale = np.where(za > zb, -scale, scale)
        model.cv_shift.copy_(torch.as_tensor(shift, dtype=torch.float32))
        model.cv_scale.copy_(torch.as_tensor(scale, dtype=torch.float32))
