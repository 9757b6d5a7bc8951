"""The simulate phase of the biased-simulation routes: iteration k runs the engine in
checkpointed segments (biased along CV_k, the bias primed from earlier data; for k = 0 unbiased,
or biased along the feature bias.explore names) and resumes from the last complete segment."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import io as cio
from ..bias import CVBias, FeatureCV, kolmogorov_terms, make_bias
from ..campaign import Campaign
from ..checkpoints import CheckpointSeries
from ..engines import make_engine
from ..engines.base import Frames
from ..errors import SimulationError, WalltimeReached, WorkspaceError
from ..features import make_featurizer
from ..systems import System, make_system, thermal_energy
from ..timing import progress_time
from .data import (equilibrated, fes_iterations, flat, inverse_mass, iteration_steps, load_samples, mixture_weights,
                   steps_before, transitions, walker_steps_through)
from .fit import cv_of, eval_cv

Log = Callable[[str], None]


def _initial_positions(c: Campaign, k: int, system: System) -> np.ndarray:
    en = c.spec["engine"]
    if k > 0:
        return _final_state(c, k - 1)["positions"]
    start = [en["start"]] if isinstance(en["start"], str) else en["start"]  # state name(s), taken in turn, or a point
    rng = np.random.default_rng(cio.derive_seed(c.seed, k, 1_000_003))
    return system.start(start, en["walkers"], en["start_spread"], rng)


def _segments(spec: dict[str, Any], k: int) -> int:
    return math.ceil(iteration_steps(spec, k) / spec["engine"]["segment_steps"])


def _sim_checkpoints(c: Campaign, k: int) -> CheckpointSeries:
    """Engine and bias state after each segment of iteration k: sim/checkpoint-<segments done>.npz."""
    return CheckpointSeries(c.iter_dir(k) / "sim", "checkpoint")


def _final_state(c: Campaign, k: int) -> dict[str, np.ndarray]:
    return cio.read_npz(_sim_checkpoints(c, k).path(_segments(c.spec, k)))


def biased(spec: dict[str, Any], k: int) -> bool:
    """Whether iteration k runs biased: every iteration after the first, and the first with bias.explore."""
    return k > 0 or bool(spec["bias"]["explore"])


def driving_cv(c: Campaign, k: int) -> torch.nn.Module | None:
    """The CV iteration k is biased along: CV_k (trained in iteration k - 1) for k >= 1, the
    feature bias.explore names for k = 0, or None (an unbiased iteration 0)."""
    if k > 0:
        return cv_of(c, k - 1)
    if not biased(c.spec, 0):
        return None
    return FeatureCV(make_featurizer(c.spec).names.index(c.spec["bias"]["explore"]))


def bias_hook(c: Campaign, k: int) -> CVBias | None:
    """The bias of iteration k along its driving CV, with no deposits yet (None: unbiased); in
    iteration 0 on bias.explore's range and kernel width, without the Kolmogorov term (no q yet)."""
    spec, cv = c.spec, driving_cv(c, k)
    if cv is None:
        return None
    if k == 0:
        return CVBias(cv, make_bias(spec, 1, explore=True), None, thermal_energy(spec))
    return CVBias(cv, make_bias(spec, spec["learner"]["cv_dim"]), kolmogorov_terms(spec), thermal_energy(spec),
                  inverse_mass(spec))


def final_bias_hook(c: Campaign, k: int) -> CVBias:
    """The bias of biased iteration k as it stood at the iteration's end (its bias.npz)."""
    hook = bias_hook(c, k)
    if hook is None:
        raise ValueError(f"iteration {k} ran unbiased: it has no final bias")
    hook.bias.load_state_dict({key: torch.from_numpy(v) for key, v in cio.read_npz(c.iter_dir(k) / "bias.npz").items()})
    return hook


