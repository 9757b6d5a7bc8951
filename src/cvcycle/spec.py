"""Campaign specs: TOML files with a fixed schema, defaults, and validation with clear messages.

A spec says what a campaign *is*: system, engine, features, learner, bias, budget and the
convergence criterion. `load_spec` returns a plain nested dict with every default filled in, so
it can be stored as a signac state point and hashed. Any problem raises `SpecError` naming the
field, e.g. ``engine.steps: must be >= 1, got -5``.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import SpecError


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
            return f"must be {'>' if lo_open else '>='} {lo}, got {v}"
        if hi is not None and v > hi:
            return f"must be <= {hi}, got {v}"
        return None

    return check


def _choice(*options: str):
    def check(v: Any) -> str | None:
        return None if v in options else f"must be one of {list(options)}, got {v!r}"

    return check


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _point_or_state(v: Any) -> str | None:
    if isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(c, str) for c in v)):
        return None
    if isinstance(v, list) and len(v) == 2 and all(_is_number(c) for c in v):
        return None if all(math.isfinite(c) for c in v) else f"must be finite, got {v}"
    return f"must be a state name, a list of state names or a point [x, y], got {v!r}"


def _positive_ints(v: Any) -> str | None:
    if not v or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in v):
        return f"must be a non-empty list of positive integers, got {v!r}"
    return None


def _seed(v: Any) -> str | None:
    return None if 0 <= v < 2**63 else f"must be in [0, 2**63), got {v}"


POSITIVE = _range(0.0, lo_open=True)
AT_LEAST_1 = _range(1)
FRACTION = _range(0.0, 1.0)

SCHEMA: dict[str, dict[str, Field]] = {
    "campaign": {
        "name": Field(str, required=True),
        "seed": Field(int, 0, check=_seed),
    },
    "system": {
        "potential": Field(str, required=True, check=_choice("mueller-brown", "wolfe-quapp", "double-well")),
        "scale": Field(float, 1.0, check=POSITIVE),
        "temperature": Field(float, 1.0, check=POSITIVE),
        "states": Field(dict, required=True),
    },
    "engine": {
        "name": Field(str, "langevin", check=_choice("langevin", "openmm", "hoomd")),
        "integrator": Field(str, "overdamped", check=_choice("overdamped", "underdamped")),
        "dt": Field(float, 5e-4, check=POSITIVE),
        "friction": Field(float, 1.0, check=POSITIVE),
        "mass": Field(float, 1.0, check=POSITIVE),
        "walkers": Field(int, 25, check=AT_LEAST_1),
        "steps": Field(int, 12000, check=AT_LEAST_1),
        "initial_steps": Field(int, 4000, check=AT_LEAST_1),
        "report_stride": Field(int, 10, check=AT_LEAST_1),
        "segment_steps": Field(int, 1000, check=AT_LEAST_1),
        "start": Field((str, list), "A", check=_point_or_state),
        "start_spread": Field(float, 0.05, check=_range(0.0)),
    },
    "features": {
        "kind": Field(str, "coordinates", check=_choice("coordinates")),
        "names": Field(list, ["x", "y"]),
    },
    "learner": {
        "kind": Field(str, "autoencoder", check=_choice("autoencoder", "committor")),
        "cv_dim": Field(int, 1, check=_range(1, 2)),
        "hidden": Field(list, [32, 32], check=_positive_ints),
        "activation": Field(str, "tanh", check=_choice("tanh", "elu", "softplus")),
        "epochs": Field(int, 200, check=AT_LEAST_1),
        "batch_size": Field(int, 512, check=AT_LEAST_1),
        "learning_rate": Field(float, 1e-3, check=POSITIVE),
        "warm_start": Field(bool, True),
        "ensemble": Field(int, 3, check=_range(1, 16)),
        "weight_decay": Field(float, 0.0, check=_range(0.0)),
        "select": Field(str, "kolmogorov", check=_choice("kolmogorov", "reconstruction")),  # autoencoder ensemble
        "crossing_only": Field(bool, True),
        "reweight": Field(bool, True),
        "reweight_power": Field(float, 0.5, check=FRACTION),
        "validation_fraction": Field(float, 0.1, check=_range(0.0, 0.5)),
        "patience": Field(int, 30, check=AT_LEAST_1),
        "checkpoint_epochs": Field(int, 10, check=AT_LEAST_1),
        "max_samples": Field(int, 20000, check=_range(100)),
        "method": Field(str, "variational", check=_choice("variational", "shooting")),  # committor only
        "boundary_weight": Field(float, 100.0, check=POSITIVE),  # variational: weight of q = 0 on A, 1 on B
    },
    "bias": {
        "kind": Field(str, "opes", check=_choice("opes", "metad")),
        "pace": Field(int, 50, check=AT_LEAST_1),
        "sigma": Field(float, 0.025, check=POSITIVE),
        "barrier": Field(float, 11.0, check=_range(0.0, 500.0, lo_open=True)),
        "height": Field(float, 0.5, check=POSITIVE),
        "bias_factor": Field(float, 10.0, check=_range(1.0, lo_open=True)),
        "grid_bins": Field(int, 500, check=_range(10, 5000)),
        "grid_margin": Field(float, 0.5, check=_range(0.0, 5.0)),
        "cv_range": Field(list, [-1.0, 1.0]),
        "warm_start": Field(bool, True),
        "warm_start_weight": Field(float, 0.5, check=POSITIVE),
        "kolmogorov_lambda": Field(float, 0.0, check=_range(0.0)),  # committor learner: static bias
        "kolmogorov_epsilon": Field(float, 1e-3, check=POSITIVE),   # -lambda kT log(|grad q|^2 + epsilon)
    },
    "paths": {  # committor learner by shooting: transition path sampling with openpathsampling
        "moves": Field(int, 200, check=AT_LEAST_1),
        "stride": Field(int, 10, check=AT_LEAST_1),
        "max_frames": Field(int, 2000, check=_range(3)),
        "chunk_moves": Field(int, 50, check=AT_LEAST_1),
        "selector_width": Field(float, 1.0, check=POSITIVE),
        "extra_shots": Field(int, 8, check=_range(0)),  # more trajectories per shooting point, run vectorised
        "initial_temperature": Field(float, 3.0, check=POSITIVE),
        "initial_steps": Field(int, 4000, check=AT_LEAST_1),
    },
    "budget": {
        "max_iterations": Field(int, 8, check=AT_LEAST_1),
        "max_total_steps": Field(int, 2_000_000, check=AT_LEAST_1),
    },
    "convergence": {
        "min_iterations": Field(int, 4, check=_range(2)),
        "cv_r2": Field(float, 0.99, check=FRACTION),
        "q_change": Field(float, 0.05, check=FRACTION),  # committor learner: instead of cv_r2
        "fes_rmse": Field(float, 0.5, check=POSITIVE),
        "fes_cutoff": Field(float, 8.0, check=POSITIVE),
        "fes_bins": Field(int, 50, check=_range(5, 2000)),
        "require_states": Field(bool, True),
        "min_transitions": Field(float, 1.0, check=_range(0.0)),
    },
    "resources": {  # per scheduler job: SLURM directives, and the threads cvcycle uses
        "cpus": Field(int, 1, check=_range(1, 1024)),
        "gpus": Field(int, 0, check=_range(0, 64)),
        "memory_gb": Field(float, 4.0, check=_range(0.0, 100_000.0, lo_open=True)),
        "walltime_hours": Field(float, 1.0, check=_range(1.0 / 60.0, 720.0)),
    },
    "analysis": {
        "grid_bins": Field(int, 120, check=_range(10, 2000)),
        "plots": Field(bool, True),
        "fes_window": Field(int, 3, check=AT_LEAST_1),
    },
}

STATE_FIELDS: dict[str, Field] = {
    "center": Field(list, required=True),
    "radius": Field(float, required=True, check=POSITIVE),
}


def _unknown(where: str, key: str, known: list[str]) -> SpecError:
    hint = difflib.get_close_matches(key, known, n=1)
    extra = f" (did you mean '{hint[0]}'?)" if hint else f" (known: {', '.join(sorted(known))})"
    return SpecError(f"{where}{key}: unknown key{extra}")


def _coerce(path: str, value: Any, field: Field) -> Any:
    kinds = field.kind if isinstance(field.kind, tuple) else (field.kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) and bool not in kinds:
        raise SpecError(f"{path}: expected {'/'.join(k.__name__ for k in kinds)}, got boolean {value}")
    if not isinstance(value, kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise SpecError(f"{path}: expected {names}, got {type(value).__name__} {value!r}")
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
        if len(c) != dim or not all(_is_number(v) and math.isfinite(v) for v in c):
            raise SpecError(f"system.states.{name}.center: must be {dim} finite numbers, got {c!r}")
        state["center"] = [float(v) for v in c]
        out[name] = state
    return out


def validate(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate a raw spec mapping and return it with every default filled in."""
    if not isinstance(raw, dict):
        raise SpecError("spec: expected a TOML table at top level")
    for key in raw:
        if key not in SCHEMA:
            raise _unknown("", key, list(SCHEMA))
    spec = {name: _section(name, raw.get(name, {}), fields) for name, fields in SCHEMA.items()}
    spec["system"]["states"] = _states(spec["system"]["states"], 2)

    names = spec["features"]["names"]
    if not all(isinstance(n, str) for n in names):
        raise SpecError(f"features.names: must be a list of strings, got {names!r}")
    if not names or len(set(names)) != len(names) or not set(names) <= {"x", "y"}:
        raise SpecError(f"features.names: distinct coordinates of a 2-D potential, from ['x', 'y'], got {names!r}")

    engine = spec["engine"]
    if engine["name"] != "langevin":
        raise SpecError(f"engine.name: '{engine['name']}' engines do not run analytic 2-D potentials; use 'langevin'")
    if engine["report_stride"] > engine["steps"]:
        raise SpecError(f"engine.report_stride: must be <= engine.steps ({engine['steps']}), got {engine['report_stride']}")
    for key in ("steps", "initial_steps"):
        if engine[key] % engine["report_stride"]:
            raise SpecError(f"engine.{key}: must be a multiple of engine.report_stride ({engine['report_stride']})")
    if engine["segment_steps"] % engine["report_stride"]:
        raise SpecError(f"engine.segment_steps: must be a multiple of engine.report_stride ({engine['report_stride']})")
    starts = [engine["start"]] if isinstance(engine["start"], str) else engine["start"]
    for name in starts:
        if isinstance(name, str) and name not in spec["system"]["states"]:
            known = ", ".join(spec["system"]["states"])
            raise SpecError(f"engine.start: unknown state '{name}' (states: {known})")

    learner = spec["learner"]
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

    lo_hi = spec["bias"]["cv_range"]
    if len(lo_hi) != 2 or not all(_is_number(v) and math.isfinite(v) for v in lo_hi) or lo_hi[0] >= lo_hi[1]:
        raise SpecError(f"bias.cv_range: must be [low, high] with low < high, got {lo_hi!r}")
    spec["bias"]["cv_range"] = [float(v) for v in lo_hi]

    bias = spec["bias"]
    if bias["kind"] == "opes" and bias["barrier"] <= 2.0 * spec["system"]["temperature"]:
        raise SpecError(f"bias.barrier: OPES needs a barrier above 2 kT ({2.0 * spec['system']['temperature']}), got {bias['barrier']}")

    conv, budget = spec["convergence"], spec["budget"]
    if conv["min_iterations"] > budget["max_iterations"]:
        raise SpecError(
            f"convergence.min_iterations: {conv['min_iterations']} exceeds budget.max_iterations ({budget['max_iterations']})"
        )
    return spec


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
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    try:
        return validate(raw)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
