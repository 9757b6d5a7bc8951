"""Accuracy summaries of finished campaigns against exact references (used by benchmarks/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..campaign import Campaign, failed_checks
from .quality import cv_committor_quality
from .reference import reference_from_spec


def straight_line_quality(spec: dict[str, Any], angles: int = 180) -> dict[str, dict[str, float]]:
    """Committor quality of reference CVs on the spec's system: x, -x + 0.5 y, the best straight
    line (scanned over `angles` directions) and the exact committor itself, on the grid the
    campaigns use (2 x analysis.grid_bins + 1 points per axis, see routes.evaluate.campaign_reference)."""
    ref = reference_from_spec(spec, bins=2 * spec["analysis"]["grid_bins"] + 1)
    pts, q, F = ref.points, ref.committor.ravel(), ref.free_energy.ravel()
    out = {"x": cv_committor_quality(pts[:, 0], q, F),
           "-x+0.5y": cv_committor_quality(-pts[:, 0] + 0.5 * pts[:, 1], q, F)}
    best = max((cv_committor_quality(np.cos(a) * pts[:, 0] + np.sin(a) * pts[:, 1], q, F) | {"angle_deg": float(np.degrees(a))}
                for a in np.linspace(0.0, np.pi, angles, endpoint=False)), key=lambda m: m["r2"])
    out["best line"] = best
    out["exact q"] = cv_committor_quality(q, q, F)
    return out


def campaign_summary(path: str | Path) -> dict[str, Any]:
    """Iterations, steps, wall time per phase, status, the final accuracy metrics, the spec and the
    metrics history of one campaign."""
    c = Campaign(path)
    doc = c.progress()
    last = doc["history"][-1] if doc["history"] else {}
    return {"id": c.id, "path": str(c.path), "name": c.spec["campaign"]["name"], "seed": c.seed, "status": doc["status"],
            "converged": doc["converged"], "iterations": len(doc["history"]), "total_steps": doc["total_steps"],
            "fes_rmse_exact": last.get("fes_rmse_exact"), "fes_rmse_reference": last.get("fes_rmse_reference"),
            "state_free_energies": last.get("state_free_energies"), "committor_r2": last.get("committor_r2"),
            "committor_width": last.get("committor_width"), "committor_rmse": last.get("committor_rmse"),
            "rate_AB": last.get("rate_AB"), "rate_AB_exact": last.get("rate_AB_exact"),
            "committor_test": last.get("committor_test"), "bias_stiffness": last.get("bias_stiffness"),
            "cv_rank_correlation": last.get("cv_rank_correlation"),
            "failed_checks": failed_checks(last), "seconds": doc.get("seconds") or {}, "spec": c.spec,
            "history": sorted(doc["history"], key=lambda h: h["iteration"])}
