"""The OPES bias written as PLUMED's STATE file: PLUMED's formula on the file gives the campaign's bias.

`plumed_bias` restates PLUMED's OPES_METAD (src/opes/OPESmetad.cpp, v2.10): truncated unnormalised
kernels, P = sum h (exp(-d^2/2) - exp(-cutoff^2/2)) / sum_weights, V = (1 - 1/gamma) kT log(P/zed + eps).
tests/test_plumed_run.py checks the same file in a real PLUMED where one is installed.
"""

from __future__ import annotations

import math

import pytest
import torch

from cvcycle.bias.grid import Grid
from cvcycle.bias.methods import Opes
from cvcycle.bias.plumed_state import opes_state


def read_state(text: str) -> dict:
    fields: list[str] = []
    state: dict = {}
    rows = []
    for line in text.splitlines():
        if line.startswith("#! FIELDS"):
            fields = line.split()[2:]
        elif line.startswith("#! SET"):
            _, _, key, value = line.split(maxsplit=3)
            state[key] = value
        else:
            rows.append([float(v) for v in line.split()])
    table = torch.tensor(rows, dtype=torch.float64)
    return state | {name: table[:, i] for i, name in enumerate(fields)}


def plumed_bias(state: dict, args: list[str], s: torch.Tensor, kT: float) -> torch.Tensor:
    centers = torch.stack([state[a] for a in args], dim=1)
    sigmas = torch.stack([state["sigma_" + a] for a in args], dim=1)
    cut2 = float(state["kernel_cutoff"]) ** 2
    d2 = (((s[:, None, :] - centers[None]) / sigmas[None]) ** 2).sum(-1)
    g = torch.where(d2 < cut2, torch.exp(-0.5 * d2) - math.exp(-0.5 * cut2), torch.zeros_like(d2))
    prob = g @ state["height"] / float(state["sum_weights"])
    return (1 - 1 / float(state["biasfactor"])) * kT * torch.log(prob / float(state["zed"]) + float(state["epsilon"]))


# (tolerances in kT: median, largest). In 2-D the grid is coarser (spacing 0.4 sigma here) and the
# campaign's bilinear interpolation differs from PLUMED's smooth kernel sum where V changes on the
# scale of sigma; both approximate the same kernel sum.
@pytest.mark.parametrize("dim, bins, span, sigma, kT, tol", [(1, 500, 1.2, 0.035, 1.0, (5e-4, 3e-3)),
                                                            (1, 300, 12.0, 0.8, 2.494, (5e-4, 3e-3)),
                                                            (2, 120, 12.0, 0.5, 1.0, (0.01, 0.06))])
def test_plumed_reads_the_campaigns_bias_from_the_state_file(dim, bins, span, sigma, kT, tol):
    torch.manual_seed(0)
    bias = Opes(Grid([-span] * dim, [span] * dim, bins), kT, 50, sigma, 11.0 * kT)
    for _ in range(200):  # 16 walkers depositing where a broad distribution puts them
        bias.deposit(torch.randn(16, dim, dtype=torch.float64) * span / 6)
    args = [f"cv.node-{i}" for i in range(dim)]
    state = read_state(opes_state(bias, args, kernels=3200))
    assert state["action"] == "OPES_METAD_state" and int(state["counter"]) == 3201
    assert float(state["biasfactor"]) == pytest.approx(11.0) and float(state["epsilon"]) == pytest.approx(bias.epsilon)
    assert float(state["sum_weights"]) == pytest.approx(bias.weight_sum)
    assert float(state["sum_weights2"]) == pytest.approx(bias.weight_sum2)
    assert len(state["height"]) < bins**dim and (state["height"] >= 0).all()  # negligible kernels left out
    s = (torch.randn(3000, dim, dtype=torch.float64) * span / 6).requires_grad_()
    ours, theirs = bias(s), plumed_bias(state, args, s, kT)
    assert (ours - theirs).abs().median() < tol[0] * kT and (ours - theirs).abs().max() < tol[1] * kT
    (f_ours,) = torch.autograd.grad(ours.sum(), s)
    (f_theirs,) = torch.autograd.grad(theirs.sum(), s)
    # the grid's bias is piecewise linear, PLUMED's smooth: forces agree to the grid's own error
    assert (f_ours - f_theirs).norm() / f_ours.norm() < 0.03 * dim


def test_without_the_sharpening_plumed_would_see_a_smoothed_bias():
    """Dividing out the kernels' own width is what brings the difference down to 1e-3 kT (without it
    the kernels' width adds to sigma and the difference is an order of magnitude larger)."""
    torch.manual_seed(1)
    bias = Opes(Grid([-1.2], [1.2], 500), 1.0, 50, 0.035, 11.0)
    for _ in range(200):
        bias.deposit(torch.randn(16, 1, dtype=torch.float64) * 0.3)
    s = torch.randn(3000, 1, dtype=torch.float64) * 0.3
    sharp = plumed_bias(read_state(opes_state(bias, ["cv"], 3200)), ["cv"], s, 1.0)
    plain_state = read_state(opes_state(bias, ["cv"], 3200))
    cell = (bias.density.flatten() / math.sqrt(2 * math.pi))[((torch.stack([plain_state["cv"]], 1) + 1.2)
                                                              / bias.grid.spacing).round().long()[:, 0]]
    plain_state["height"] = cell
    plain = plumed_bias(plain_state, ["cv"], s, 1.0)
    assert (bias(s) - sharp).abs().max() < 3e-3 < (bias(s) - plain).abs().max()


def test_a_metadynamics_campaign_exports_metad_with_its_height_in_energy_units():
    from pathlib import Path

    from cvcycle.handoff import plumed_input
    from cvcycle.spec import load_spec

    spec = load_spec(Path(__file__).parents[1] / "workflows" / "alanine-dipeptide-autoencoder.toml")
    spec = {**spec, "bias": {**spec["bias"], "kind": "metad", "height": 0.5, "bias_factor": 8.0}}
    (line,) = [ln for ln in plumed_input(spec, 1).splitlines() if "METAD" in ln]
    kT = 8.314462618e-3 * spec["system"]["temperature"]  # kJ/mol: a molecule's energies in PLUMED's kj/mol
    assert line == (f"metad: METAD ARG=cv.node-0 PACE={spec['bias']['pace']} SIGMA={spec['bias']['sigma']:g} "
                    f"TEMP={spec['system']['temperature']:g} HEIGHT={0.5 * kT:g} BIASFACTOR=8")


def test_sorted_distances_export_as_sorted_plumed_distances():
    from pathlib import Path

    from cvcycle.handoff import plumed_input
    from cvcycle.spec import load_spec

    spec = load_spec(Path(__file__).parents[1] / "workflows" / "lj7-autoencoder.toml")
    lines = plumed_input({**spec, "features": {"kind": "sorted_distances"}}, 2).splitlines()
    distances = [ln for ln in lines if " DISTANCE " in ln]
    assert len(distances) == 21 and distances[0] == "d1_2: DISTANCE ATOMS=1,2 NOPBC" and distances[-1].startswith("d6_7:")
    assert f"sorted: SORT ARG={','.join(ln.split(':')[0] for ln in distances)}" in lines
    assert f"cv: PYTORCH_MODEL FILE=model.ptc ARG={','.join(f'sorted.{k}' for k in range(1, 22))}" in lines
