"""Opt-in validation against the numbers of the autoencoder-campaign issue (minutes per campaign).

    pytest -m long tests/test_validation_long.py

Default Mueller-Brown campaign over 3 seeds: converged in <= 6 iterations and <= 2e6 walker
steps; reweighted FES RMSE <= 0.5 kT (F - Fmin <= 8 kT); final CV committor R^2 >= 0.97 and
width <= 0.06, and R^2 at least that of -x + 0.5 y. Wolfe-Quapp: FES RMSE <= 0.5 kT.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

pytestmark = pytest.mark.long


@pytest.fixture(scope="module")
def line_quality():
    from cvcycle.analysis.benchmark import straight_line_quality
    from cvcycle.spec import load_spec

    return straight_line_quality(load_spec(ROOT / "workflows" / "mueller-brown-autoencoder.toml"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mueller_brown_default_campaign(tmp_path, seed, line_quality):
    from campaigns import run_one
    from cvcycle.analysis.benchmark import campaign_summary

    path, _ = run_one(str(ROOT / "workflows" / "mueller-brown-autoencoder.toml"), seed, str(tmp_path))
    r = campaign_summary(path)
    assert r["converged"], r
    assert r["iterations"] <= 6 and r["total_steps"] <= 2_000_000, r
    assert r["fes_rmse_exact"] <= 0.5, r
    assert r["committor_r2"] >= max(0.97, line_quality["-x+0.5y"]["r2"]), r
    assert r["committor_width"] <= 0.06, r


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wolfe_quapp_fes(tmp_path, seed):
    from campaigns import run_one
    from cvcycle.analysis.benchmark import campaign_summary

    path, _ = run_one(str(ROOT / "workflows" / "wolfe-quapp-autoencoder.toml"), seed, str(tmp_path))
    r = campaign_summary(path)
    assert r["status"] in ("converged", "budget") and r["fes_rmse_exact"] <= 0.5, r
