"""The campaign loop, one plain function per phase, each a function of a campaign directory.

iteration k:  simulate (bias on CV_k; unbiased for k = 0) -> train (CV_{k+1} on data 0..k)
              -> analyze (metrics, FES, plots, convergence) -> iteration k + 1 or done.

Each phase writes its files atomically, then advances the job document; a phase interrupted
before that is redone from its last checkpoint (simulation segments) on the next call.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import io as cio
from .analysis.fes import aligned_rmse, fes_change, histogram_fes
from .analysis.quality import committor_rmse, cv_committor_quality
from .analysis.rates import grid_tpt_rate, tpt_rate
from .analysis.reference import GridReference, boltzmann_bin_free_energy, count_transitions, in_states, reference_from_spec
from .analysis.shooting import state_classifier
from .bias import CVBias, make_bias
from .campaign import Campaign, now_iso
from .checkpoints import CheckpointSeries
from .engines import make_engine
from .engines.base import Frames
from .errors import CvcycleError, SimulationError, WalltimeReached
from .features import make_featurizer
from .forked import fork_map, usable_workers
from .learn.reweight import combine_iterations
from .learn.cv_kolmogorov import cv_and_grad_sq, cv_kolmogorov
from .learn.committor import committor_and_grad_sq, committor_terms, feature_metric, train_committor
from .learn.train import TrainResult, normalize_cv, reconstruction_loss, train_autoencoder
from .models.export import cv_module, export_committor, export_cv, load_model, save_model
from .spec import learner_route
from .systems.potentials import Potential2D

Log = Callable[[str], None]
TRUST_R2 = 0.9  # an autoencoder member's CV must agree this well with CV_k for K_s to rank it


def _cv_edges(spec: dict[str, Any]) -> np.ndarray:
    lo, hi = spec["bias"]["cv_range"]
    pad = spec["bias"]["grid_margin"] * (hi - lo)
    return np.linspace(lo - pad, hi + pad, spec["convergence"]["fes_bins"] + 1)


def iteration_steps(spec: dict[str, Any], k: int) -> int:
    return spec["engine"]["initial_steps"] if k == 0 else spec["engine"]["steps"]


def walker_steps_through(spec: dict[str, Any], k: int) -> int:
    """Total walker steps of iterations 0..k."""
    return spec["engine"]["walkers"] * sum(iteration_steps(spec, i) for i in range(k + 1))


def load_samples(c: Campaign, k: int) -> dict[str, np.ndarray]:
    return cio.read_npz(c.iter_dir(k) / "samples.npz")


def _initial_positions(c: Campaign, k: int) -> np.ndarray:
    en = c.spec["engine"]
    if k > 0:
        return _final_state(c, k - 1)["positions"]
    start, states = en["start"], c.spec["system"]["states"]
    if isinstance(start, str) or isinstance(start[0], str):  # state name(s): walkers take them in turn
        names = [start] if isinstance(start, str) else start
        centers = np.array([states[names[i % len(names)]]["center"] for i in range(en["walkers"])])
    else:
        centers = np.asarray(start, dtype=np.float64)
    rng = np.random.default_rng(cio.derive_seed(c.seed, k, 1_000_003))
    return centers + en["start_spread"] * rng.standard_normal((en["walkers"], 2))


def _segments(spec: dict[str, Any], k: int) -> int:
    return math.ceil(iteration_steps(spec, k) / spec["engine"]["segment_steps"])


def _sim_checkpoints(c: Campaign, k: int) -> CheckpointSeries:
    """Engine and bias state after each segment of iteration k: sim/checkpoint-<segments done>.npz."""
    return CheckpointSeries(c.iter_dir(k) / "sim", "checkpoint")


def _final_state(c: Campaign, k: int) -> dict[str, np.ndarray]:
    return cio.read_npz(_sim_checkpoints(c, k).path(_segments(c.spec, k)))


def simulate(c: Campaign, k: int, log: Log = print, deadline: float | None = None) -> None:
    """Run iteration k in checkpointed segments; resume from the last complete segment. With a
    `deadline` (time.monotonic()), stop after a segment if the next one would likely overrun it."""
    spec, en = c.spec, c.spec["engine"]
    sim = c.iter_dir(k) / "sim"
    steps, seg_len, n_seg = iteration_steps(spec, k), en["segment_steps"], _segments(spec, k)
    engine = make_engine(spec)
    hook = None
    if k > 0:
        b = spec["bias"]
        kolmogorov = (b["kolmogorov_lambda"], b["kolmogorov_epsilon"]) if b["kolmogorov_lambda"] > 0 else None
        hook = CVBias(_cv(c, k - 1), make_bias(spec, spec["learner"]["cv_dim"]), kolmogorov, spec["system"]["temperature"])
    checkpoints = _sim_checkpoints(c, k)
    saved = checkpoints.latest(log)
    if saved is None:
        start = 0
        try:
            engine.set_positions(_initial_positions(c, k))
        except SimulationError as exc:
            origin = _sim_checkpoints(c, k - 1).path(_segments(spec, k - 1)) if k else "engine.start"
            raise SimulationError(f"iteration {k}: start positions from {origin}: {exc}") from None
        if hook is not None and spec["bias"]["warm_start"]:
            _prime_bias(c, k, hook, log)
    else:
        start, state = saved
        bad = ~np.isfinite(state["positions"]).all(axis=-1)
        if bad.any():
            raise SimulationError(f"iteration {k}: checkpoint {checkpoints.path(start)} holds positions that are not "
                                  f"finite (walker {int(np.flatnonzero(bad)[0])}); the simulation diverged before it "
                                  "was written: delete it to restart from the previous checkpoint")
        engine.load_state_dict(state)
        if hook is not None:
            hook.bias.load_state_dict({key[5:]: torch.from_numpy(v) for key, v in state.items() if key.startswith("bias_")})
        log(f"[iter {k} simulate] resuming at segment {start}/{n_seg}")
    kind = "unbiased" if hook is None else f"{spec['bias']['kind']} on CV_{k}"
    for seg in range(start, n_seg):
        t0 = time.perf_counter()
        n = min(seg_len, steps - seg * seg_len)
        try:
            frames = engine.run(n, en["report_stride"], cio.derive_seed(c.seed, k, seg), hook, first_step=seg * seg_len)
        except SimulationError as exc:
            kept = checkpoints.path(seg) if seg else "none yet: the iteration restarts from its beginning"
            raise SimulationError(f"iteration {k}, segment {seg + 1}/{n_seg}: {exc}; last good checkpoint: {kept}") from None
        cio.write_npz(sim / f"segment-{seg:04d}.npz", **frames.as_dict())
        bias_state = {} if hook is None else {f"bias_{key}": v.numpy() for key, v in hook.bias.state_dict().items()}
        checkpoints.write(seg + 1, **engine.state_dict(), **bias_state)
        rate = en["walkers"] * n / (time.perf_counter() - t0)
        visits = in_states(frames.positions.reshape(-1, 2), spec["system"]["states"])
        share = "  ".join(f"{name} {100 * m.mean():4.1f}%" for name, m in visits.items())
        log(f"[iter {k} simulate] {kind}: segment {seg + 1}/{n_seg}, step {seg * seg_len + n}/{steps}, "
            f"{rate:,.0f} walker-steps/s, frames in {share}")
        if deadline is not None and seg + 1 < n_seg and time.monotonic() + 1.5 * (time.perf_counter() - t0) > deadline:
            raise WalltimeReached(f"[iter {k} simulate] stopping after segment {seg + 1}/{n_seg}: walltime budget nearly spent")
    parts = [cio.read_npz(sim / f"segment-{seg:04d}.npz") for seg in range(n_seg)]
    frames = Frames.concatenate(parts)
    cio.write_npz(c.iter_dir(k) / "samples.npz", **frames.as_dict())
    if hook is not None:
        cio.write_npz(c.iter_dir(k) / "bias.npz", **{key: v.numpy() for key, v in hook.bias.state_dict().items()})
    c.update_doc(phase="train", total_steps=walker_steps_through(spec, k))


def _prime_bias(c: Campaign, k: int, hook: CVBias, log: Log) -> None:
    """Initialise the bias of iteration k from the reweighted data of iterations < k on CV_k."""
    spec = c.spec
    data = [load_samples(c, i) for i in range(k)]
    crossings = [_transitions(spec, d) for d in data]
    fes_its = _fes_iterations(crossings, spec["analysis"]["fes_window"]) or list(range(k))
    w = _mixture_weights(data, fes_its, crossings)
    feats = np.concatenate([flat(data[i], "features") for i in fes_its])
    rng = np.random.default_rng(cio.derive_seed(c.seed, k, 4_000_037))
    idx = rng.choice(len(feats), min(len(feats), 20000), replace=True, p=w)  # importance resampling
    s = torch.as_tensor(eval_cv(hook.cv_model, feats[idx]))
    en = spec["engine"]
    n_kernels = spec["bias"]["warm_start_weight"] * en["walkers"] * en["steps"] / spec["bias"]["pace"]
    hook.bias.prime(s, torch.full((len(s),), 1.0 / len(s), dtype=torch.float64), n_kernels)
    log(f"[iter {k} simulate] bias primed from iterations {fes_its} on CV_{k} ({len(s)} resampled frames)")


def _transitions(spec: dict[str, Any], samples: dict[str, np.ndarray]) -> int:
    return count_transitions(samples["positions"], spec["system"]["states"])


def _fes_iterations(crossings: list[int], window: int) -> list[int]:
    """The last `window` iterations that crossed between states at least once."""
    return [i for i, t in enumerate(crossings) if t > 0][-window:]


def _mixture_weights(data: list[dict[str, np.ndarray]], its: list[int], crossings: list[int]) -> np.ndarray:
    """Reweighted frames of iterations `its`, mixed by effective sample size x transitions."""
    return combine_iterations([flat(data[i], "log_weight") for i in its], quality=[crossings[i] for i in its])


def flat(samples: dict[str, np.ndarray], key: str) -> np.ndarray:
    """samples[key] with its (frame, walker) axes merged into one."""
    a = samples[key]
    return a.reshape(a.shape[0] * a.shape[1], *a.shape[2:])


def state_features(spec: dict[str, Any]) -> list[np.ndarray]:
    """Features of each state's centre, in the spec's state order."""
    feat = make_featurizer(spec)
    with torch.no_grad():
        return [feat(torch.tensor([s["center"]], dtype=torch.float64)).numpy()[0] for s in spec["system"]["states"].values()]


@dataclass
class TrainingSet:
    """What iteration k trains on: features, positions and training weights of the frames of
    iterations `used`, their Boltzmann weights (the same runs mixed the same way, fully
    reweighted), the indices it fits (`pool`) and holds out (`check`), the model it warm-starts
    from, and how many state-to-state transitions the runs it uses made."""

    feats: np.ndarray
    pos: np.ndarray
    weights: np.ndarray
    boltzmann: np.ndarray
    pool: np.ndarray
    check: np.ndarray
    previous: Any
    used: list[int]
    transitions: int


def training_set(c: Campaign, k: int) -> TrainingSet:
    """The training data of CV_{k+1}: samples of iterations 0..k, reweighted per spec."""
    spec, cfg = c.spec, c.spec["learner"]
    data = [load_samples(c, i) for i in range(k + 1)]
    crossings = [_transitions(spec, d) for d in data]
    used = list(range(k + 1))
    quality = None
    if cfg["crossing_only"] and any(crossings):
        # frames of runs trapped in one state would dominate the data and skew the CV toward
        # that basin's own fluctuations: use runs that crossed, mixed by how often they did
        used = [i for i in used if crossings[i] > 0]
        quality = [crossings[i] for i in used]
    data = [data[i] for i in used]
    feats = np.concatenate([flat(d, "features") for d in data])
    log_weights = [flat(d, "log_weight") for d in data]
    boltzmann = combine_iterations(log_weights, 1.0, quality)
    if cfg["reweight"]:
        weights = combine_iterations(log_weights, cfg["reweight_power"], quality)
    else:
        weights = np.full(len(feats), 1.0 / len(feats))
    rng = np.random.default_rng(cio.derive_seed(c.seed, k, 2_000_003))
    order = rng.permutation(len(feats))
    n_check = min(len(feats) // 10, 5000)
    check, pool = order[:n_check], order[n_check:]
    if len(pool) > cfg["max_samples"]:
        pool = np.sort(rng.choice(pool, cfg["max_samples"], replace=False))
    previous = load_model(c.iter_dir(k - 1) / "model.npz") if k > 0 and cfg["warm_start"] else None
    pos = np.concatenate([flat(d, "positions") for d in data])
    return TrainingSet(feats, pos, weights, boltzmann, pool, check, previous, used, sum(crossings[i] for i in used))


def train(c: Campaign, k: int, log: Log = print, deadline: float | None = None) -> None:
    """Train CV_{k+1} on the samples of iterations 0..k and export it; with a `deadline`, stop at
    an epoch checkpoint when the walltime budget is nearly spent."""
    cfg = c.spec["learner"]
    t = training_set(c, k)
    learn = _train_committor if cfg["kind"] == "committor" else _train_autoencoder
    log(f"[iter {k} train] {cfg['ensemble']} x {cfg['kind']} {cfg['hidden']} on {len(t.pool)} samples from iterations "
        f"{t.used}{' (reweighted)' if cfg['reweight'] else ''}")
    model, info = learn(c, k, t, log, deadline)
    save_trained(c, k, model, {**info, "samples": len(t.pool)})


def save_trained(c: Campaign, k: int, model: Any, info: dict[str, Any]) -> None:
    """Write iteration k's model, its TorchScript exports and training record; then analyze."""
    d = c.iter_dir(k)
    save_model(model, d / "model.npz")
    export_cv(model, d / "cv.pt")
    if c.spec["learner"]["kind"] == "committor":
        export_committor(model, d / "committor.pt")
    cio.write_json(d / "train.json", info)
    c.update_doc(phase="analyze")


