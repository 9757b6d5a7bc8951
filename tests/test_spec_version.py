"""The spec schema version: pinned to the fields and defaults, stored in every state point, and a
campaign made under another version is refused with one message naming the file and both versions."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from cvcycle import io as cio
from cvcycle import spec as spec_module
from cvcycle.campaign import STATEPOINT, Campaign
from cvcycle.errors import SpecError, WorkspaceError
from cvcycle.spec import SCHEMA, SCHEMA_VERSION, Field, load_spec, schema_fingerprint, validate

ROOT = Path(__file__).resolve().parents[1]

# SCHEMA_VERSION -> schema_fingerprint() of that version. A change to the spec's fields, their types
# or their defaults changes the fingerprint; then bump SCHEMA_VERSION in src/cvcycle/spec.py, add
# the new version's fingerprint here (keep the old ones), and update the campaign.schema row of
# README.md's spec table. Old workspaces are then refused instead of silently re-interpreted.
PINNED_FINGERPRINTS = {
    2: "3049538e53055497",
    3: "1271d9c1ac033f20",
    # 4: convergence.committor_test, test_mean, test_width (the committor histogram test as a gate);
    # paths.extra_shots >= 1, and the shooting route learns from the extra shots only
    4: "35d63c68713eeda7",
    # 5: convergence.test_levels (the committor histogram test of a committor route at q 0.2 and 0.8 too);
    # system.potential "alanine-dipeptide" with features.kind "internal" (dihedrals, distances); engine.platform
    5: "789c02d2c9553b95",
    # 6: convergence.max_bias_stiffness (the bias must be smooth on the scale of one time step)
    6: "012f0db1a3cdd080",
    # 7: system.potential "lj-nucleation" with its own system.cells, density, r_cut, and features.kind
    # "steinhardt" (r_cut, r_on, q_threshold, solid_threshold, bins); system.state_order (filled in)
    7: "7f8194d6e79306df",
    # 8: bias.explore, explore_range, explore_sigma (iteration 0 biased along one feature)
    8: "5cfc9f7062cdc311",
    # 9: convergence.test_calibration (a committor's RMS offset over 1/2 and test_levels, at most)
    9: "3eb18bb76f9e8f25",
}


def test_schema_fingerprint_is_pinned_to_the_schema_version():
    assert SCHEMA_VERSION == max(PINNED_FINGERPRINTS), (
        f"SCHEMA_VERSION is {SCHEMA_VERSION}: pin its fingerprint {schema_fingerprint()!r} in PINNED_FINGERPRINTS "
        "(tests/test_spec_version.py); versions only go up")
    assert schema_fingerprint() == PINNED_FINGERPRINTS[SCHEMA_VERSION], (
        f"the spec schema's fields or defaults changed (fingerprint {schema_fingerprint()!r}, pinned for version "
        f"{SCHEMA_VERSION}: {PINNED_FINGERPRINTS[SCHEMA_VERSION]!r}). Every job id changes with them and old "
        f"state points would be re-read under the new rules: bump SCHEMA_VERSION in src/cvcycle/spec.py to "
        f"{SCHEMA_VERSION + 1} and add {{{SCHEMA_VERSION + 1}: {schema_fingerprint()!r}}} to PINNED_FINGERPRINTS in "
        "tests/test_spec_version.py (and the campaign.schema default in README.md's spec table)")


def test_fingerprint_sees_fields_types_and_defaults(monkeypatch):
    before = schema_fingerprint()
    monkeypatch.setitem(SCHEMA["engine"], "dt", Field(float, 1e-3))  # a changed default
    changed_default = schema_fingerprint()
    monkeypatch.setitem(SCHEMA["engine"], "dt", Field((int, float), 5e-4))  # a changed type
    changed_type = schema_fingerprint()
    monkeypatch.setitem(SCHEMA["engine"], "dt", SCHEMA["engine"]["dt"])
    monkeypatch.setitem(SCHEMA["engine"], "thermostat", Field(str, "none"))  # a new field
    new_field = schema_fingerprint()
    monkeypatch.setitem(spec_module.STATE_FIELDS, "radius", Field(float, 0.1))  # a state field, now optional
    state_field = schema_fingerprint()
    assert len({before, changed_default, changed_type, new_field, state_field}) == 5
    monkeypatch.undo()
    assert schema_fingerprint() == before
    # the version's own default is not part of the fingerprint
    monkeypatch.setitem(SCHEMA["campaign"], "schema", Field(int, SCHEMA_VERSION + 1))
    assert schema_fingerprint() == before


# -- state points of another version ----------------------------------------------------------------
def tiny_spec() -> dict:
    return load_spec(ROOT / "workflows" / "mueller-brown-autoencoder.toml")


def make_campaign(path: Path, spec: dict) -> Path:
    path.mkdir(parents=True)
    cio.write_json(path / STATEPOINT, {"spec": spec})
    return path


def with_version(version: object | None) -> dict:
    """A validated spec whose campaign.schema is `version` (None: no key, as version 1 wrote it)."""
    spec = tiny_spec()
    del spec["campaign"]["schema"]
    if version is not None:
        spec["campaign"]["schema"] = version
    return spec


def test_new_state_points_carry_the_version(tmp_path):
    spec = tiny_spec()
    assert spec["campaign"]["schema"] == SCHEMA_VERSION == 9
    c = Campaign(make_campaign(tmp_path / "c", spec))
    assert c.spec == spec


@pytest.mark.parametrize("version, made", [
    (None, "(written before cvcycle recorded schema versions: no campaign.schema)"),
    (1, "(made by an older cvcycle)"),
    (99, "(made by a newer cvcycle)"),
    ("2", "(not a version number)"),
], ids=["no-version", "version-1", "version-99", "version-as-string"])
def test_campaign_of_another_version_is_refused(tmp_path, version, made):
    path = make_campaign(tmp_path / "c", with_version(version))
    found = 1 if version is None else version
    with pytest.raises(WorkspaceError) as info:
        Campaign(path)
    msg = str(info.value)
    assert msg == (f"{path / STATEPOINT}: campaign spec of schema version {found!r} {made}; this cvcycle reads "
                   f"schema version {SCHEMA_VERSION} and does not convert campaigns: re-create it from its spec with "
                   "`python project.py init SPEC.toml` (a new job id), or run it with the cvcycle version that made it")
    assert "\n" not in msg


def test_version_is_checked_before_the_spec(tmp_path):
    """An old state point whose spec would not validate today is reported as old, not as invalid."""
    spec = with_version(None)
    spec["engine"]["retired_field"] = 1
    with pytest.raises(WorkspaceError, match="schema version 1"):
        Campaign(make_campaign(tmp_path / "c", spec))
    # a state point that is no spec at all keeps its message
    path = tmp_path / "d"
    make_campaign(path, {"campaign": 3})
    with pytest.raises(SpecError, match="campaign: expected a table"):
        Campaign(path)


def test_cli_shows_one_error_line_for_an_old_campaign(tmp_path):
    path = make_campaign(tmp_path / "c", with_version(None))
    r = subprocess.run([sys.executable, "-m", "cvcycle", "show", str(path)], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path / STATEPOINT}: campaign spec of schema version 1"), \
        r.stderr
    assert "python project.py init SPEC.toml" in lines[0]


def test_a_spec_may_not_set_another_version(tmp_path):
    raw = copy.deepcopy(tiny_spec())
    raw["campaign"]["schema"] = 1
    with pytest.raises(SpecError, match=rf"^campaign\.schema: must be {SCHEMA_VERSION}, the spec schema this cvcycle reads"):
        validate(raw)
    raw["campaign"]["schema"] = True
    with pytest.raises(SpecError, match=r"^campaign\.schema: expected int, got boolean True"):
        validate(raw)
    text = (ROOT / "workflows" / "mueller-brown-autoencoder.toml").read_text()
    assert "schema" not in text  # spec files need not mention it
    path = tmp_path / "spec.toml"
    path.write_text(text.replace("[campaign]\n", "[campaign]\nschema = 99\n", 1))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}: campaign.schema: must be {SCHEMA_VERSION}") and "got 99" in str(info.value)
    path.write_text(text.replace("[campaign]\n", f"[campaign]\nschema = {SCHEMA_VERSION}\n", 1))
    assert load_spec(path) == tiny_spec()  # repeating the version is fine
