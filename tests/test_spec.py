"""Campaign specs: the shipped workflows load; malformed specs raise SpecError naming the field."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path

import pytest

from cvcycle.errors import SpecError
from cvcycle.spec import (FEATURE_FIELDS, FEATURE_KINDS, SCHEMA, SCHEMA_VERSION, SECTIONS, AnalysisSpec,
                          CoordinatesFeatures, MomentFeatures, ParticleFeatures, PathsSpec, ResourcesSpec, Spec,
                          StateSpec, SwitchingFeatures, learner_route, load_spec, typed, validate, validate_typed)

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"

BASE = {
    "campaign": {"name": "test", "seed": 3},
    "system": {
        "potential": "mueller-brown",
        "scale": 0.1,
        "temperature": 1.0,
        "states": {"A": {"center": [-0.558, 1.442], "radius": 0.15},
                   "B": {"center": [0.623, 0.028], "radius": 0.15}},
    },
    "engine": {"dt": 2e-3, "walkers": 50, "steps": 6000, "initial_steps": 2000, "segment_steps": 1000,
               "report_stride": 10, "start": "A"},
    "learner": {"cv_dim": 1, "hidden": [32, 32]},
    "bias": {"kind": "opes", "barrier": 12.0},
    "budget": {"max_iterations": 8},
    "convergence": {"min_iterations": 3},
}


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # inline table
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def to_toml(raw: dict) -> str:
    """A small TOML writer for nested tables of scalars and lists (enough for specs)."""
    lines: list[str] = []

    def table(prefix: str, body: dict) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in body.items() if isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
        lines.append("")
        for k, v in tables.items():
            table(f"{prefix}.{k}" if prefix else k, v)

    top_scalars = {k: v for k, v in raw.items() if not isinstance(v, dict)}
    lines.extend(f"{k} = {_toml_value(v)}" for k, v in top_scalars.items())
    table("", {k: v for k, v in raw.items() if isinstance(v, dict)})
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, raw: dict, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(to_toml(raw))
    return path


# ----------------------------------------------------------------------------- valid specs


@pytest.mark.parametrize("name", ["mueller-brown-autoencoder.toml", "wolfe-quapp-autoencoder.toml"])
def test_shipped_workflow_specs_load(name):
    path = WORKFLOWS / name
    if not path.exists():
        pytest.skip(f"{name} is not in workflows/ in this checkout")
    spec = load_spec(path)
    assert set(spec) == set(SCHEMA)
    for section, fields in SCHEMA.items():  # every default is filled in (features: and the kind's own fields)
        extra = FEATURE_FIELDS[spec["features"]["kind"]] if section == "features" else {}
        assert set(spec[section]) == set(fields) | set(extra), section
    assert spec["system"]["potential"] in name
    assert len(spec["system"]["states"]) >= 2
    for state in spec["system"]["states"].values():
        assert len(state["center"]) == 2 and all(isinstance(c, float) for c in state["center"])
        assert state["radius"] > 0
    en = spec["engine"]
    for key in ("steps", "initial_steps", "segment_steps"):
        assert en[key] % en["report_stride"] == 0
    assert spec["convergence"]["min_iterations"] <= spec["budget"]["max_iterations"]


def test_a_byte_order_mark_at_the_start_is_read_as_the_same_spec(tmp_path):
    text = (WORKFLOWS / "mueller-brown-autoencoder.toml").read_text()
    (tmp_path / "bom.toml").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_spec(tmp_path / "bom.toml") == load_spec(WORKFLOWS / "mueller-brown-autoencoder.toml")


def test_mueller_brown_workflow_values():
    import tomllib

    path = WORKFLOWS / "mueller-brown-autoencoder.toml"
    spec = load_spec(path)
    raw = tomllib.loads(path.read_text())
    assert spec["system"]["potential"] == "mueller-brown"
    assert spec["system"]["states"]["A"]["center"] == [-0.558, 1.442]  # the REFERENCES.md minima
    assert spec["system"]["states"]["B"]["center"] == [0.623, 0.028]
    # values given in the file are kept, everything else is the schema default
    for section, fields in SCHEMA.items():
        for key, field in fields.items():
            if key in raw.get(section, {}):
                if key != "states":
                    assert spec[section][key] == raw[section][key], (section, key)
            elif (section, key) == ("system", "state_order"):  # filled in from the states' order
                assert spec[section][key] == list(raw["system"]["states"])
            elif not field.required:
                assert spec[section][key] == field.default, (section, key)


def test_round_trip_through_toml_writer_and_defaults(tmp_path):
    spec = load_spec(write(tmp_path, BASE))
    assert spec == validate(copy.deepcopy(BASE))
    assert spec["system"]["scale"] == 0.1 and isinstance(spec["bias"]["barrier"], float)
    assert spec["engine"]["integrator"] == "overdamped"  # default
    # integers given for float fields are coerced; defaults are fresh copies, not shared lists
    raw = copy.deepcopy(BASE)
    raw["engine"]["dt"] = 1
    raw["learner"].pop("hidden")
    a, b = validate(copy.deepcopy(raw)), validate(copy.deepcopy(raw))
    assert a["engine"]["dt"] == 1.0 and isinstance(a["engine"]["dt"], float)
    a["learner"]["hidden"].append(7)
    assert b["learner"]["hidden"] == [32, 32] and validate(copy.deepcopy(raw))["learner"]["hidden"] == [32, 32]


# ----------------------------------------------------------------------------- malformed specs


def _set(path: str, value):
    def f(raw):
        *parents, key = path.split(".")
        node = raw
        for p in parents:
            node = node.setdefault(p, {})
        node[key] = value
    return f


def _del(path: str):
    def f(raw):
        *parents, key = path.split(".")
        node = raw
        for p in parents:
            node = node[p]
        del node[key]
    return f


MALFORMED = [
    # (id, mutation, substrings the message must contain)
    ("unknown-key", _set("engine.stpes", 10), ["engine.stpes", "did you mean 'steps'"]),
    ("unknown-section", _set("enigne.steps", 10), ["enigne", "did you mean 'engine'"]),
    ("unknown-state-key", _set("system.states.A.radus", 0.1), ["system.states.A.radus", "did you mean 'radius'"]),
    ("steps-as-string", _set("engine.steps", "5000"), ["engine.steps", "expected int", "str"]),
    ("steps-negative", _set("engine.steps", -5), ["engine.steps", ">= 1", "-5"]),
    ("steps-zero", _set("engine.steps", 0), ["engine.steps", ">= 1"]),
    ("steps-float", _set("engine.steps", 1000.0), ["engine.steps", "expected int"]),
    ("dt-zero", _set("engine.dt", 0.0), ["engine.dt", "> 0"]),
    ("dt-inf", _set("engine.dt", math.inf), ["engine.dt", "finite"]),
    ("unknown-potential", _set("system.potential", "lennard-jones"), ["system.potential", "mueller-brown"]),
    ("missing-states", _del("system.states"), ["system.states", "missing"]),
    ("one-state", _del("system.states.B"), ["system.states", "two states"]),
    ("states-not-table", _set("system.states", "A"), ["system.states"]),
    ("state-not-table", _set("system.states.A", 3), ["system.states.A"]),
    ("center-3d", _set("system.states.A.center", [0.1, 0.2, 0.3]), ["system.states.A.center", "2 finite numbers"]),
    ("center-nan", _set("system.states.B.center", [math.nan, 0.028]), ["system.states.B.center"]),
    ("center-inf", _set("system.states.B.center", [0.6, math.inf]), ["system.states.B.center"]),
    ("missing-center", _del("system.states.A.center"), ["system.states.A.center", "missing"]),
    ("radius-zero", _set("system.states.B.radius", 0.0), ["system.states.B.radius"]),
    ("start-unknown-state", _set("engine.start", "C"), ["engine.start", "'C'"]),
    ("start-nan-point", _set("engine.start", [0.0, math.nan]), ["engine.start"]),
    ("stride-not-dividing-steps", _set("engine.report_stride", 7), ["engine.steps", "multiple", "report_stride"]),
    ("stride-not-dividing-segment", _set("engine.segment_steps", 1005), ["engine.segment_steps", "multiple"]),
    ("stride-above-steps", _set("engine.report_stride", 10000), ["engine.report_stride"]),
    ("cv-dim-3", _set("learner.cv_dim", 3), ["learner.cv_dim", "<= 2"]),
    ("cv-dim-0", _set("learner.cv_dim", 0), ["learner.cv_dim", ">= 1"]),
    ("kolmogorov-2d-cv", _set("learner.cv_dim", 2), ["learner.select", "'kolmogorov' ranks 1-D CVs", "reconstruction"]),
    ("unknown-select", _set("learner.select", "loss"), ["learner.select", "kolmogorov", "reconstruction"]),
    ("unknown-bias", _set("bias.kind", "abf"), ["bias.kind", "opes"]),
    ("bool-for-int", _set("engine.walkers", True), ["engine.walkers", "boolean"]),
    ("bool-for-float", _set("engine.dt", False), ["engine.dt", "boolean"]),
    ("int-for-bool", _set("learner.warm_start", 1), ["learner.warm_start", "expected bool"]),
    ("min-above-max-iterations", _set("convergence.min_iterations", 10),
     ["convergence.min_iterations", "budget.max_iterations"]),
    ("bad-feature-name", _set("features.names", ["x", "z"]), ["features.names"]),
    ("duplicate-feature", _set("features.names", ["x", "x"]), ["features.names"]),
    ("cv-range-reversed", _set("bias.cv_range", [1.0, -1.0]), ["bias.cv_range", "low < high"]),
    ("hidden-zero", _set("learner.hidden", [32, 0]), ["learner.hidden"]),
    ("hidden-empty", _set("learner.hidden", []), ["learner.hidden"]),
    ("engine-openmm", _set("engine.name", "openmm"), ["engine.name", "langevin"]),
    ("negative-seed", _set("campaign.seed", -1), ["campaign.seed"]),
    ("bias-factor-one", _set("bias.bias_factor", 1.0), ["bias.bias_factor", "> 1"]),
    ("missing-name", _del("campaign.name"), ["campaign.name", "missing"]),
    ("bad-activation", _set("learner.activation", "relu"), ["learner.activation", "tanh"]),
    ("section-not-table", _set("budget", 5), ["budget"]),
    # the schema version is filled in; a spec may repeat it but not ask for another one
    ("schema-other-version", _set("campaign.schema", 1),
     [f"campaign.schema: must be {SCHEMA_VERSION}, the spec schema this cvcycle reads (leave it out: it is filled in), "
      "got 1"]),
    ("schema-newer-version", _set("campaign.schema", 99), [f"campaign.schema: must be {SCHEMA_VERSION}", "got 99"]),
    ("schema-as-string", _set("campaign.schema", "2"), ["campaign.schema: expected int, got str '2'"]),
    ("schema-misspelt", _set("campaign.schema_version", 2), ["campaign.schema_version", "did you mean 'schema'"]),
    ("position-stride-zero", _set("engine.position_stride", 0), ["engine.position_stride", ">= 1"]),
    ("bias-stride-zero", _set("engine.bias_stride", 0), ["engine.bias_stride", ">= 1"]),
    ("pace-off-the-bias-stride", lambda raw: (_set("engine.bias_stride", 4)(raw), _set("bias.pace", 50)(raw)),
     ["bias.pace", "multiple", "engine.bias_stride = 4", "got 50"]),
    ("variational-strided-positions", lambda raw: (_set("learner.kind", "committor")(raw), _set("learner.reweight_power", 1.0)(raw),
                                                   _set("engine.position_stride", 5)(raw)),
     ["engine.position_stride", "variational committor", "got 5"]),
    ("particle-features-on-2d", _set("features.kind", "coordination_moments"), ["features.kind", "one particle"]),
    ("shooting-on-particles", lambda raw: (_set("system.potential", "lj7")(raw), _set("learner.kind", "committor")(raw),
                                           _set("learner.method", "shooting")(raw), _set("engine.start", "A")(raw)),
     ["learner.method", "2-D model potentials", "lj7"]),
    ("point-start-on-particles", lambda raw: (_set("system.potential", "lj7")(raw), _set("engine.start", [0.1, 0.2])(raw)),
     ["engine.start", "named state"]),
    ("switching-nn-above-mm", lambda raw: (_set("system.potential", "lj7")(raw), _set("engine.start", "A")(raw),
                                           _set("features", {"kind": "coordination", "nn": 16, "mm": 8})(raw)),
     ["features.nn", "nn < mm"]),
    ("particles-mismatch", lambda raw: (_set("system.potential", "lj7")(raw), _set("engine.start", "A")(raw),
                                        _set("features", {"kind": "coordination", "particles": 5})(raw)),
     ["features.particles", "7 particles", "got 5"]),
]


@pytest.mark.parametrize("case_id,mutate,needles", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_spec_names_the_field(tmp_path, case_id, mutate, needles):
    raw = copy.deepcopy(BASE)
    mutate(raw)
    path = write(tmp_path, raw)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    msg = str(info.value)
    assert str(path) in msg  # load_spec prefixes the file
    for needle in needles:
        assert needle in msg, (needle, msg)


# Validation gaps: each of these passes validation today (see the report) and should not.
GAPS = [
    # TOML booleans are Python ints: `center = [true, 1.442]` silently becomes [1.0, 1.442]
    ("bool-in-state-center", _set("system.states.A.center", [True, 1.442]), "system.states.A.center"),
    # nan passes the `low >= high` test (comparisons with nan are False) and reaches the bias grid
    ("nan-in-cv-range", _set("bias.cv_range", [math.nan, 1.0]), "bias.cv_range"),
    ("inf-in-cv-range", _set("bias.cv_range", [-math.inf, 1.0]), "bias.cv_range"),
    # a nested list makes set(names) raise TypeError instead of SpecError
    ("nested-feature-names", _set("features.names", [["x"], "y"]), "features.names"),
]


@pytest.mark.parametrize("case_id,mutate,needle", GAPS, ids=[g[0] for g in GAPS])
def test_validation_gaps_raise_spec_error(tmp_path, case_id, mutate, needle):
    raw = copy.deepcopy(BASE)
    mutate(raw)
    with pytest.raises(SpecError, match=needle.replace(".", r"\.")):
        load_spec(write(tmp_path, raw))


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "spec.toml"
    with pytest.raises(SpecError, match="not found") as info:
        load_spec(path)
    assert str(path) in str(info.value)


def test_directory_instead_of_file_names_the_path(tmp_path):
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path)
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("text", ["[engine\nsteps = 5\n", "[engine]\nsteps = = 5\n", "a = 1\na = 2\n"])
def test_invalid_toml_names_the_path(tmp_path, text):
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(SpecError, match="not valid TOML") as info:
        load_spec(path)
    assert str(path) in str(info.value)


def test_validate_rejects_non_table():
    with pytest.raises(SpecError, match="spec"):
        validate([1, 2, 3])  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the typed view


def _workflow_specs():
    return [pytest.param(path, id=path.name) for path in sorted(WORKFLOWS.glob("*.toml"))]


def _plain(value):
    """A typed value as the validated dict holds it: tuples are lists, mappings dicts."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize("path", _workflow_specs())
