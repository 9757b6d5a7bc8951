"""PNG plots of a campaign: FES on (x, y) with CV isolines, FES along the CV, convergence, and
the committor histogram test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    from ..io import write_bytes
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    write_bytes(path, buf.getvalue())


COMMITTOR_LEVELS = [0.1, 0.3, 0.5, 0.7, 0.9]


def _draw_states(ax: Any, states: dict[str, dict]) -> None:
    """The spec's (circular) states as labelled red circles."""
    from matplotlib.patches import Circle

    for name, s in states.items():
        ax.add_patch(Circle(s["center"], s["radius"], fill=False, color="red", lw=1.2))
        ax.annotate(name, s["center"], color="red", ha="center", va="center", fontsize=9)


def plot_fes_xy(path: Path, xs: np.ndarray, ys: np.ndarray, F: np.ndarray, cv_grid: np.ndarray,
                states: dict[str, dict], title: str, exact_F: np.ndarray | None = None,
                committor: np.ndarray | None = None, vmax: float = 12.0, cv_levels: int | list[float] = 15,
                cv_name: str = "CV") -> None:
    """Estimated FES with CV isolines (left); exact FES with exact committor and CV isolines (right)."""
    plt = _pyplot()
    panels = 2 if exact_F is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.4), squeeze=False)
    levels = np.linspace(0, vmax, 13)
    for ax, data, label in zip(axes[0], (F, exact_F), ("estimated F (kT)", "exact F = V (kT)")):
        im = ax.contourf(xs, ys, np.clip(data, 0, vmax), levels=levels, cmap="viridis", extend="max")
        fig.colorbar(im, ax=ax, label=label)
        lines = ax.contour(xs, ys, cv_grid, levels=cv_levels, colors="white", linewidths=0.7)
        if not isinstance(cv_levels, int):
            ax.clabel(lines, fontsize=7)
        _draw_states(ax, states)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    axes[0][0].set_title(f"{title}: FES and {cv_name} isolines")
    if committor is not None and panels == 2:
        cs = axes[0][1].contour(xs, ys, committor, levels=COMMITTOR_LEVELS, colors="orange",
                                linestyles="dashed", linewidths=1.0)
        axes[0][1].clabel(cs, fontsize=7)
        axes[0][1].set_title(f"exact: committor (orange) vs {cv_name} (white)")
    _save(fig, path)
    plt.close(fig)


