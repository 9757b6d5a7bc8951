"""Campaign specs: TOML files with a fixed schema, defaults, and validation with clear messages.

A spec says what a campaign *is*: system, engine, features, learner, bias, budget and the
convergence criterion. `load_spec` returns a plain nested dict with every default filled in, so
it can be stored as a signac state point and hashed. Any problem raises `SpecError` naming the
field, e.g. ``engine.steps: must be >= 1, got -5``.

One schema, two views
---------------------
Each section is a frozen dataclass (`CampaignSpec`, `SystemSpec`, `EngineSpec`, ...; `Spec`
holds one of each). A section field's type is its annotation, its default the dataclass default
(none: required) and its range check `spec_field(..., check=...)`; a `Literal[...]` annotation
is a choice. The tables the validation runs on - `SCHEMA` (section -> key -> `Field`),
`FEATURE_FIELDS` (featurizer kind -> its own fields; only the chosen kind's enter the spec) and
`STATE_FIELDS` - are derived from these classes, so there is nothing to keep in step by hand.

* `validate(raw)` / `load_spec(path)` -> the nested dict (``spec["engine"]["dt"]``): what the
  state point stores and what most code reads.
* `typed(spec)` -> `Spec`, the immutable typed view of a validated dict (``spec.engine.dt``):
  lists are tuples, ``system.states`` a read-only mapping of `StateSpec`, ``features`` the
  chosen kind's class (`CoordinatesFeatures`, `SwitchingFeatures`, ...). ``Spec.to_dict()``
  gives the validated dict back, equal key for key and in the same order.

Schema version
--------------
The state point stores every default filled in, and its signac job id is a hash of it. So a new
field or a changed default changes the id of every new job, and - worse - re-validating an old
state point would fill in the new default and quietly run an old campaign under rules it was not
made with. `SCHEMA_VERSION`, stored as ``campaign.schema`` in every validated spec (a spec file
need not give it and may not give another value), names the schema a state point was written
under; `cvcycle.campaign.Campaign` refuses a state point of another version (version 1: those
written before the key existed) instead of re-interpreting it. Any change to the fields, their
types or their defaults must bump SCHEMA_VERSION: tests/test_spec_version.py pins
`schema_fingerprint()` (a hash of every field's path, type, required flag and default) to the
version and fails until both are updated. Bump it too for a change of meaning the fingerprint
cannot see (e.g. what a default of 0 is filled in with).

The key sits in the ``campaign`` section rather than next to ``spec`` in the state point: it
then travels with the spec dict wherever that goes (`validate` writes it, `project.py init`,
tests and benchmarks that store ``{"spec": validate(...)}`` get it without a change), and it
is reported with the same ``campaign.schema: ...`` field path as any other spec problem.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import math
import tomllib
import types
from collections.abc import Mapping
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Union, get_args, get_origin, get_type_hints

from .errors import SpecError
from .systems import BULK_SYSTEMS, MODEL_BOXES, MODEL_POTENTIALS, MOLECULES, PARTICLE_SYSTEMS, n_particles, thermal_energy

SCHEMA_VERSION = 9  # of the spec schema; bump on any change to its fields or defaults (see above)


@dataclass(frozen=True)
class Field:
    kind: type | tuple[type, ...]
    default: Any = None
    required: bool = False
    check: Callable[[Any], str | None] | None = None  # returns an error text or None


def _range(lo: float | None = None, hi: float | None = None, lo_open: bool = False):
    def check(v: Any) -> str | None:
        if isinstance(v, float) and not math.isfinite(v):
            return f"must be a finite number, got {v}"
        if lo is not None and (v <= lo if lo_open else v < lo):
            return f"must be {'>' if lo_open else '>='} {lo}, got {_shown(v)}"
        if hi is not None and v > hi:
            return f"must be <= {hi}, got {_shown(v)}"
        return None

    return check


def _choice(*options: str):
    def check(v: Any) -> str | None:
        return None if v in options else f"must be one of {list(options)}, got {v!r}"

    return check


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    """A number that is finite as a float (an integer of 400 digits is not)."""
    try:
        return _is_number(v) and math.isfinite(float(v))
    except OverflowError:
        return False


def _shown(v: Any) -> str:
    """A value for an error message; huge integers by their number of digits."""
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10**30:
        return f"an integer of {len(str(abs(v)))} digits"
    if isinstance(v, list) and any(isinstance(c, int) and abs(c) >= 10**30 for c in v):
        return "[" + ", ".join(_shown(c) for c in v) + "]"
    return repr(v)


def _point_or_state(v: Any) -> str | None:
    if isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(c, str) for c in v)):
        return None
    if isinstance(v, list) and len(v) == 2 and all(_is_number(c) for c in v):
        return None if all(_finite(c) for c in v) else f"must be finite, got {_shown(v)}"
    return f"must be a state name, a list of state names or a point [x, y], got {_shown(v)}"


def _layer_widths(v: Any) -> str | None:
    if not v or len(v) > 16 or not all(isinstance(h, int) and not isinstance(h, bool) and 0 < h <= 65536 for h in v):
        return f"must be a list of 1 to 16 layer widths, each in [1, 65536], got {_shown(v)}"
    return None


def _moment_orders(v: Any) -> str | None:
    if not v or not all(isinstance(h, int) and not isinstance(h, bool) and 2 <= h <= 16 for h in v):
        return f"must be a non-empty list of integers in [2, 16] (central moments; the first is always 0), got {_shown(v)}"
    return None


def _levels(v: Any) -> str | None:
    if len(v) > 9 or not all(_is_number(q) and 0.0 < q < 1.0 and q != 0.5 for q in v):
        return f"must be a list of at most 9 committor values strictly between 0 and 1, other than 0.5, got {_shown(v)}"
    return None


def _seed(v: Any) -> str | None:
    return None if 0 <= v < 2**63 else f"must be in [0, 2**63), got {_shown(v)}"


POSITIVE = _range(0.0, lo_open=True)
FRACTION = _range(0.0, 1.0)
# counts get a bound far above any real campaign, so that a typo (1e12 walkers, a 400-digit
# integer) is an error here, not an allocation failure hours later
STEPS = _range(1, 10**12)
STRIDE = _range(1, 10**9)
EPOCHS = _range(1, 10**6)


def _schema_version(v: Any) -> str | None:
    if v == SCHEMA_VERSION:
        return None
    return f"must be {SCHEMA_VERSION}, the spec schema this cvcycle reads (leave it out: it is filled in), got {v}"


def _feature_kind(v: Any) -> str | None:
    return _choice(*FEATURE_KINDS)(v)


# -- the schema: one frozen dataclass per section -------------------------------------------------
def spec_field(default: Any = MISSING, *, check: Callable[[Any], str | None] | None = None) -> Any:
    """A section field with a range `check` (an error text or None); no default: required.
    Sequence defaults are tuples here (frozen classes) and lists in the validated dict."""
    return dataclasses.field(default=default, metadata={"check": check} if check else {})




@dataclass(frozen=True, kw_only=True)
class CampaignSpec:
    name: str = spec_field()
    seed: int = spec_field(0, check=_seed)
    schema: int = spec_field(SCHEMA_VERSION, check=_schema_version)  # filled in; see SCHEMA_VERSION


@dataclass(frozen=True, kw_only=True)
class StateSpec:
    """One of system.states: a disc in the system's state coordinates."""
    center: tuple[float, ...] = spec_field()  # checked against the state coordinates' dimension by validate
    radius: float = spec_field(check=POSITIVE)


