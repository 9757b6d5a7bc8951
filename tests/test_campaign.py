"""Campaign loop through cvcycle.loop (no signac-flow): both biases end to end, and an
interrupted campaign that resumes to results identical to an uninterrupted one."""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from cvcycle import io as cio
from cvcycle.campaign import Campaign
from cvcycle.errors import SimulationError, WorkspaceError
from cvcycle.spec import load_spec, validate
from cvcycle.loop import advance
from digests import campaign_digests

ROOT = Path(__file__).resolve().parents[1]


def tiny_spec(**changes: dict) -> dict:
    spec = load_spec(ROOT / "workflows" / "mueller-brown-autoencoder.toml")
    small = {"engine": {"walkers": 8, "initial_steps": 200, "steps": 600, "segment_steps": 200},
             "learner": {"epochs": 5, "max_samples": 2000, "ensemble": 2, "checkpoint_epochs": 2},
             "analysis": {"grid_bins": 40, "plots": False},
             "budget": {"max_iterations": 3}, "convergence": {"min_iterations": 3}}
    for section, values in list(small.items()) + list(changes.items()):
        spec[section] = {**spec[section], **values}
    return validate(spec)


def make_campaign(path: Path, spec: dict) -> Path:
    path.mkdir(parents=True)
    cio.write_json(path / "signac_statepoint.json", {"spec": spec})
    return path


@pytest.mark.parametrize("kind", ["opes", "metad"])
def test_campaign_runs_with_each_bias(tmp_path, kind):
    path = make_campaign(tmp_path / kind, tiny_spec(bias={"kind": kind}))
    doc = advance(path, log=lambda line: None)
    assert doc["status"] in ("converged", "budget")
    assert len(doc["history"]) == 3
    assert doc["total_steps"] == 8 * (200 + 600 + 600)
    steps_before = 200
    for k in (1, 2):
        s = cio.read_npz(path / f"iter-{k:03d}" / "samples.npz")
        traj = cio.read_npz(path / f"iter-{k:03d}" / "trajectory.npz")
        assert traj["positions"].shape == (60, 8, 1, 2)  # frames, walkers, particles, dimensions
        np.testing.assert_array_equal(traj["frame"], np.arange(60))  # position_stride 1: every frame
        assert "positions" not in s and s["state"].shape == (60, 8)  # positions are stored once
        assert not list((path / f"iter-{k:03d}" / "sim").glob("segment-*"))  # joined, then removed
        np.testing.assert_array_equal(s["step"], steps_before + 10 * np.arange(60))  # the global step continues
        steps_before += 600
        assert np.isfinite(s["log_weight"]).all()
        assert np.ptp(s["bias"]) > 0.1  # the bias acted
        offset = s["bias"] / 1.0 - s["log_weight"]  # kT = 1: log w = V - c(t)
        if kind == "opes":
            assert np.allclose(offset, 0.0)
        else:  # Tiwary-Parrinello c(t) grows as the metadynamics bias builds up
            assert offset[-1, 0] > offset[0, 0]
    metrics = cio.read_json(path / "iter-002" / "metrics.json")
    assert 0.0 <= metrics["committor_r2"] <= 1.0 and metrics["cv_r2"] is not None


class Interrupt(Exception):
    pass


def test_interrupted_campaign_resumes_bit_for_bit(tmp_path):
    spec = tiny_spec()
    reference = make_campaign(tmp_path / "reference", spec)
    advance(reference, log=lambda line: None)

    resumed = make_campaign(tmp_path / "resumed", spec)
    seen = {"n": 0}

    def stop_at(line_numbers: set[int]):
        def log(line: str) -> None:
            seen["n"] += 1
            if seen["n"] in line_numbers:
                raise Interrupt(line)
        return log

    # interrupt inside simulation (after a segment checkpoint), inside training and analysis
    interrupts = 0
    stops = {3, 9, 17, 26, 40, 55}
    while not Campaign(resumed).finished:
        try:
            advance(resumed, log=stop_at(stops))
        except Interrupt:
            interrupts += 1
    assert interrupts >= 4
    assert campaign_digests(resumed) == campaign_digests(reference)
    assert Campaign(resumed).progress()["history"] == Campaign(reference).progress()["history"]


