"""Campaign loop through cvcycle.steps (no signac-flow): both biases end to end, and an
interrupted campaign that resumes to results identical to an uninterrupted one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from cvcycle import io as cio
from cvcycle.campaign import Campaign
from cvcycle.errors import WorkspaceError
from cvcycle.spec import load_spec, validate
from cvcycle.steps import advance

ROOT = Path(__file__).resolve().parents[1]


def tiny_spec(**changes: dict) -> dict:
    spec = load_spec(ROOT / "workflows" / "mueller-brown-autoencoder.toml")
    small = {"engine": {"walkers": 8, "initial_steps": 200, "steps": 600, "segment_steps": 200},
             "learner": {"epochs": 5, "max_samples": 2000, "ensemble": 2},
             "analysis": {"grid_bins": 40, "plots": False},
             "budget": {"max_iterations": 3}, "convergence": {"min_iterations": 3}}
    for section, values in list(small.items()) + list(changes.items()):
        spec[section] = {**spec[section], **values}
    return validate(spec)


def make_campaign(path: Path, spec: dict) -> Path:
    path.mkdir(parents=True)
    cio.write_json(path / "signac_statepoint.json", {"spec": spec})
    return path


def digests(path: Path) -> dict[str, str]:
    """SHA-256 of every data, model and metrics file of a campaign (not logs or plots)."""
    out = {}
    for f in sorted(path.glob("iter-*/*")):
        if f.suffix in (".npz", ".pt", ".json") and f.name != "train.json":
            out[str(f.relative_to(path))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize("kind", ["opes", "metad"])
def test_campaign_runs_with_each_bias(tmp_path, kind):
    path = make_campaign(tmp_path / kind, tiny_spec(bias={"kind": kind}))
    doc = advance(path, log=lambda line: None)
    assert doc["status"] in ("converged", "budget")
    assert len(doc["history"]) == 3
    assert doc["total_steps"] == 8 * (200 + 600 + 600)
    for k in (1, 2):
        s = cio.read_npz(path / f"iter-{k:03d}" / "samples.npz")
        assert s["positions"].shape == (60, 8, 2)
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
    assert digests(resumed) == digests(reference)
    assert Campaign(resumed).progress()["history"] == Campaign(reference).progress()["history"]


def test_corrupted_checkpoint_is_reported_by_path(tmp_path):
    path = make_campaign(tmp_path / "c", tiny_spec())
    with pytest.raises(Interrupt):
        advance(path, log=lambda line: (_ for _ in ()).throw(Interrupt()) if "segment 1/" in line else None)
    ckpt = path / "iter-000" / "sim" / "checkpoint.npz"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(WorkspaceError, match="checkpoint.npz"):
        advance(path, log=lambda line: None)


def test_second_process_is_refused(tmp_path):
    path = make_campaign(tmp_path / "c", tiny_spec())
    with Campaign(path).lock():
        with pytest.raises(WorkspaceError, match="being run by"):
            advance(path, log=lambda line: None)
