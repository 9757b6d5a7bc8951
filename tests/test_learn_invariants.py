"""Properties of cvcycle.learn the rest of the suite did not pin (each found as a surviving mutant
of tools/mutation.py)."""

from __future__ import annotations

import numpy as np
import pytest

from cvcycle.learn.reweight import combine_iterations, effective_sample_size


def test_runs_are_mixed_by_ess_times_quality_however_small():
    """Equal-weight runs of 100 and 300 frames (ESS 100 and 300) with qualities q: run shares
    proportional to ESS x q, also when those products are tiny; all-zero quality (no run crossed)
    falls back to equal shares."""
    lws = [np.zeros(100), np.zeros(300)]
    for quality, expected in (([1e-4, 1e-4], [0.25, 0.75]), ([3e-6, 1e-6], [0.5, 0.5]), ([2.0, 0.0], [1.0, 0.0]),
                              ([0.0, 0.0], [0.5, 0.5])):
        w = combine_iterations(lws, quality=quality)
        assert w.sum() == pytest.approx(1.0, rel=1e-12)
        np.testing.assert_allclose([w[:100].sum(), w[100:].sum()], expected, rtol=1e-12, atol=1e-15)
        assert effective_sample_size(w[:100]) == pytest.approx(100.0) or expected[0] == 0.0


def test_k_s_needs_five_bins_of_twenty_samples_each_between_the_states():
    """The docstring's rule: inf with fewer than MIN_FRAMES_PER_BIN x 5 = 100 samples strictly
    between the states' CV values, or when a bin has no weight. For s uniform in (0, 1) with
    |grad s|^2 = 1 and weights 1/n (G = n_inside/n), K_s = G (s_B - s_A)^-1 = n_inside/n."""
    from cvcycle.learn.cv_kolmogorov import cv_kolmogorov

    for n_inside in (100, 99, 2500):
        s = np.concatenate([(np.arange(n_inside) + 0.5) / n_inside, [-1.0, 2.0]])  # two frames in the states
        w = np.full(len(s), 1.0 / len(s))
        k = cv_kolmogorov(s, np.ones(len(s)), w, 0.0, 1.0)
        if n_inside < 100:
            assert k == float("inf")
        else:
            assert k == pytest.approx(n_inside / len(s), rel=0.03)
    s = (np.arange(300) + 0.5) / 300
    flat = np.where((s > 0.4) & (s < 0.6), 0.0, 1.0)  # the CV does not change across the middle: no weight there
    assert cv_kolmogorov(s, flat, np.full(300, 1 / 300), 0.0, 1.0) == float("inf")
    assert cv_kolmogorov(s, np.ones(300), np.full(300, 1 / 300), 0.5, 0.5) == float("inf")


def test_feature_metric_of_a_single_frame():
    """Cartesian features in the positions' own order need no metric (None), also for one frame;
    the same coordinates in another order have the identity metric J J^T = I."""
    from cvcycle.features.coordinates import Coordinates
    from cvcycle.learn.committor import feature_metric

    pos = np.array([[[0.3, -0.2]]])  # one frame, one particle in 2-D
    assert feature_metric(Coordinates(["x", "y"]), pos) is None
    np.testing.assert_allclose(feature_metric(Coordinates(["y", "x"]), pos), np.eye(2)[None], atol=1e-12)


def _learner_cfg(**changes) -> dict:
    from cvcycle.spec import validate

    raw = {"campaign": {"name": "t"},
           "system": {"potential": "double-well", "states": {"A": {"center": [-1.0, 0.0], "radius": 0.2},
                                                            "B": {"center": [1.0, 0.0], "radius": 0.2}}},
           "learner": {"kind": "committor", "reweight_power": 1.0, "hidden": [8], "epochs": 3, "batch_size": 64,
                       **changes}}
    return validate(raw)["learner"]


def _committor_data(n: int = 300):
    rng = np.random.default_rng(2)
    x = rng.uniform(-1.5, 1.5, (n, 2))
    labels = np.where(x[:, 0] < -1.0, 0, np.where(x[:, 0] > 1.0, 1, -1))
    return x, np.exp(-x[:, 0] ** 2), labels