def simulate(c: Campaign, k: int, log: Log = print, deadline: float | None = None) -> None:
    """Run iteration k in checkpointed segments; resume from the last complete segment. With a
    `deadline` (time.monotonic()), stop after a segment if the next one would likely overrun it."""
    spec, en = c.spec, c.spec["engine"]
    sim = c.iter_dir(k) / "sim"
    steps, seg_len, n_seg = iteration_steps(spec, k), en["segment_steps"], _segments(spec, k)
    system = make_system(spec)
    engine = make_engine(spec, system)
    hook = bias_hook(c, k)
    checkpoints = _sim_checkpoints(c, k)
    _recompute_damaged_segments(c, k, n_seg, checkpoints, log)
    saved = checkpoints.latest(log)
    if saved is None:
        start = 0
        engine.step = steps_before(spec, k)
        try:
            engine.set_positions(_initial_positions(c, k, system))
        except SimulationError as exc:
            origin = _sim_checkpoints(c, k - 1).path(_segments(spec, k - 1)) if k else "engine.start"
            raise SimulationError(f"iteration {k}: start positions from {origin}: {exc}") from None
        if k > 0 and spec["bias"]["warm_start"]:
            prime_bias(c, k, hook, log)
    else:
        start, state = saved
        bad = ~np.isfinite(state["positions"].reshape(en["walkers"], -1)).all(axis=-1)
        if bad.any():
            raise SimulationError(f"iteration {k}: checkpoint {checkpoints.path(start)} holds positions that are not "
                                  f"finite (walker {int(np.flatnonzero(bad)[0])}); the simulation diverged before it "
                                  "was written: delete it to restart from the previous checkpoint")
        engine.load_state_dict(state)
        if hook is not None:
            hook.bias.load_state_dict({key[5:]: torch.from_numpy(v) for key, v in state.items() if key.startswith("bias_")})
        log(f"[iter {k} simulate] resuming at segment {start}/{n_seg}")
    kind = "unbiased" if hook is None else f"{spec['bias']['kind']} on " + (f"CV_{k}" if k else spec["bias"]["explore"])
    t_phase = time.perf_counter()
    for seg in range(start, n_seg):
        t0 = time.perf_counter()
        n = min(seg_len, steps - seg * seg_len)
        try:
            frames = engine.run(n, en["report_stride"], hook, bias_stride=en["bias_stride"], stream=(k, seg))
        except SimulationError as exc:
            kept = checkpoints.path(seg) if seg else "none yet: the iteration restarts from its beginning"
            raise SimulationError(f"iteration {k}, segment {seg + 1}/{n_seg}: {exc}; last good checkpoint: {kept}") from None
        labels = _write_segment(sim / f"segment-{seg:04d}.npz", frames, system, seg * seg_len // en["report_stride"],
                                en["position_stride"])
        bias_state = {} if hook is None else {f"bias_{key}": v.numpy() for key, v in hook.bias.state_dict().items()}
        checkpoints.write(seg + 1, **engine.state_dict(), **bias_state)
        rate = en["walkers"] * n / (time.perf_counter() - t0)
        share = "  ".join(f"{name} {100 * np.mean(labels == j):4.1f}%" for j, name in enumerate(system.states))
        log(f"[iter {k} simulate] {kind}: segment {seg + 1}/{n_seg}, step {seg * seg_len + n}/{steps}, "
            f"{rate:,.0f} walker-steps/s, frames in {share}; "
            f"{progress_time(time.perf_counter() - t_phase, seg + 1 - start, n_seg - start)}")
        if deadline is not None and seg + 1 < n_seg and time.monotonic() + 1.5 * (time.perf_counter() - t0) > deadline:
            raise WalltimeReached(f"[iter {k} simulate] stopping after segment {seg + 1}/{n_seg}: walltime budget nearly spent")
    _gather_segments(c, k, n_seg)
    if system.trajectory_format is not None:
        system.write_trajectories(c.iter_dir(k) / "walkers", cio.read_npz(c.iter_dir(k) / "trajectory.npz")["positions"])
    if hook is not None:
        cio.write_npz(c.iter_dir(k) / "bias.npz", **{key: v.numpy() for key, v in hook.bias.state_dict().items()})
    c.update_doc(phase="train", total_steps=walker_steps_through(spec, k))