def train_ensemble(c: Campaign, k: int, log: Log, fit_member: Callable[[int, Any, CheckpointSeries, str, Log], TrainResult],
                   score: Callable[[Any], tuple[float, ...]], criterion: str, previous: Any) -> tuple[Any, dict[str, Any]]:
    """Train spec['learner']['ensemble'] members (the first warm-started from `previous`) and keep
    the one with the lowest `score` (a tuple, compared in order; `criterion` names its entries).
    With resources.cpus > 1 the members are fitted in that many processes at once: each is
    independent and seeded, so the results are the same bits; a member whose process was killed
    is fitted here, resuming from the checkpoints that process left."""
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
    scores = [score(r.model) for r in results]
    best = min(range(len(results)), key=lambda j: (scores[j], j))
    shown = ", ".join(" / ".join(f"{v:.3e}" for v in sc) for sc in scores)
    log(f"[iter {k} train] {criterion}: {shown}: keeping model {best + 1}")
    r = results[best]
    finite = [[v if math.isfinite(v) else None for v in sc] for sc in scores]
    return r.model, {"train_loss": r.train_loss, "val_loss": r.val_loss, "best_epoch": r.best_epoch,
                     "seconds": r.seconds, "chosen": best, "criterion": criterion, "candidate_scores": finite}