def test_boundary_terms_are_means_over_the_frames_in_each_state():
    """One frame in A, one in B: the boundary error is q_A^2 + (1 - q_B)^2, whatever else there is."""
    import torch

    from cvcycle.learn.committor import committor_and_grad_sq, committor_terms
    from cvcycle.models.committor import CommittorNet

    torch.manual_seed(0)
    model = CommittorNet(2, [4])
    x = np.array([[-1.2, 0.0], [1.3, 0.1], [0.0, 0.2], [0.1, -0.3]])
    with torch.no_grad():
        q = model.committor(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    _, boundary = committor_terms(model, x, np.ones(4), np.array([0, 1, -1, -1]))
    assert boundary == pytest.approx(q[0] ** 2 + (1 - q[1]) ** 2, rel=1e-5)
    _, boundary = committor_terms(model, x, np.ones(4), np.array([0, 0, 1, -1]))
    assert boundary == pytest.approx((q[0] ** 2 + q[1] ** 2) / 2 + (1 - q[2]) ** 2, rel=1e-5)
    # the Kolmogorov term is the mean of w |grad q|^2 with w normalised to mean 1: any scale of w cancels
    w = np.array([0.5, 2.0, 1.0, 4.5])
    _, grad_sq = committor_and_grad_sq(model, x)
    for scale in (1.0, 7.0, 1e-3):
        kol, _ = committor_terms(model, x, scale * w, np.array([0, 1, -1, -1]))
        assert kol == pytest.approx(np.mean(w / w.mean() * grad_sq), rel=1e-5)


def test_committor_training_is_a_function_of_its_seed():
    """The initial weights come from the seed's generator, not torch's global stream."""
    import torch

    from cvcycle.learn.committor import train_committor

    x, w, labels = _committor_data()
    torch.manual_seed(1)
    a = train_committor(x, w, labels, _learner_cfg(), seed=5, log=lambda line: None).model
    torch.manual_seed(2)
    b = train_committor(x, w, labels, _learner_cfg(), seed=5, log=lambda line: None).model
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    # inputs are standardised with the weighted mean and standard deviation of the data
    mean = (w[:, None] * x).sum(0) / w.sum()
    np.testing.assert_allclose(a.mean.numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(a.std.numpy(), np.sqrt((w[:, None] * (x - mean) ** 2).sum(0) / w.sum()), rtol=1e-5)


def test_committor_training_from_a_constant_model_stays_finite():
    """A warm start from a constant q has K = 0 on the data: the loss still has a finite scale."""
    import torch

    from cvcycle.learn.committor import train_committor
    from cvcycle.models.committor import CommittorNet

    x, w, labels = _committor_data()
    flat = CommittorNet(2, [8])
    with torch.no_grad():
        for p in flat.parameters():
            p.zero_()
    result = train_committor(x, w, labels, _learner_cfg(), seed=3, log=lambda line: None, init=flat)
    assert np.all(np.isfinite(result.train_loss)) and np.all(np.isfinite(result.val_loss))


def test_shooting_nll_is_the_binomial_likelihood_per_shot():
    """A constant model q = sigmoid(b): NLL = -(sum n_B log q + sum n_A log(1 - q)) / sum(n_A + n_B)."""
    import math

    import torch

    from cvcycle.learn.committor import shooting_nll
    from cvcycle.models.committor import CommittorNet

    model = CommittorNet(2, [4])
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.net[-1].bias.fill_(0.8)
    q = 1.0 / (1.0 + math.exp(-0.8))
    n_a, n_b = np.array([3.0, 0.0, 5.0]), np.array([1.0, 4.0, 2.0])
    expected = -(n_b.sum() * math.log(q) + n_a.sum() * math.log(1 - q)) / (n_a.sum() + n_b.sum())
    assert shooting_nll(model, np.zeros((3, 2)), n_a, n_b) == pytest.approx(expected, rel=1e-6)


def test_committor_from_shooting_learns_the_outcome_probability_and_is_seeded():
    """Outcomes drawn with p_B = sigmoid(4 x): the fitted q rises with x, beats the best constant
    model's likelihood, and depends on the seed only."""
    import torch

    from cvcycle.learn.committor import shooting_nll, train_committor_shooting

    rng = np.random.default_rng(4)
    x = rng.uniform(-1.0, 1.0, (400, 2))
    n_b = rng.binomial(10, 1.0 / (1.0 + np.exp(-4.0 * x[:, 0]))).astype(float)
    n_a = 10.0 - n_b
    cfg = _learner_cfg(method="shooting", epochs=60, learning_rate=1e-2, patience=60)
    torch.manual_seed(1)
    a = train_committor_shooting(x, n_a, n_b, cfg, seed=9, log=lambda line: None).model
    torch.manual_seed(2)
    b = train_committor_shooting(x, n_a, n_b, cfg, seed=9, log=lambda line: None).model
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    p = n_b.sum() / (n_a.sum() + n_b.sum())
    constant = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    assert shooting_nll(a, x, n_a, n_b) < constant - 0.1
    with torch.no_grad():
        q = a.committor(torch.tensor([[-0.8, 0.0], [0.0, 0.0], [0.8, 0.0]], dtype=torch.float32)).numpy()
    assert q[0] < 0.2 < q[1] < 0.8 < q[2]


def test_reconstruction_loss_is_the_weighted_mean_squared_error_in_data_units():
    """An autoencoder with zero weights outputs its last bias b (standardised units) for every
    frame, i.e. m = mean + b std in data units: the loss is sum_i w_i sum_f ((m_f - x_if) / sd_f)^2
    / sum_i w_i, sd the data's (n - 1) standard deviation."""
    import torch

    from cvcycle.learn.train import reconstruction_loss
    from cvcycle.models.autoencoder import AutoEncoder

    rng = np.random.default_rng(8)
    x = rng.normal([1.0, -2.0, 0.5], [0.5, 2.0, 1.0], (200, 3))
    w = rng.uniform(0.5, 3.0, 200)  # not normalised
    model = AutoEncoder(3, 1, [6])
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.mean.copy_(torch.tensor([0.8, -1.5, 0.0]))
        model.std.copy_(torch.tensor([2.0, 3.0, 0.5]))
        last = [layer for layer in model.modules() if isinstance(layer, torch.nn.Linear)][-1]
        last.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))  # the output, in standardised units
    m = np.array([0.8, -1.5, 0.0]) + np.array([0.5, -1.0, 2.0]) * np.array([2.0, 3.0, 0.5])
    sd = x.std(0, ddof=1)
    expected = np.sum(w * (((m - x) / sd) ** 2).sum(1)) / w.sum()
    assert reconstruction_loss(model, x, w) == pytest.approx(expected, rel=1e-5)


