"""Sweeps: `--set` values and `--seeds` forms, the product of campaigns `project.py init` creates,
and errors that name the setting and leave nothing created."""

from __future__ import annotations

import json

import pytest

from cvcycle.errors import SpecError
from cvcycle.settings import parse_values, split_values
from cvcycle.spec import load_spec
from cvcycle.sweep import parse_seeds, parse_sweep, sweep_specs
from test_cli import SPEC, project, write_spec


@pytest.mark.parametrize("text, values", [
    ("3", [3]), ("1,3,5", [1, 3, 5]), ("0.025, 0.035", [0.025, 0.035]), ('"A","B"', ["A", "B"]),
    ("[0.2, 0.8]", [[0.2, 0.8]]), ("[0.2, 0.8],[0.3, 0.7]", [[0.2, 0.8], [0.3, 0.7]]),
    ('"a,b"', ["a,b"]), ("true,false", [True, False]),
])
def test_values_are_toml_and_commas_outside_brackets_and_quotes_separate_them(text, values):
    assert parse_values(f"learner.x={text}") == (("learner", "x"), values)


def test_split_values_keeps_nested_arrays_whole():
    assert split_values('[[1, 2], [3]], "x,y", 4') == ["[[1, 2], [3]]", '"x,y"', "4"]


@pytest.mark.parametrize("item, message", [
    ("learner.ensemble", "expected SECTION.KEY=VALUE"), ("ensemble=3", "expected SECTION.KEY=VALUE"),
    ("learner.ensemble=", "expected SECTION.KEY=VALUE"), ("learner.ensemble=1,,3", "empty value"),
    ("learner.ensemble=1,x", "'x' is not a TOML value"), ("learner.ensemble=1,1", "given twice"),
])
def test_malformed_values_are_refused(item, message):
    with pytest.raises(SpecError, match=message):
        parse_values(item)


@pytest.mark.parametrize("text, seeds", [("3", [5, 6, 7]), ("0-4", [0, 1, 2, 3, 4]), ("2-2", [2]), ("0,2,7", [0, 2, 7]),
                                         (" 1, 4", [1, 4])])
def test_seeds_as_count_range_or_list(text, seeds):
    assert parse_seeds(text, base=5) == seeds


@pytest.mark.parametrize("text, message", [("0", "must be >= 1"), ("4-2", "range is empty"), ("1,1", "given twice"),
                                           ("-1", "expected a count"), ("a", "expected a count"), ("1-", "expected a count")])
def test_bad_seeds_are_refused(text, message):
    with pytest.raises(SpecError, match=message):
        parse_seeds(text, base=0)


def test_the_product_of_swept_values_and_seeds():
    spec = load_spec(SPEC)
    sweep = parse_sweep(["learner.ensemble=1,3,5", "bias.sigma=0.025,0.035", "budget.max_iterations=4"])
    specs = sweep_specs(spec, sweep, [0, 1, 2, 3])
    assert len(specs) == 3 * 2 * 4
    points = {(s["learner"]["ensemble"], s["bias"]["sigma"], s["campaign"]["seed"]) for s in specs}
    assert points == {(e, sg, seed) for e in (1, 3, 5) for sg in (0.025, 0.035) for seed in range(4)}
    assert {s["budget"]["max_iterations"] for s in specs} == {4}
    assert all(s["engine"] == specs[0]["engine"] for s in specs)  # what is not swept stays the spec's


@pytest.mark.parametrize("items, message", [
    (["learner.nope=1,2"], "learner.nope: unknown key"),
    (["learner.ensemble=1,0"], r"learner.ensemble: must be >= 1, got 0 \(in the sweep point learner.ensemble=0\)"),
    (["budget.max_iterations=3,4"], "a run setting .* cannot be swept"),
    (["campaign.seed=1,2"], "give seeds with --seeds"),
    (["bias.sigma=0.1", "bias.sigma=0.2"], "given twice"),
])
def test_sweep_errors_name_the_setting(items, message):
    with pytest.raises(SpecError, match=message):
        sweep_specs(load_spec(SPEC), parse_sweep(items), [0])


def test_init_creates_a_sweep_and_recognises_it_again(tmp_path):
    spec = write_spec(tmp_path / "tiny.toml")
    r = project(tmp_path, "init", str(spec), "--set", "learner.ensemble=1,3", "--set", "bias.sigma=0.025,0.035",
                "--seeds", "0-2")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1] == "12 campaigns: 12 created, 0 already here"
    assert lines[0].split()[1:] == ["mueller-brown-autoencoder", "seed", "0", "learner.ensemble=1", "bias.sigma=0.025",
                                    "created"]
    folders = list((tmp_path / "workspace").iterdir())
    assert len(folders) == 12
    points = {(sp["learner"]["ensemble"], sp["bias"]["sigma"], sp["campaign"]["seed"])
              for sp in (json.loads((f / "signac_statepoint.json").read_text())["spec"] for f in folders)}
    assert len(points) == 12
    again = project(tmp_path, "init", str(spec), "--set", "learner.ensemble=1,3,5", "--set", "bias.sigma=0.025,0.035",
                    "--seeds", "0-2")
    assert again.stdout.splitlines()[-1] == "18 campaigns: 6 created, 12 already here"


def test_init_with_an_invalid_sweep_point_creates_nothing(tmp_path):
    spec = write_spec(tmp_path / "tiny.toml")
    r = project(tmp_path, "init", str(spec), "--set", "learner.ensemble=1,2,-1", "--seeds", "3")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == ("error: learner.ensemble: must be >= 1, got -1 (in the sweep point learner.ensemble=-1)")
    assert not (tmp_path / "workspace").exists() or not any((tmp_path / "workspace").iterdir())