def autoencoder_member(c: Campaign, k: int, t: TrainingSet, j: int, init: Any = None, log: Log = print, label: str = "train",
                       checkpoints: CheckpointSeries | None = None, deadline: float | None = None) -> TrainResult:
    """Member j of iteration k's autoencoder ensemble, fitted to t's pool from its own derived seed
    (from `init`'s weights when given)."""
    return train_autoencoder(t.feats[t.pool], t.weights[t.pool], c.spec["learner"], cio.derive_seed(c.seed, k, 3_000_017 + j),
                             log, label, init, checkpoints, deadline)


def _train_autoencoder(c: Campaign, k: int, t: TrainingSet, log: Log, deadline: float | None) -> tuple[Any, dict[str, Any]]:
    def member(j: int, init: Any, checkpoints: CheckpointSeries, label: str, log: Log) -> TrainResult:
        return autoencoder_member(c, k, t, j, init, log, label, checkpoints, deadline)

    criterion, score = autoencoder_score(c, k, t)
    model, info = train_ensemble(c, k, log, member, score, criterion, t.previous)
    normalize_cv(model, t.feats[t.pool], state_features(c.spec))
    return model, info


def autoencoder_score(c: Campaign, k: int, t: TrainingSet) -> tuple[str, Callable[[Any], tuple[float, ...]]]:
    """How iteration k's autoencoder ensemble ranks its members on t (lower is better), and the
    name of each entry: per spec, the Kolmogorov functional K_s of the 1-D CV on t's Boltzmann-
    weighted frames, then the held-out reconstruction loss; or the reconstruction loss alone.

    K_s judges a CV only where the data sample its isolines, so it is inf (and the reconstruction
    loss decides) until the runs used have crossed between the states convergence.min_transitions
    x walkers times (an unbiased first run that crossed once is not enough), and for a member whose CV
    disagrees with CV_k, the CV whose bias made the data (linear R^2 below TRUST_R2): a very
    different CV has isolines through regions the runs never visited, where the reweighted
    density is too low and K_s looks deceptively small."""
    def reconstruction(m: Any) -> float:
        return reconstruction_loss(m, t.feats[t.check], t.weights[t.check])

    if c.spec["learner"]["select"] == "reconstruction":
        return "held-out reconstruction loss", lambda m: (reconstruction(m),)
    criterion = "Kolmogorov K_s / held-out reconstruction loss"
    if t.transitions < max(1.0, c.spec["convergence"]["min_transitions"] * c.spec["engine"]["walkers"]):
        return criterion, lambda m: (math.inf, reconstruction(m))
    feat = make_featurizer(c.spec)
    ends = torch.as_tensor(np.stack(state_features(c.spec)), dtype=torch.float32)
    driving = eval_cv(_cv(c, k - 1), t.feats) if k > 0 else None

    def kolmogorov(m: Any) -> tuple[float, float]:
        s, grad_sq = cv_and_grad_sq(m.latent, feat, t.pos)
        if driving is not None and _linear_r2(s, driving) < TRUST_R2:
            return math.inf, reconstruction(m)
        with torch.no_grad():
            s_a, s_b = m.latent(ends)[:2, 0].tolist()
        return cv_kolmogorov(s, grad_sq, t.boltzmann, s_a, s_b), reconstruction(m)

    return criterion, kolmogorov


