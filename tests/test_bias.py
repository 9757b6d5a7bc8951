"""Grid interpolation, well-tempered metadynamics, OPES and the CVBias engine hook."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cvcycle.bias import CVBias, make_bias
from cvcycle.bias.grid import Grid
from cvcycle.bias.methods import Opes, WellTemperedMetad
from cvcycle.errors import SpecError
from cvcycle.models.autoencoder import AutoEncoder, CVExport
from cvcycle.spec import SCHEMA, validate

f64 = torch.float64


def minimal_raw(**sections) -> dict:
    raw = {
        "campaign": {"name": "t"},
        "system": {"potential": "double-well",
                   "states": {"A": {"center": [-1.0, 0.0], "radius": 0.2},
                              "B": {"center": [1.0, 0.0], "radius": 0.2}}},
    }
    for name, body in sections.items():
        raw.setdefault(name, {}).update(body)
    return raw


# ----------------------------------------------------------------------------- Grid


def test_grid_interpolation_is_exact_for_linear_functions_1d():
    g = Grid([-2.0], [3.0], 51)
    values = 0.7 - 1.3 * g.axes[0]
    s = torch.tensor(np.random.default_rng(0).uniform(-2.0, 3.0, (200, 1)), dtype=f64, requires_grad=True)
    out = g.interpolate(values, s)
    torch.testing.assert_close(out, 0.7 - 1.3 * s[:, 0], rtol=0, atol=1e-12)
    (grad,) = torch.autograd.grad(out.sum(), s)
    torch.testing.assert_close(grad, torch.full_like(grad, -1.3), rtol=0, atol=1e-12)


def test_grid_interpolation_is_exact_for_bilinear_functions_2d():
    g = Grid([-1.0, 0.0], [1.0, 2.0], 41)
    X, Y = torch.meshgrid(*g.axes, indexing="ij")
    f = lambda x, y: 0.5 + 2.0 * x - 3.0 * y + 0.25 * x * y  # noqa: E731 - bilinear is reproduced exactly
    values = f(X, Y)
    rng = np.random.default_rng(1)
    s = torch.tensor(np.column_stack([rng.uniform(-1, 1, 300), rng.uniform(0, 2, 300)]), dtype=f64, requires_grad=True)
    out = g.interpolate(values, s)
    torch.testing.assert_close(out, f(s[:, 0], s[:, 1]), rtol=0, atol=1e-12)
    (grad,) = torch.autograd.grad(out.sum(), s)
    expected = torch.stack([2.0 + 0.25 * s[:, 1], -3.0 + 0.25 * s[:, 0]], dim=1).detach()
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-10)


def test_grid_interpolation_clamps_outside_with_zero_force():
    g = Grid([0.0], [1.0], 11)
    values = torch.linspace(5.0, 6.0, 11, dtype=f64)
    s = torch.tensor([[-3.0], [-0.001], [1.5], [40.0]], dtype=f64, requires_grad=True)
    out = g.interpolate(values, s)
    torch.testing.assert_close(out, torch.tensor([5.0, 5.0, 6.0, 6.0], dtype=f64))
    (grad,) = torch.autograd.grad(out.sum(), s)
    assert torch.equal(grad, torch.zeros_like(grad))


def test_grid_gaussians_and_nearest():
    g = Grid([-1.0, -2.0], [1.0, 2.0], 21)
    centers = torch.tensor([[0.1, 0.3], [-0.5, 1.0]], dtype=f64)
    heights = torch.tensor([2.0, 0.5], dtype=f64)
    vals = g.gaussians(centers, 0.2, heights)
    assert vals.shape == (21, 21)
    i, j = 13, 7
    p = torch.stack([g.axes[0][i], g.axes[1][j]])
    expected = sum(h * torch.exp(-((p - c) ** 2).sum() / (2 * 0.2**2)) for c, h in zip(centers, heights))
    assert vals[i, j].item() == pytest.approx(expected.item(), rel=1e-12)
    flat = g.nearest(torch.tensor([[g.axes[0][i] + 0.02, g.axes[1][j] - 0.05]], dtype=f64))
    assert int(flat[0]) == i * 21 + j
    assert g.points[int(flat[0])].tolist() == pytest.approx([g.axes[0][i].item(), g.axes[1][j].item()])


# ----------------------------------------------------------------------------- metadynamics


def metad(kT=2.0, height=0.5, gamma=6.0, sigma=0.1, pace=5, bins=201):
    return WellTemperedMetad(Grid([-2.0], [2.0], bins), kT, pace, sigma, height, gamma)


def test_metad_first_deposition_is_height_kT_gaussian_and_respects_pace():
    b = metad()
    s0 = torch.tensor([[0.3]], dtype=f64)
    assert b.observe(3, s0) is False  # step not a multiple of pace
    assert b.depositions == 0 and torch.count_nonzero(b.values) == 0
    assert b.observe(10, s0) is True
    expected = 0.5 * 2.0 * torch.exp(-((b.grid.axes[0] - 0.3) ** 2) / (2 * 0.1**2))
    torch.testing.assert_close(b.values, expected, rtol=1e-12, atol=1e-14)
    assert b.depositions == 1


def test_metad_well_tempered_heights_decrease():
    b = metad(kT=2.0, height=0.5, gamma=6.0)
    s0 = torch.tensor([[0.4]], dtype=f64)  # a grid knot: V(s0) is exact
    increments = []
    for k in range(30):
        before = b(s0).item()
        b.observe(5 * k, s0)
        increments.append(b(s0).item() - before)
    inc = np.array(increments)
    h = 0.5 * 2.0
    assert inc[0] == pytest.approx(h, rel=1e-12)
    assert inc[1] == pytest.approx(h * math.exp(-h / (2.0 * 5.0)), rel=1e-10)
    assert np.all(np.diff(inc) < 0)
    # continuum limit: dV/dn = h exp(-V / (kT (g-1))) => V_n = kT (g-1) ln(1 + n h / (kT (g-1)))
    n = len(inc)
    assert b(s0).item() == pytest.approx(2.0 * 5.0 * math.log(1 + n * h / (2.0 * 5.0)), rel=0.05)


def test_metad_offset():
    b = metad(kT=2.0, gamma=6.0)
    assert b.offset() == 0.0
    b.values = torch.full_like(b.values, 3.7)  # flat bias: c(t) = V exactly
    assert b.offset() == pytest.approx(3.7, rel=1e-12)
    b = metad(kT=2.0, gamma=6.0)
    rng = np.random.default_rng(3)
    offsets = []
    for k in range(25):
        b.observe(5 * k, torch.tensor(rng.normal(0.0, 0.3, (4, 1)), dtype=f64))
        c = b.offset()
        assert 0.0 <= c <= b.values.max().item() + 1e-12  # e^{g a} >= e^{a} for a >= 0, and c <= max V
        offsets.append(c)
    assert np.all(np.diff(offsets) > 0)


def test_metad_state_round_trip():
    b = metad()
    rng = np.random.default_rng(4)
    for k in range(5):
        b.observe(5 * k, torch.tensor(rng.normal(size=(3, 1)), dtype=f64))
    state = {k: v.numpy().copy() for k, v in b.state_dict().items()}
    c = metad()
    c.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    assert torch.equal(b.values, c.values) and c.depositions == 5
    s = torch.tensor([[0.25], [-0.4]], dtype=f64)
    b.observe(100, s)
    c.observe(100, s)
    assert torch.equal(b.values, c.values)
    assert b.offset() == c.offset()


# ----------------------------------------------------------------------------- OPES


def opes(kT=1.0, barrier=10.0, sigma=0.1, pace=1, lo=-3.0, hi=3.0, bins=301):
    return Opes(Grid([lo], [hi], bins), kT, pace, sigma, barrier)


def test_opes_empty_bias_is_flat_at_minus_barrier():
    for kT, barrier in ((1.0, 10.0), (2.5, 15.0)):
        b = opes(kT=kT, barrier=barrier)
        gamma = barrier / kT
        expected = (1 - 1 / gamma) * kT * math.log(math.exp(-barrier / ((1 - 1 / gamma) * kT)))
        assert expected == pytest.approx(-barrier)
        torch.testing.assert_close(b.values, torch.full_like(b.values, -barrier))
        assert b(torch.tensor([[0.3]], dtype=f64)).item() == pytest.approx(-barrier)


def test_opes_converges_to_well_tempered_bias_on_a_known_free_energy():
    """Emulate an OPES run on a 1-D free energy F(s) = 4 (s^2 - 1)^2 kT: before each deposition,
    walkers are drawn from the *current* biased distribution exp(-(F + V)/kT). At convergence
    OPES gives V(s) = -(1 - 1/gamma) F(s) + const where F is below the barrier (gamma =
    barrier/kT = 10, so the slope is -0.9), and V = -barrier wherever nothing was ever seen."""
    kT, barrier = 1.0, 10.0
    b = opes(kT=kT, barrier=barrier, sigma=0.05, lo=-2.5, hi=2.5, bins=251)
    s = b.grid.axes[0].numpy()
    F = 4.0 * (s * s - 1.0) ** 2
    spacing = s[1] - s[0]
    rng = np.random.default_rng(0)
    for k in range(150):
        logp = -(F + b.values.numpy()) / kT
        p = np.exp(logp - logp.max())
        walkers = rng.choice(s, size=100, p=p / p.sum()) + rng.uniform(-spacing / 2, spacing / 2, 100)
        b.observe(k, torch.tensor(walkers[:, None], dtype=f64))
    v = b.values.numpy()
    assert np.all(v >= -barrier - 1e-9)  # P >= 0 => V >= (1-1/g) kT ln(eps) = -barrier
    np.testing.assert_allclose(v[np.abs(s) >= 2.2], -barrier, atol=1e-6)  # F >= 55 kT: never visited
    region = np.abs(s) <= 1.3  # F <= 1.9 kT around the minima, up to the 4 kT barrier at s = 0
    slope, intercept = np.polyfit(F[region], v[region], 1)
    assert slope == pytest.approx(-(1.0 - kT / barrier), abs=0.03)
    resid = v[region] + 0.9 * F[region]
    assert np.sqrt(np.mean((resid - resid.mean()) ** 2)) < 0.1 * kT
    # the explored range of the bias is (1 - 1/gamma) times that of F, well inside the barrier
    assert v[region].max() - v[region].min() == pytest.approx(0.9 * 4.0, abs=0.3)
    assert v[region].max() - v[region].min() <= barrier


def test_opes_state_round_trip_and_continuation():
    b = opes()
    rng = np.random.default_rng(6)
    for k in range(20):
        b.observe(k, torch.tensor(rng.normal(0.0, 0.5, (8, 1)), dtype=f64))
    state = {k: v.numpy().copy() for k, v in b.state_dict().items()}
    c = opes()
    c.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    assert torch.equal(b.values, c.values) and c.depositions == 20
    for k in range(20, 25):
        s = torch.tensor(rng.normal(0.0, 0.5, (8, 1)), dtype=f64)
        b.observe(k, s)
        c.observe(k, s)
    assert torch.equal(b.values, c.values)
    assert torch.equal(b.density, c.density) and torch.equal(b.visits, c.visits)


def test_opes_with_barrier_below_kT_is_rejected_or_finite():
    """bias.barrier only has to be > 0 in the spec, but Opes needs gamma = barrier/kT > 1: at
    barrier <= ~kT, eps = exp(-barrier/((1-1/gamma) kT)) underflows to 0 and math.log(0) raises
    a bare ValueError('math domain error'). Either the spec rejects it naming bias.barrier, or
    the bias is built with finite values."""
    raw = minimal_raw(bias={"kind": "opes", "barrier": 0.5})
    try:
        spec = validate(raw)
    except SpecError as exc:
        assert "bias.barrier" in str(exc)
        return
    bias = make_bias(spec, 1)
    assert torch.isfinite(bias.values).all()


# ----------------------------------------------------------------------------- CVBias hook


def fixed_linear(weight, bias) -> torch.nn.Linear:
    lin = torch.nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(weight))
        lin.bias.copy_(torch.tensor(bias))
    return lin.requires_grad_(False)


def scripted_autoencoder_cv() -> torch.jit.ScriptModule:
    torch.manual_seed(0)
    ae = AutoEncoder(2, 1, [8, 8], "tanh")
    with torch.no_grad():
        ae.mean.copy_(torch.tensor([0.1, -0.2]))
        ae.std.copy_(torch.tensor([0.8, 1.3]))
        ae.cv_shift.fill_(0.05)
        ae.cv_scale.fill_(1.7)
    return torch.jit.script(CVExport(ae).eval())


def deposited(kind: str, dim: int, cv_samples: torch.Tensor):
    grid = Grid([-3.0] * dim, [3.0] * dim, 121 if dim == 1 else 61)
    if kind == "metad":
        b = WellTemperedMetad(grid, 1.0, 1, 0.3, 1.0, 10.0)
    else:
        b = Opes(grid, 1.0, 1, 0.3, 8.0)
    for k in range(6):
        b.observe(k, cv_samples[k::6])
    return b


def same_cell(grid: Grid, *cvs: torch.Tensor, margin: float = 1e-3) -> torch.Tensor:
    """Walkers whose CV values all lie in one grid cell, away from its knots."""
    ts = [((c.to(f64) - grid.lows) / grid.spacing) for c in cvs]
    ok = torch.ones(len(cvs[0]), dtype=torch.bool)
    for t in ts:
        frac = t - t.floor()
        ok &= ((frac > margin) & (frac < 1 - margin)).all(dim=1)
        ok &= (t.floor() == ts[0].floor()).all(dim=1)
    return ok


@pytest.mark.parametrize("kind", ["metad", "opes"])
@pytest.mark.parametrize("model", ["linear-1d", "linear-2d", "autoencoder"])
def test_cvbias_forces_match_finite_differences(kind, model):
    if model == "linear-1d":
        cv_model, dim = fixed_linear([[0.7, -0.4]], [0.1]), 1
    elif model == "linear-2d":
        cv_model, dim = fixed_linear([[0.7, -0.4], [0.3, 0.9]], [0.1, -0.2]), 2
    else:
        cv_model, dim = scripted_autoencoder_cv(), 1
    rng = np.random.default_rng(7)
    feats = torch.tensor(rng.normal(0.0, 1.0, (600, 2)), dtype=f64)
    with torch.no_grad():
        cv_samples = cv_model(feats[:60].float()).to(f64)
    hook = CVBias(cv_model, deposited(kind, dim, cv_samples))

    x = feats[60:].clone().requires_grad_(True)
    energy, cv = hook.energy(x)
    assert energy.dtype == f64 and cv.shape == (540, dim)
    assert energy.detach().std() > 0.1  # the bias is far from flat where we test
    (grad,) = torch.autograd.grad(energy.sum(), x)

    h = 1e-3
    fd = torch.empty_like(grad)
    keep = torch.ones(len(x), dtype=torch.bool)
    with torch.no_grad():
        for k in range(2):
            e = torch.zeros(2, dtype=f64)
            e[k] = h
            ep, cp = hook.energy(x + e)
            em, cm = hook.energy(x - e)
            fd[:, k] = (ep - em) / (2 * h)
            keep &= same_cell(hook.bias.grid, cv, cp, cm)
    assert keep.sum() > 300  # most points: the tests below are on hundreds of walkers
    # Linear interpolation is linear (bilinear) within a cell, so for points that stay in one
    # cell central differences are exact up to float32 rounding of the CV (~1e-7 * |dV/ds| / h).
    err = (grad - fd)[keep].abs()
    tol = 2e-3 * grad[keep].abs().max() + 1e-4
    assert err.max() < tol, (err.max(), tol)

    if model == "linear-1d":  # exact answer: slope of the cell times the CV weight
        g = hook.bias.grid
        t = ((cv.detach()[:, 0] - g.lows[0]) / g.spacing[0]).floor().long()
        slope = (hook.bias.values[t + 1] - hook.bias.values[t]) / g.spacing[0]
        expected = slope[:, None] * torch.tensor([[0.7, -0.4]], dtype=f64)
        torch.testing.assert_close(grad[keep], expected[keep], rtol=1e-5, atol=1e-6)


def test_make_bias_from_spec():
    spec = validate(minimal_raw(bias={"kind": "metad", "cv_range": [-1.0, 2.0], "grid_margin": 0.5,
                                      "grid_bins": 100, "height": 0.3, "bias_factor": 5.0},
                                system={"temperature": 2.0}))
    b = make_bias(spec, 2)
    assert isinstance(b, WellTemperedMetad) and b.grid.dim == 2 and b.values.shape == (100, 100)
    torch.testing.assert_close(b.grid.lows, torch.tensor([-2.5, -2.5], dtype=f64))
    torch.testing.assert_close(b.grid.highs, torch.tensor([3.5, 3.5], dtype=f64))
    assert b.height == pytest.approx(0.6) and b.gamma == 5.0 and b.kT == 2.0
    o = make_bias(validate(minimal_raw(bias={"barrier": 12.0})), 1)
    default_bins = SCHEMA["bias"]["grid_bins"].default
    assert isinstance(o, Opes) and o.barrier == 12.0 and o.values.shape == (default_bins,)


def test_a_non_finite_cv_reads_as_nan_on_the_grid_not_an_index_error():
    """A diverged walker's CV (NaN) must reach the engine's divergence check as a NaN bias; an
    infinite one is outside the grid like any other (the edge value, no force)."""
    from cvcycle.bias.grid import Grid

    grid = Grid([-1.0], [1.0], 11)
    values = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    s = torch.tensor([[0.1], [float("nan")], [float("inf")], [-float("inf")], [1e39]], dtype=torch.float64)
    out = grid.interpolate(values, s)
    assert out[0] == pytest.approx(0.55) and torch.isnan(out[1])
    assert out[2:].tolist() == [1.0, 0.0, 1.0]  # outside: clamped to the edge