def test_fit_holds_out_the_validation_fraction_and_reports_mean_losses():
    """Every epoch trains on each of the 75 training samples once, in batches, and validates on the
    25 held-out ones; the reported training loss is the sample-weighted mean of the batch losses."""
    import torch

    from cvcycle.learn.train import fit

    model = torch.nn.Linear(1, 1)
    data = torch.linspace(-1.0, 1.0, 100)[:, None]
    seen: dict[str, set[int]] = {"train": set(), "val": set()}
    batches: list[list[tuple[int, float]]] = []
    val_losses: list[float] = []

    def loss_of(idx):
        loss = ((model(data[idx]) - 2.0 * data[idx]) ** 2).mean()
        if model.training:
            if not batches or sum(n for n, _ in batches[-1]) == 75:
                batches.append([])
            batches[-1].append((len(idx), float(loss.detach())))
        else:
            val_losses.append(float(loss.detach()))
        seen["train" if model.training else "val"].update(idx.tolist())
        return loss

    cfg = _learner_cfg(validation_fraction=0.25, epochs=3, batch_size=16, patience=10)
    result = fit(model, loss_of, 100, cfg, torch.Generator().manual_seed(0), log=lambda line: None)
    assert len(seen["val"]) == 25 and len(seen["train"]) == 75
    assert not seen["val"] & seen["train"] and seen["val"] | seen["train"] == set(range(100))
    assert len(batches) == 3 and all(sum(n for n, _ in epoch) == 75 for epoch in batches)
    expected = [sum(n * loss for n, loss in epoch) / 75 for epoch in batches]
    np.testing.assert_allclose(result.train_loss, expected, rtol=1e-6)
    np.testing.assert_allclose(result.val_loss, val_losses, rtol=1e-6)


def test_early_stopping_keeps_the_best_validation_state():
    """Scripted validation losses 5, 4, 4 (1 - 1e-4), 3, 3, 3, 3, ...: an improvement must beat the
    best by a relative 1e-4, so epoch 2 is stale; epoch 3 is the best; with patience 3 training
    stops after epoch 6 (7 epochs run) and ends with the parameters of epoch 3."""
    import torch

    from cvcycle.learn.train import fit

    model = torch.nn.Linear(1, 1)
    data = torch.linspace(-1.0, 1.0, 40)[:, None]
    script = [5.0, 4.0, 4.0 * (1 - 1e-4), 3.0] + [3.0] * 20
    params: list[list[float]] = []

    def loss_of(idx):
        if model.training:
            return ((model(data[idx]) - 2.0 * data[idx]) ** 2).mean()
        params.append([float(p) for p in torch.cat([q.detach().flatten() for q in model.parameters()])])
        return torch.tensor(script[len(params) - 1], dtype=torch.float64)

    cfg = _learner_cfg(validation_fraction=0.25, epochs=20, batch_size=8, patience=3, learning_rate=0.05)
    result = fit(model, loss_of, 40, cfg, torch.Generator().manual_seed(0), log=lambda line: None)
    assert result.best_epoch == 3 and len(result.val_loss) == 7 and len(result.train_loss) == 7
    assert result.val_loss == script[:7]
    final = [float(p) for p in torch.cat([q.detach().flatten() for q in model.parameters()])]
    assert final == params[3] and params[3] != params[6]
    # a loss exactly 1e-4 (relative) below the best is no improvement: best stays at epoch 1
    script[:] = [5.0, 4.0, 4.0 * (1 - 1e-4)] + [4.5] * 20
    params.clear()
    result = fit(model, loss_of, 40, cfg, torch.Generator().manual_seed(0), log=lambda line: None)
    assert result.best_epoch == 1 and len(result.val_loss) == 5


