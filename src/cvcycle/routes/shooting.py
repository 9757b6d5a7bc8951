"""Route `shooting`: committor campaigns by transition path sampling (`learner.method = "shooting"`).

iteration k:  shoot (two-way shooting TPS through openpathsampling; shooting points drawn with a
              Gaussian weight in logit q of the current committor, uniformly for k = 0; then
              `paths.extra_shots` trajectories with fresh velocities from every shooting point,
              vectorised: independent trials of p_B, unlike the move's two halves)
              -> train (q = sigmoid(f) by the binomial likelihood of every extra shot so far)
              -> analyze (change of q, comparison with the exact committor where the system has one,
              plots) -> k + 1 or done.
The first A -> B path comes from a short high-temperature run from state A (paths.initial_temperature,
in the system's temperature unit: kT for a model potential, kelvin for a molecule). TPS runs in chunks
of moves written atomically (cvcycle.paths), so a killed campaign resumes at its last chunk.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

from .. import io as cio
from ..analysis.quality import committor_rmse, cv_committor_quality, sigmoid
from ..analysis.rates import grid_tpt_rate
from ..analysis.reference import GridReference
from ..analysis.shooting import shoot
from ..campaign import Campaign
from ..checkpoints import CheckpointSeries
from ..engines import make_engine
from ..features import make_featurizer
from ..learn.committor import shooting_nll, train_committor_shooting
from ..learn.train import TrainResult
from ..models.export import load_model
from ..systems import make_system
from .base import BIASED_FILES, Analysis, Route
from .evaluate import campaign_reference, diffusion_coefficient, fmt, q_change_rms
from .fit import save_trained, train_ensemble

Log = Callable[[str], None]


def _hot_run(c: Campaign, log: Log) -> np.ndarray:
    """Positions (frames, walkers, ...) of the high-temperature run from A that supplies the first
    path: points (frames, walkers, 2) for a 2-D model potential."""
    path = c.iter_dir(0) / "hot_run.npz"
    if path.is_file():
        return cio.read_npz(path)["positions"]
    spec, p = c.spec, c.spec["paths"]
    hot = {**spec, "system": {**spec["system"], "temperature": p["initial_temperature"]}}
    system = make_system(hot)
    engine = make_engine(hot, system)
    rng = np.random.default_rng(cio.derive_seed(c.seed, 6_000_003))
    engine.set_positions(system.start(system.state_names[:1], spec["engine"]["walkers"], 0.0, rng))
    t0 = time.perf_counter()
    frames = engine.run(p["initial_steps"], p["stride"], stream=(0, 6_000_007))
    positions = frames.positions
    if system.dim == 2 and system.n_particles == 1:
        positions = positions.reshape(*positions.shape[:2], 2)
    cio.write_npz(path, positions=positions)
    log(f"[iter 0 shoot] high-temperature run (temperature {p['initial_temperature']:g}): {spec['engine']['walkers']} walkers x "
        f"{p['initial_steps']} steps in {time.perf_counter() - t0:.1f} s")
    return positions


def start_path(c: Campaign, k: int) -> np.ndarray:
    """The path (n, ...) iteration k's TPS starts from: cut from the high-temperature run for k = 0,
    else the path iteration k - 1 ended with."""
    from ..paths import initial_path

    if k == 0:
        return initial_path(_hot_run(c, lambda line: None), make_system(c.spec))
    return cio.read_npz(c.iter_dir(k - 1) / "shots.npz")["final_path"]


def _logit_q(c: Campaign, k: int) -> Callable[[np.ndarray], np.ndarray]:
    model, feat = load_model(c.iter_dir(k) / "model.npz"), make_featurizer(c.spec)

    def z(positions: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(feat(torch.as_tensor(positions, dtype=torch.float64))).double().numpy()[:, 0]

    return z


def steps_through(c: Campaign, k: int) -> int:
    """Walker steps of iterations 0..k: the high-temperature run, every shooting move (both halves)
    and the extra shots, each trajectory counted until it committed."""
    total = c.spec["engine"]["walkers"] * c.spec["paths"]["initial_steps"]
    for i in range(k + 1):
        s = cio.read_npz(c.iter_dir(i) / "shots.npz")
        total += int(s["steps"].sum() + s["extra_steps"].sum() + s["extra_cost"])
    return total


def simulate(c: Campaign, k: int, log: Log = print, deadline: float | None = None) -> None:
    """Two-way shooting TPS for iteration k; resumes at the last finished chunk of moves. With a
    `deadline`, stop after a chunk when the next one would likely overrun it."""
    from ..paths import run_tps
    from ..paths.records import chunk_path

    spec, p = c.spec, c.spec["paths"]
    if k == 0:
        _hot_run(c, log)
    start, weight = start_path(c, k), None
    if k > 0:
        z, width = _logit_q(c, k - 1), p["selector_width"]
        weight = lambda pos: np.exp(-0.5 * (np.clip(z(pos), -50, 50) / width) ** 2)  # noqa: E731
    log(f"[iter {k} shoot] {p['moves']} two-way shooting moves from a path of {len(start)} frames, shooting points "
        + ("uniform along the path" if weight is None else f"weighted exp(-logit(q)^2 / 2 {p['selector_width']}^2) by CV_{k}"))
    workdir = c.iter_dir(k) / "tps"
    records = run_tps(spec, start, p["moves"], cio.derive_seed(c.seed, k, 6_000_011), workdir, weight, log,
                      stride=p["stride"], max_frames=p["max_frames"], chunk_moves=p["chunk_moves"], deadline=deadline)
    last = cio.read_npz(chunk_path(workdir, (p["moves"] - 1) // p["chunk_moves"]))
    # trajectories with fresh velocities from every shooting point, all at once as the walkers of one
    # engine: the committor data (the two halves of a move are not independent trials of p_B)
    n = len(records) * p["extra_shots"]
    system = make_system(spec)
    extra, cost = shoot(make_engine(spec, system, walkers=n), records.points, p["extra_shots"], system.classify_ab,
                        cio.derive_seed(c.seed, k, 6_000_013), p["max_frames"] * p["stride"], p["stride"])
    log(f"[iter {k} shoot] {p['extra_shots']} trajectories with fresh velocities from each of the {len(records)} "
        f"shooting points ({n} walkers, {cost / n:.0f} steps per trajectory until it committed)")
    cio.write_npz(c.iter_dir(k) / "shots.npz", **records.as_dict(), final_path=last["path_positions"],
                  extra_outcomes=extra, extra_cost=np.array(cost))
    c.update_doc(phase="train", total_steps=steps_through(c, k))


def _shots(c: Campaign, k: int) -> dict[str, np.ndarray]:
    """Features and outcome counts of the shooting points of iterations 0..k: the extra shots, each
    with fresh velocities, so independent trials of p_B (committed trajectories only). The halves
    of the TPS move are left out: they share the path's velocity at the point."""
    parts = [cio.read_npz(c.iter_dir(i) / "shots.npz") for i in range(k + 1)]
    out = {key: np.concatenate([s[key] for s in parts]) for key in ("points", "features")}
    out["outcomes"] = np.concatenate([s["extra_outcomes"] for s in parts])
    out["n_a"], out["n_b"] = (out["outcomes"] == 0).sum(1), (out["outcomes"] == 1).sum(1)
    keep = out["n_a"] + out["n_b"] > 0
    out = {key: v[keep] for key, v in out.items()}
    out["iteration"] = np.concatenate([np.full(len(s["points"]), i) for i, s in enumerate(parts)])[keep]
    return out


