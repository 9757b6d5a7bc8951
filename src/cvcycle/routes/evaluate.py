"""The analyze phase of the biased-simulation routes: state visits and transitions, the
agreement of CV_{k+1} with CV_k (the route's own measure), the free energy along the new CV and
its change, checks against the exact reference where the system has one, plots, and the
convergence decision."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from .. import io as cio
from ..analysis.bias_stiffness import bias_stiffness
from ..analysis.fes import aligned_rmse, fes_change, histogram_fes, state_free_energies
from ..analysis.quality import committor_rmse, cv_committor_quality, sigmoid
from ..analysis.rates import grid_tpt_rate, tpt_rate
from ..analysis.reference import GridReference, reference_from_spec
from ..campaign import Campaign
from ..features import make_featurizer
from ..learn.committor import committor_and_grad_sq, feature_metric
from ..systems import System, make_system, thermal_energy
from .base import Analysis
from .data import (cv_edges, equilibrated, fes_iterations, flat, flat_positions, inverse_mass, load_positions,
                   load_samples, mixture_weights, transitions, walker_steps_through)
from .fit import cv_of, eval_cv
from .simulate import biased, final_bias_hook

Log = Callable[[str], None]


@dataclass(frozen=True)
class Agreement:
    """How a route compares CV_{k+1} with CV_k: `measure(metrics, s_new, s_old, latest)` records
    its metrics (s_* on all frames so far, s_old None for k = 0; `latest` slices iteration k's
    frames), `check(metrics, convergence)` gives its convergence checks, `text(metrics)` its log
    words."""

    measure: Callable[[dict[str, Any], np.ndarray, np.ndarray | None, slice], None]
    check: Callable[[dict[str, Any], dict[str, Any]], dict[str, bool]]
    text: Callable[[dict[str, Any]], str]


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def q_change_rms(z_new: np.ndarray, z_old: np.ndarray) -> float | None:
    """RMS change of the committor q = sigmoid(logit) between two models, over the frames where
    either has 0.05 < q < 0.95; None where there is no such frame (the frames cannot tell whether
    q changed where it matters, so the change is unmeasured, not zero)."""
    q_new, q_old = sigmoid(z_new), sigmoid(z_old)
    between = ((q_new > 0.05) & (q_new < 0.95)) | ((q_old > 0.05) & (q_old < 0.95))
    return float(np.sqrt(np.mean((q_new[between] - q_old[between]) ** 2))) if between.any() else None


def linear_r2(target: np.ndarray, source: np.ndarray) -> float:
    """R^2 of the least-squares fit target ~ a + B source (averaged over target components)."""
    X = np.column_stack([np.ones(len(source)), source])
    coef, *_ = np.linalg.lstsq(X, target, rcond=None)
    resid = target - X @ coef
    return float(1.0 - resid.var(axis=0).sum() / target.var(axis=0).sum())


def diffusion_coefficient(spec: dict[str, Any]) -> float:
    """D = kT / gamma of overdamped Langevin dynamics."""
    return thermal_energy(spec) / spec["engine"]["friction"]


def campaign_reference(c: Campaign) -> GridReference:
    path = c.path / "reference.npz"
    if path.exists():
        r = cio.read_npz(path)
        return GridReference(r["xs"], r["ys"], r["free_energy"], r["committor"])
    ref = reference_from_spec(c.spec, bins=c.spec["analysis"]["grid_bins"] * 2 + 1)
    cio.write_npz(path, xs=ref.xs, ys=ref.ys, free_energy=ref.free_energy, committor=ref.committor)
    return ref


def iteration_stiffness(c: Campaign, k: int, frames: int = 4000, percentile: float = 99.0) -> float:
    """The `percentile` of the bias's step stiffness (analysis.bias_stiffness) over up to `frames`
    stored frames of biased iteration k, under the bias as it stood at the iteration's end."""
    spec, en = c.spec, c.spec["engine"]
    pos, _ = load_positions(c, k)
    pos = pos.reshape(-1, *pos.shape[2:])
    rng = np.random.default_rng(k)
    pos = pos[rng.choice(len(pos), min(frames, len(pos)), replace=False)]
    s = bias_stiffness(final_bias_hook(c, k), make_featurizer(spec), pos, dt=en["dt"], friction=en["friction"],
                       integrator=en["integrator"], kT=thermal_energy(spec), masses=en["mass"] * make_system(spec).masses,
                       bias_stride=en["bias_stride"], seed=k)
    return float(np.percentile(s, percentile))


