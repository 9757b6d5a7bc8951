"""The committor histogram test of a campaign's learned 1-D CV, by shooting.

For a committor campaign the isosurface is known, q_pred = 1/2: the test points are frames with
q_pred in [0.45, 0.55] and step 1 is skipped; the same test at the other levels of
convergence.test_levels (frames with logit q_pred within the same logit distance of the level's,
a window widened up to 4 times where the data hold too few frames there) checks the committor
away from 1/2 too, comparing the mean p_B with the mean q_pred of the points shot from. For any other CV the isosurface is found by shooting:

1. Scan: the frames between the states are cut into equal-population bins along the CV; a few
   frames per bin are shot from, and the CV value s* where p_B crosses 1/2 is interpolated. The
   scan is repeated inside the two bins that bracket s* (up to three levels), since a sharp CV
   can jump from p_B ~ 0 to ~ 1 within one bin. s* is then the midpoint of a logistic p_B(s)
   fitted to every shot of the finest scan: the first bracketing pair of a noisy scan comes early
   (in a simulated scan, interpolating there put the isosurface at p_B 0.485 on average).
2. Test: distinct frames on the isosurface CV = s* (drawn from the nearest ones with probability
   proportional to their Boltzmann weights, without replacement) are shot from many times each.
   A perfect reaction coordinate gives p_B = 1/2 for every one of them, i.e. a histogram as
   narrow as the binomial noise of the shots; a poor one gives a broad histogram. The width is
   reported as measured (std of p_B) and with the binomial noise of each point's shots
   deconvolved (the intrinsic width: the spread of the points' true p_B).
For analytic potentials the exact committor at the same points is reported next to it. Shots
are checked for commitment every engine.report_stride steps (the campaign's own frame spacing).

With `feature` the test is run on one of the campaign's input features or state coordinates
instead (e.g. mu2 of LJ7, phi of alanine dipeptide), on the same frames and shots, so a learned CV
can be compared with a classic one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import io as cio
from .quality import sigmoid
from .reference import reference_from_spec
from .shooting import committed_fraction, shoot
from ..campaign import Campaign
from ..engines import make_engine
from ..errors import WorkspaceError
from ..features import make_featurizer
from ..learn.reweight import combine_iterations
from ..models.export import cv_module, load_model
from ..routes import route_for
from ..routes.data import flat, flat_positions, load_samples
from ..systems import make_system
from ..systems.model2d import plane


def committor_histogram(c: Campaign, shots: int = 100, points: int = 50, scan_bins: int = 12, scan_points: int = 8,
                        scan_shots: int = 20, max_steps: int = 20000, seed: int = 0, feature: str | None = None,
                        log: Callable[[str], None] = print, iteration: int | None = None,
                        out: Path | None = None) -> dict[str, Any]:
    """Run the test on the CV trained in `iteration` (default: the latest analysed one), on the
    frames of iterations 0..iteration, or on its input `feature` (by name); writes
    committor_test.json and .png (committor_test-FEATURE.* for a feature) in `out` (default the job
    dir), and the transition-state ensemble it drew the test points from (frames on the
    isosurface, with their weights) as transition_states.npz (transition_states-FEATURE.npz)."""
    spec = c.spec
    out = c.path if out is None else Path(out)
    if iteration is None:
        history = c.progress()["history"]
        if not history:
            raise WorkspaceError(f"campaign {c.id}: no iteration has been analysed yet, so there is no CV to test")
        iteration = max(h["iteration"] for h in history)
    k = iteration
    system = make_system(spec)
    if feature is None:
        if spec["learner"]["cv_dim"] != 1:
            raise WorkspaceError(f"campaign {c.id}: the committor histogram test needs a 1-D CV (learner.cv_dim = 1); "
                                 "test one of its features instead (--feature NAME)")
        name, stem = f"CV_{k + 1}", ""
        cv = cv_module(load_model(c.iter_dir(k) / "model.npz")).eval()

        def values(x: np.ndarray, f: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return cv(torch.as_tensor(f, dtype=torch.float32)).double().numpy()[:, 0]
    else:
        names, coords = list(make_featurizer(spec).names), list(system.state_coordinate_names)
        if feature not in names + coords:
            raise WorkspaceError(f"campaign {c.id}: '{feature}' is neither one of its features ({', '.join(names)}) "
                                 f"nor a state coordinate ({', '.join(coords)})")
        name, stem = feature, "-" + "".join(ch if ch.isalnum() else "_" for ch in feature)

        def values(x: np.ndarray, f: np.ndarray) -> np.ndarray:
            if feature in names:
                return f[:, names.index(feature)].astype(np.float64)
            return system.state_coordinates(x)[:, coords.index(feature)].astype(np.float64)
    pos, feats, weights = _candidate_frames(c, k)
    outside = system.classify(pos) < 0
    pos, feats, weights = pos[outside], feats[outside], weights[outside]
    if len(pos) < scan_bins * scan_points:
        raise WorkspaceError(f"campaign {c.id}: only {len(pos)} frames between the states, too few to test the CV")
    s = values(pos, feats)
    rng = np.random.default_rng(cio.derive_seed(c.seed, seed, 5_000_011))
    def p_b_from(starts: np.ndarray, n_shots: int, stage: int) -> tuple[np.ndarray, np.ndarray]:
        """p_B of every start and the number of its shots that committed."""
        t0 = time.perf_counter()
        engine = make_engine(spec, system, walkers=len(starts) * n_shots)
        outcomes, steps = shoot(engine, starts, n_shots, system.classify_ab, cio.derive_seed(c.seed, seed, stage),
                                max_steps, stride=spec["engine"]["report_stride"], compact=True)
        log(f"[committor test] {outcomes.size} trajectories from {len(starts)} points: {steps:,} steps, "
            f"{np.mean(outcomes < 0):.1%} undecided after {max_steps} steps, {time.perf_counter() - t0:.1f} s")
        return committed_fraction(outcomes), (outcomes >= 0).sum(axis=1)

    def scan(frames: np.ndarray, level: int) -> tuple[np.ndarray, list[np.ndarray], tuple[np.ndarray, ...]]:
        bins = np.array_split(frames[np.argsort(s[frames])], scan_bins)
        picks = np.concatenate([rng.choice(b, scan_points, replace=False) for b in bins])
        p_points, n_points = p_b_from(pos[picks], scan_shots, 1 + level)
        p_bins = np.nanmean(p_points.reshape(scan_bins, scan_points), axis=1)
        log(f"[committor test] scan {level + 1}: {scan_bins} CV bins in [{s[frames].min():.3f}, {s[frames].max():.3f}] "
            f"x {scan_points} points x {scan_shots} shots: p_B " + " ".join(f"{p:.2f}" for p in p_bins))
        return p_bins, bins, (s[picks], np.nan_to_num(p_points) * n_points, n_points)

    # 1. scan along the CV for the isosurface p_B = 1/2, refined inside the two bracketing bins
    frames, scans, s_star = np.arange(len(s)), [], None
    shell = None
    committor = route_for(spec).logit_q and feature is None
    if committor:  # test points: logit q_pred within logit(0.45) .. logit(0.55)
        s_star, shell = 0.0, _logit_shell(s, 0.5)
        if len(shell) < points:
            raise WorkspaceError(f"campaign {c.id}: only {len(shell)} frames with predicted q in [0.45, 0.55], "
                                 f"fewer than the {points} test points asked for (--points)")
    finest = None  # the shots of the finest scan that bracketed the crossing
    for level in range(3 if shell is None else 0):
        if level and len(frames) < scan_bins * scan_points:
            break
        p_bins, bins, shots_at = scan(frames, level)
        s_bins = np.array([np.median(s[b]) for b in bins])
        scans.append({"cv": s_bins.tolist(), "p_B": p_bins.tolist()})
        i = _crossing_bin(p_bins)
        if i is None and s_star is None:
            raise WorkspaceError(f"campaign {c.id}: p_B never crosses 1/2 along {name} (scan: "
                                 f"{np.round(p_bins, 2).tolist()}); {name} does not separate the states where the data are")
        if i is None:  # the refined scan is too noisy to place the crossing: keep the coarser estimate
            break
        s0, s1, p0, p1 = s_bins[i - 1], s_bins[i], p_bins[i - 1], p_bins[i]
        s_star = float(s0 + (0.5 - p0) * (s1 - s0) / (p1 - p0))
        frames, finest = np.concatenate([bins[i - 1], bins[i]]), (scans[-1], shots_at)
    # the first bracketing pair of a noisy scan lies early on average, and so did s*: the midpoint of a
    # logistic fitted to every shot of the finest scan places it without that bias (where the fit has one)
    fitted = None if finest is None else _logistic_midpoint(*finest[1])
    if fitted is not None:
        finest[0]["logistic_midpoint"] = s_star = fitted
    # 2. the histogram on the isosurface
    if shell is None:
        shell = np.argsort(np.abs(s - s_star))[: 5 * points]
    def draw(shell: np.ndarray, where: str) -> np.ndarray:
        """`points` distinct frames of the shell, drawn with probability proportional to their weights."""
        if np.count_nonzero(weights[shell]) < points:
            raise WorkspaceError(f"campaign {c.id}: only {np.count_nonzero(weights[shell])} frames with a nonzero "
                                 f"weight {where}, fewer than the {points} distinct test points asked for (--points)")
        return rng.choice(shell, points, replace=False, p=weights[shell] / weights[shell].sum())

    chosen = draw(shell, "near the isosurface")
    p_test, committed = p_b_from(pos[chosen], shots, 0)
    widths = _widths(p_test, committed, cio.derive_seed(c.seed, seed, 5_000_023))
    result: dict[str, Any] = {"iteration": k, "cv": name, "cv_isosurface": s_star, "shots": shots, "points": points,
                              "scans": scans, "p_B": p_test.tolist(), "committed": committed.tolist(),
                              "p_B_mean": float(np.nanmean(p_test)), "binomial_std": float(0.5 / np.sqrt(shots)),
                              **widths}
    ref = reference_from_spec(spec, bins=spec["analysis"]["grid_bins"] * 2 + 1) if system.has_exact_reference else None
    if ref is not None:
        q = ref.interpolate_committor(plane(pos[chosen]))
        result["exact_q"] = q.tolist()
        result["exact_q_mean"], result["exact_q_std"] = float(q.mean()), float(q.std())
    if committor:  # the same test at the other predicted-q levels
        result["levels"] = []
        for i, level in enumerate(spec["convergence"]["test_levels"]):
            window = _level_window(s, weights, level, points)
            try:
                at = draw(_logit_shell(s, level, window), f"with predicted q near {level:g}")
            except WorkspaceError as exc:
                result["levels"].append({"q": level, "error": str(exc)})
                log(f"[committor test] at predicted q = {level:g}: {exc}")
                continue
            p_level = p_b_from(pos[at], shots, 10 + i)[0]
            row = {"q": level, "q_pred_mean": float(np.mean(sigmoid(s[at]))), "logit_window": window,
                   "p_B_mean": float(np.nanmean(p_level)), "p_B_std": float(np.nanstd(p_level))}
            if ref is not None:
                row["exact_q_mean"] = float(ref.interpolate_committor(plane(pos[at])).mean())
            result["levels"].append(row)
            exact_level = f" (exact committor {row['exact_q_mean']:.3f})" if "exact_q_mean" in row else ""
            log(f"[committor test] {points} points at predicted q = {level:g} (logit window +-{window:.2f}, mean "
                f"predicted q {row['q_pred_mean']:.3f}), {shots} shots each: p_B {row['p_B_mean']:.3f} +- "
                f"{row['p_B_std']:.3f}{exact_level}")
    cio.write_json(out / f"committor_test{stem}.json", result)
    # the transition-state ensemble: the candidate frames on the isosurface, with their weights
    cio.write_npz(out / f"transition_states{stem}.npz", positions=pos[shell], features=feats[shell],
                  weights=weights[shell] / weights[shell].sum(), cv=s[shell])
    where = "predicted q in [0.45, 0.55]" if committor else f"{name} isosurface s* = {s_star:.3f}"
    if spec["analysis"]["plots"]:
        from .plots import plot_committor_histogram

        plot_committor_histogram(out / f"committor_test{stem}.png", p_test, result.get("exact_q"), shots,
                                 where)
    exact = f"; exact committor at the same points {result['exact_q_mean']:.3f} +- {result['exact_q_std']:.3f}" \
        if "exact_q" in result else ""
    lo, hi = result["p_B_std_interval"]
    ilo, ihi = result["p_B_std_intrinsic_interval"]
    log(f"[committor test] {points} points at {where}, {shots} shots each: p_B {result['p_B_mean']:.3f} "
        f"+- {result['p_B_std']:.3f} (95 % interval of the width [{lo:.3f}, {hi:.3f}]; binomial noise alone: "
        f"{result['binomial_std']:.3f}; without it {result['p_B_std_intrinsic']:.3f} [{ilo:.3f}, {ihi:.3f}]){exact}")
    return result


def convergence_gate(c: Campaign, k: int, metrics: dict[str, Any], log: Callable[[str], None] = print) -> None:
    """The committor histogram test as a convergence check (convergence.committor_test): once every
    other check of iteration k passes, test its 1-D CV (files in iter-k/, seed 1 + k) and require
    |mean p_B - 1/2| <= convergence.test_mean and the intrinsic width <= convergence.test_width,
    and for a committor route |mean p_B - level| <= test_mean at every convergence.test_levels
    level and a calibration RMS (`calibration_rms`) <= test_calibration. A CV that stopped changing
    is not thereby a good one. Updates `metrics` (checks, converged, the test's summary under
    "committor_test") and rewrites the iteration's metrics.json."""
    conv = c.spec["convergence"]
    metrics["committor_test"] = None
    if not (conv["committor_test"] and metrics["converged"] and c.spec["learner"]["cv_dim"] == 1):
        return
    try:
        r = committor_histogram(c, seed=1 + k, iteration=k, out=c.iter_dir(k), log=log)
    except WorkspaceError as exc:  # no isosurface, too few frames: the CV is not shown to be good
        metrics["committor_test"] = {"error": str(exc)}
        passed = False
    else:
        metrics["committor_test"] = {key: r[key] for key in ("p_B_mean", "p_B_std", "p_B_std_intrinsic",
                                                             "p_B_std_intrinsic_interval", "points", "shots")}
        levels = r.get("levels", [])
        if levels:
            metrics["committor_test"]["levels"] = levels
        offsets = [r["p_B_mean"] - 0.5] + [row["p_B_mean"] - row.get("q_pred_mean", row["q"])
                                            for row in levels if "error" not in row]
        passed = (all(abs(o) <= conv["test_mean"] for o in offsets) and r["p_B_std_intrinsic"] <= conv["test_width"]
                  and not any("error" in row for row in levels))
        if "levels" in r:  # a committor route: is q biased at its levels as a whole?
            rms = metrics["committor_test"]["calibration_rms"] = float(np.sqrt(np.mean(np.square(offsets))))
            passed = passed and rms <= conv["test_calibration"]
    metrics["checks"]["committor_test"] = passed
    metrics["converged"] = all(metrics["checks"].values())
    cio.write_json(c.iter_dir(k) / "metrics.json", metrics)