def _run_until(path: Path, marker: str) -> None:
    """Advance the campaign and interrupt it right after the first log line containing `marker`."""
    def log(line: str) -> None:
        if marker in line:
            raise Interrupt(line)
    with pytest.raises(Interrupt):
        advance(path, log=log)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupted_simulation_checkpoint_falls_back_to_the_previous_one(tmp_path, damage):
    spec = tiny_spec()
    reference = make_campaign(tmp_path / "reference", spec)
    advance(reference, log=lambda line: None)
    path = make_campaign(tmp_path / "c", spec)
    _run_until(path, "[iter 1 simulate] opes on CV_1: segment 2/3")
    sim = path / "iter-001" / "sim"
    assert sorted(p.name for p in sim.glob("checkpoint-*.npz")) == ["checkpoint-0001.npz", "checkpoint-0002.npz"]
    ckpt = sim / "checkpoint-0002.npz"
    data = bytearray(ckpt.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    lines: list[str] = []
    advance(path, log=lines.append)
    warning = next(line for line in lines if line.startswith("warning:"))
    assert str(ckpt) in warning and "falling back" in warning
    assert "[iter 1 simulate] resuming at segment 1/3" in lines
    assert (sim / "checkpoint-0002.npz.corrupt").exists()  # set aside for inspection, not deleted
    assert campaign_digests(path) == campaign_digests(reference)


@pytest.mark.parametrize("segment, resumed", [(0, None), (1, "[iter 1 simulate] resuming at segment 1/3")])
def test_a_damaged_segment_is_recomputed_and_the_campaign_ends_bit_for_bit(tmp_path, segment, resumed):
    """Segment 0 precedes every kept checkpoint: the iteration starts again; segment 1 follows
    checkpoint 1: the run resumes there. Either way the results equal an undamaged run's."""
    spec = tiny_spec()
    reference = make_campaign(tmp_path / "reference", spec)
    advance(reference, log=lambda line: None)
    path = make_campaign(tmp_path / "c", spec)
    _run_until(path, "[iter 1 simulate] opes on CV_1: segment 2/3")
    damaged = path / "iter-001" / "sim" / f"segment-{segment:04d}.npz"
    damaged.write_bytes(damaged.read_bytes()[:100])
    lines: list[str] = []
    advance(path, log=lines.append)
    warning = next(line for line in lines if line.startswith("warning:"))
    assert str(damaged) in warning and "iteration 1 is recomputed from" in warning
    assert resumed is None or resumed in lines
    assert campaign_digests(path) == campaign_digests(reference)


def test_corrupted_training_checkpoint_falls_back_and_training_resumes_bit_for_bit(tmp_path):
    # one process, so that member 1 has finished when member 2 starts
    spec = tiny_spec(learner={"epochs": 8, "checkpoint_epochs": 2, "patience": 100}, resources={"cpus": 1})
    reference = make_campaign(tmp_path / "reference", spec)
    advance(reference, log=lambda line: None)
    path = make_campaign(tmp_path / "c", spec)
    _run_until(path, "[iter 0 train 2/2]")  # member 1 finished, member 2 starting
    members = path / "iter-000" / "train"
    assert (members / "member-0-0008.npz").exists() and (members / "member-0-0006.npz").exists()
    (members / "member-0-0008.npz").write_bytes(b"not an npz")
    lines: list[str] = []
    advance(path, log=lines.append)
    assert any(line.startswith("warning:") and "member-0-0008.npz" in line for line in lines)
    assert "[iter 0 train 1/2] resuming at epoch 6/8" in lines
    assert campaign_digests(path) == campaign_digests(reference)


def test_second_process_is_refused(tmp_path):
    path = make_campaign(tmp_path / "c", tiny_spec())
    with Campaign(path).lock():
        with pytest.raises(WorkspaceError, match="being run by"):
            advance(path, log=lambda line: None)


def test_a_run_whose_lock_file_is_deleted_stops_before_it_writes_progress(tmp_path):
    """Deleting .cvcycle.lock lets a second run lock a new file; the first one notices at its next
    update of the job document and stops without writing it."""
    path = make_campaign(tmp_path / "c", tiny_spec())
    lock_file = path / ".cvcycle.lock"

    def delete_once(line: str) -> None:
        if lock_file.exists() and "segment" in line:
            lock_file.unlink()

    with pytest.raises(WorkspaceError, match="was deleted or replaced while this run held it"):
        advance(path, log=delete_once)
    doc = Campaign(path).progress()
    assert (doc["iteration"], doc["phase"], doc["total_steps"]) == (0, "simulate", 0)  # the phase's end was not recorded
    c = Campaign(path)
    with c.lock():  # the next run takes the lock as usual
        c.update_doc(note="ok")


@pytest.mark.parametrize("code, remedy", [(errno.ENOSPC, "free space on that file system"),
                                          (errno.EROFS, "mounted read-only")])
def test_a_full_or_read_only_disk_is_one_error_with_the_path_and_kept_in_last_error(tmp_path, monkeypatch, code, remedy):
    from cvcycle.routes import simulate

    path = make_campaign(tmp_path / "c", tiny_spec())
    target = path / "iter-000" / "sim" / "segment-0000.npz"

    def refuse(p, **arrays):
        raise OSError(code, os.strerror(code), str(target))

    monkeypatch.setattr(simulate.cio, "write_npz", refuse)
    with pytest.raises(WorkspaceError) as info:
        advance(path, log=lambda line: None)
    assert str(info.value) == f"{os.strerror(code)}: {target} ({cio.REMEDIES[code]})" and remedy in str(info.value)
    error = Campaign(path).progress()["last_error"]
    assert (error["iteration"], error["phase"], error["message"]) == (0, "simulate", str(info.value))


def test_walltime_budget_stops_between_phases_and_the_next_call_continues(tmp_path):
    path = make_campaign(tmp_path / "c", tiny_spec())
    lines: list[str] = []
    doc = advance(path, walltime=1e-3, log=lines.append)  # always one phase, then the budget is spent
    assert (doc["iteration"], doc["phase"], doc["status"]) == (0, "train", "running")
    assert lines[-2] == "[iter 0 train] stopping before it: walltime budget nearly spent"
    assert lines[-1].startswith("summary: mueller-brown-autoencoder seed 0: running at iteration 0 train, 1,600 walker steps")
    lines.clear()
    doc = advance(path, walltime=1e-3, log=lines.append)  # inside training: at the first epoch checkpoint
    assert lines[-2] == "[iter 0 train 1/2] stopping at epoch 2: walltime budget nearly spent"
    assert (doc["iteration"], doc["phase"]) == (0, "train")
    _run_until(path, "[iter 1 simulate] bias primed")
    lines.clear()
    doc = advance(path, walltime=1e-3, log=lines.append)  # inside simulation: after a segment
    assert lines[-2] == "[iter 1 simulate] stopping after segment 1/3: walltime budget nearly spent"
    assert (doc["iteration"], doc["phase"]) == (1, "simulate")
    assert advance(path, log=lambda line: None)["status"] in ("converged", "budget")


def test_diverging_simulation_names_iteration_step_and_walker_and_keeps_its_checkpoints(tmp_path):
    path = make_campaign(tmp_path / "c", tiny_spec())
    _run_until(path, "[iter 1 simulate] opes on CV_1: segment 1/3")
    checkpoint = path / "iter-001" / "sim" / "checkpoint-0001.npz"
    good = checkpoint.read_bytes()
    state = cio.read_npz(checkpoint)
    state["positions"][0] += 10.0  # one walker far up Mueller-Brown's steep wall: its next steps blow up
    cio.write_npz(checkpoint, **state)
    before = {p.name: p.read_bytes() for p in (path / "iter-001" / "sim").iterdir()}
    with pytest.raises(SimulationError, match=r"iteration 1, segment 2/3: simulation diverged at step \d+, walker \d+") as err:
        advance(path, log=lambda line: None)
    assert "last good checkpoint: " in str(err.value) and "checkpoint-0001.npz" in str(err.value)
    assert {p.name: p.read_bytes() for p in (path / "iter-001" / "sim").iterdir()} == before
    doc = Campaign(path).progress()
    assert doc["phase"] == "simulate" and doc["last_error"]["message"] == str(err.value)
    from cvcycle.show import render, summary

    assert "error      iteration 1 simulate at " in render(summary(Campaign(path)))
    checkpoint.write_bytes(good)  # the user restores the checkpoint and resumes
    advance(path, log=lambda line: None)
    assert Campaign(path).progress()["last_error"] is None


def test_show_reports_the_running_process_the_last_run_and_the_last_checkpoint(tmp_path, monkeypatch):
    from cvcycle.show import render, summary

    path = make_campaign(tmp_path / "c", tiny_spec())
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    _run_until(path, "segment 1/1")
    monkeypatch.setenv("PATH", str(tmp_path))  # no squeue here: the SLURM state is unknown, not an error
    c = Campaign(path)
    s = summary(c)
    assert s["running_now"] is None
    assert s["last_run"]["slurm_job"] == "4242" and s["last_run"]["slurm_state"] is None
    assert s["last_checkpoint"] == c.last_checkpoint() and s["last_checkpoint"].startswith("20")
    with c.lock():
        s = summary(Campaign(path))
        assert s["running_now"].startswith(f"pid {os.getpid()} on ")
        assert "running    now: pid" in render(s) and "SLURM job 4242 (state unknown)" in render(s)
    assert not (path / ".cvcycle.lock").read_text()  # released and emptied


def test_show_names_the_failed_checks_and_the_committor_test():
    """Each iteration's row says which convergence checks failed, and the committor histogram test
    (the gate) where it ran: mean p_B / width without binomial noise, or that it could not run."""
    from cvcycle.show import _test, render

    rows = [{"iteration": 0, "cv_r2": None, "committor_test": _test(None), "converged": False, "failed": ["cv_r2", "states"]},
            {"iteration": 1, "cv_r2": 0.995, "committor_test": _test({"error": "p_B never crosses 1/2"}), "converged": False,
             "failed": ["committor_test"]},
            {"iteration": 2, "cv_r2": 0.996, "converged": True, "failed": [],
             "committor_test": _test({"p_B_mean": 0.4834, "p_B_std_intrinsic": 0.0261})}]
    s = {"campaign": "c", "seed": 0, "id": "c", "status": "converged", "iteration": 2, "phase": "done", "total_steps": 10,
         "features": ["x"], "last_checkpoint": None, "last_run": None, "running_now": None, "last_error": None,
         "iterations": rows, "path": "/j", "cv_model": None, "committor_model": None, "fes": None, "plots": {}}
    table = render(s).splitlines()
    head = next(i for i, line in enumerate(table) if line.startswith("iter"))
    assert table[head].split() == ["iter", "cv_r2", "committor_test", "converged"]
    assert table[head + 1].split() == ["0", "-", "-", "no:", "cv_r2,", "states"]
    assert table[head + 2].split() == ["1", "0.9950", "not", "run", "no:", "committor_test"]
    assert table[head + 3].split() == ["2", "0.9960", "0.483/0.026", "yes"]
    for row in rows:
        row["committor_test"] = None
    table = render(s).splitlines()
    assert table[head].split() == ["iter", "cv_r2", "converged"]  # a campaign without the gate: no such column


def test_training_spread_benchmark_retrains_the_campaigns_own_cv(tmp_path, capsys, monkeypatch):
    """benchmarks/cv_training_spread.py refits iteration k on the campaign's exact training set:
    the member the campaign kept comes out with the campaign's own selection scores, committor R^2
    and width."""
    import runpy
    import sys

    path = make_campaign(tmp_path / "c", tiny_spec())
    advance(path, log=lambda line: None)
    record = cio.read_json(path / "iter-002" / "train.json")
    chosen = record["chosen"]
    metrics = cio.read_json(path / "iter-002" / "metrics.json")
    monkeypatch.setattr(sys, "argv", ["cv_training_spread.py", str(path), "--members", "2"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(ROOT / "benchmarks" / "cv_training_spread.py"), run_name="__main__")
    assert stop.value.code == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {chosen} |")]
    scores, r2, width = [float(v) for v in rows[0][2:-2]], float(rows[0][-2]), float(rows[0][-1])
    assert scores == pytest.approx([math.inf if v is None else v for v in record["candidate_scores"][chosen]], rel=1e-3)
    assert r2 == pytest.approx(metrics["committor_r2"], abs=6e-5)
    assert width == pytest.approx(metrics["committor_width"], abs=6e-4)


def test_a_campaign_whose_training_diverges_stops_in_train_and_saves_no_model(tmp_path):
    from cvcycle.errors import TrainingError

    path = make_campaign(tmp_path / "c", tiny_spec(learner={"learning_rate": 1e30}))
    with pytest.raises(TrainingError, match="iteration 0 train: every ensemble member diverged") as err:
        advance(path, log=lambda line: None)
    assert not any((path / "iter-000" / name).exists() for name in ("model.npz", "cv.pt", "train.json"))
    doc = Campaign(path).progress()
    assert (doc["phase"], doc["last_error"]["phase"], doc["last_error"]["message"]) == ("train", "train", str(err.value))


def named(name: str) -> torch.nn.Module:
    """A tiny model that keeps its name through the forked workers' pickling."""
    model = torch.nn.Linear(1, 1)
    model.name = name
    return model


@pytest.mark.parametrize("warm, fresh, kept", [
    ((1.0, 0.2), (0.97, 0.3), 1),  # the lower K_s wins over a lower reconstruction loss
    ((1.0, 0.2), (math.inf, 0.1), 0),  # a member without K_s (untrusted) loses to one with it
    ((math.inf, 0.2), (math.inf, 0.1), 1),  # no K_s at all: the lower reconstruction loss decides
])
def test_ensemble_keeps_the_member_with_the_lowest_score_tuple(tmp_path, warm, fresh, kept):
    from cvcycle.learn.train import TrainResult
    from cvcycle.routes.fit import train_ensemble

    c = Campaign(make_campaign(tmp_path / "c", tiny_spec()))
    models = [named("warm"), named("fresh")]
    scores = {"warm": warm, "fresh": fresh}
    model, info = train_ensemble(c, 1, lambda line: None, lambda j, init, ckpt, label, log: TrainResult(models[j]),
                                 lambda m: scores[m.name], "K_s / loss", previous=models[0])
    assert model.name == ["warm", "fresh"][kept] and info["chosen"] == kept and info["criterion"] == "K_s / loss"
    assert info["candidate_scores"] == [[None if math.isinf(v) else v for v in sc] for sc in (warm, fresh)]


def test_a_diverged_member_is_left_out_and_an_ensemble_that_all_diverged_saves_nothing(tmp_path):
    from cvcycle.errors import TrainingError
    from cvcycle.learn.train import TrainResult
    from cvcycle.routes.fit import train_ensemble

    c = Campaign(make_campaign(tmp_path / "c", tiny_spec(learner={"ensemble": 3})))
    good, nan_weights, nan_loss = named("good"), named("nan weights"), named("nan loss")
    with torch.no_grad():
        nan_weights.weight.fill_(math.nan)
    results = [TrainResult(nan_weights, [0.5, 0.4]), TrainResult(good, [0.5, 0.4]), TrainResult(nan_loss, [0.5, math.inf])]
    lines = []
    model, info = train_ensemble(c, 1, lines.append, lambda j, init, ckpt, label, log: results[j],
                                 lambda m: (0.0,), "loss", previous=None)
    assert model.name == "good" and info["chosen"] == 1
    assert "[iter 1 train] member 1 diverged (non-finite parameters weight): left out of the choice" in lines
    assert "[iter 1 train] member 3 diverged (training loss inf from epoch 2): left out of the choice" in lines
    with pytest.raises(TrainingError, match=r"iteration 1 train: every ensemble member diverged \(member 1: non-finite "
                                            r"parameters weight; member 2: training loss inf from epoch 2; member 3: "
                                            r"non-finite parameters weight\); nothing was saved"):
        train_ensemble(c, 1, lines.append, lambda j, init, ckpt, label, log: [results[0], results[2], results[0]][j],
                       lambda m: (0.0,), "loss", previous=None)
    assert not (c.iter_dir(1) / "model.npz").exists()


@pytest.mark.parametrize("below, kept", [
    ({0: 0.0, 1: 0.97, 2: 0.90}, 1),  # only member 2 scores lower than 1, but not beyond the error
    ({0: 0.0, 1: 0.96, 2: 0.99}, 2),  # both beat the warm member beyond the error: the lower K_s
    ({0: 0.0, 1: 0.94, 2: 0.90}, 0),  # lower point estimates within the error: the warm member stays
    ({0: 0.0, 1: 0.95}, 1),  # member 2 untrusted (no K_s); 0.95 is enough
])
def test_a_fresh_member_replaces_the_warm_one_only_beyond_the_bootstrap_error(below, kept):
    from cvcycle.routes.autoencoder import warm_unless_beaten

    scores = [(1.0, 0.2), (0.9, 0.3), (0.8, 0.1)]
    assert warm_unless_beaten(scores, below) == kept


def test_bias_is_primed_from_every_frame_with_its_weight(tmp_path):
    """Priming takes the reweighted frames as they are (no resampling, which stacks kernels on
    the heavy frames): the primed OPES state is the prior of all the FES iterations' frames."""
    import torch

    from cvcycle.bias import CVBias, make_bias
    from cvcycle.routes.data import equilibrated, fes_iterations, flat, load_samples, mixture_weights, transitions
    from cvcycle.routes.fit import cv_of, eval_cv
    from cvcycle.routes.simulate import prime_bias

    spec = tiny_spec()
    path = make_campaign(tmp_path / "c", spec)
    _run_until(path, "[iter 2 simulate] bias primed")
    c = Campaign(path)
    hook = CVBias(cv_of(c, 1), make_bias(spec, 1))
    lines: list[str] = []
    prime_bias(c, 2, hook, lines.append)
    data = [load_samples(c, i) for i in range(2)]
    its = fes_iterations([transitions(d) for d in data], spec["analysis"]["fes_window"]) or [0, 1]
    eq = [equilibrated(d, spec["analysis"]["equilibration"]) for d in data]
    w = mixture_weights(eq, its, [transitions(d) for d in data])
    s = torch.as_tensor(eval_cv(hook.cv_model, np.concatenate([flat(eq[i], "features") for i in its])))
    expected = make_bias(spec, 1)
    en = spec["engine"]
    expected.prime(s, torch.as_tensor(w), spec["bias"]["warm_start_weight"] * en["walkers"] * en["steps"] / spec["bias"]["pace"])
    assert len(np.unique(w)) > 10  # the frames carry different weights
    for key, value in expected.state_dict().items():
        torch.testing.assert_close(hook.bias.state_dict()[key], value, msg=key)
    assert lines == [f"[iter 2 simulate] bias primed from iterations {its} on CV_2 ({len(s)} weighted frames)"]


def test_ensemble_choice_is_logged_and_recorded(tmp_path):
    from cvcycle.learn.train import TrainResult
    from cvcycle.routes.fit import train_ensemble

    c = Campaign(make_campaign(tmp_path / "c", tiny_spec()))
    lines: list[str] = []
    models = [named("warm"), named("fresh")]
    model, info = train_ensemble(c, 1, lines.append, lambda j, init, ckpt, label, log: TrainResult(models[j]),
                                 lambda m: {"warm": (1.0,), "fresh": (0.9,)}[m.name], "K_s", previous=models[0],
                                 choose=lambda models, scores: (0, {"ks_below_warm": [None, 0.5]}))
    assert model.name == "warm" and info["chosen"] == 0 and info["ks_below_warm"] == [None, 0.5]
    assert lines[-2:] == ["[iter 1 train] K_s: 1.000e+00, 9.000e-01: keeping model 1",
                          "[iter 1 train] ks_below_warm: [None, 0.5]"]