def plot_fes_states(path: Path, x_edges: np.ndarray, y_edges: np.ndarray, F: np.ndarray, reference: np.ndarray,
                    states: dict[str, dict], axes_names: tuple[str, str], title: str, vmax: float = 12.0) -> None:
    """Reweighted FES on the state coordinates (left) next to the system's reference (right),
    both in kT on the same bins, with the states; a panel without data says so."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10.4, 4.4), squeeze=False)
    xc, yc = 0.5 * (x_edges[1:] + x_edges[:-1]), 0.5 * (y_edges[1:] + y_edges[:-1])
    levels = np.linspace(0, vmax, 13)
    for ax, data, label in zip(axes[0], (F, reference), (f"{title}: reweighted F (kT)", "reference F (kT)")):
        if np.isfinite(data).any():
            im = ax.contourf(xc, yc, np.clip(data, 0, vmax), levels=levels, cmap="viridis", extend="max")
            fig.colorbar(im, ax=ax, label="F (kT)")
        else:
            ax.text(0.5, 0.5, "no frames in the FES iterations yet", ha="center", va="center", transform=ax.transAxes)
        _draw_states(ax, states)
        ax.set_xlim(x_edges[0], x_edges[-1])
        ax.set_ylim(y_edges[0], y_edges[-1])
        ax.set_xlabel(axes_names[0])
        ax.set_ylabel(axes_names[1])
        ax.set_title(label)
    _save(fig, path)
    plt.close(fig)


def plot_fes_plane(path: Path, x_edges: np.ndarray, y_edges: np.ndarray, F: np.ndarray, cv_mean: np.ndarray,
                   states: dict[str, dict], axes_names: tuple[str, str], title: str, cv_name: str,
                   vmax: float = 12.0) -> None:
    """Reweighted FES on the state coordinates (kT) with isolines of the CV's mean per bin and the
    states, equal aspect (angles in degrees for a peptide's Ramachandran plane)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    xc, yc = 0.5 * (x_edges[1:] + x_edges[:-1]), 0.5 * (y_edges[1:] + y_edges[:-1])
    if np.isfinite(F).any():
        im = ax.contourf(xc, yc, np.clip(F, 0, vmax), levels=np.linspace(0, vmax, 13), cmap="viridis", extend="max")
        fig.colorbar(im, ax=ax, label="F (kT)")
        if np.isfinite(cv_mean).sum() > 3:
            lines = ax.contour(xc, yc, np.ma.masked_invalid(cv_mean), levels=8, colors="white", linewidths=0.7)
            ax.clabel(lines, fontsize=7)
    else:
        ax.text(0.5, 0.5, "no frames in the FES iterations yet", ha="center", va="center", transform=ax.transAxes)
    _draw_states(ax, states)
    ax.set_xlim(x_edges[0], x_edges[-1])
    ax.set_ylim(y_edges[0], y_edges[-1])
    ax.set_aspect("equal")
    unit = " (degrees)" if axes_names == ("phi", "psi") else ""
    ax.set_xlabel(axes_names[0] + unit)
    ax.set_ylabel(axes_names[1] + unit)
    ax.set_title(f"{title}\nreweighted F, white: mean {cv_name} per bin", fontsize=9)
    _save(fig, path)
    plt.close(fig)


def plot_fes_cv(path: Path, centers: np.ndarray, curves: dict[str, np.ndarray], title: str) -> None:
    """Free energy along a 1-D CV, one curve per label."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, F in curves.items():
        ax.plot(centers, F, label=label)
    ax.set_xlabel("CV")
    ax.set_ylabel("F (kT)")
    ax.set_title(title)
    ax.legend()
    _save(fig, path)
    plt.close(fig)


def plot_convergence(path: Path, history: list[dict[str, Any]], thresholds: dict[str, float]) -> None:
    """Convergence metrics per iteration, with the spec's thresholds."""
    plt = _pyplot()
    panels = [("cv_r2", "CV agreement R$^2$ (k vs k-1)", thresholds.get("cv_r2")),
              ("q_change", "committor change (RMS, k vs k-1)", thresholds.get("q_change")),
              ("fes_change", "FES change along CV (kT)", thresholds.get("fes_rmse")),
              ("fes_rmse_exact", "FES RMSE vs exact (kT)", None),
              ("acceptance", "TPS acceptance", None),
              ("committor_r2", "committor R$^2$ of CV", None),
              ("committor_rmse", "committor RMSE vs exact", None)]
    keys = [p for p in panels if any(h.get(p[0]) is not None for h in history)] or panels[:1]
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(keys), figsize=(4.0 * len(keys), 3.3), squeeze=False)
    axes = axes[0]
    its = [h["iteration"] for h in history]
    for ax, (key, label, thr) in zip(axes, keys):
        vals = [h.get(key) for h in history]
        vals = [np.nan if v is None or not np.isfinite(v) else v for v in vals]
        ax.plot(its, vals, "o-")
        if thr is not None:
            ax.axhline(thr, color="gray", ls="--", lw=1)
        ax.set_xlabel("iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(label, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_committor_histogram(path: Path, p_b: np.ndarray, exact_q: list[float] | None, shots: int, title: str) -> None:
    """Histogram of shooting p_B on a CV isosurface, with the exact committor at the same points
    and the spread a perfect reaction coordinate would show (binomial noise of `shots` shots)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    bins = np.linspace(0.0, 1.0, 21)
    ax.hist(p_b[np.isfinite(p_b)], bins=bins, alpha=0.7, label=f"shooting p_B ({shots} shots per point)")
    if exact_q is not None:
        ax.hist(exact_q, bins=bins, histtype="step", linewidth=2, label="exact committor q")
    rng = np.random.default_rng(0)
    ideal = rng.binomial(shots, 0.5, size=20000) / shots
    weights = np.full(len(ideal), len(p_b) / len(ideal))
    ax.hist(ideal, bins=bins, weights=weights, histtype="step", linestyle="--", color="k",
            label="perfect reaction coordinate")
    ax.set_xlabel("p_B")
    ax.set_ylabel("points")
    ax.set_title(title)
    ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)


def plot_shooting(path: Path, xs: np.ndarray, ys: np.ndarray, F: np.ndarray, q_pred: np.ndarray, q_exact: np.ndarray,
                  points: np.ndarray, p_b: np.ndarray, states: dict[str, dict], title: str, vmax: float = 12.0) -> None:
    """Exact FES with learned (white) and exact (orange) committor isolines, and the shooting points
    coloured by the fraction of their trajectories that reached B."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.8))
    im = ax.contourf(xs, ys, np.clip(F, 0, vmax), levels=np.linspace(0, vmax, 13), cmap="viridis", extend="max")
    fig.colorbar(im, ax=ax, label="exact F (kT)")
    exact = ax.contour(xs, ys, q_exact, levels=COMMITTOR_LEVELS, colors="orange", linestyles="dashed", linewidths=1.0)
    learned = ax.contour(xs, ys, q_pred, levels=COMMITTOR_LEVELS, colors="white", linewidths=1.0)
    ax.clabel(learned, fontsize=7)
    ax.clabel(exact, fontsize=7)
    sc = ax.scatter(points[:, 0], points[:, 1], c=p_b, cmap="coolwarm", vmin=0, vmax=1, s=8, edgecolors="black",
                    linewidths=0.2)
    fig.colorbar(sc, ax=ax, label="shots reaching B")
    _draw_states(ax, states)
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(ys[0], ys[-1])
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"{title}\nlearned q (white) vs exact q (orange dashed)", fontsize=10)
    _save(fig, path)
    plt.close(fig)