def _train_committor(c: Campaign, k: int, t: TrainingSet, log: Log, deadline: float | None) -> tuple[Any, dict[str, Any]]:
    spec, cfg = c.spec, c.spec["learner"]
    feats, weights, pool, check = t.feats, t.weights, t.pool, t.check
    labels = state_classifier(spec["system"]["states"])(t.pos)
    metric = feature_metric(make_featurizer(spec), t.pos)
    sub = lambda a, idx: None if a is None else a[idx]  # noqa: E731

    def member(j: int, init: Any, checkpoints: CheckpointSeries, label: str, log: Log) -> TrainResult:
        return train_committor(feats[pool], weights[pool], labels[pool], cfg, cio.derive_seed(c.seed, k, 3_000_017 + j),
                               sub(metric, pool), log, label, init, checkpoints, deadline)

    k_first: float | None = None

    def score(model: Any) -> tuple[float]:  # held-out loss, with K in units of the first member's K
        nonlocal k_first
        kol, boundary = committor_terms(model, feats[check], weights[check], labels[check], sub(metric, check))
        k_first = k_first or max(kol, 1e-300)
        return (kol / k_first + cfg["boundary_weight"] * boundary,)

    return train_ensemble(c, k, log, member, score, "held-out loss", t.previous)


def _cv(c: Campaign, k: int) -> torch.nn.Module:
    """CV_{k+1} as trained in iteration k, in eager mode: TorchScript's profiling executor
    re-optimises a module after its first calls and its gradients then change in the last bits,
    which would make a resumed simulation differ from an uninterrupted one. cv.pt is the export."""
    return cv_module(load_model(c.iter_dir(k) / "model.npz")).eval()