def analyze_biased(c: Campaign, k: int, log: Log = print, deadline: float | None = None, *, agreement: Agreement,
                   logit_q: bool = False) -> Analysis:
    """Metrics, FES estimates and plots after training CV_{k+1}; decide convergence. Short and
    idempotent, so it ignores the deadline: an interrupted analysis is simply redone. With
    `logit_q` the CV is logit q: its committor is checked and its TPT rate estimated."""
    spec, conv = c.spec, c.spec["convergence"]
    system = make_system(spec)
    d = c.iter_dir(k)
    data = [load_samples(c, i) for i in range(k + 1)]
    in_k = {name: flat(data[k], "state") == j for j, name in enumerate(system.states)}
    visited = {n: bool(m.any()) for n, m in in_k.items()}
    crossings = [transitions(s) for s in data]
    window = spec["analysis"]["fes_window"]
    fes_its = fes_iterations(crossings, window)
    n_transitions = crossings[k]
    eq = [equilibrated(s, spec["analysis"]["equilibration"]) for s in data]  # what the reweighted estimates use

    @functools.cache
    def weights_of(its: tuple[int, ...]) -> np.ndarray:  # the FES, state free energies and TPT share them
        return mixture_weights(eq, list(its), crossings)

    new_cv = cv_of(c, k)
    metrics: dict[str, Any] = {"iteration": k, "total_steps": walker_steps_through(spec, k),
                               "states_visited": visited, "fes_iterations": fes_its, "transitions": n_transitions,
                               "state_fractions": {n: float(m.mean()) for n, m in in_k.items()}}
    feats_all = np.concatenate([flat(s, "features") for s in data])
    s_new = eval_cv(new_cv, feats_all)
    s_old = eval_cv(cv_of(c, k - 1), feats_all) if k else None
    latest = slice(len(feats_all) - len(flat(data[k], "features")), None)
    agreement.measure(metrics, s_new, s_old, latest)
    if logit_q:  # the share of iteration k's frames where the new committor is neither 0 nor 1
        q = sigmoid(s_new[latest, 0])
        metrics["transition_frames"] = float(np.mean((q > 0.05) & (q < 0.95)))

    edges = cv_edges(spec)
    centers = 0.5 * (edges[1:] + edges[:-1])
    ends = np.cumsum([len(flat(s, "features")) for s in data])  # an iteration's equilibrated frames end its rows

    def fes_along_cv(its: list[int]) -> np.ndarray | None:
        if not its:
            return None
        w = weights_of(tuple(its))
        vals = np.concatenate([s_new[ends[i] - len(flat(eq[i], "features")):ends[i], 0] for i in its])
        return histogram_fes(vals, w, [edges])

    F_cv = fes_along_cv(fes_its)
    F_cv_prev = fes_along_cv(fes_iterations(crossings[:k], window))
    change = fes_change(F_cv, F_cv_prev, conv["fes_cutoff"]) if F_cv is not None and F_cv_prev is not None else None
    metrics["fes_change"] = change if change is not None and np.isfinite(change) else None
    metrics["state_free_energies"] = None  # relative to the first state, from the FES iterations
    if fes_its:
        labels = np.concatenate([flat(eq[i], "state") for i in fes_its])
        metrics["state_free_energies"] = state_free_energies(labels, weights_of(tuple(fes_its)), list(system.states))

    # regions and the state plane: from the FES iterations, or all iterations before any transition
    plane_its = fes_its or list(range(k + 1))
    z_plane = np.concatenate([flat(eq[i], "state_coordinates") for i in plane_its])
    metrics["region_free_energies"] = region_free_energies(system.regions(z_plane), weights_of(tuple(plane_its))) or None

    xe = ye = F_xy = F_ref = np.zeros(0)
    cv_plane = None
    reference = system.reference_fes(spec["analysis"]["grid_bins"] // 2)
    rmse_key = "fes_rmse_exact" if system.has_exact_reference else "fes_rmse_reference"
    metrics[rmse_key] = None
    if reference is not None:  # the reweighted FES on the state coordinates against the system's reference
        xe, ye, F_ref = reference
        F_xy = np.full((len(ye) - 1, len(xe) - 1), np.nan)
        if fes_its:  # then plane_its are the FES iterations
            F_xy = histogram_fes(z_plane, weights_of(tuple(fes_its)), [xe, ye])
        rmse, metrics["fes_coverage"] = aligned_rmse(F_xy, F_ref, F_ref <= conv["fes_cutoff"])
        metrics[rmse_key] = rmse if np.isfinite(rmse) else None
    elif system.state_plane() is not None:  # no reference: the reweighted FES on the state plane
        xe, ye = system.state_plane()
        F_xy = histogram_fes(z_plane, weights_of(tuple(plane_its)), [xe, ye])
        s_plane = np.concatenate([s_new[ends[i] - len(flat(eq[i], "features")):ends[i], 0] for i in plane_its])
        cv_plane = binned_mean(z_plane, s_plane, xe, ye)
    latest = slice(ends[k] - len(flat(data[k], "features")), ends[k])
    metrics["cv_rank_correlation"] = rank_correlations(s_new[latest], flat(data[k], "state_coordinates"),
                                                       system.state_coordinate_names)
    metrics["committor_r2"] = metrics["committor_width"] = None  # a 2-D CV is no 1-D reaction coordinate
    if system.has_exact_reference:
        exact_committor_checks(c, new_cv, metrics, logit_q)
    if logit_q and spec["engine"]["integrator"] == "overdamped":  # transition path theory
        its = fes_its or list(range(k + 1))
        pos, rows = flat_positions(c, its, [eq[i] for i in its])
        w = weights_of(tuple(its))[rows]
        feats = np.concatenate([flat(eq[i], "features") for i in its])[rows]
        metric = feature_metric(make_featurizer(spec), pos, inverse_mass(spec))
        metrics["rate_AB"] = tpt_rate(*committor_and_grad_sq(new_cv, feats, metric), w, diffusion_coefficient(spec))
        if system.has_exact_reference:
            ref = campaign_reference(c)
            metrics["rate_AB_exact"] = grid_tpt_rate(ref.xs, ref.ys, ref.free_energy, ref.committor, diffusion_coefficient(spec))
    metrics["bias_stiffness"] = iteration_stiffness(c, k) if biased(spec, k) else None
    stiffness = [v for i in fes_its if (v := _stiffness_of(c, i, k, metrics["bias_stiffness"])) is not None]
    checks = {**agreement.check(metrics, conv),
              "bias_stiffness": max(stiffness, default=0.0) <= conv["max_bias_stiffness"],
              "fes_change": metrics["fes_change"] is not None and metrics["fes_change"] <= conv["fes_rmse"],
              "states": all(visited.values()) or not conv["require_states"],
              "transitions": n_transitions >= conv["min_transitions"] * spec["engine"]["walkers"],
              "min_iterations": k + 1 >= conv["min_iterations"]}
    metrics["checks"] = checks
    converged = all(checks.values())
    metrics["converged"] = converged

    cio.write_npz(d / "fes.npz", x_edges=xe, y_edges=ye, F_xy=F_xy, cv_centers=centers,
                  F_cv=F_cv if F_cv is not None else np.full(len(centers), np.nan))
    cio.write_json(d / "metrics.json", metrics)
    if spec["analysis"]["plots"]:
        _plots(c, k, system, new_cv, xe, ye, F_xy, F_ref, centers, F_cv, F_cv_prev, logit_q)
        if cv_plane is not None:
            from ..analysis.plots import plot_fes_plane

            plot_fes_plane(d / "fes_states.png", xe, ye, F_xy, cv_plane, spec["system"]["states"],
                           system.state_coordinate_names, f"iteration {k}: data of iterations {plane_its}", f"CV_{k + 1}")

    exact = ""
    if reference is not None:
        exact = (f", FES RMSE vs {rmse_key.split('_')[-1]} {fmt(metrics[rmse_key])} kT "
                 f"(coverage {metrics['fes_coverage']:.2f})")
    if system.has_exact_reference:
        exact += f", committor R2 {fmt(metrics['committor_r2'])} width {fmt(metrics['committor_width'])}"
    regions = list((metrics["region_free_energies"] or {}).items())
    for name, value in regions[1:]:
        exact += f", F({name}) - F({regions[0][0]}) " + (
            "- (no frames)" if value is None else f"{value:.3f} kT ({value * system.kT:.2f} {system.energy_unit})")
    if not system.has_exact_reference and metrics["cv_rank_correlation"]:
        name, rho = next(iter(metrics["cv_rank_correlation"].items()))
        exact += f", Spearman(CV_{k + 1}, {name}) {fmt(rho)}"
    if metrics["bias_stiffness"] is not None:
        exact += f", bias stiffness {metrics['bias_stiffness']:.2f}"
    if logit_q and k > 0 and n_transitions == 0 and metrics["transition_frames"] == 0:
        exact += ("; no frame of this iteration has 0.05 < q < 0.95: q is flat on the data, so the bias on logit q "
                  "has almost nothing to push on (the variational committor needs frames between the states)")
    if not checks["bias_stiffness"]:
        exact += (f"; the bias is too stiff for the time step (stiffness {max(stiffness):.2f} > "
                  f"convergence.max_bias_stiffness {conv['max_bias_stiffness']:g}): its ensemble is not the biased "
                  "Boltzmann one, so reweighted estimates are biased; lower engine.dt or widen bias.sigma")
    return Analysis(metrics, walker_steps_through(spec, k + 1),
                    f"{agreement.text(metrics)}, FES change {fmt(metrics['fes_change'])} kT{exact}, "
                    f"{n_transitions} transitions between states")


def rank_correlations(cv: np.ndarray, z: np.ndarray, names: tuple[str, ...]) -> dict[str, float | None]:
    """Spearman's rank correlation of the first CV component (n, d) with each state coordinate
    z (n, m), unweighted over the frames given (None where either is constant): whether the CV
    orders the frames as, e.g., the largest crystalline cluster does."""
    from scipy.stats import spearmanr

    out: dict[str, float | None] = {}
    for j, name in enumerate(names):
        if len(cv) < 3 or np.ptp(cv[:, 0]) == 0 or np.ptp(z[:, j]) == 0:
            out[name] = None
            continue
        out[name] = float(spearmanr(cv[:, 0], z[:, j]).statistic)
    return out


def _stiffness_of(c: Campaign, i: int, k: int, current: float | None) -> float | None:
    """Iteration i's bias stiffness: `current` for i = k, else from its metrics (computed where
    they predate the check); None for an unbiased iteration 0."""
    if i == k:
        return current
    if not biased(c.spec, i):
        return None
    recorded = cio.read_json(c.iter_dir(i) / "metrics.json").get("bias_stiffness")
    return recorded if recorded is not None else iteration_stiffness(c, i)


def region_free_energies(regions: dict[str, np.ndarray], weights: np.ndarray) -> dict[str, float | None]:
    """F of each region relative to the first, in kT: -ln(P(region) / P(first)) from frame weights;
    None where either region has no weight."""
    if not regions:
        return {}
    total = {name: float(weights[mask].sum()) for name, mask in regions.items()}
    ref = next(iter(total.values()))
    return {name: (float(-np.log(w / ref)) if w > 0 and ref > 0 else None) for name, w in total.items()}


def binned_mean(z: np.ndarray, values: np.ndarray, x_edges: np.ndarray, y_edges: np.ndarray) -> np.ndarray:
    """Mean of `values` over the frames in each (x, y) bin of state coordinates z, (ny, nx); NaN
    where a bin has no frame."""
    counts = np.histogram2d(z[:, 0], z[:, 1], [x_edges, y_edges])[0]
    sums = np.histogram2d(z[:, 0], z[:, 1], [x_edges, y_edges], weights=values)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / counts).T


