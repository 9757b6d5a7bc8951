"""Run settings after a campaign starts: `extend` continues a campaign that spent its budget
exactly as one created with the larger budget, and a changed state point is refused."""

from __future__ import annotations

import pytest

from cvcycle import io as cio
from cvcycle.campaign import Campaign
from cvcycle.errors import WorkspaceError
from cvcycle.extend import extend
from cvcycle.loop import advance
from cvcycle.show import summary
from digests import campaign_digests
from test_campaign import make_campaign, tiny_spec

WALKER_STEPS_ITER01 = 8 * (200 + 600)  # tiny_spec: 8 walkers, 200 steps in iteration 0, 600 after


def test_extended_campaign_continues_bit_for_bit_like_one_with_the_larger_budget(tmp_path):
    reference = make_campaign(tmp_path / "reference", tiny_spec())
    advance(reference, log=lambda line: None)

    short = make_campaign(tmp_path / "short", tiny_spec(budget={"max_total_steps": WALKER_STEPS_ITER01}))
    doc = advance(short, log=lambda line: None)
    assert (doc["status"], doc["iteration"], len(doc["history"])) == ("budget", 1, 2)
    c = Campaign(short)
    with c.lock():
        lines = extend(c, {"budget": {"max_total_steps": 2_000_000}})
    assert lines == ["budget.max_total_steps: 6400 -> 2000000", "status: budget -> running (continues with iteration 2)"]
    assert Campaign(short).spec["budget"]["max_total_steps"] == 2_000_000  # the document's setting overrides
    with c.lock():  # plots are a run setting too: on and off again, nothing else changes
        assert extend(c, {"analysis": {"plots": True}}) == ["analysis.plots: False -> True"]
        assert extend(c, {"analysis": {"plots": False}}) == ["analysis.plots: True -> False"]
    advance(short, log=lambda line: None)

    assert campaign_digests(short) == campaign_digests(reference)
    assert Campaign(short).progress()["history"] == Campaign(reference).progress()["history"]
    assert cio.read_json(short / "signac_statepoint.json") == cio.read_json(reference / "signac_statepoint.json") | {
        "spec": {**tiny_spec(), "budget": {**tiny_spec()["budget"], "max_total_steps": WALKER_STEPS_ITER01}}}


def test_a_state_point_changed_after_the_start_is_refused_with_the_fields_that_changed(tmp_path):
    path = make_campaign(tmp_path / "c", tiny_spec(budget={"max_total_steps": WALKER_STEPS_ITER01 // 2}))
    advance(path, log=lambda line: None)
    started = Campaign(path).progress()
    assert started["spec_at_start"] == tiny_spec(budget={"max_total_steps": WALKER_STEPS_ITER01 // 2})
    assert started["started_with"]["schema"] == tiny_spec()["campaign"]["schema"]
    sp = cio.read_json(path / "signac_statepoint.json")
    sp["spec"]["engine"]["segment_steps"] = 100
    sp["spec"]["system"]["temperature"] = 3.0
    cio.write_json(path / "signac_statepoint.json", sp)
    for action in (lambda: summary(Campaign(path)), lambda: advance(path, log=lambda line: None)):
        with pytest.raises(WorkspaceError, match=r"changed after the campaign started \(engine.segment_steps: 200 -> 100; "
                                                 r"system.temperature: 1.0 -> 3.0\)"):
            action()