def _recompute_damaged_segments(c: Campaign, k: int, n_seg: int, checkpoints: CheckpointSeries, log: Log) -> None:
    """If a finished segment file of iteration k fails its checksum (a truncated or damaged file),
    remove it, the segments after it and the checkpoints after the newest one that precedes it,
    so that the run recomputes them: from that checkpoint, or from the iteration's start (the
    streams are seeded, so the recomputed segments are the same bits)."""
    sim, d = c.iter_dir(k) / "sim", c.iter_dir(k)
    if (d / "samples.npz").is_file() and (d / "trajectory.npz").is_file():
        return  # already joined: the segments left are being removed
    for seg in range(n_seg):
        path = sim / f"segment-{seg:04d}.npz"
        if not path.is_file():
            continue
        try:
            cio.read_npz(path)
        except WorkspaceError as exc:
            restart = max([i for i in checkpoints.indices() if i <= seg], default=0)
            for later in range(restart, n_seg):
                (sim / f"segment-{later:04d}.npz").unlink(missing_ok=True)
            for index in checkpoints.indices():
                if index > restart:
                    checkpoints.path(index).unlink()
            log(f"warning: {exc}; iteration {k} is recomputed from "
                + (f"checkpoint {checkpoints.path(restart).name}" if restart else "its start") + " (the same bits)")
            return


def _write_segment(path: Path, frames: Frames, system: System, first_frame: int, position_stride: int) -> np.ndarray:
    """Write a segment's frames with their state coordinates and labels, and the positions of the
    frames whose number within the iteration is a multiple of `position_stride`; return the labels."""
    n_frames, walkers = frames.positions.shape[:2]
    z = system.state_coordinates(frames.positions.reshape(n_frames * walkers, *frames.positions.shape[2:]))
    labels = system.classify_coordinates(z).reshape(n_frames, walkers).astype(np.int8)
    number = first_frame + np.arange(n_frames)
    kept = number % position_stride == 0
    per_frame = {key: v for key, v in frames.as_dict().items() if key != "positions"}
    cio.write_npz(path, **per_frame, state=labels, state_coordinates=z.reshape(n_frames, walkers, -1),
                  positions=frames.positions[kept], frame=number[kept])
    return labels


def _gather_segments(c: Campaign, k: int, n_seg: int) -> None:
    """Iteration k's segments joined into samples.npz (per-frame arrays) and trajectory.npz
    (stored positions), then removed: nothing is stored twice. A run killed while removing them
    finds both files complete and removes the rest."""
    sim, d = c.iter_dir(k) / "sim", c.iter_dir(k)
    segments = [sim / f"segment-{seg:04d}.npz" for seg in range(n_seg)]
    if not ((d / "samples.npz").is_file() and (d / "trajectory.npz").is_file()):
        parts = [cio.read_npz(p) for p in segments]
        joined = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        cio.write_npz(d / "trajectory.npz", positions=joined.pop("positions"), frame=joined.pop("frame"))
        cio.write_npz(d / "samples.npz", **joined)
    for p in segments:
        p.unlink(missing_ok=True)


def primed_kernels(spec: dict[str, Any]) -> float:
    """How many depositions a primed bias counts as (bias.warm_start_weight of one iteration's)."""
    en = spec["engine"]
    return spec["bias"]["warm_start_weight"] * en["walkers"] * en["steps"] / spec["bias"]["pace"]


def prime_bias(c: Campaign, k: int, hook: CVBias, log: Log) -> None:
    """Initialise the bias of iteration k from the reweighted data of iterations < k on CV_k."""
    spec = c.spec
    data = [load_samples(c, i) for i in range(k)]
    crossings = [transitions(d) for d in data]
    data = [equilibrated(d, spec["analysis"]["equilibration"]) for d in data]
    fes_its = fes_iterations(crossings, spec["analysis"]["fes_window"]) or list(range(k))
    w = mixture_weights(data, fes_its, crossings)
    feats = np.concatenate([flat(data[i], "features") for i in fes_its])
    # every frame with its weight: resampling by weight repeats the heavy frames, and kernels
    # stacked on one point make the primed bias spikier than the density it estimates
    s = torch.as_tensor(eval_cv(hook.cv_model, feats))
    hook.bias.prime(s, torch.as_tensor(w), primed_kernels(spec))
    log(f"[iter {k} simulate] bias primed from iterations {fes_its} on CV_{k} ({len(s)} weighted frames)")