@dataclass(frozen=True, kw_only=True)
class SystemSpec:
    potential: str = spec_field(check=_choice(*MODEL_POTENTIALS, *PARTICLE_SYSTEMS, *BULK_SYSTEMS, *MOLECULES))
    scale: float = spec_field(1.0, check=_range(1e-6, 1e6))
    temperature: float = spec_field(1.0, check=_range(1e-3, 1e3))  # kT in the potential's energy unit; kelvin for a molecule
    states: Mapping[str, StateSpec] = spec_field()  # each entry checked by STATE_FIELDS
    # filled in: the states' names in the order written (the first two are A and B), kept because a
    # stored state point, like any JSON written with sorted keys, holds system.states alphabetically
    state_order: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class NucleationSystemSpec(SystemSpec):
    """lj-nucleation: 4 cells^3 Lennard-Jones particles (reduced units) in a cubic box at the number
    density, truncated and shifted at r_cut sigma."""
    cells: int = spec_field(4, check=_range(2, 40))  # FCC cubic cells a side: N = 4 cells^3
    density: float = spec_field(0.95, check=_range(0.5, 1.5))  # particles per sigma^3
    r_cut: float = spec_field(2.5, check=_range(1.5, 10.0))  # sigma


# system.potential -> the class holding its own fields (the others: SystemSpec's only)
SYSTEM_KINDS: dict[str, type[SystemSpec]] = {"lj-nucleation": NucleationSystemSpec}


@dataclass(frozen=True, kw_only=True)
class EngineSpec:
    name: Literal["langevin", "openmm", "hoomd"] = "langevin"
    integrator: Literal["overdamped", "underdamped"] = "overdamped"
    dt: float = spec_field(5e-4, check=POSITIVE)
    friction: float = spec_field(1.0, check=POSITIVE)
    mass: float = spec_field(1.0, check=POSITIVE)
    walkers: int = spec_field(25, check=_range(1, 100_000))
    steps: int = spec_field(12000, check=STEPS)
    initial_steps: int = spec_field(4000, check=STEPS)
    report_stride: int = spec_field(10, check=STRIDE)
    segment_steps: int = spec_field(1000, check=STRIDE)
    position_stride: int = spec_field(1, check=STRIDE)  # frames between stored positions
    bias_stride: int = spec_field(1, check=STRIDE)  # steps between bias evaluations (an impulse of this x its force)
    start: str | tuple[str, ...] | tuple[float, float] = spec_field("A", check=_point_or_state)
    start_spread: float = spec_field(0.05, check=_range(0.0))
    platform: str = spec_field("auto", check=_choice("auto", "Reference", "CPU", "CUDA", "OpenCL"))  # openmm: auto = CUDA if present, else CPU


@dataclass(frozen=True, kw_only=True)
class FeaturesSpec:
    """features.kind picks the featurizer; the kind's own fields are those of its class in
    FEATURE_KINDS (a subclass of this one), and only they enter the validated spec."""
    kind: str = spec_field("coordinates", check=_feature_kind)


@dataclass(frozen=True, kw_only=True)
class CoordinatesFeatures(FeaturesSpec):
    names: tuple[str, ...] = ("x", "y")


@dataclass(frozen=True, kw_only=True)
class ParticleFeatures(FeaturesSpec):
    particles: int = spec_field(0, check=_range(0, 10**6))  # 0: the system's number of particles