def eval_cv(model: torch.nn.Module, feats: np.ndarray) -> np.ndarray:
    """A CV module on features (n, f) -> (n, cv_dim), in float64 numpy."""
    with torch.no_grad():
        return model(torch.as_tensor(feats, dtype=torch.float32)).double().numpy()


def diffusion_coefficient(spec: dict[str, Any]) -> float:
    """D = kT / gamma of overdamped Langevin dynamics."""
    return spec["system"]["temperature"] / spec["engine"]["friction"]


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def q_change_rms(z_new: np.ndarray, z_old: np.ndarray) -> float:
    """RMS change of the committor q = sigmoid(logit) between two models, over the frames where
    either has 0.05 < q < 0.95."""
    q_new, q_old = sigmoid(z_new), sigmoid(z_old)
    between = ((q_new > 0.05) & (q_new < 0.95)) | ((q_old > 0.05) & (q_old < 0.95))
    return float(np.sqrt(np.mean((q_new[between] - q_old[between]) ** 2))) if between.any() else 0.0


def _linear_r2(target: np.ndarray, source: np.ndarray) -> float:
    """R^2 of the least-squares fit target ~ a + B source (averaged over target components)."""
    X = np.column_stack([np.ones(len(source)), source])
    coef, *_ = np.linalg.lstsq(X, target, rcond=None)
    resid = target - X @ coef
    return float(1.0 - resid.var(axis=0).sum() / target.var(axis=0).sum())


