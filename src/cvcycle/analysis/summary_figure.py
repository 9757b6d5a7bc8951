"""One figure per campaign for a slide or a paper: the FES on the state plane with labelled CV
isolines, the FES along the CV, convergence against the thresholds, and the committor histogram
test (`python -m cvcycle figure JOB`, PNG and PDF)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .plots import PALETTE, _pyplot, _save_png_pdf

# convergence metrics as value / threshold, so that one axis holds them all (below 1 passes)
RATIOS = (("q_change", "q_change", "committor change", lambda v, t: v / t),
          ("fes_change", "fes_rmse", "FES change along the CV", lambda v, t: v / t),
          ("cv_r2", "cv_r2", "1 - CV agreement R²", lambda v, t: (1.0 - v) / (1.0 - t)))


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _cv_on_plane(r: Any, xe: np.ndarray, ye: np.ndarray) -> np.ndarray | None:
    """The newest CV on the plane's bin centres: evaluated on the grid where the features are the
    plane's own coordinates, else the mean CV of the last iteration's frames in each bin."""
    import torch

    from ..routes.evaluate import binned_mean

    cv = r.cv_model()
    names = list(r.spec["features"].get("names") or [])
    xc, yc = 0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1])
    with torch.no_grad():
        if r.spec["features"]["kind"] == "coordinates" and names == ["x", "y"]:
            X, Y = np.meshgrid(xc, yc)
            grid = torch.as_tensor(np.stack([X.ravel(), Y.ravel()], axis=1), dtype=torch.float32)
            return cv(grid)[:, 0].double().numpy().reshape(X.shape)
        s = r.samples()
        feats = s["features"].reshape(-1, s["features"].shape[-1])
        z = s["state_coordinates"].reshape(-1, 2)
        values = cv(torch.as_tensor(feats, dtype=torch.float32))[:, 0].double().numpy()
    return binned_mean(z, values, xe, ye)


def summary_figure(r: Any, stem: Path) -> list[Path]:
    """Write stem.png and stem.pdf for campaign results `r` (cvcycle.results.Results)."""
    from .. import io as cio
    from ..systems import make_system

    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 4, figsize=(17.0, 4.0), gridspec_kw={"width_ratios": [1.25, 1, 1, 1]})
    system = make_system(r.spec)
    units = "kT"
    k = r.history[-1]["iteration"] if r.history else None
    fes = cio.read_npz(r.path / f"iter-{k:03d}" / "fes.npz") if k is not None else None

    # (a) FES on the state plane with labelled CV isolines
    ax = axes[0]
    if fes is not None and len(fes["x_edges"]) and np.isfinite(fes["F_xy"]).any():
        xe, ye, F = fes["x_edges"], fes["y_edges"], fes["F_xy"]
        mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(F), cmap="cividis", vmax=np.nanpercentile(F, 98))
        fig.colorbar(mesh, ax=ax, label=f"F ({units})")
        cv = _cv_on_plane(r, xe, ye)
        if cv is not None and np.isfinite(cv).sum() > 4:
            xc, yc = 0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1])
            cs = ax.contour(xc, yc, np.ma.masked_invalid(cv), levels=7, colors="white", linewidths=0.9,
                            negative_linestyles="solid")
            ax.clabel(cs, fontsize=7, fmt="%.2g")
        names = system.state_coordinate_names
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        ax.set_aspect("equal")
        ax.set_title(f"(a) FES, iterations {r.history[-1]['fes_iterations']}; white: CV isolines", fontsize=9)
    else:
        _empty(ax, "(a) no reweighted FES on the state plane\n(no iteration crossed between the states yet)")

    # (b) FES along the CV
    ax = axes[1]
    if fes is not None and np.isfinite(fes["F_cv"]).any():
        ax.plot(fes["cv_centers"], fes["F_cv"], color=PALETTE[0])
        ax.set_xlabel("CV")
        ax.set_ylabel(f"F ({units})")
        ax.set_title(f"(b) FES along the CV, iteration {k}", fontsize=9)
    else:
        _empty(ax, "(b) no FES along the CV yet")

    # (c) convergence: each metric over its threshold
    ax = axes[2]
    conv = r.spec["convergence"]
    drawn = False
    for i, (key, threshold, label, ratio) in enumerate(RATIOS):
        pts = [(h["iteration"], ratio(h[key], conv[threshold])) for h in r.history
               if h.get(key) is not None and conv.get(threshold)]
        if pts:
            its, vals = zip(*pts)
            ax.plot(its, np.maximum(vals, 1e-3), "o-", color=PALETTE[i], ms=4, label=label)
            drawn = True
    if drawn:
        ax.axhline(1.0, color="black", ls="--", lw=1, label="threshold")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("iteration")
        ax.set_ylabel("value / threshold (below 1 passes)")
        ax.legend(fontsize=7)
        ax.set_title(f"(c) convergence: {r.status}" + (f" at iteration {k}" if k is not None else ""), fontsize=9)
    else:
        _empty(ax, "(c) no convergence metric yet")

    # (d) committor histogram test of the newest CV
    ax = axes[3]
    paths = [r.path / f"iter-{i:03d}" / "committor_test.json" for i in reversed(r.iterations)] + [r.path / "committor_test.json"]
    test_path = next((p for p in paths if p.is_file()), None)  # the gate's (per iteration) or the command's
    test = r.history[-1].get("committor_test") if r.history else None
    full = cio.read_json(test_path) if test_path is not None else None
    if full is not None and full.get("p_B"):
        p = np.array([v for v in full["p_B"] if v is not None], dtype=float)
        ax.hist(p, bins=np.linspace(0, 1, 21), color=PALETTE[1], alpha=0.8, label=f"{len(p)} points x {full['shots']} shots")
        ax.axvline(0.5, color="black", ls="--", lw=1)
        ax.set_xlabel("p_B at the CV's p_B = 1/2 isosurface")
        ax.set_ylabel("points")
        ax.legend(fontsize=7)
        ax.set_title(f"(d) committor test ({full['cv']}): mean {full['p_B_mean']:.3f}, "
                     f"width {full['p_B_std_intrinsic']:.3f}", fontsize=9)
    elif test is not None and "error" not in test:
        _empty(ax, f"(d) committor test: mean p_B {test['p_B_mean']:.3f}, width {test['p_B_std_intrinsic']:.3f}\n"
                   "(per-point values not stored)")
    else:
        _empty(ax, "(d) no committor histogram test\n(run `python -m cvcycle committor-test JOB`)")

    name = r.spec["campaign"]["name"]
    fig.suptitle(f"{name}, seed {r.spec['campaign']['seed']}: {len(r.history)} iterations, "
                 f"{r.total_steps:,} walker steps", fontsize=11)
    fig.tight_layout()
    _save_png_pdf(fig, stem)
    plt.close(fig)
    return [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