def train(c: Campaign, k: int, log: Log = print, deadline: float | None = None) -> None:
    """Train q_{k+1} on the outcomes of every shooting move so far and export it."""
    cfg = c.spec["learner"]
    s = _shots(c, k)
    rng = np.random.default_rng(cio.derive_seed(c.seed, k, 2_000_003))
    order = rng.permutation(len(s["points"]))
    check, pool = order[: len(order) // 10], order[len(order) // 10:]
    log(f"[iter {k} train] {cfg['ensemble']} x committor {cfg['hidden']} on {len(pool)} shooting points "
        f"({int(s['n_a'][pool].sum() + s['n_b'][pool].sum())} outcomes) from iterations 0..{k}")
    previous = load_model(c.iter_dir(k - 1) / "model.npz") if k > 0 and cfg["warm_start"] else None

    def member(j: int, init: Any, checkpoints: CheckpointSeries, label: str, log: Log) -> TrainResult:
        return train_committor_shooting(s["features"][pool], s["n_a"][pool], s["n_b"][pool], cfg,
                                        cio.derive_seed(c.seed, k, 3_000_017 + j), log, label, init, checkpoints, deadline)

    model, info = train_ensemble(c, k, log, member,
                                 lambda m: (shooting_nll(m, s["features"][check], s["n_a"][check], s["n_b"][check]),),
                                 "held-out shooting NLL", previous)
    save_trained(c, k, model, {**info, "samples": len(pool)}, committor=True)


def analyze(c: Campaign, k: int, log: Log = print, deadline: float | None = None) -> Analysis:
    """Metrics and plots after training q_{k+1}; decide convergence."""
    spec, conv = c.spec, c.spec["convergence"]
    shots = cio.read_npz(c.iter_dir(k) / "shots.npz")
    s = _shots(c, k)
    z_new = _logit_q(c, k)
    metrics: dict[str, Any] = {"iteration": k, "total_steps": c.progress()["total_steps"], "moves": int(len(shots["accepted"])),
                               "acceptance": float(shots["accepted"].mean()),
                               "shooting_points": int(len(s["points"]))}
    latest = s["points"][s["iteration"] == k]
    metrics["q_change"] = q_change_rms(z_new(latest), _logit_q(c, k - 1)(latest)) if k else None
    # a Markov-chain average: the current path after every move, rejected ones included
    metrics["transition_path_time"] = float(shots["path_length"].mean() * spec["engine"]["dt"] * spec["paths"]["stride"])
    system = make_system(spec)
    exact, ref, q_grid = "", None, None
    if system.has_exact_reference:
        ref = campaign_reference(c)
        z_grid = z_new(ref.points)
        q_grid = sigmoid(z_grid).reshape(ref.committor.shape)
        exact = _against_exact(spec, ref, z_grid, q_grid, metrics)
    metrics["checks"] = {"q_change": metrics["q_change"] is not None and metrics["q_change"] <= conv["q_change"],
                         "min_iterations": k + 1 >= conv["min_iterations"]}
    metrics["converged"] = all(metrics["checks"].values())
    cio.write_json(c.iter_dir(k) / "metrics.json", metrics)
    p_b, title = s["n_b"] / (s["n_a"] + s["n_b"]), f"iteration {k}: {len(s['points'])} shooting points"
    if spec["analysis"]["plots"] and ref is not None:
        from ..analysis.plots import plot_shooting

        plot_shooting(c.iter_dir(k) / "fes_xy.png", ref.xs, ref.ys, ref.free_energy, q_grid, ref.committor, s["points"],
                      p_b, spec["system"]["states"], title)
    elif spec["analysis"]["plots"]:
        from ..analysis.plots import plot_shooting_points

        plot_shooting_points(c.iter_dir(k) / "shooting_points.png", system.state_coordinates(s["points"]), p_b,
                             sigmoid(z_new(s["points"])), spec["system"]["states"], system.state_coordinate_names, title)
    return Analysis(metrics, metrics["total_steps"] * (k + 2) // (k + 1),  # the next iteration like the mean
                    f"{metrics['moves']} moves, acceptance {metrics['acceptance']:.2f}, committor change "
                    f"{fmt(metrics['q_change'])}{exact}")


def _against_exact(spec: dict[str, Any], ref: GridReference, z_grid: np.ndarray, q_grid: np.ndarray,
                   metrics: dict[str, Any]) -> str:
    """The learned logit q on the reference grid (`z_grid`, and q itself shaped as the grid) against
    the exact committor of a model potential: committor R^2 and width of the CV, q RMSE and
    (overdamped) the TPT rate, into `metrics`; the log's summary."""
    quality = cv_committor_quality(z_grid, ref.committor.ravel(), ref.free_energy.ravel())
    metrics["committor_r2"], metrics["committor_width"] = quality["r2"], quality["width"]
    metrics["committor_rmse"] = committor_rmse(q_grid, ref.committor, ref.free_energy)
    if spec["engine"]["integrator"] == "overdamped":  # TPT with the learned q on the exact Boltzmann density
        rate = lambda q: grid_tpt_rate(ref.xs, ref.ys, ref.free_energy, q, diffusion_coefficient(spec))  # noqa: E731
        metrics["rate_AB"] = rate(q_grid)
        metrics["rate_AB_exact"] = rate(ref.committor)
    return f", RMSE vs exact {metrics['committor_rmse']:.4f}, R2 {quality['r2']:.4f} width {quality['width']:.4f}"


ROUTE = Route("shooting", simulate, train, analyze,
              {"simulate": ("shots.npz",), "train": BIASED_FILES["train"] + ("committor.pt",), "analyze": ("metrics.json",)},
              metric_keys=("q_change", "acceptance", "committor_r2", "committor_rmse"), logit_q=True)