class _Killed(Exception):
    pass


def _fit_with_checkpoints(directory, kill_at_epoch=None):
    import torch

    from cvcycle.checkpoints import CheckpointSeries
    from cvcycle.learn.train import fit

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(1, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    data = torch.linspace(-1.0, 1.0, 60)[:, None]
    series = CheckpointSeries(directory, "epoch")
    evals = [series.indices()[0] if series.indices() else 0]  # epochs done before this call

    def loss_of(idx):
        if not model.training:  # scripted validation: the best epoch (1) comes before the kill
            evals[0] += 1
            if evals[0] == kill_at_epoch:
                raise _Killed
            return torch.tensor([5.0, 3.0, 4.0, 4.0, 4.0, 4.0, 4.0][evals[0] - 1], dtype=torch.float64)
        return ((model(data[idx]) - torch.sin(3 * data[idx])) ** 2).mean()

    cfg = _learner_cfg(validation_fraction=0.2, epochs=7, batch_size=8, patience=50, checkpoint_epochs=2,
                       learning_rate=0.02)
    result = fit(model, loss_of, 60, cfg, torch.Generator().manual_seed(4), log=lambda line: None,
                 checkpoints=series)
    return result, [p.detach().clone() for p in model.parameters()]


def test_training_killed_between_checkpoints_resumes_bit_for_bit(tmp_path):
    """Checkpoints every 2 epochs and at the end; a run killed in epoch 6 resumes from epoch 4 and
    ends exactly where the uninterrupted run does: with the parameters of its best epoch (1),
    which only the checkpoint remembers."""
    import torch

    from cvcycle.checkpoints import CheckpointSeries

    whole, whole_params = _fit_with_checkpoints(tmp_path / "whole")
    assert CheckpointSeries(tmp_path / "whole", "epoch").indices() == [7, 6]
    with pytest.raises(_Killed):
        _fit_with_checkpoints(tmp_path / "killed", kill_at_epoch=6)
    assert CheckpointSeries(tmp_path / "killed", "epoch").indices() == [4, 2]
    resumed, resumed_params = _fit_with_checkpoints(tmp_path / "killed")
    assert resumed.train_loss == whole.train_loss and resumed.val_loss == whole.val_loss
    assert resumed.best_epoch == whole.best_epoch == 1
    assert all(torch.equal(a, b) for a, b in zip(whole_params, resumed_params))
    again, again_params = _fit_with_checkpoints(tmp_path / "killed")  # finished: nothing is trained again
    assert again.train_loss == whole.train_loss and all(torch.equal(a, b) for a, b in zip(whole_params, again_params))


class _Clock:
    """time.perf_counter advances 2 s a call; time.monotonic reads the same clock."""

    def __init__(self) -> None:
        self.t = 0.0

    def perf_counter(self) -> float:
        self.t += 2.0
        return self.t

    def monotonic(self) -> float:
        return self.t


def test_training_stops_at_a_checkpoint_when_the_next_stretch_would_pass_the_deadline(tmp_path, monkeypatch):
    """Each stretch of 2 epochs takes 2 s on the clock; at a checkpoint training stops when now +
    1.5 x the last stretch passes the deadline: with the deadline at t = 7 s, not at epoch 2
    (4 + 3 = 7 is not past it) but at epoch 4 (6 + 3 = 9)."""
    import torch

    from cvcycle.checkpoints import CheckpointSeries
    from cvcycle.errors import WalltimeReached
    from cvcycle.learn import train

    model = torch.nn.Linear(1, 1)
    data = torch.linspace(-1.0, 1.0, 40)[:, None]

    def loss_of(idx):
        return ((model(data[idx]) - data[idx]) ** 2).mean()

    cfg = _learner_cfg(validation_fraction=0.25, epochs=7, batch_size=8, patience=50, checkpoint_epochs=2)
    clock = _Clock()
    monkeypatch.setattr(train, "time", clock)
    series = CheckpointSeries(tmp_path / "a", "epoch")
    with pytest.raises(WalltimeReached, match="epoch 4"):
        train.fit(model, loss_of, 40, cfg, torch.Generator().manual_seed(0), log=lambda line: None,
                  checkpoints=series, deadline=7.0)
    assert series.indices()[0] == 4
    clock.t = 0.0  # without a deadline: all 7 epochs, and the time they took on the clock
    result = train.fit(model, loss_of, 40, cfg, torch.Generator().manual_seed(0), log=lambda line: None,
                       checkpoints=CheckpointSeries(tmp_path / "b", "epoch"))
    assert len(result.train_loss) == 7 and result.seconds == clock.t - 2.0
