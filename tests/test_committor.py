"""The variational committor: loss, feature metric, Kolmogorov bias, export, and a small campaign."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cvcycle import io as cio
from cvcycle.analysis.quality import committor_rmse
from cvcycle.analysis.reference import reference_from_spec
from cvcycle.analysis.shooting import state_classifier
from cvcycle.bias import CVBias, make_bias
from cvcycle.campaign import Campaign
from cvcycle.errors import SpecError
from cvcycle.features import make_featurizer
from cvcycle.learn.committor import feature_metric, train_committor
from cvcycle.models.committor import CommittorNet
from cvcycle.models.export import export_committor, export_cv
from cvcycle.routes.evaluate import iteration_stiffness
from cvcycle.routes.variational import ROUTE as VARIATIONAL
from cvcycle.spec import load_spec, validate
from test_cli import project, show_json, to_toml

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "workflows" / "mueller-brown-committor-variational.toml"


def spec_with(**changes: dict) -> dict:
    spec = load_spec(SPEC)
    for section, values in changes.items():
        spec[section] = {**spec[section], **values}
    return validate(spec)


def test_kolmogorov_loss_on_boltzmann_grid_gives_exact_committor():
    """Grid points weighted exp(-F) are an exact quadrature of the Boltzmann distribution: the
    minimiser of the loss must be the committor of the grid solver."""
    spec = load_spec(SPEC)
    ref = reference_from_spec(spec, bins=101)
    points, F = ref.points, ref.free_energy.ravel()
    keep = F <= 16.0
    labels = state_classifier(spec["system"]["states"])(points[keep])
    cfg = {**spec["learner"], "epochs": 300, "batch_size": 256, "learning_rate": 3e-3, "patience": 1000}
    result = train_committor(points[keep], np.exp(-F[keep]), labels, cfg, seed=1, log=lambda line: None)
    with torch.no_grad():
        q = result.model.committor(torch.as_tensor(points, dtype=torch.float32)).numpy()
    assert committor_rmse(q, ref.committor.ravel(), F) <= 0.035  # measured: 0.027
    assert q[keep][labels == 0].max() < 0.02 and q[keep][labels == 1].min() > 0.98


class Polar(torch.nn.Module):
    """A nonlinear featurizer: (r^2, y) of a 2-D position."""

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return torch.stack([(p**2).sum(-1), p[..., 1]], dim=-1)


def test_feature_metric_is_jacobian_product():
    pos = np.array([[0.3, -0.7], [1.5, 0.2]])
    assert feature_metric(make_featurizer(load_spec(SPEC)), pos) is None  # coordinates: identity
    M = feature_metric(Polar(), pos)
    for (x, y), m in zip(pos, M):
        J = np.array([[2 * x, 2 * y], [0.0, 1.0]])
        np.testing.assert_allclose(m, J @ J.T, rtol=1e-12)


def test_kolmogorov_bias_energy_and_forces():
    torch.manual_seed(0)
    net = CommittorNet(2, [8, 8])  # float32, as trained
    bias = make_bias(spec_with(), 1)
    hook = CVBias(net, bias, kolmogorov=(0.7, 1e-3), kT=1.3)
    x = torch.tensor([[-0.5, 0.9], [0.1, 0.4], [0.6, 0.1]], dtype=torch.float64, requires_grad=True)
    energy, cv = hook.energy(x, x)  # Cartesian features: the features are the positions
    xq = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(torch.sigmoid(net(xq)).sum(), xq)
    expected = bias(net(x.detach()).double()) - 0.7 * 1.3 * torch.log((g.double()**2).sum(1) + 1e-3)
    torch.testing.assert_close(energy.detach(), expected.detach())
    torch.testing.assert_close(cv.detach(), net(x.detach()).double())
    assert energy.std() > 0.1  # the Kolmogorov term varies between the points
    (force,) = torch.autograd.grad(-energy.sum(), x)
    h = 1e-3

    def at(p: torch.Tensor) -> torch.Tensor:
        p = p.detach().requires_grad_(True)
        return hook.energy(p, p)[0]

    for i in range(2):
        step = torch.zeros_like(x)
        step[:, i] = h
        fd = -(at(x + step) - at(x - step)) / (2 * h)
        torch.testing.assert_close(force[:, i], fd.detach(), rtol=1e-3, atol=2e-3)
    with pytest.raises(ValueError, match="needs the positions"):
        hook.energy(x)


class PairFeatures(torch.nn.Module):
    """Nonlinear features of two particles in 2-D: (|r_1 - r_2|^2, y_1)."""

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return torch.stack([((p[:, 0] - p[:, 1]) ** 2).sum(-1), p[:, 0, 1]], dim=-1)


@pytest.mark.parametrize("inverse_mass", [None, np.array([1.0, 4.0])], ids=["unit", "masses"])
def test_kolmogorov_bias_takes_grad_q_in_the_dynamics_metric(inverse_mass):
    """With nonlinear features the Kolmogorov term is -lambda kT log(sum_i |grad_i q|^2 / m_i + eps),
    the gradient with respect to the positions (the metric the variational loss uses), not the
    features; its forces match finite differences of that energy."""
    torch.manual_seed(3)
    net, feats = CommittorNet(2, [8, 8]), PairFeatures()
    lam, eps, kT = 0.7, 1e-6, 1.3
    hook = CVBias(net, make_bias(spec_with(), 1), kolmogorov=(lam, eps), kT=kT, inverse_mass=inverse_mass)
    x = torch.tensor([[[0.2, 0.5], [-0.6, 0.1]], [[1.1, -0.3], [0.4, 0.7]], [[0.0, 0.9], [0.5, 0.5]]],
                     dtype=torch.float64, requires_grad=True)
    energy, cv = hook.energy(feats(x), x)
    xq = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(net.committor(feats(xq).float()).sum(), xq)
    w = torch.ones(2, dtype=torch.float64) if inverse_mass is None else torch.as_tensor(inverse_mass)
    grad_sq = (g.double() ** 2 * w[:, None]).sum((1, 2))
    expected = hook.bias(cv.detach()) - lam * kT * torch.log(grad_sq + eps)
    torch.testing.assert_close(energy.detach(), expected, rtol=1e-5, atol=1e-5)
    fq = feats(x.detach()).float().requires_grad_(True)
    (gf,) = torch.autograd.grad(net.committor(fq).sum(), fq)
    feature_grad = (gf.double() ** 2).sum(1)
    assert (grad_sq / feature_grad - 1).abs().max() > 0.5  # the metric matters here
    (force,) = torch.autograd.grad(-energy.sum(), x)
    h = 1e-4
    for particle in range(2):
        for axis in range(2):
            step = torch.zeros_like(x)
            step[:, particle, axis] = h
            plus, minus = (x.detach() + step).requires_grad_(True), (x.detach() - step).requires_grad_(True)
            fd = -(hook.energy(feats(plus), plus)[0] - hook.energy(feats(minus), minus)[0]) / (2 * h)
            torch.testing.assert_close(force[:, particle, axis], fd.detach(), rtol=2e-3, atol=2e-3)


def test_committor_export_matches_model(tmp_path):
    torch.manual_seed(1)
    net = CommittorNet(2, [16, 16]).eval()
    with torch.no_grad():
        net.mean.copy_(torch.tensor([0.1, 0.5]))
        net.std.copy_(torch.tensor([0.6, 0.4]))
    q_model = export_committor(net, tmp_path / "committor.pt")
    export_cv(net, tmp_path / "cv.pt")
    x = torch.randn(50, 2)
    q = torch.jit.load(str(tmp_path / "committor.pt"))(x)
    z = torch.jit.load(str(tmp_path / "cv.pt"))(x)
    assert q.shape == (50,) and z.shape == (50, 1)
    torch.testing.assert_close(q, net.committor(x).detach(), rtol=0, atol=0)
    torch.testing.assert_close(q, torch.sigmoid(z[:, 0]))
    assert ((q >= 0) & (q <= 1)).all()
    assert torch.equal(q_model(x), q)


@pytest.mark.parametrize("changes, message", [
    ({"learner": {"cv_dim": 2}}, "learner.cv_dim: the committor learner has a 1-D CV"),
    ({"learner": {"reweight_power": 0.5}}, "learner.reweight_power: the variational committor needs Boltzmann weights"),
    ({"learner": {"kind": "autoencoder"}, "bias": {"kolmogorov_lambda": 1.0}}, "bias.kolmogorov_lambda: the Kolmogorov bias acts on a committor"),
    ({"engine": {"start": ["A", "C"]}}, "engine.start: unknown state 'C'"),
    ({"learner": {"select": "reconstruction"}}, "learner.select: 'reconstruction' ranks autoencoders, not a committor"),
])
def test_committor_spec_errors(changes, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(".", r"\.")):
        spec_with(**changes)


def run_small(tmp_path: Path, spec_file: Path, small: dict) -> tuple[dict, Path, dict]:
    """A two-iteration campaign of `spec_file` changed by `small`, through project.py init + run;
    returns the raw spec, the job directory and `show --json`."""
    raw = tomllib.loads(spec_file.read_text())
    small = {**small, "analysis": {"grid_bins": 60}, "budget": {"max_iterations": 2}, "convergence": {"min_iterations": 2}}
    for section, values in small.items():
        raw.setdefault(section, {}).update(values)
    (tmp_path / "spec.toml").write_text(to_toml(raw))
    assert project(tmp_path, "init", "spec.toml").returncode == 0
    done = project(tmp_path, "run")
    assert done.returncode == 0, done.stderr[-2000:]
    (job,) = (tmp_path / "workspace").iterdir()
    return raw, job, show_json(tmp_path, job.name)


def test_small_committor_campaign_through_project(tmp_path):
    """init + run + show --json: the committor model loads without cvcycle and gives q in [0, 1],
    ~0 in A and ~1 in B; walkers start in both states; metrics track q against the exact one."""
    raw, job, s = run_small(tmp_path, SPEC, {"engine": {"walkers": 8, "initial_steps": 400, "steps": 2000, "segment_steps": 1000},
                                             "learner": {"epochs": 40, "max_samples": 4000}})
    assert s["committor_model"] == str(job / "iter-001" / "committor.pt")
    q_model = torch.jit.load(s["committor_model"])
    a, b = (torch.tensor([st["center"]]) for st in raw["system"]["states"].values())
    assert q_model(a).item() < 0.15 and q_model(b).item() > 0.85  # after two short iterations
    q = q_model(torch.rand(200, 2) * 2 - 0.5)
    assert q.shape == (200,) and ((q >= 0) & (q <= 1)).all()
    start = cio.read_npz(job / "iter-000" / "trajectory.npz")["positions"][0]
    side = state_classifier(load_spec(tmp_path / "spec.toml")["system"]["states"])(start)
    assert (side[0::2] == 0).all() and (side[1::2] == 1).all()  # walkers alternate between A and B
    metrics = cio.read_json(job / "iter-001" / "metrics.json")
    assert 0.0 <= metrics["committor_rmse"] <= 0.5 and metrics["q_change"] is not None
    assert "q_change" in metrics["checks"] and "cv_r2" not in metrics["checks"]
    assert (job / "iter-001" / "fes_xy.png").stat().st_size > 10_000
    # the bias of iteration 1 on its own frames: recorded, recomputable, and a gate on convergence
    c = Campaign(job)
    assert metrics["bias_stiffness"] == pytest.approx(iteration_stiffness(c, 1), rel=1e-12) and metrics["bias_stiffness"] > 0
    assert metrics["checks"]["bias_stiffness"] is (metrics["bias_stiffness"] <= 1.0)
    strict = {**c.spec, "convergence": {**c.spec["convergence"], "max_bias_stiffness": 0.5 * metrics["bias_stiffness"]}}
    result = VARIATIONAL.analyze(SimpleNamespace(spec=strict, path=c.path, iter_dir=c.iter_dir), 1, log=lambda line: None)
    assert result.metrics["checks"]["bias_stiffness"] is False and result.metrics["converged"] is False
    assert "the bias is too stiff for the time step" in result.summary and "lower engine.dt or widen bias.sigma" in result.summary


def test_small_tps_committor_campaign_through_project(tmp_path):
    """The shooting route end to end: hot run -> first path -> TPS chunks -> binomial training;
    show --json names the committor; a second `run` after deleting the last chunk file and
    rewinding to that phase reproduces the shooting records exactly."""
    pytest.importorskip("openpathsampling", reason="the TPS route needs openpathsampling (pip install -e '.[paths]')")
    _, job, s = run_small(tmp_path, ROOT / "workflows" / "mueller-brown-committor-tps.toml",
                          {"engine": {"walkers": 8}, "learner": {"epochs": 30},
                           "paths": {"moves": 24, "chunk_moves": 12, "initial_steps": 2000}})
    assert s["status"] == "budget" and s["fes"] is None
    assert s["committor_model"] == str(job / "iter-001" / "committor.pt")
    shots = cio.read_npz(job / "iter-001" / "shots.npz")
    assert shots["outcomes"].shape == (24, 2) and set(np.unique(shots["outcomes"])) <= {-1, 0, 1}
    assert shots["extra_outcomes"].shape == (24, 8) and (shots["extra_outcomes"] >= 0).mean() > 0.9
    metrics = cio.read_json(job / "iter-001" / "metrics.json")
    assert metrics["moves"] == 24 and 0.0 <= metrics["committor_rmse"] <= 0.5
    assert s["total_steps"] == metrics["total_steps"] > 8 * 2000
    # kill-resume: the last chunk and everything after it are redone to the same records
    (job / "iter-001" / "tps" / "chunk-0001.npz").unlink()
    doc = json.loads((job / "signac_job_document.json").read_text())
    doc.update(iteration=1, phase="simulate", status="running", converged=False,
               history=[h for h in doc["history"] if h["iteration"] == 0])
    (job / "signac_job_document.json").write_text(json.dumps(doc))
    again = project(tmp_path, "run")
    assert again.returncode == 0, again.stderr[-2000:]
    redone = cio.read_npz(job / "iter-001" / "shots.npz")
    for key, value in shots.items():
        np.testing.assert_array_equal(redone[key], value)


def test_tpt_rate_of_double_well_matches_kramers():
    """Overdamped double well s((x^2 - 1)^2 + y^2) at s = 8 kT: the TPT rate of the exact grid
    committor equals Kramers' k = sqrt(V''(min) |V''(barrier)|) / (2 pi gamma) exp(-s/kT) up to
    its O(kT/s) correction."""
    from cvcycle.analysis.rates import grid_tpt_rate
    from cvcycle.analysis.reference import exact_reference
    from cvcycle.systems.potentials import Potential2D

    s, gamma = 8.0, 2.0
    states = {"A": {"center": [-1.0, 0.0], "radius": 0.2}, "B": {"center": [1.0, 0.0], "radius": 0.2}}
    ref = exact_reference(Potential2D("double-well", s), 1.0, states, bins=301)
    rate = grid_tpt_rate(ref.xs, ref.ys, ref.free_energy, ref.committor, diffusion=1.0 / gamma)
    kramers = np.sqrt(8 * s * 4 * s) / (2 * np.pi * gamma) * np.exp(-s)
    assert rate == pytest.approx(kramers, rel=0.15)
