"""bias.explore: iteration 0 biased along one feature, before any CV is learnt (the exploratory
bias a committor route needs where the unbiased first run stays in one state)."""

from __future__ import annotations

import numpy as np
import pytest

from cvcycle import io as cio
from cvcycle.campaign import Campaign
from cvcycle.errors import SpecError
from cvcycle.loop import advance
from cvcycle.routes.simulate import final_bias_hook
from cvcycle.spec import load_spec, validate
from digests import campaign_digests
from test_campaign import ROOT, Interrupt, make_campaign, tiny_spec

EXPLORE = {"explore": "x", "explore_range": [-1.5, 1.2], "explore_sigma": 0.05}
SMALL = {"engine": {"walkers": 8, "initial_steps": 600, "steps": 600, "segment_steps": 200},
         "budget": {"max_iterations": 2}, "convergence": {"min_iterations": 2}}


def _spec(bias: dict) -> dict:
    return tiny_spec(bias=bias, **SMALL)


def test_iteration_zero_runs_biased_along_the_feature_and_its_frames_carry_that_bias(tmp_path):
    explored = make_campaign(tmp_path / "explored", _spec(EXPLORE))
    plain = make_campaign(tmp_path / "plain", _spec({}))
    lines: list[str] = []
    advance(explored, log=lines.append)
    advance(plain, log=lambda line: None)

    s = cio.read_npz(explored / "iter-000" / "samples.npz")
    np.testing.assert_allclose(s["cv"][..., 0], s["features"][..., 0], atol=1e-6)  # the bias's CV is x (float32)
    assert np.ptp(s["bias"]) > 1.0  # OPES deposited along x
    np.testing.assert_allclose(s["log_weight"], s["bias"], atol=1e-12)  # kT = 1, OPES: log w = V / kT
    # the bias at the iteration's end (bias.npz, what iteration 0's analysis and stiffness use) is the
    # one in the last simulation checkpoint
    final = final_bias_hook(Campaign(explored), 0).bias.state_dict()
    last = cio.read_npz(explored / "iter-000" / "sim" / "checkpoint-0003.npz")
    assert final and all(np.array_equal(v.numpy(), last[f"bias_{key}"]) for key, v in final.items())
    assert any("[iter 0 simulate] opes on x" in line for line in lines)
    # the exploration spreads the frames along x beyond where the unbiased walkers (same seed) reach
    x_plain = cio.read_npz(plain / "iter-000" / "samples.npz")["features"][..., 0]
    assert s["features"][..., 0].max() > x_plain.max() + 0.1
    assert s["features"][..., 0].std() > 1.5 * x_plain.std()
    m0 = cio.read_json(explored / "iter-000" / "metrics.json")
    assert m0["bias_stiffness"] is not None and m0["bias_stiffness"] > 0.0  # iteration 0 is checked like any biased one
    assert cio.read_json(plain / "iter-000" / "metrics.json")["bias_stiffness"] is None


def test_an_explored_iteration_zero_resumes_bit_for_bit(tmp_path):
    spec = _spec(EXPLORE)
    reference = make_campaign(tmp_path / "reference", spec)
    advance(reference, log=lambda line: None)
    resumed = make_campaign(tmp_path / "resumed", spec)

    def stop_after_segment(line: str) -> None:
        if "[iter 0 simulate] opes on x: segment 2/3" in line:
            raise Interrupt(line)

    with pytest.raises(Interrupt):
        advance(resumed, log=stop_after_segment)
    advance(resumed, log=lambda line: None)
    assert campaign_digests(resumed) == campaign_digests(reference)


def test_explore_names_a_feature_of_the_spec():
    with pytest.raises(SpecError, match=r"^bias\.explore: 'xx' is not a feature .*did you mean 'x'.*its features: x, y"):
        _spec({**EXPLORE, "explore": "xx"})
    with pytest.raises(SpecError, match=r"^bias\.explore_range: must be \[low, high\] with low < high"):
        _spec({**EXPLORE, "explore_range": [1.0, -1.0]})
    tps = load_spec(ROOT / "workflows" / "mueller-brown-committor-tps.toml")
    tps["bias"] = {**tps["bias"], **EXPLORE}
    with pytest.raises(SpecError, match=r"^bias\.explore: .*shooting route"):
        validate(tps)
