"""Flexible-length transition path sampling (A -> B) by two-way shooting, run by openpathsampling
through the bridge engine, in chunks that survive a kill.

Chunk k runs `chunk_moves` moves from the path the previous chunk ended with (the initial path for
k = 0), with every random stream seeded from (seed, k): the engine's per-frame seeds, OPS's numpy
generator and Python's `random`. Its records and final path are written atomically to
workdir/chunk-kkkk.npz; a later call with the same arguments reads finished chunks back and runs
the rest, so an interrupted run resumes to exactly the records of an uninterrupted one.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import io
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import io as cio
from ..engines import make_engine
from ..errors import CvcycleError, EngineUnavailable, WalltimeReached, WorkspaceError
from ..features import make_featurizer
from ..systems import make_system
from .records import ShootingRecords, chunk_path

Weight = Callable[[np.ndarray], np.ndarray]


def load_ops() -> Any:
    """The bridge module; EngineUnavailable when openpathsampling is not installed."""
    try:
        importlib.import_module("openpathsampling")
    except ImportError:
        raise EngineUnavailable("transition path sampling needs the Python package 'openpathsampling' "
                                "(pip install 'cvcycle[paths]')") from None
    from . import ops_bridge

    return ops_bridge


def run_tps(spec: dict[str, Any], initial_positions: np.ndarray, n_moves: int, seed: int, workdir: Path,
            selector_weight: Weight | None = None, log: Callable[[str], None] = print, *,
            stride: int = 10, max_frames: int = 2000, chunk_moves: int = 50,
            deadline: float | None = None) -> ShootingRecords:
    """Run `n_moves` two-way shooting moves from `initial_positions` (n, particles, dim), or points
    (n, 2) of a 2-D model potential, an A -> B path, and
    return one record per move. One frame is `stride` engine steps; a half that has not entered a
    state after `max_frames` frames stops undecided and its move is rejected. `selector_weight`
    maps positions (n, ...) to non-negative weights for choosing shooting frames (uniform if None).
    Finished chunks in `workdir` are reused, so calling again after a kill resumes. With a
    `deadline` (time.monotonic() seconds), stop after a chunk with WalltimeReached when the next
    one would likely not finish before it."""
    ops = load_ops()
    if min(n_moves, chunk_moves, stride, max_frames) < 1:
        raise ValueError("n_moves, chunk_moves, stride and max_frames must be positive")
    workdir = Path(workdir)
    initial = np.asarray(initial_positions, dtype=np.float64)
    settings = json.dumps({"seed": int(seed), "stride": int(stride), "max_frames": int(max_frames),
                           "chunk_moves": int(chunk_moves), "weighted": selector_weight is not None,
                           "spec": _digest(json.dumps({k: spec[k] for k in ("system", "engine", "features")}, sort_keys=True).encode()),
                           "initial": _digest(initial.tobytes())}, sort_keys=True)
    path = (initial, np.zeros_like(initial))
    parts = []
    n_chunks = math.ceil(n_moves / chunk_moves)
    for k in range(n_chunks):
        moves = min(chunk_moves, n_moves - k * chunk_moves)
        chunk = _finished_chunk(chunk_path(workdir, k), settings, moves)
        if chunk is None:
            t0 = time.monotonic()
            chunk = _run_chunk(ops, spec, path, moves, cio.derive_seed(seed, k), selector_weight, stride, max_frames)
            cio.write_npz(chunk_path(workdir, k), settings=np.array(settings), **chunk)
            log(f"[tps] chunk {k}: {moves} moves, {int(chunk['accepted'].sum())} accepted, "
                f"{int(chunk['steps'].sum() + chunk['extra_steps'].sum())} engine steps, "
                f"path length {int(chunk['path_length'][-1])} frames")
            if deadline is not None and k + 1 < n_chunks and time.monotonic() + 1.5 * (time.monotonic() - t0) > deadline:
                raise WalltimeReached(f"[tps] stopping after chunk {k + 1}/{n_chunks}: walltime budget nearly spent")
        records = ShootingRecords.from_dict(chunk).as_dict()
        parts.append(ShootingRecords(**{name: rows[:moves] for name, rows in records.items()}))
        path = (chunk["path_positions"], chunk["path_velocities"])
    return ShootingRecords.concatenate(parts)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _finished_chunk(file: Path, settings: str, moves: int) -> dict[str, np.ndarray] | None:
    """A chunk file's arrays if it holds at least `moves` moves of a run with these settings; None
    if it is missing or shorter (the last chunk of a shorter run: it is run again, longer)."""
    if not file.is_file():
        return None
    chunk = cio.read_npz(file)
    if str(chunk.pop("settings")) != settings:
        raise WorkspaceError(f"{file} belongs to a TPS run with other settings (seed, stride, max_frames, "
                             f"chunk_moves, selector, spec or initial path): use another workdir")
    if len(chunk["accepted"]) < moves:
        return None
    return chunk  # a longer one is the last chunk of a longer run: its first `moves` records are used


def _run_chunk(ops: Any, spec: dict[str, Any], path: tuple[np.ndarray, np.ndarray], moves: int, seed: int,
               selector_weight: Weight | None, stride: int, max_frames: int) -> dict[str, np.ndarray]:
    import openpathsampling as paths

    one = copy.deepcopy(spec)
    one["engine"]["walkers"] = 1
    system = make_system(spec)
    engine = ops.BridgeEngine(make_engine(one, system), stride, max_frames, seed=cio.derive_seed(seed, 0),
                              underdamped=spec["engine"]["integrator"] == "underdamped", frame_shape=path[0].shape[1:])
    classify = system.classify_ab
    state_a, state_b = ops.state_volumes(classify, system.state_names)
    network = paths.TPSNetwork(state_a, state_b)
    ensemble = network.sampling_ensembles[0]
    trajectory = engine.trajectory(*path)
    if not ensemble(trajectory):
        raise CvcycleError(f"the initial path ({len(trajectory)} frames) is not an A -> B path: it must start "
                           f"in A, end in B and have no other frame in A or B (see cvcycle.paths.initial_path)")
    selector = paths.UniformSelector() if selector_weight is None else ops.WeightSelector(selector_weight)
    scheme = paths.MoveScheme(network)
    # underdamped dynamics: fresh Maxwell-Boltzmann velocities at every shooting point (a symmetric
    # proposal), else a path that starts without velocities (the first path, each iteration's
    # start) can shoot halves too alike to ever cross; overdamped: the point's own noise term
    modifier = paths.RandomVelocities(beta=1.0, engine=engine) if engine.underdamped else paths.NoModification()
    scheme.append([paths.strategies.TwoWayShootingStrategy(modifier=modifier, selector=selector, engine=engine),
                   paths.strategies.OrganizeByMoveGroupStrategy()])
    sim = paths.PathSampling(storage=None, move_scheme=scheme,
                             sample_set=paths.SampleSet([paths.Sample(replica=0, trajectory=trajectory, ensemble=ensemble)]))
    sim.output_stream = io.StringIO()  # OPS's progress lines
    commit = paths.AllOutXEnsemble(state_a | state_b).can_append
    rows, reactive = [], []
    with ops.seeded(sim, cio.derive_seed(seed, 1)):
        for _ in range(moves):
            rows.append(_move(ops, sim, engine, commit, classify))
            if rows[-1]["accepted"]:
                reactive.append(ops.arrays(sim.sample_set[0].trajectory)[0])
        positions, velocities = ops.arrays(sim.sample_set[0].trajectory)  # (SampleSet[i] draws from `random`)
    points = np.array([r["point"] for r in rows])
    with torch.no_grad():
        features = make_featurizer(spec)(torch.as_tensor(points)).numpy()
    column = lambda key, dtype: np.array([r[key] for r in rows], dtype=dtype)  # noqa: E731
    return {"points": points, "features": features, "outcomes": column("outcomes", np.int64),
            "accepted": column("accepted", bool), "steps": column("steps", np.int64) * stride,
            "extra_steps": column("extra_steps", np.int64) * stride, "path_length": column("path_length", np.int64),
            "path_positions": positions, "path_velocities": velocities,
            "accepted_positions": np.concatenate(reactive) if reactive else np.zeros((0, *points.shape[1:])),
            "accepted_lengths": np.array([len(p) for p in reactive], dtype=np.int64)}


def _move(ops: Any, sim: Any, engine: Any, commit: Callable, classify: Callable) -> dict[str, Any]:
    """One OPS shooting move, then the half OPS skipped (if it did); frame counts, not steps."""
    import openpathsampling as paths

    engine.halves.clear()
    before = engine.frames
    sim.run(1)
    change = sim.current_step.change.canonical
    shooting = change.details.shooting_snapshot
    forward_first = isinstance(change.mover, paths.ForwardFirstTwoWayShootingMover)
    frames = engine.frames - before
    if len(engine.halves) < 2:  # OPS skips the second half once the first rules A -> B out
        _complete(engine, shooting, backward=forward_first, running=commit)
    if len(engine.halves) != 2:
        raise CvcycleError(f"a shooting move ran {len(engine.halves)} trajectories, not 2")
    ends = [int(e) for e in classify(np.array(engine.halves))]  # -1: stopped by the max length
    return {"point": ops.point(shooting.coordinates),
            "outcomes": ends if forward_first else ends[::-1], "accepted": bool(change.accepted),
            "steps": frames, "extra_steps": engine.frames - before - frames,
            "path_length": len(sim.sample_set[0].trajectory)}


def _complete(engine: Any, shooting: Any, backward: bool, running: Callable) -> None:
    """Run the half OPS skipped until it enters a state (or hits the max length), for its outcome."""
    import openpathsampling as paths

    try:
        engine.generate(shooting.reversed if backward else shooting, running=[running])
    except paths.engines.EngineMaxLengthError:
        pass  # its last frame, in neither state, is the outcome -1