def test_typed_view_round_trips_every_workflow(path):
    spec = load_spec(path)
    t = typed(spec)
    assert isinstance(t, Spec)
    back = t.to_dict()
    assert back == spec and json.dumps(back) == json.dumps(spec)  # same values, types and key order
    for section, body in spec.items():
        part = getattr(t, section)
        assert isinstance(part, SECTIONS[section]), section
        assert [f.name for f in dataclasses.fields(part)] == list(body), section
        for key, value in body.items():
            attr = getattr(part, key)
            assert _plain(attr) == value and type(_plain(attr)) is type(value), (section, key)
            assert not isinstance(attr, (list, dict)), (section, key, "mutable")
    assert type(t.features) is FEATURE_KINDS[spec["features"]["kind"]]
    assert t.learner.route == learner_route(spec)
    assert validate_typed(copy.deepcopy(spec)) == t


def test_typed_view_attribute_access_and_types():
    spec = validate(copy.deepcopy(BASE))
    t = typed(spec)
    assert t.engine.dt == 2e-3 and isinstance(t.engine.dt, float)
    assert t.engine.walkers == 50 and t.engine.start == "A"
    assert t.campaign.name == "test" and t.campaign.seed == 3 and t.campaign.schema == SCHEMA_VERSION
    assert t.learner.hidden == (32, 32) and t.bias.cv_range == (-1.0, 1.0)
    assert isinstance(t.features, CoordinatesFeatures) and t.features.names == ("x", "y")
    a = t.system.states["A"]
    assert isinstance(a, StateSpec) and a.center == (-0.558, 1.442) and a.radius == 0.15
    assert list(t.system.states) == ["A", "B"]
    # sections the spec leaves out are the classes' own defaults
    assert t.analysis == AnalysisSpec() and t.paths == PathsSpec() and t.resources == ResourcesSpec()
    assert t.features == CoordinatesFeatures()