def exact_committor_checks(c: Campaign, new_cv: torch.nn.Module, metrics: dict[str, Any], logit_q: bool) -> None:
    """The committor quality of a 1-D CV against the exact committor of a 2-D model potential, on
    its reference grid (R^2 and histogram width; with `logit_q` the RMSE of q itself)."""
    spec = c.spec
    ref = campaign_reference(c)
    if spec["learner"]["cv_dim"] == 1:
        q_cv = eval_cv(new_cv, make_featurizer(spec)(torch.as_tensor(ref.points)[:, None, :]).detach().numpy())
        quality = cv_committor_quality(q_cv[:, 0], ref.committor.ravel(), ref.free_energy.ravel())
        metrics["committor_r2"], metrics["committor_width"] = quality["r2"], quality["width"]
        if logit_q:
            metrics["committor_rmse"] = committor_rmse(sigmoid(q_cv[:, 0]), ref.committor.ravel(), ref.free_energy.ravel())


def _plots(c: Campaign, k: int, system: System, cv_model: torch.nn.Module, xe: np.ndarray, ye: np.ndarray,
           F_xy: np.ndarray, F_exact: np.ndarray, centers: np.ndarray, F_cv: np.ndarray | None,
           F_cv_prev: np.ndarray | None, logit_q: bool) -> None:
    from ..analysis.plots import COMMITTOR_LEVELS, plot_fes_cv, plot_fes_states, plot_fes_xy

    spec, d = c.spec, c.iter_dir(k)
    if system.has_exact_reference:
        ref = campaign_reference(c)
        xc, yc = 0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1])
        X, Y = np.meshgrid(xc, yc, indexing="xy")
        pts = torch.as_tensor(np.stack([X.ravel(), Y.ravel()], 1))
        cv_grid = eval_cv(cv_model, make_featurizer(spec)(pts[:, None, :]).detach().numpy())[:, 0].reshape(X.shape)
        q = ref.interpolate_committor(pts.numpy()).reshape(X.shape)
        learned = {}
        if logit_q:  # isolines of the learned q at the exact committor's levels
            cv_grid, learned = sigmoid(cv_grid), {"cv_levels": COMMITTOR_LEVELS, "cv_name": "learned committor"}
        plot_fes_xy(d / "fes_xy.png", xc, yc, F_xy, cv_grid, spec["system"]["states"], f"iteration {k}", F_exact, q, **learned)
    elif len(F_exact):  # a stored reference on the state coordinates
        plot_fes_states(d / "fes_states.png", xe, ye, F_xy, F_exact, spec["system"]["states"],
                        system.state_coordinate_names, f"iteration {k}")
    curves = {}
    if F_cv is not None:
        curves[f"data up to iteration {k}"] = F_cv
    if F_cv_prev is not None:
        curves[f"data up to iteration {k - 1}"] = F_cv_prev
    if curves:
        plot_fes_cv(d / "fes_cv.png", centers, curves, f"FES along CV_{k + 1} (iteration {k})")