def campaign_reference(c: Campaign) -> GridReference:
    path = c.path / "reference.npz"
    if path.exists():
        r = cio.read_npz(path)
        return GridReference(r["xs"], r["ys"], r["free_energy"], r["committor"])
    ref = reference_from_spec(c.spec, bins=c.spec["analysis"]["grid_bins"] * 2 + 1)
    cio.write_npz(path, xs=ref.xs, ys=ref.ys, free_energy=ref.free_energy, committor=ref.committor)
    return ref


def analyze(c: Campaign, k: int, log: Log = print, deadline: float | None = None) -> dict[str, Any]:
    """Metrics, FES estimates and plots after training CV_{k+1}; decide convergence. Short and
    idempotent, so it ignores the deadline: an interrupted analysis is simply redone."""
    spec, conv = c.spec, c.spec["convergence"]
    states = spec["system"]["states"]
    d = c.iter_dir(k)
    data = [load_samples(c, i) for i in range(k + 1)]
    in_k = in_states(flat(data[k], "positions"), states)
    visited = {n: bool(m.any()) for n, m in in_k.items()}
    crossings = [_transitions(spec, s) for s in data]
    window = spec["analysis"]["fes_window"]
    fes_its = _fes_iterations(crossings, window)
    transitions = crossings[k]
    new_cv = _cv(c, k)
    metrics: dict[str, Any] = {"iteration": k, "total_steps": walker_steps_through(spec, k),
                               "states_visited": visited, "fes_iterations": fes_its, "transitions": transitions,
                               "state_fractions": {n: float(m.mean()) for n, m in in_k.items()}}
    feats_all = np.concatenate([flat(s, "features") for s in data])
    s_new = eval_cv(new_cv, feats_all)
    committor = spec["learner"]["kind"] == "committor"
    s_old = eval_cv(_cv(c, k - 1), feats_all) if k else None
    metrics["cv_r2"] = _linear_r2(s_new, s_old) if k and not committor else None
    if committor:
        latest = slice(len(feats_all) - len(flat(data[k], "features")), None)
        metrics["q_change"] = q_change_rms(s_new[latest, 0], s_old[latest, 0]) if k else None

    edges = _cv_edges(spec)
    centers = 0.5 * (edges[1:] + edges[:-1])
    offsets = np.cumsum([0] + [len(flat(s, "features")) for s in data])

    def fes_along_cv(its: list[int]) -> np.ndarray | None:
        if not its:
            return None
        w = _mixture_weights(data, its, crossings)
        vals = np.concatenate([s_new[offsets[i]:offsets[i + 1], 0] for i in its])
        return histogram_fes(vals, w, [edges])

    F_cv = fes_along_cv(fes_its)
    F_cv_prev = fes_along_cv(_fes_iterations(crossings[:k], window))
    change = fes_change(F_cv, F_cv_prev, conv["fes_cutoff"]) if F_cv is not None and F_cv_prev is not None else None
    metrics["fes_change"] = change if change is not None and np.isfinite(change) else None

    sy = spec["system"]
    pot = Potential2D(sy["potential"], sy["scale"])
    (x0, x1), (y0, y1) = pot.box
    nb = spec["analysis"]["grid_bins"] // 2
    xe, ye = np.linspace(x0, x1, nb + 1), np.linspace(y0, y1, nb + 1)
    F_xy = np.full((nb, nb), np.nan)
    if fes_its:
        w = _mixture_weights(data, fes_its, crossings)
        pos = np.concatenate([flat(data[i], "positions") for i in fes_its])
        F_xy = histogram_fes(pos, w, [xe, ye])
    F_exact_bins = boltzmann_bin_free_energy(pot, sy["temperature"], xe, ye)
    rmse, coverage = aligned_rmse(F_xy, F_exact_bins, F_exact_bins <= conv["fes_cutoff"])
    metrics["fes_rmse_exact"] = rmse if np.isfinite(rmse) else None
    metrics["fes_coverage"] = coverage

    metrics["committor_r2"] = metrics["committor_width"] = None  # a 2-D CV is no 1-D reaction coordinate
    ref = campaign_reference(c)
    if spec["learner"]["cv_dim"] == 1:
        q_cv = eval_cv(new_cv, make_featurizer(spec)(torch.as_tensor(ref.points)).detach().numpy())
        quality = cv_committor_quality(q_cv[:, 0], ref.committor.ravel(), ref.free_energy.ravel())
        metrics["committor_r2"], metrics["committor_width"] = quality["r2"], quality["width"]
        if committor:
            metrics["committor_rmse"] = committor_rmse(sigmoid(q_cv[:, 0]), ref.committor.ravel(), ref.free_energy.ravel())
    if committor and spec["engine"]["integrator"] == "overdamped":  # transition path theory
        its = fes_its or list(range(k + 1))
        w = _mixture_weights(data, its, crossings)
        feats = np.concatenate([flat(data[i], "features") for i in its])
        metric = feature_metric(make_featurizer(spec), np.concatenate([flat(data[i], "positions") for i in its]))
        metrics["rate_AB"] = tpt_rate(*committor_and_grad_sq(new_cv, feats, metric), w, diffusion_coefficient(spec))
        metrics["rate_AB_exact"] = grid_tpt_rate(ref.xs, ref.ys, ref.free_energy, ref.committor, diffusion_coefficient(spec))

    agreement = ({"q_change": metrics["q_change"] is not None and metrics["q_change"] <= conv["q_change"]} if committor
                 else {"cv_r2": metrics["cv_r2"] is not None and metrics["cv_r2"] >= conv["cv_r2"]})
    checks = {**agreement,
              "fes_change": metrics["fes_change"] is not None and metrics["fes_change"] <= conv["fes_rmse"],
              "states": all(visited.values()) or not conv["require_states"],
              "transitions": transitions >= conv["min_transitions"] * spec["engine"]["walkers"],
              "min_iterations": k + 1 >= conv["min_iterations"]}
    metrics["checks"] = checks
    converged = all(checks.values())
    metrics["converged"] = converged

    cio.write_npz(d / "fes.npz", x_edges=xe, y_edges=ye, F_xy=F_xy, cv_centers=centers,
                  F_cv=F_cv if F_cv is not None else np.full(len(centers), np.nan))
    cio.write_json(d / "metrics.json", metrics)
    if spec["analysis"]["plots"]:
        _plots(c, k, ref, new_cv, xe, ye, F_xy, F_exact_bins, centers, F_cv, F_cv_prev)

    status = finish_iteration(c, k, metrics, walker_steps_through(spec, k + 1))
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    agree = (f"committor change {fmt(metrics['q_change'])}, RMSE vs exact {fmt(metrics['committor_rmse'])}" if committor
             else f"CV agreement R2 {fmt(metrics['cv_r2'])}")
    log(f"[iter {k} analyze] {agree}, FES change {fmt(metrics['fes_change'])} kT, "
        f"FES RMSE vs exact {fmt(metrics['fes_rmse_exact'])} kT (coverage {coverage:.2f}), committor R2 "
        f"{fmt(metrics['committor_r2'])} width {fmt(metrics['committor_width'])}, {transitions} transitions between states -> {status}")
    return metrics