def test_typed_view_is_immutable():
    t = typed(validate(copy.deepcopy(BASE)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.engine.dt = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.engine = None  # type: ignore[misc]
    with pytest.raises(TypeError):
        t.system.states["C"] = t.system.states["A"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        t.learner.hidden.append(7)  # type: ignore[attr-defined]
    # the view is a copy: changing the dict it came from does not change it
    spec = validate(copy.deepcopy(BASE))
    t = typed(spec)
    spec["learner"]["hidden"].append(7)
    spec["system"]["states"]["C"] = spec["system"]["states"]["A"]
    assert t.learner.hidden == (32, 32) and list(t.system.states) == ["A", "B"]


def test_particle_features_typed():
    raw = copy.deepcopy(BASE)
    raw["system"] = {"potential": "lj7", "states": {"A": {"center": [0.5, 0.1], "radius": 0.1},
                                                    "B": {"center": [0.8, 0.4], "radius": 0.1}}}
    raw["features"] = {"kind": "coordination_moments", "moments": [2, 3, 4]}
    t = validate_typed(raw)
    assert isinstance(t.features, MomentFeatures) and isinstance(t.features, SwitchingFeatures)
    assert t.features.particles == 7 and t.features.moments == (2, 3, 4) and t.features.nn == 8
    raw["features"] = {"kind": "sorted_distances"}
    f = validate_typed(raw).features
    assert type(f) is ParticleFeatures and not hasattr(f, "r0")


def test_schema_tables_come_from_the_section_classes():
    # one source of truth: the validation tables are the classes' fields, in order, with their defaults
    assert list(SCHEMA) == [f.name for f in dataclasses.fields(Spec)]
    for name, table in SCHEMA.items():
        cls = SECTIONS[name]
        assert list(table) == [f.name for f in dataclasses.fields(cls)], name
        for f in dataclasses.fields(cls):
            if table[f.name].required:
                assert f.default is dataclasses.MISSING, (name, f.name)
            else:
                assert _plain(f.default) == table[f.name].default, (name, f.name)
    assert SCHEMA["engine"]["start"].kind == (str, list) and SCHEMA["learner"]["hidden"].kind is list
    assert SCHEMA["system"]["states"].kind is dict and SCHEMA["system"]["states"].required
    assert SCHEMA["learner"]["activation"].check("relu") == "must be one of ['tanh', 'elu', 'softplus'], got 'relu'"
    assert list(FEATURE_FIELDS["coordination_moments"]) == ["particles", "r0", "nn", "mm", "moments"]
    assert set(FEATURE_FIELDS) == set(FEATURE_KINDS)


def test_typed_wants_a_validated_spec():
    with pytest.raises(SpecError, match="not a validated spec"):
        typed({"engine": {"dt": 1.0}})


def test_validate_fills_in_the_schema_version_and_accepts_its_own_output():
    spec = validate(copy.deepcopy(BASE))
    assert spec["campaign"] == {"name": "test", "seed": 3, "schema": SCHEMA_VERSION}
    assert validate(copy.deepcopy(spec)) == spec  # a validated spec (a state point) validates to itself


def test_the_states_keep_their_written_order_through_a_stored_state_point():
    """The first two states are A and B as written, also after the state point's JSON (keys sorted,
    as signac and cvcycle write it) is read back and validated again; a wrong state_order is an
    error that names the field."""
    raw = {"campaign": {"name": "order"}, "system": {"potential": "mueller-brown", "states": {
        "Z": {"center": [-0.55, 1.44], "radius": 0.1}, "A": {"center": [0.62, 0.03], "radius": 0.1}}}}
    spec = validate(raw)
    assert list(spec["system"]["states"]) == spec["system"]["state_order"] == ["Z", "A"]
    stored = json.loads(json.dumps(spec, sort_keys=True))
    assert list(stored["system"]["states"]) == ["A", "Z"]
    assert validate(stored) == spec and list(validate(stored)["system"]["states"]) == ["Z", "A"]
    stored["system"]["state_order"] = ["Z", "Q"]
    with pytest.raises(SpecError, match=r"^system\.state_order: must list the names of system\.states once each"):
        validate(stored)