@dataclass(frozen=True, kw_only=True)
class SwitchingFeatures(ParticleFeatures):
    r0: float = spec_field(1.5, check=POSITIVE)
    nn: int = spec_field(8, check=_range(1, 64))
    mm: int = spec_field(16, check=_range(1, 64))


@dataclass(frozen=True, kw_only=True)
class MomentFeatures(SwitchingFeatures):
    moments: tuple[int, ...] = spec_field((2, 3), check=_moment_orders)


@dataclass(frozen=True, kw_only=True)
class InternalFeatures(FeaturesSpec):
    """A molecule's backbone dihedrals as (sin, cos) and, optionally, its heavy-atom pair distances
    (the pairs more than three bonds apart)."""
    dihedrals: tuple[str, ...] = ("phi", "psi")  # also "omega0", "omega1" (the peptide bonds)
    distances: bool = True


@dataclass(frozen=True, kw_only=True)
class SteinhardtFeaturesSpec(FeaturesSpec):
    """Crystalline order of bulk particles (features.steinhardt.SteinhardtFeatures): soft histograms
    of q4, q6 and qbar6, their means and the smooth number of solid-like particles."""
    r_cut: float = spec_field(1.5, check=POSITIVE)  # sigma: neighbours within it
    r_on: float = spec_field(1.3, check=POSITIVE)  # sigma: the switch from 1 to 0 starts here
    q_threshold: float = spec_field(0.7, check=_range(0.0, 1.0, lo_open=True))  # a solid bond: q6 dot product above it
    solid_threshold: int = spec_field(7, check=_range(1, 12))  # a solid-like particle: at least this many solid bonds
    bins: int = spec_field(10, check=_range(2, 100))  # per histogram


# featurizer kind -> the class holding its fields
FEATURE_KINDS: dict[str, type[FeaturesSpec]] = {
    "coordinates": CoordinatesFeatures,
    "coordination": SwitchingFeatures,
    "sorted_coordination": SwitchingFeatures,
    "coordination_moments": MomentFeatures,
    "sorted_distances": ParticleFeatures,
    "internal": InternalFeatures,
    "steinhardt": SteinhardtFeaturesSpec,
}


@dataclass(frozen=True, kw_only=True)
class LearnerSpec:
    kind: Literal["autoencoder", "committor"] = "autoencoder"
    cv_dim: int = spec_field(1, check=_range(1, 2))
    hidden: tuple[int, ...] = spec_field((32, 32), check=_layer_widths)
    activation: Literal["tanh", "elu", "softplus"] = "tanh"
    epochs: int = spec_field(200, check=EPOCHS)
    batch_size: int = spec_field(512, check=_range(1, 10**8))
    learning_rate: float = spec_field(1e-3, check=POSITIVE)
    warm_start: bool = True
    ensemble: int = spec_field(3, check=_range(1, 16))
    weight_decay: float = spec_field(0.0, check=_range(0.0))
    select: Literal["kolmogorov", "reconstruction"] = "kolmogorov"  # autoencoder ensemble
    crossing_only: bool = True
    reweight: bool = True
    reweight_power: float = spec_field(0.5, check=FRACTION)
    validation_fraction: float = spec_field(0.1, check=_range(0.0, 0.5))
    patience: int = spec_field(30, check=EPOCHS)
    checkpoint_epochs: int = spec_field(10, check=EPOCHS)
    max_samples: int = spec_field(20000, check=_range(100, 10**9))
    method: Literal["variational", "shooting"] = "variational"  # committor only
    boundary_weight: float = spec_field(100.0, check=POSITIVE)  # variational: weight of q = 0 on A, 1 on B

    @property
    def route(self) -> str:
        """How the CV is learnt: "autoencoder", or a committor by "variational" or "shooting"."""
        return self.method if self.kind == "committor" else self.kind


@dataclass(frozen=True, kw_only=True)
class BiasSpec:
    kind: Literal["opes", "metad"] = "opes"
    pace: int = spec_field(50, check=STRIDE)
    sigma: float = spec_field(0.025, check=POSITIVE)
    barrier: float = spec_field(11.0, check=_range(0.0, 500.0, lo_open=True))
    height: float = spec_field(0.5, check=POSITIVE)
    bias_factor: float = spec_field(10.0, check=_range(1.0, lo_open=True))
    grid_bins: int = spec_field(500, check=_range(10, 5000))
    grid_margin: float = spec_field(0.5, check=_range(0.0, 5.0))
    cv_range: tuple[float, float] = (-1.0, 1.0)  # checked by validate: low < high, finite
    warm_start: bool = True
    warm_start_weight: float = spec_field(0.5, check=POSITIVE)
    kolmogorov_lambda: float = spec_field(0.0, check=_range(0.0))  # committor learner: static bias
    kolmogorov_epsilon: float = spec_field(1e-3, check=POSITIVE)   # -lambda kT log(|grad q|^2 + epsilon)
    # iteration 0 biased along one feature (its name, e.g. "n_solid") by the same kind of bias, so that
    # its frames reach the transition region before any CV is learnt; "" leaves iteration 0 unbiased
    explore: str = ""
    explore_range: tuple[float, float] = (0.0, 1.0)  # the feature's grid range, as cv_range; checked by validate
    explore_sigma: float = spec_field(1.0, check=POSITIVE)  # kernel width on the feature


