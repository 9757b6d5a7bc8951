"""`cvcycle export --format plumed` run in a real PLUMED: the same CV, the same bias (continued from
STATE) and the same bias forces on a campaign's frames. Skips where no PLUMED with libtorch and OPES
is installed (tests/plumed_driver.py says how to point at one)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from plumed_driver import check_in_plumed, plumed_or_skip, write_xyz
from test_cli import TINY, cvcycle, project, write_spec


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_a_mueller_brown_export_runs_in_plumed_with_the_campaigns_cv_and_bias(tmp_path):
    plumed_or_skip()
    engine = {**TINY["engine"], "initial_steps": 1000, "steps": 2000, "segment_steps": 1000, "dt": 5e-3}
    spec = write_spec(tmp_path / "low.toml", system={"scale": 0.02}, engine=engine)
    job = project(tmp_path, "init", str(spec)).stdout.split()[0]
    assert project(tmp_path, "run").returncode == 0
    folder = tmp_path / "workspace" / job
    out = tmp_path / "plumed"
    assert cvcycle(tmp_path, "export", job[:8], "--format", "plumed", "--out", str(out)).returncode == 0
    positions = np.load(folder / "iter-001" / "trajectory.npz")["positions"][:, 0]  # walker 0: (frames, 1, 2)
    write_xyz(out / "frames.xyz", positions)
    got = check_in_plumed(folder, out, positions, ["--ixyz", "frames.xyz"])
    (out / "plumed-check.json").write_text(json.dumps(got))
    assert got["frames"] == len(positions)
    assert got["cv"] < 1e-5  # PLUMED's PYTORCH_MODEL is the same TorchScript file, in float32
    assert got["bias_formula"] < 1e-8  # PLUMED computes what its STATE file says
    assert got["bias"] < 3e-3  # kT: the STATE file's kernels against the campaign's grid (tests/test_plumed_state.py)
    assert got["force_rel"] < 1e-3  # PLUMED's forces (float32 CV gradients): its OPES formula on STATE through the CV
    # against the campaign's grid bias: that is piecewise linear in the CV, its force piecewise constant,
    # off by up to h |V''| / 2 within a grid cell (h / sigma = 0.23 here) where PLUMED's kernel sum is smooth
    assert got["force_rel_grid"] < 0.06
    assert got["as_written_before_deposition"] < 1e-6
