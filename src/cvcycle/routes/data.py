"""The data of biased-simulation iterations: step counts, samples, transitions between states,
how iterations are mixed, and the training set of the next CV.

Each iteration keeps its frames in two files: samples.npz, every reported frame's step,
features, potential, CV, bias, log weight, state coordinates and label (small, read whole), and
trajectory.npz, the positions of every `engine.position_stride`-th frame with their frame
numbers (large; read only where positions are needed, one iteration at a time)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import io as cio
from ..campaign import Campaign
from ..features import make_featurizer
from ..learn.reweight import combine_iterations
from ..models.export import load_model
from ..systems import make_system
from ..systems.base import count_transitions


def cv_edges(spec: dict[str, Any]) -> np.ndarray:
    lo, hi = spec["bias"]["cv_range"]
    pad = spec["bias"]["grid_margin"] * (hi - lo)
    return np.linspace(lo - pad, hi + pad, spec["convergence"]["fes_bins"] + 1)


def iteration_steps(spec: dict[str, Any], k: int) -> int:
    return spec["engine"]["initial_steps"] if k == 0 else spec["engine"]["steps"]


def steps_before(spec: dict[str, Any], k: int) -> int:
    """Steps per walker of iterations 0..k-1: the global step at which iteration k starts."""
    return sum(iteration_steps(spec, i) for i in range(k))


def walker_steps_through(spec: dict[str, Any], k: int) -> int:
    """Total walker steps of iterations 0..k."""
    return spec["engine"]["walkers"] * steps_before(spec, k + 1)


def load_samples(c: Campaign, k: int) -> dict[str, np.ndarray]:
    """Iteration k's per-frame arrays, shaped (frames, walkers, ...): step, features, potential,
    cv, bias, log_weight, state_coordinates (what the states are defined on) and state (index of
    the state a frame is in, -1 outside)."""
    return cio.read_npz(c.iter_dir(k) / "samples.npz")


def load_positions(c: Campaign, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Iteration k's stored positions (stored frames, walkers, N, d) and their frame numbers."""
    t = cio.read_npz(c.iter_dir(k) / "trajectory.npz")
    return t["positions"], t["frame"]


def position_rows(frames: np.ndarray, walkers: int, offset: int = 0) -> np.ndarray:
    """Rows, in the (frame, walker)-flattened order of `flat`, of the stored positions of `frames`."""
    return (offset + np.asarray(frames)[:, None] * walkers + np.arange(walkers)).ravel()


def flat_positions(c: Campaign, its: list[int], data: list[dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Positions (n, N, d) stored for iterations `its`, loaded one iteration at a time, and their
    rows in the concatenation of flat(data[i], ...) over `its` (data indexed like `its`, whole or
    `equilibrated`)."""
    pos, rows, offset = [], [], 0
    for i, d in zip(its, data):
        p, frames = load_positions(c, i)
        first = int(d.get("first_frame", 0))
        p, frames = p[frames >= first], frames[frames >= first] - first
        pos.append(p.reshape(-1, *p.shape[2:]))
        rows.append(position_rows(frames, d["log_weight"].shape[1], offset))
        offset += d["log_weight"].size
    return np.concatenate(pos), np.concatenate(rows)


def equilibrated(samples: dict[str, np.ndarray], fraction: float) -> dict[str, np.ndarray]:
    """An iteration's samples without the first `fraction` of its frames, in which its walkers
    relax from where the previous iteration left them into the ensemble of the new CV's bias
    (`analysis.equilibration`); "first_frame" is the number of the first frame kept."""
    first = int(fraction * len(samples["step"]))
    return {**{key: v[first:] for key, v in samples.items()}, "first_frame": np.array(first)}


def flat(samples: dict[str, np.ndarray], key: str) -> np.ndarray:
    """samples[key] with its (frame, walker) axes merged into one."""
    a = samples[key]
    return a.reshape(a.shape[0] * a.shape[1], *a.shape[2:])


def transitions(samples: dict[str, np.ndarray]) -> int:
    return count_transitions(samples["state"])


def fes_iterations(crossings: list[int], window: int) -> list[int]:
    """The last `window` iterations that crossed between states at least once."""
    return [i for i, t in enumerate(crossings) if t > 0][-window:]


def mixture_weights(data: list[dict[str, np.ndarray]], its: list[int], crossings: list[int]) -> np.ndarray:
    """Reweighted frames of iterations `its`, mixed by effective sample size x transitions."""
    return combine_iterations([flat(data[i], "log_weight") for i in its], quality=[crossings[i] for i in its])


def state_features(spec: dict[str, Any], labels: np.ndarray, feats: np.ndarray) -> list[np.ndarray]:
    """Features of each state, in the spec's state order: of the system's representative
    configuration of the state where it has one, else the mean features of the frames
    (state labels (n,), features (n, f)) in the state (NaN where none is)."""
    system = make_system(spec)
    reps = system.representatives()
    if reps is not None:
        with torch.no_grad():
            return list(make_featurizer(spec)(torch.as_tensor(reps, dtype=torch.float64)).numpy())
    return [feats[labels == j].mean(axis=0) if (labels == j).any() else np.full(feats.shape[1], np.nan)
            for j in range(len(system.states))]


@dataclass
class TrainingSet:
    """What iteration k trains on: features, state labels and training weights of the frames of
    iterations `used`, their Boltzmann weights (the same runs mixed the same way, fully
    reweighted), the stored positions and the frame rows they belong to (`pos_rows`), the
    indices it fits (`pool`) and holds out (`check`), the model it warm-starts from, and how many
    state-to-state transitions the runs it uses made."""

    feats: np.ndarray
    labels: np.ndarray
    pos: np.ndarray
    pos_rows: np.ndarray
    weights: np.ndarray
    boltzmann: np.ndarray
    pool: np.ndarray
    check: np.ndarray
    previous: Any
    used: list[int]
    transitions: int


def training_set(c: Campaign, k: int) -> TrainingSet:
    """The training data of CV_{k+1}: samples of iterations 0..k, reweighted per spec."""
    cfg = c.spec["learner"]
    data = [load_samples(c, i) for i in range(k + 1)]
    crossings = [transitions(d) for d in data]
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
    labels = np.concatenate([flat(d, "state") for d in data])
    pos, pos_rows = flat_positions(c, used, data)
    return TrainingSet(feats, labels, pos, pos_rows, weights, boltzmann, pool, check, previous, used,
                       sum(crossings[i] for i in used))


def inverse_mass(spec: dict[str, Any]) -> np.ndarray | None:
    """The per-particle weights of |grad_x f|^2 in the Kolmogorov functional of the spec's
    dynamics: 1 / m_i for underdamped Langevin with unequal masses, else None (the identity:
    overdamped Langevin here moves every coordinate with the same friction)."""
    if spec["engine"]["integrator"] != "underdamped":
        return None
    masses = spec["engine"]["mass"] * make_system(spec).masses
    return None if np.all(masses == 1.0) else 1.0 / masses


def training_header(c: Campaign, k: int, t: TrainingSet) -> str:
    """The log line that opens iteration k's training."""
    cfg = c.spec["learner"]
    return (f"[iter {k} train] {cfg['ensemble']} x {cfg['kind']} {cfg['hidden']} on {len(t.pool)} samples from iterations "
            f"{t.used}{' (reweighted)' if cfg['reweight'] else ''}")