@dataclass(frozen=True, kw_only=True)
class PathsSpec:
    """Committor learner by shooting: transition path sampling with openpathsampling."""
    moves: int = spec_field(200, check=_range(1, 10**7))
    stride: int = spec_field(10, check=STRIDE)
    max_frames: int = spec_field(2000, check=_range(3, 10**8))
    chunk_moves: int = spec_field(50, check=_range(1, 10**7))
    selector_width: float = spec_field(1.0, check=POSITIVE)
    extra_shots: int = spec_field(8, check=_range(1, 10**5))  # trajectories per shooting point with fresh velocities: the committor data
    initial_temperature: float = spec_field(3.0, check=POSITIVE)
    initial_steps: int = spec_field(4000, check=STEPS)


@dataclass(frozen=True, kw_only=True)
class BudgetSpec:
    max_iterations: int = spec_field(8, check=_range(1, 10_000))
    max_total_steps: int = spec_field(2_000_000, check=_range(1, 10**15))


@dataclass(frozen=True, kw_only=True)
class ConvergenceSpec:
    min_iterations: int = spec_field(4, check=_range(2, 10_000))
    cv_r2: float = spec_field(0.99, check=FRACTION)
    q_change: float = spec_field(0.05, check=FRACTION)  # committor learner: instead of cv_r2
    fes_rmse: float = spec_field(0.5, check=POSITIVE)
    fes_cutoff: float = spec_field(8.0, check=POSITIVE)
    fes_bins: int = spec_field(50, check=_range(5, 2000))
    require_states: bool = True
    min_transitions: float = spec_field(1.0, check=_range(0.0))
    # the 99th percentile of the bias's step stiffness on the frames of the FES iterations, at most
    # (analysis.bias_stiffness: dt x curvature; 2 is the integrator's stability limit)
    max_bias_stiffness: float = spec_field(1.0, check=POSITIVE)
    # a gate on the CV itself, run once the checks above pass: the committor histogram test of a 1-D CV
    committor_test: bool = True
    test_mean: float = spec_field(0.05, check=FRACTION)  # |mean p_B - 1/2| at the isosurface, at most
    test_width: float = spec_field(0.08, check=FRACTION)  # the histogram's width without binomial noise, at most
    # committor routes: predicted-q levels besides 1/2 where the mean p_B of shots must also be
    # within test_mean of the level (a committor can be right at 1/2 and wrong elsewhere)
    test_levels: tuple[float, ...] = spec_field((0.2, 0.8), check=_levels)
    # committor routes: the RMS over 1/2 and test_levels of (mean p_B - mean predicted q), at most; each
    # level within test_mean still lets a q biased by ~0.04 at every level through (q RMSE 0.055)
    test_calibration: float = spec_field(0.035, check=FRACTION)


@dataclass(frozen=True, kw_only=True)
class ResourcesSpec:
    """Per scheduler job: SLURM directives, and the threads cvcycle uses."""
    cpus: int = spec_field(1, check=_range(1, 1024))
    gpus: int = spec_field(0, check=_range(0, 64))
    memory_gb: float = spec_field(4.0, check=_range(0.0, 100_000.0, lo_open=True))
    walltime_hours: float = spec_field(1.0, check=_range(1.0 / 60.0, 720.0))


@dataclass(frozen=True, kw_only=True)
class AnalysisSpec:
    grid_bins: int = spec_field(120, check=_range(10, 2000))
    plots: bool = True
    fes_window: int = spec_field(3, check=_range(1, 10_000))
    equilibration: float = spec_field(0.0, check=_range(0.0, 0.9))  # of each iteration's frames, left out of reweighting


@dataclass(frozen=True, kw_only=True)
class Spec:
    """A whole validated campaign spec, typed and immutable: `typed(validate(raw))`."""
    campaign: CampaignSpec
    system: SystemSpec
    engine: EngineSpec
    features: FeaturesSpec  # an instance of FEATURE_KINDS[features.kind]
    learner: LearnerSpec
    bias: BiasSpec
    paths: PathsSpec
    budget: BudgetSpec
    convergence: ConvergenceSpec
    resources: ResourcesSpec
    analysis: AnalysisSpec

    def to_dict(self) -> dict[str, Any]:
        """The validated nested dict this view was made from (lists, plain dicts, same key order)."""
        return _plain(self)


# -- the validation tables, derived from the classes ------------------------------------------------
_BASIC = (bool, int, float, str)


def _kinds(hint: Any) -> tuple[type, ...]:
    """The Python types a TOML value of a field annotated `hint` may have (tuples: lists)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return tuple(dict.fromkeys(k for arg in get_args(hint) for k in _kinds(arg)))
    if origin is Literal:
        return tuple(dict.fromkeys(type(a) for a in get_args(hint)))
    if hint is tuple or origin is tuple:
        return (list,)
    if origin is Mapping or hint is dict or origin is dict:
        return (dict,)
    if hint in _BASIC:
        return (hint,)
    raise TypeError(f"spec fields hold {', '.join(k.__name__ for k in _BASIC)}, tuples or mappings, not {hint!r}")


def fields_of(cls: type, skip: Mapping[str, Any] | tuple[str, ...] = ()) -> dict[str, Field]:
    """The validation table of a section class: key -> Field, in the class's order (without `skip`)."""
    hints = get_type_hints(cls)
    out: dict[str, Field] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        hint = hints[f.name]
        kinds = _kinds(hint)
        check = f.metadata.get("check")
        if check is None and get_origin(hint) is Literal:
            check = _choice(*get_args(hint))
        required = f.default is MISSING
        default = None if required else list(f.default) if isinstance(f.default, tuple) else f.default
        out[f.name] = Field(kinds[0] if len(kinds) == 1 else kinds, default, required, check)
    return out