def finish_iteration(c: Campaign, k: int, metrics: dict[str, Any], next_steps: int) -> str:
    """Record iteration k's metrics in the job document and move on: 'converged', 'budget' (the
    next iteration, ending at `next_steps` total steps, would exceed the budget) or 'running'."""
    spec = c.spec
    history = [h for h in c.progress()["history"] if h["iteration"] != k] + [metrics]
    budget = spec["budget"]
    converged = bool(metrics["converged"])
    status = "converged" if converged else (
        "budget" if k + 1 >= budget["max_iterations"] or next_steps > budget["max_total_steps"] else "running")
    if spec["analysis"]["plots"]:
        from .analysis.plots import plot_convergence

        plot_convergence(c.path / "convergence.png", history, spec["convergence"])
    c.update_doc(history=history, iteration=k + 1 if status == "running" else k, phase="simulate" if status == "running" else "done",
                 status=status, converged=converged)
    return status


def _plots(c: Campaign, k: int, ref: GridReference, cv_model: torch.nn.Module, xe: np.ndarray, ye: np.ndarray,
           F_xy: np.ndarray, F_exact: np.ndarray, centers: np.ndarray, F_cv: np.ndarray | None,
           F_cv_prev: np.ndarray | None) -> None:
    from .analysis.plots import COMMITTOR_LEVELS, plot_fes_cv, plot_fes_xy

    spec, d = c.spec, c.iter_dir(k)
    xc, yc = 0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1])
    X, Y = np.meshgrid(xc, yc, indexing="xy")
    pts = torch.as_tensor(np.stack([X.ravel(), Y.ravel()], 1))
    cv_grid = eval_cv(cv_model, make_featurizer(spec)(pts).detach().numpy())[:, 0].reshape(X.shape)
    q = ref.interpolate_committor(pts.numpy()).reshape(X.shape)
    learned = {}
    if spec["learner"]["kind"] == "committor":  # isolines of the learned q at the exact committor's levels
        cv_grid, learned = sigmoid(cv_grid), {"cv_levels": COMMITTOR_LEVELS, "cv_name": "learned committor"}
    plot_fes_xy(d / "fes_xy.png", xc, yc, F_xy, cv_grid, spec["system"]["states"], f"iteration {k}", F_exact, q, **learned)
    curves = {}
    if F_cv is not None:
        curves[f"data up to iteration {k}"] = F_cv
    if F_cv_prev is not None:
        curves[f"data up to iteration {k - 1}"] = F_cv_prev
    if curves:
        plot_fes_cv(d / "fes_cv.png", centers, curves, f"FES along CV_{k + 1} (iteration {k})")


