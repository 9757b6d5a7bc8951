"""The exported plumed.dat run in a real PLUMED (`plumed driver`), against the campaign's own CV and bias.

PLUMED is not on PyPI with its kernel: build it with `--enable-libtorch` and the OPES module (see the
README's export section) and put `plumed` on PATH or name it in CVCYCLE_PLUMED. Without it the
checks skip, saying so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from cvcycle.features import make_featurizer
from cvcycle.handoff import continued_bias
from cvcycle.show import find_campaign
from test_plumed_state import plumed_bias, read_state


def plumed_or_skip() -> str:
    exe = os.environ.get("CVCYCLE_PLUMED") or shutil.which("plumed")
    if exe is None:
        pytest.skip("PLUMED is not installed (a build with --enable-libtorch and the OPES module; set CVCYCLE_PLUMED)")
    r = subprocess.run([exe, "info", "--version"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"{exe} does not run ({r.stderr.strip()[-200:]}; is its lib/ on LD_LIBRARY_PATH?)")
    for check in (["config", "has", "libtorch"], ["config", "module", "opes"]):
        if subprocess.run([exe, *check], capture_output=True).returncode != 0:
            pytest.skip(f"{exe} lacks {check[-1]} (build PLUMED with --enable-libtorch --enable-modules=+opes+pytorch)")
    return exe


def write_xyz(path: Path, positions: np.ndarray) -> None:
    """Frames (frames, atoms, 2 or 3) as an xyz trajectory `plumed driver --ixyz` reads: a 2-D
    system's particles at z = 0, the box line "0 0 0" (no periodic box)."""
    frames, atoms, dim = positions.shape
    with open(path, "w") as f:
        for p in positions:
            f.write(f"{atoms}\n0 0 0\n")
            f.writelines("X " + " ".join(f"{v:.10f}" for v in (*a, *[0.0] * (3 - dim))) + "\n" for a in p)


def run_driver(exe: str, folder: Path, dat: str, trajectory: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """PRINTed columns (frames, columns) and the bias forces (frames, atoms, 3) of `dat` on the trajectory."""
    for name in ("COLVAR", "forces.dat"):
        (folder / name).unlink(missing_ok=True)
    (folder / "run.dat").write_text(dat)
    r = subprocess.run([exe, "driver", "--plumed", "run.dat", *trajectory, "--dump-forces", "forces.dat",
                        "--dump-forces-fmt", "%.12e"], cwd=folder, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    colvar = np.loadtxt(folder / "COLVAR", comments="#", ndmin=2)
    lines = (folder / "forces.dat").read_text().splitlines()
    n = int(lines[0])
    forces = [[float(v) for v in ln.split()[1:]] for ln in lines if ln.startswith("X ")]
    return colvar, np.array(forces).reshape(-1, n, 3)


def check_in_plumed(job: Path, export_dir: Path, positions: np.ndarray, trajectory: list[str]) -> dict[str, float]:
    """Run the export's plumed.dat on the frames, with deposition off (PACE beyond the run) and every
    frame printed, and compare PLUMED's CV, bias and bias forces with the campaign's on the same
    positions (frames, atoms, 3) in the features' length unit. Then run plumed.dat as written: it
    reads STATE and runs; its frames before the first deposition give the same bias."""
    exe = plumed_or_skip()
    c = find_campaign(str(job))
    dat = (export_dir / "plumed.dat").read_text()
    frozen = re.sub(r"PACE=\d+", "PACE=100000000", re.sub(r"STRIDE=\d+", "STRIDE=1 FMT=%.10f", dat))
    colvar, forces = run_driver(exe, export_dir, frozen, trajectory)
    cv_plumed, bias_plumed = colvar[:, 1:-1], colvar[:, -1]  # PRINT ARG=cv.node-0[,cv.node-1],opes.bias

    k = int(json.loads((export_dir / "export.json").read_text())["iteration"])
    bias, _, _ = continued_bias(c, k)
    model = torch.jit.load(str(export_dir / "model.ptc"))
    x = torch.as_tensor(positions, dtype=torch.float64).requires_grad_()
    cv = model(make_featurizer(c.spec)(x).float()).double()
    v = bias(cv)
    args = [f"cv.node-{i}" for i in range(cv.shape[1])]
    state = read_state((export_dir / "STATE").read_text())
    smooth = plumed_bias(state, args, cv, bias.kT)  # PLUMED's formula
    pad = (0, 3 - x.shape[-1])  # a 2-D model's particle moves in (x, y, 0)
    grad = torch.nn.functional.pad(torch.autograd.grad(v.sum(), x, retain_graph=True)[0], pad)[:len(forces)].numpy()
    grad_smooth = torch.nn.functional.pad(torch.autograd.grad(smooth.sum(), x)[0], pad)[:len(forces)].numpy()
    n = len(cv_plumed)
    return {"frames": n, "cv": float(np.abs(cv_plumed - cv[:n].detach().numpy()).max()),
            "bias": float(np.abs(bias_plumed - v[:n].detach().numpy()).max()),
            # PLUMED's bias against its formula on STATE (tests/test_plumed_state.py) at PLUMED's own CV values
            "bias_formula": float(np.abs(bias_plumed - plumed_bias(state, args, torch.as_tensor(cv_plumed), bias.kT).numpy()).max()),
            # PLUMED's forces against its own formula on STATE through the campaign's CV: the force pipeline
            "force_rel": float(np.linalg.norm(forces + grad_smooth) / np.linalg.norm(grad_smooth)),
            # and against the campaign's grid bias, whose force is piecewise constant in the CV
            "force_rel_grid": float(np.linalg.norm(forces + grad) / np.linalg.norm(grad)),
            "as_written_before_deposition": _as_written(exe, export_dir, dat, trajectory, bias_plumed)}


def _as_written(exe: str, folder: Path, dat: str, trajectory: list[str], frozen_bias: np.ndarray) -> float:
    """plumed.dat as exported (OPES deposits every PACE steps): the largest difference of its printed
    bias from the frozen run's on the frames up to its first deposition."""
    colvar, _ = run_driver(exe, folder, dat, trajectory)
    pace = int(re.search(r"PACE=(\d+)", dat).group(1))
    stride = int(re.search(r"STRIDE=(\d+)", dat).group(1))
    before = colvar[colvar[:, 0] <= pace][:, -1]  # time = step (the driver's timestep is 1); printed as %f
    return float(np.abs(before - frozen_bias[:pace + 1:stride][:len(before)]).max())