def plot_shooting_points(path: Path, z: np.ndarray, p_b: np.ndarray, q_pred: np.ndarray, states: dict[str, dict],
                         axes_names: tuple[str, str], title: str) -> None:
    """Shooting points of a system without an exact committor on its state coordinates z (n, 2):
    coloured by the fraction of their shots that reached B (left) and by the learned q (right),
    equal aspect, with the states."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.6), squeeze=False, layout="constrained")
    unit = " (degrees)" if axes_names == ("phi", "psi") else ""
    for ax, c, label in zip(axes[0], (p_b, q_pred), ("shots reaching B", "learned q")):
        sc = ax.scatter(z[:, 0], z[:, 1], c=c, cmap="coolwarm", vmin=0, vmax=1, s=8, edgecolors="black", linewidths=0.2)
        fig.colorbar(sc, ax=ax, label=label)
        _draw_states(ax, states)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel(axes_names[0] + unit)
        ax.set_ylabel(axes_names[1] + unit)
        ax.set_title(f"{title}\ncoloured by {label}", fontsize=9)
    _save(fig, path)
    plt.close(fig)


# Okabe & Ito's colour-blind-safe palette
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442", "#000000")


def _save_png_pdf(fig: Any, stem: Path) -> None:
    """stem.png (for screens) and stem.pdf (for papers)."""
    from ..io import write_bytes
    import io

    for form in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=form, dpi=150, bbox_inches="tight")
        write_bytes(stem.with_suffix(f".{form}"), buf.getvalue())


def _legend_above(fig: Any, ax: Any, title: str) -> None:
    """The legend of `ax` for the whole figure (3 entries a row) and the caption above it."""
    handles, labels = ax.get_legend_handles_labels()
    rows = (len(labels) + 2) // 3
    if labels:
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 3), fontsize=8, frameon=False,
                   bbox_to_anchor=(0.5, 1.0 + 0.04 * rows))
    fig.suptitle(title, fontsize=10, y=1.04 + 0.04 * rows)


def _number(text: str) -> float | None:
    import json

    v = json.loads(text)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def plot_metric_vs_value(stem: Path, key: str, groups: list[Any], metrics: list[Any]) -> None:
    """Each metric against the swept value of `key`: one line per setting of the other swept keys,
    mean and 95 % t-interval over seeds, each seed a small dot (groups: compare.Group, metrics:
    compare.Metric)."""
    from .intervals import clipped, t_interval

    plt = _pyplot()
    series: dict[str, list[Any]] = {}
    for g in groups:
        rest = " ".join(f"{k.split('.', 1)[1]}={v}" for k, v in g.values.items() if k != key)
        series.setdefault(f"{g.name} {rest}".strip() if len({x.name for x in groups}) > 1 else rest or g.name, []).append(g)
    values = sorted({g.values[key] for g in groups}, key=lambda t: (_number(t) is None, _number(t) or 0.0, t))
    numeric = all(_number(v) is not None for v in values)
    xpos = {v: _number(v) if numeric else i for i, v in enumerate(values)}
    span = (max(xpos.values()) - min(xpos.values())) or 1.0
    dodge = {label: (i - (len(series) - 1) / 2) * 0.012 * span for i, label in enumerate(series)}  # series side by side
    n = len(metrics)
    cols = min(n, 3)
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(4.2 * cols, 3.2 * ((n + cols - 1) // cols)),
                             squeeze=False)
    for ax, m in zip(axes.ravel(), metrics):
        for i, (label, gs) in enumerate(series.items()):
            color = PALETTE[i % len(PALETTE)]
            gs = sorted(gs, key=lambda g: xpos[g.values[key]])
            pts = []
            for g in gs:
                x = xpos[g.values[key]] + dodge[label]
                ys = [y for y in (m.get(r) for r in g.finished) if y is not None]
                ax.plot([x] * len(ys), ys, ".", color=color, alpha=0.35, ms=4)
                if (r := t_interval(ys)) is not None:
                    low, high = (r[0], r[0]) if r[2] == 1 else clipped(r[0], r[1], m.support)
                    pts.append((x, r[0], r[0] - low, high - r[0]))
            if pts:
                x, y, below, above = zip(*pts)
                ax.errorbar(x, y, yerr=[below, above], color=color, marker="o", capsize=3, label=label or None)
        ax.set_title(m.header, fontsize=10)
        ax.set_xlabel(key)
        if not numeric:
            ax.set_xticks(range(len(values)), values, rotation=20)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    _legend_above(fig, axes.ravel()[0], f"Final metrics against {key}: mean and 95 % t-interval over seeds, "
                  "dots = single seeds")
    fig.tight_layout()
    _save_png_pdf(fig, stem)
    plt.close(fig)


CONVERGENCE_PANELS = (("cv_r2", "CV agreement R$^2$ (k vs k-1)", "cv_r2"),
                      ("q_change", "committor change (RMS, k vs k-1)", "q_change"),
                      ("fes_change", "FES change along CV (kT)", "fes_rmse"),
                      ("fes_rmse_exact", "FES RMSE vs exact (kT)", None),
                      ("committor_r2", "committor R$^2$ of the CV", None),
                      ("committor_rmse", "q RMSE vs exact", None))


def plot_convergence_overlay(stem: Path, groups: list[Any]) -> None:
    """The convergence metrics per iteration of every campaign, one colour per group, with each
    group's convergence threshold dashed (groups: compare.Group)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    rows = [r for g in groups for r in g.rows]
    panels = [p for p in CONVERGENCE_PANELS if any(h.get(p[0]) is not None for r in rows for h in r["history"])]
    cols = min(max(len(panels), 1), 3)
    nrows = (max(len(panels), 1) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False)
    if not panels:
        axes[0, 0].text(0.5, 0.5, "no iteration analysed yet", ha="center", va="center", transform=axes[0, 0].transAxes)
        axes[0, 0].set_axis_off()
    for ax in axes.ravel()[max(len(panels), 1):]:
        ax.set_visible(False)
    for ax, (key, title, threshold) in zip(axes.ravel(), panels):
        for i, g in enumerate(groups):
            color = PALETTE[i % len(PALETTE)]
            for j, r in enumerate(g.rows):
                its = [h["iteration"] for h in r["history"]]
                ys = [np.nan if h.get(key) is None else h[key] for h in r["history"]]
                ax.plot(its, ys, "-o", color=color, ms=3, lw=1, alpha=0.8, label=g.label if j == 0 else None)
            if threshold and (value := g.rows[0]["spec"]["convergence"].get(threshold)) is not None:
                ax.axhline(value, color=color, ls="--", lw=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend_above(fig, axes[0, 0], "Convergence per iteration: one line per campaign, one colour per group; "
                  "dashed: the threshold")
    fig.tight_layout()
    _save_png_pdf(fig, stem)
    plt.close(fig)


def plot_nucleus(path: Path, positions: np.ndarray, box: np.ndarray, labels: np.ndarray, title: str) -> None:
    """A snapshot of particles (N, 3) in their periodic box (wrapped into it): the largest solid-like
    cluster (label 0) in blue, other solid-like clusters in orange, liquid-like particles (-1) as
    faint grey dots; equal aspect, lengths in sigma. The box is shifted periodically to put the
    largest cluster's centre (the circular mean along each axis) in its middle."""
    plt = _pyplot()
    x = positions
    if (labels == 0).any():
        angle = 2 * np.pi * positions[labels == 0] / box
        centre = box * np.arctan2(np.sin(angle).mean(0), np.cos(angle).mean(0)) / (2 * np.pi)
        x = positions - centre + box / 2
    x = x - box * np.floor(x / box)
    fig = plt.figure(figsize=(5.2, 5.0))
    ax = fig.add_subplot(projection="3d")
    groups = ((labels < 0, dict(s=9, c="0.55", alpha=0.35, label="liquid-like")),
              (labels > 0, dict(s=28, c="#E69F00", alpha=0.9, label="other solid-like clusters")),
              (labels == 0, dict(s=40, c="#0072B2", alpha=0.95, label=f"largest cluster ({int((labels == 0).sum())})")))
    for mask, style in groups:
        if mask.any():
            ax.scatter(*x[mask].T, depthshade=True, edgecolors="none", **style)
    ax.set_xlim(0, box[0])
    ax.set_ylim(0, box[1])
    ax.set_zlim(0, box[2])
    ax.set_box_aspect(tuple(box))
    ax.set_xlabel("x (σ)")
    ax.set_ylabel("y (σ)")
    ax.set_zlabel("z (σ)")
    ax.legend(loc="upper left", fontsize=7, frameon=False)
    ax.set_title(title, fontsize=9)
    _save(fig, path)
    plt.close(fig)