PHASE_FUNCTIONS: dict[str, Callable[..., Any]] = {"simulate": simulate, "train": train, "analyze": analyze}


def phase_function(spec: dict[str, Any], phase: str) -> Callable[..., Any]:
    """The function that runs `phase` for a campaign: committors learned from shooting outcomes
    have their own (path sampling instead of biased simulation)."""
    if learner_route(spec) == "shooting":
        from . import tps_steps

        return {"simulate": tps_steps.simulate, "train": tps_steps.train, "analyze": tps_steps.analyze}[phase]
    return PHASE_FUNCTIONS[phase]


def advance(path: str | Path, walltime: float | None = None, log: Log = print) -> dict[str, Any]:
    """Run phases of one campaign until it converges, spends its budget, or (with `walltime`
    seconds) until the walltime is nearly spent: between phases when the next would likely not
    fit, inside simulation and training at a checkpoint. Returns the job document."""
    c = Campaign(path)
    t_start = time.monotonic()
    longest = 0.0
    with c.lock():
        c.check()
        if stale := c.remove_stale_temporaries():
            log(f"[{c.id}] removed {len(stale)} temporary file(s) of writes interrupted by a kill")
        if not c.finished:
            c.record_run()
        while not c.finished:
            doc = c.progress()
            k, phase = doc["iteration"], doc["phase"]
            if walltime is not None and longest and time.monotonic() - t_start + 1.5 * longest > walltime:
                log(f"[{c.id}] stopping before iteration {k} {phase}: walltime budget nearly spent")
                break
            t0 = time.monotonic()
            try:
                phase_function(c.spec, phase)(c, k, log, deadline=None if walltime is None else t_start + walltime)
            except WalltimeReached as stop:
                log(str(stop))
                break
            except CvcycleError as exc:  # kept in the document for `status -d` and `show`; nothing else changes
                c.update_doc(last_error={"time": now_iso(), "iteration": k, "phase": phase, "message": str(exc)})
                raise
            longest = max(longest, time.monotonic() - t0)
    return c.progress()