SECTIONS: dict[str, type] = {f.name: get_type_hints(Spec)[f.name] for f in dataclasses.fields(Spec)}
SCHEMA: dict[str, dict[str, Field]] = {name: fields_of(cls) for name, cls in SECTIONS.items()}
# Fields of each featurizer kind (only the chosen kind's fields enter the state point)
FEATURE_FIELDS: dict[str, dict[str, Field]] = {kind: fields_of(cls, skip=SCHEMA["features"])
                                               for kind, cls in FEATURE_KINDS.items()}
# Fields of each system with fields of its own (only the chosen system's enter the state point)
SYSTEM_FIELDS: dict[str, dict[str, Field]] = {name: fields_of(cls, skip=SCHEMA["system"])
                                              for name, cls in SYSTEM_KINDS.items()}
STATE_FIELDS: dict[str, Field] = fields_of(StateSpec)


def _unknown(where: str, key: str, known: list[str]) -> SpecError:
    hint = difflib.get_close_matches(key, known, n=1)
    extra = f" (did you mean '{hint[0]}'?)" if hint else f" (known: {', '.join(sorted(known))})"
    return SpecError(f"{where}{key}: unknown key{extra}")


def _coerce(path: str, value: Any, field: Field) -> Any:
    kinds = field.kind if isinstance(field.kind, tuple) else (field.kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        if not _finite(value):
            raise SpecError(f"{path}: must be a finite number, got {_shown(value)}")
        value = float(value)
    if isinstance(value, bool) and bool not in kinds:
        raise SpecError(f"{path}: expected {'/'.join(k.__name__ for k in kinds)}, got boolean {value}")
    if not isinstance(value, kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise SpecError(f"{path}: expected {names}, got {type(value).__name__} {_shown(value)}")
    if field.check is not None:
        problem = field.check(value)
        if problem:
            raise SpecError(f"{path}: {problem}")
    return value


def _section(name: str, given: dict[str, Any], schema: dict[str, Field]) -> dict[str, Any]:
    if not isinstance(given, dict):
        raise SpecError(f"{name}: expected a table, got {type(given).__name__}")
    for key in given:
        if key not in schema:
            raise _unknown(f"{name}.", key, list(schema))
    out: dict[str, Any] = {}
    for key, field in schema.items():
        path = f"{name}.{key}"
        if key in given:
            out[key] = _coerce(path, given[key], field)
        elif field.required:
            raise SpecError(f"{path}: required field is missing")
        else:
            out[key] = list(field.default) if isinstance(field.default, list) else field.default
    return out


def _states(states: dict[str, Any], dim: int) -> dict[str, Any]:
    if len(states) < 2:
        raise SpecError("system.states: define at least two states (e.g. [system.states.A] and B)")
    out = {}
    for name, body in states.items():
        state = _section(f"system.states.{name}", body, STATE_FIELDS)
        c = state["center"]
        if len(c) != dim or not all(_finite(v) for v in c):
            raise SpecError(f"system.states.{name}.center: must be {dim} finite numbers, got {_shown(list(c))}")
        state["center"] = [float(v) for v in c]
        out[name] = state
    return out


def _ordered_states(system: dict[str, Any], states: dict[str, Any]) -> dict[str, Any]:
    """system.states in system.state_order, which is filled in with the order written where empty."""
    order = system["state_order"]
    if not order:
        system["state_order"] = list(states)
        return states
    if not all(isinstance(n, str) for n in order) or sorted(order) != sorted(states):
        raise SpecError(f"system.state_order: must list the names of system.states once each ({sorted(states)}), "
                        f"got {_shown(list(order))}; leave it out: it is filled in")
    return {name: states[name] for name in order}


def _disjoint_states(states: dict[str, Any]) -> None:
    names = list(states)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            gap = math.dist(states[a]["center"], states[b]["center"])
            ra, rb = states[a]["radius"], states[b]["radius"]
            if gap <= ra + rb:
                raise SpecError(f"system.states.{b}: overlaps state {a} (centres {gap:.4g} apart, radii {ra:g} + {rb:g}); "
                                "states must be disjoint")


def _states_on_grid(states: dict[str, Any], potential: str, grid_bins: int) -> None:
    """Each state of a 2-D potential lies in its box and holds a point of the reference grid
    (2 x analysis.grid_bins + 1 points a side), on which the exact committor is solved."""
    box, n = MODEL_BOXES[potential], 2 * grid_bins + 1
    for name, state in states.items():
        c, r = state["center"], state["radius"]
        if not all(lo <= x <= hi for x, (lo, hi) in zip(c, box)):
            raise SpecError(f"system.states.{name}.center: {c} lies outside the {potential} box "
                            f"x in [{box[0][0]}, {box[0][1]}], y in [{box[1][0]}, {box[1][1]}]")
        nearest = [lo + round((x - lo) / ((hi - lo) / (n - 1))) * (hi - lo) / (n - 1) for x, (lo, hi) in zip(c, box)]
        if math.dist(nearest, c) > r:
            spacing = max((hi - lo) / (n - 1) for lo, hi in box)
            raise SpecError(f"system.states.{name}.radius: {r:g} holds no point of the reference grid (spacing "
                            f"{spacing:.3g} with analysis.grid_bins = {grid_bins}); use a radius of at least "
                            f"{spacing * 0.71:.3g} or more grid bins")


def _memory_estimate(spec: dict[str, Any], n_particles: int, n_features: int) -> None:
    """Refuse a campaign whose one iteration of frames cannot fit resources.memory_gb: frames of
    walkers x steps / report_stride, each with its features, state coordinates, energies and
    weights (8 bytes each) and every position_stride-th positions, held about three times over
    (segments, the joined arrays, training copies)."""
    e = spec["engine"]
    frames = e["walkers"] * max(e["steps"], e["initial_steps"]) // e["report_stride"]
    per_frame = 8 * (n_features + 8) + 8 * n_particles * 2 / e["position_stride"]
    need = 3 * frames * per_frame / 2**30
    if need > spec["resources"]["memory_gb"]:
        raise SpecError(f"engine.walkers: {e['walkers']:,} walkers x {max(e['steps'], e['initial_steps']):,} steps / "
                        f"report_stride {e['report_stride']} = {frames:,} frames per iteration need about {need:,.1f} GB, "
                        f"more than resources.memory_gb = {spec['resources']['memory_gb']:g}; use fewer walkers or steps, "
                        "a larger engine.report_stride or position_stride, or more memory")


def _bulk_cutoffs(spec: dict[str, Any]) -> None:
    """The potential's and the features' cut-offs fit the minimum-image convention (at most half
    the box edge, (4 / density)^(1/3) cells), and the switch starts inside the features' cut-off."""
    sy, f = spec["system"], spec["features"]
    half = sy["cells"] * (4.0 / sy["density"]) ** (1.0 / 3.0) / 2.0
    for key, value in (("system.r_cut", sy["r_cut"]), ("features.r_cut", f["r_cut"])):
        if value > half:
            raise SpecError(f"{key}: {value:g} sigma exceeds half the box edge ({half:.4g} sigma with system.cells = "
                            f"{sy['cells']}, density {sy['density']:g}); use more cells or a shorter cut-off")
    if f["r_on"] > f["r_cut"]:
        raise SpecError(f"features.r_on: the switch starts at or below features.r_cut ({f['r_cut']:g}), got {f['r_on']:g}")


def _internal_features(features: dict[str, Any]) -> None:
    from .systems.alanine_dipeptide import DIHEDRALS

    names = features["dihedrals"]
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names) or not set(names) <= set(DIHEDRALS):
        raise SpecError(f"features.dihedrals: distinct names from {list(DIHEDRALS)}, got {_shown(names)}")
    if not names and not features["distances"]:
        raise SpecError("features.dihedrals: no features at all (no dihedrals and distances = false)")


def _particle_features(features: dict[str, Any], n_particles: int) -> None:
    """Fill in and check the particle count and switching exponents of a particle featurizer."""
    if features["particles"] == 0:
        features["particles"] = n_particles
    elif features["particles"] != n_particles:
        raise SpecError(f"features.particles: the system has {n_particles} particles, got {features['particles']}")
    if "nn" in features and features["nn"] >= features["mm"]:
        raise SpecError(f"features.nn: the switching function needs nn < mm ({features['mm']}), got {features['nn']}")


def validate(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate a raw spec mapping and return it with every default filled in."""
    if not isinstance(raw, dict):
        raise SpecError("spec: expected a TOML table at top level")
    for key in raw:
        if key not in SCHEMA:
            raise _unknown("", key, list(SCHEMA))
    raw_features = raw.get("features", {})
    kind = raw_features.get("kind", "coordinates") if isinstance(raw_features, dict) else None
    raw_system = raw.get("system", {})
    potential = raw_system.get("potential") if isinstance(raw_system, dict) else None
    schema = {**SCHEMA, "features": {**SCHEMA["features"], **FEATURE_FIELDS.get(kind, {})},
              "system": {**SCHEMA["system"], **(SYSTEM_FIELDS.get(potential, {}) if isinstance(potential, str) else {})}}
    spec = {name: _section(name, raw.get(name, {}), fields) for name, fields in schema.items()}
    spec["system"]["states"] = _ordered_states(spec["system"], _states(spec["system"]["states"], 2))
    model_potential = spec["system"]["potential"] in MODEL_POTENTIALS
    _disjoint_states(spec["system"]["states"])
    if model_potential:
        _states_on_grid(spec["system"]["states"], spec["system"]["potential"], spec["analysis"]["grid_bins"])

    molecule = spec["system"]["potential"] in MOLECULES
    bulk = spec["system"]["potential"] in BULK_SYSTEMS
    if bulk != (kind == "steinhardt"):
        raise SpecError(f"features.kind: '{spec['system']['potential']}' takes kind = \"steinhardt\" (crystalline "
                        "order)" if bulk else f"features.kind: 'steinhardt' describes bulk particles in a periodic box, "
                        f"not '{spec['system']['potential']}'")
    if bulk:
        _bulk_cutoffs(spec)
    elif molecule != (kind == "internal"):
        raise SpecError(f"features.kind: a molecule ('{spec['system']['potential']}') takes kind = \"internal\" "
                        "(dihedrals and distances)" if molecule else
                        f"features.kind: 'internal' describes a molecule's internal coordinates, not "
                        f"'{spec['system']['potential']}'")
    if molecule:
        _internal_features(spec["features"])
    elif kind == "coordinates":
        names = spec["features"]["names"]
        if not all(isinstance(n, str) for n in names):
            raise SpecError(f"features.names: must be a list of strings, got {names!r}")
        if model_potential and (not names or len(set(names)) != len(names) or not set(names) <= {"x", "y"}):
            raise SpecError(f"features.names: distinct coordinates of a 2-D potential, from ['x', 'y'], got {names!r}")
    elif model_potential:
        raise SpecError(f"features.kind: '{kind}' describes particles; a 2-D model potential has one particle "
                        "(use kind = \"coordinates\")")
    elif not bulk:
        _particle_features(spec["features"], PARTICLE_SYSTEMS[spec["system"]["potential"]])

    engine = spec["engine"]
    wanted = ["openmm", "hoomd"] if bulk else ["openmm"] if molecule else ["langevin"]
    if engine["name"] not in wanted:
        raise SpecError(f"engine.name: '{spec['system']['potential']}' runs on the {' or the '.join(map(repr, wanted))} "
                        f"engine, got '{engine['name']}'")
    if engine["name"] != "langevin" and (engine["integrator"] != "underdamped" or engine["mass"] != 1.0):
        raise SpecError(f"engine.integrator: the {engine['name']} engine runs Langevin dynamics with the system's "
                        "masses: integrator = \"underdamped\" and mass = 1.0, got "
                        f"integrator = \"{engine['integrator']}\", mass = {engine['mass']}")
    platforms = {"openmm": ("auto", "Reference", "CPU", "CUDA", "OpenCL"), "hoomd": ("auto", "CPU", "CUDA"),
                 "langevin": ("auto",)}[engine["name"]]
    if engine["platform"] not in platforms:
        raise SpecError(f"engine.platform: the '{engine['name']}' engine takes {' or '.join(platforms)}"
                        + (" (it runs in torch)" if engine["name"] == "langevin" else "") + f", got '{engine['platform']}'")
    if engine["report_stride"] > engine["steps"]:
        raise SpecError(f"engine.report_stride: must be <= engine.steps ({engine['steps']}), got {engine['report_stride']}")
    for key in ("steps", "initial_steps"):
        if engine[key] % engine["report_stride"]:
            raise SpecError(f"engine.{key}: must be a multiple of engine.report_stride ({engine['report_stride']})")
    if engine["segment_steps"] % engine["report_stride"]:
        raise SpecError(f"engine.segment_steps: must be a multiple of engine.report_stride ({engine['report_stride']})")
    starts = [engine["start"]] if isinstance(engine["start"], str) else engine["start"]
    if not model_potential and not isinstance(starts[0], str):
        raise SpecError(f"engine.start: a point [x, y] places a 2-D model potential's particle; "
                        f"'{spec['system']['potential']}' starts in a named state")
    for name in starts:
        if isinstance(name, str) and name not in spec["system"]["states"]:
            known = ", ".join(spec["system"]["states"])
            raise SpecError(f"engine.start: unknown state '{name}' (states: {known})")

    learner = spec["learner"]
    if learner["method"] == "shooting" and not (model_potential or molecule):
        raise SpecError(f"learner.method: path sampling ('shooting') runs on 2-D model potentials and molecules so far, "
                        f"not on '{spec['system']['potential']}'")
    if learner_route(spec) == "variational" and spec["engine"]["position_stride"] != 1:
        raise SpecError("engine.position_stride: the variational committor needs every frame's positions for "
                        f"|grad_x q|^2, so it must be 1, got {spec['engine']['position_stride']}")
    if spec["bias"]["kolmogorov_lambda"] > 0 and learner["kind"] != "committor":
        raise SpecError("bias.kolmogorov_lambda: the Kolmogorov bias acts on a committor (learner.kind = \"committor\"), "
                        f"not on a {learner['kind']} CV")
    if learner["method"] != "variational" and learner["kind"] != "committor":
        raise SpecError(f"learner.method: '{learner['method']}' trains a committor (learner.kind = \"committor\"), "
                        f"not a {learner['kind']}")
    if learner["select"] == "kolmogorov" and learner["kind"] == "autoencoder" and learner["cv_dim"] != 1:
        raise SpecError(f"learner.select: 'kolmogorov' ranks 1-D CVs; a {learner['cv_dim']}-D autoencoder CV needs "
                        "select = \"reconstruction\"")
    if learner["select"] == "reconstruction" and learner["kind"] != "autoencoder":
        raise SpecError(f"learner.select: 'reconstruction' ranks autoencoders, not a {learner['kind']}")
    if learner["kind"] == "committor":
        if learner["cv_dim"] != 1:
            raise SpecError(f"learner.cv_dim: the committor learner has a 1-D CV (logit q), got {learner['cv_dim']}")
        if learner["method"] == "variational" and (not learner["reweight"] or learner["reweight_power"] != 1.0):
            raise SpecError("learner.reweight_power: the variational committor needs Boltzmann weights "
                            f"(reweight = true, reweight_power = 1.0), got reweight = {str(learner['reweight']).lower()}, "
                            f"reweight_power = {learner['reweight_power']}")

    for key in ("cv_range", "explore_range"):
        lo_hi = spec["bias"][key]
        if len(lo_hi) != 2 or not all(_finite(v) for v in lo_hi) or lo_hi[0] >= lo_hi[1]:
            raise SpecError(f"bias.{key}: must be [low, high] with low < high, got {_shown(list(lo_hi))}")
        spec["bias"][key] = [float(v) for v in lo_hi]
    if spec["bias"]["explore"]:
        _explore(spec)

    bias = spec["bias"]
    kT = thermal_energy(spec)
    if bias["kind"] == "opes" and bias["barrier"] <= 2.0 * kT:
        raise SpecError(f"bias.barrier: OPES needs a barrier above 2 kT ({2.0 * kT:g}), got {bias['barrier']}")

    if bias["pace"] % spec["engine"]["bias_stride"]:
        raise SpecError(f"bias.pace: the bias is deposited where it is evaluated, every engine.bias_stride = "
                        f"{spec['engine']['bias_stride']} steps, so its pace must be a multiple of that, got {bias['pace']}")

    n = n_particles(spec)
    n_features = len(spec["features"]["names"]) if kind == "coordinates" else \
        3 * spec["features"]["bins"] + 3 if kind == "steinhardt" else n * (n + 1) // 2
    _memory_estimate(spec, n, n_features)

    conv, budget = spec["convergence"], spec["budget"]
    first = spec["engine"]["walkers"] * spec["engine"]["initial_steps"]
    if learner_route(spec) != "shooting" and budget["max_total_steps"] < first:
        raise SpecError(f"budget.max_total_steps: iteration 0 alone takes engine.walkers x engine.initial_steps = "
                        f"{first:,} walker steps, got {budget['max_total_steps']:,}")
    if conv["min_iterations"] > budget["max_iterations"]:
        raise SpecError(
            f"convergence.min_iterations: {conv['min_iterations']} exceeds budget.max_iterations ({budget['max_iterations']})"
        )
    return spec


def _explore(spec: dict[str, Any]) -> None:
    """Check bias.explore: a feature of the spec's featurizer, on a route that simulates iteration 0."""
    bias = spec["bias"]
    if learner_route(spec) == "shooting":
        raise SpecError("bias.explore: biases iteration 0 of a biased-simulation route; the shooting route's "
                        "iteration 0 is path sampling, with no bias")
    from .features import make_featurizer  # builds the featurizer for its names (a molecule reads its topology)

    names = make_featurizer(spec).names
    if bias["explore"] not in names:
        hint = difflib.get_close_matches(bias["explore"], names, n=1)
        raise SpecError(f"bias.explore: '{bias['explore']}' is not a feature of features.kind = "
                        f"\"{spec['features']['kind']}\"" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                        + f"; its features: {', '.join(names)}")


def learner_route(spec: dict[str, Any]) -> str:
    """How a validated spec learns its CV: "autoencoder", or a committor by the "variational" or
    the "shooting" (path sampling) route."""
    learner = spec["learner"]
    return learner["method"] if learner["kind"] == "committor" else learner["kind"]


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read and validate a TOML campaign spec."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise SpecError(f"spec file not found: {path}") from None
    except OSError as exc:
        raise SpecError(f"cannot read spec file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None
    try:
        raw = tomllib.loads(text.removeprefix("\ufeff"))  # a byte-order mark, as some Windows editors write
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    except ValueError as exc:  # an integer beyond Python's digit limit for conversion
        raise SpecError(f"{path}: not valid TOML: {str(exc).split(':')[0]}") from None
    try:
        return validate(raw)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None


# -- the typed view ------------------------------------------------------------------------------
def _frozen(hint: Any, value: Any) -> Any:
    origin = get_origin(hint)
    if origin is Mapping:
        item = get_args(hint)[1]
        return types.MappingProxyType({k: _build(item, v) for k, v in value.items()})
    return _tuples(value)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _build(cls: type, body: Mapping[str, Any]) -> Any:
    hints = _hints(cls)
    return cls(**{key: _frozen(hints[key], value) for key, value in body.items()})


def typed(spec: Mapping[str, Any]) -> Spec:
    """The typed, immutable view of a validated spec (from `validate`, `load_spec` or
    `Campaign.spec`): ``typed(spec).engine.dt == spec["engine"]["dt"]``. Lists become tuples,
    system.states a read-only mapping of `StateSpec`, features an instance of the kind's class in
    FEATURE_KINDS. It does not validate: give it a raw spec and it raises SpecError or TypeError."""
    if set(spec) != set(SECTIONS):
        raise SpecError(f"spec: not a validated spec (sections {sorted(spec)}); validate it first")
    parts = {}
    for name, cls in SECTIONS.items():
        if name == "features":
            cls = FEATURE_KINDS[spec["features"]["kind"]]
        elif name == "system":
            cls = SYSTEM_KINDS.get(spec["system"]["potential"], SystemSpec)
        parts[name] = _build(cls, spec[name])
    return Spec(**parts)


def validate_typed(raw: dict[str, Any]) -> Spec:
    """`validate` then `typed`."""
    return typed(validate(raw))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def schema_fingerprint() -> str:
    """A hash of what a validated spec holds: every field's path, type(s), required flag and default,
    of every section, featurizer kind and state. It changes exactly when the fields or defaults do;
    tests/test_spec_version.py pins it to SCHEMA_VERSION (campaign.schema's own default excepted)."""
    rows = []

    def add(prefix: str, table: Mapping[str, Field]) -> None:
        for key, f in table.items():
            kinds = f.kind if isinstance(f.kind, tuple) else (f.kind,)
            default = None if prefix + key == "campaign.schema" else f.default
            rows.append([prefix + key, [k.__name__ for k in kinds], f.required, default])

    for name, table in SCHEMA.items():
        add(f"{name}.", table)
    for kind, table in FEATURE_FIELDS.items():
        add(f"features[kind={kind}].", table)
    for potential, table in SYSTEM_FIELDS.items():
        add(f"system[potential={potential}].", table)
    add("system.states.NAME.", STATE_FIELDS)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]