def levels_text(test: dict[str, Any]) -> str:
    """The mean p_B of a committor test at its other levels and its calibration RMS, e.g.
    ' (q 0.2: 0.18, q 0.8: 0.79; calibration RMS 0.012)'; '' when it has neither."""
    rows = test.get("levels") or []
    shown = [f"q {row['q']:g}: " + ("too few frames" if "error" in row else f"{row['p_B_mean']:.2f}"
                                     + (f" (predicted {row['q_pred_mean']:.2f})" if "q_pred_mean" in row else ""))
             for row in rows]
    rms = test.get("calibration_rms")
    text = ", ".join(shown) + ("" if rms is None else f"{'; ' if shown else ''}calibration RMS {rms:.3f}")
    return f" ({text})" if text else ""


def _candidate_frames(c: Campaign, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions, features and weights of the frames to test from: the Boltzmann-reweighted frames
    of a biased-simulation campaign, or for a path-sampling campaign the frames of the paths of its
    TPS Markov chains (each path weighted by the number of moves it was the current path, rejected
    moves included) and every shooting point (weight 1, as one path frame held for one move)."""
    if route_for(c.spec).name == "shooting":
        from ..paths.records import chain_paths
        from ..routes.shooting import start_path

        frames, weights = [], []
        for i in range(k + 1):
            paths, held = chain_paths(c.iter_dir(i) / "tps", start_path(c, i))
            frames += [p for p, h in zip(paths, held) if h]
            weights += [np.full(len(p), float(h)) for p, h in zip(paths, held) if h]
            frames.append(cio.read_npz(c.iter_dir(i) / "shots.npz")["points"])
            weights.append(np.ones(len(frames[-1])))
        pos = np.concatenate(frames)
        if pos.ndim == 2:  # the points (n, 2) of a 2-D model potential: one particle
            pos = pos[:, None, :]
        with torch.no_grad():
            feats = make_featurizer(c.spec)(torch.as_tensor(pos)).numpy()
        w = np.concatenate(weights)
        return pos, feats, w / w.sum()
    data = [load_samples(c, i) for i in range(k + 1)]
    pos, rows = flat_positions(c, list(range(k + 1)), data)  # the frames whose positions are stored
    return (pos, np.concatenate([flat(d, "features") for d in data])[rows],
            combine_iterations([flat(d, "log_weight") for d in data])[rows])


def _widths(p: np.ndarray, committed: np.ndarray, seed: int, resamples: int = 2000) -> dict[str, Any]:
    """The histogram's width over the points that committed: `p_B_std`, the std of p_B, and
    `p_B_std_intrinsic`, the std of the points' true p_B with the binomial noise of their shots
    deconvolved: var(p_B) - mean(p_B (1 - p_B) / (n - 1)) (unbiased for each point's binomial
    variance p (1 - p) / n), clipped at 0, over the points with n >= 2 committed shots; each with a
    95 % bootstrap interval over the points."""
    p, n = np.asarray(p, dtype=np.float64), np.asarray(committed)
    ok = np.isfinite(p) & (n >= 2)
    p, noise = p[ok], p[ok] * (1.0 - p[ok]) / np.maximum(n[ok] - 1, 1)
    boot = np.random.default_rng(seed).integers(0, len(p), (resamples, len(p)))
    raw = p[boot].std(axis=1)
    intrinsic = np.sqrt(np.clip(raw**2 - noise[boot].mean(axis=1), 0.0, None))
    interval = lambda v: [float(x) for x in np.percentile(v, [2.5, 97.5])]  # noqa: E731
    return {"p_B_std": float(p.std()), "p_B_std_interval": interval(raw),
            "p_B_std_intrinsic": float(np.sqrt(max(p.var() - noise.mean(), 0.0))), "p_B_std_intrinsic_interval": interval(intrinsic)}


SHELL = float(np.log(0.55 / 0.45))  # the logit half-width of q_pred in [0.45, 0.55]


def _logit_shell(z: np.ndarray, level: float, window: float = SHELL) -> np.ndarray:
    """Indices of the frames whose logit q_pred `z` is within `window` of logit(level): q_pred in
    [0.45, 0.55] for level 1/2 and the default window."""
    return np.flatnonzero(np.abs(z - np.log(level / (1.0 - level))) <= window)


def _level_window(z: np.ndarray, weights: np.ndarray, level: float, points: int, widest: int = 4) -> float:
    """The logit window around a test level: SHELL, doubled (up to `widest` times SHELL) while it
    holds fewer than `points` frames of nonzero weight (path-sampling data are sparse away from 1/2).
    The test then compares p_B with the mean q_pred of the points, not the level itself."""
    window = SHELL
    while window < widest * SHELL and np.count_nonzero(weights[_logit_shell(z, level, window)]) < points:
        window = min(2 * window, widest * SHELL)
    return window


def _logistic_midpoint(s: np.ndarray, k: np.ndarray, n: np.ndarray) -> float | None:
    """Where p_B(s) = sigmoid(a + b s), fitted by maximum likelihood to k of n committed shots ending
    in B at each point s, crosses 1/2; None where the fit does not cross inside the points' range."""
    keep = n > 0
    s, k, n = s[keep], k[keep], n[keep]
    if len(s) < 3 or not np.ptp(s) > 0:
        return None
    x = (s - s.mean()) / s.std()
    theta = np.zeros(2)
    for _ in range(100):  # Newton's method on the binomial log-likelihood
        p = sigmoid(theta[0] + theta[1] * x)
        w = n * p * (1 - p)
        hessian = np.array([[w.sum(), (w * x).sum()], [(w * x).sum(), (w * x * x).sum()]])
        if not np.linalg.det(hessian) > 1e-12:
            return None  # every shot one way, or perfectly separated shots: no finite fit
        step = np.linalg.solve(hessian, [(k - n * p).sum(), ((k - n * p) * x).sum()])
        theta = theta + step
        if np.abs(step).max() < 1e-9:
            break
    if not (np.isfinite(theta).all() and theta[1] != 0):
        return None
    mid = float(s.mean() - theta[0] / theta[1] * s.std())
    return mid if s.min() <= mid <= s.max() else None


def _crossing_bin(p_bins: np.ndarray) -> int | None:
    """Index i of the first bin on the other side of 1/2 from bin 0 (bins i-1, i bracket the
    crossing), or None if p_B stays on one side."""
    above = np.asarray(p_bins) >= 0.5
    ok = np.isfinite(p_bins)
    if not ok.all() or above.all() or not above.any():
        return None
    return int(np.argmax(above != above[0]))
