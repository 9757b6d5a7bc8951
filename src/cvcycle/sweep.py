"""Sweeps: the product of campaigns over swept spec values and seeds, every spec validated before
any campaign is created (`python project.py init SPEC --set bias.sigma=0.025,0.035 --seeds 0-4`)."""

from __future__ import annotations

import itertools
import re
from typing import Any

from .campaign import is_run_setting, run_setting_names
from .errors import SpecError
from .settings import Key, apply, parse_values
from .spec import validate


def parse_seeds(text: str, base: int) -> list[int]:
    """'3' -> base, base+1, base+2 (a count); '0-4' -> 0..4 (a range, both ends included);
    '0,2,7' -> a list."""
    text = text.replace(" ", "")
    if re.fullmatch(r"\d+", text):
        if int(text) < 1:
            raise SpecError(f"--seeds: must be >= 1, got {text}")
        return list(range(base, base + int(text)))
    if m := re.fullmatch(r"(\d+)-(\d+)", text):
        seeds = list(range(int(m[1]), int(m[2]) + 1))
        if not seeds:
            raise SpecError(f"--seeds {text}: the range is empty (its end is below its start)")
        return seeds
    if re.fullmatch(r"\d+(,\d+)+", text):
        seeds = [int(s) for s in text.split(",")]
        if len(set(seeds)) < len(seeds):
            raise SpecError(f"--seeds {text}: a seed is given twice")
        return seeds
    raise SpecError(f"--seeds {text!r}: expected a count (3), a range (0-4) or a list (0,2,7) of seeds >= 0")


def parse_sweep(items: list[str]) -> dict[Key, list[Any]]:
    """--set items as {(section, key): [values]}. A run setting (budget, resources) may be set
    but not swept: campaigns that differ only in it are one campaign."""
    sweep: dict[Key, list[Any]] = {}
    for item in items:
        key, values = parse_values(item)
        if key in sweep:
            raise SpecError(f"--set {'.'.join(key)}: given twice (list every value in one --set, comma-separated)")
        if key == ("campaign", "seed"):
            raise SpecError("--set campaign.seed: give seeds with --seeds (a count, a range 0-4 or a list 0,2,7)")
        if len(values) > 1 and is_run_setting(*key):
            raise SpecError(f"--set {'.'.join(key)}: a run setting ({run_setting_names()}) cannot be swept; campaigns "
                            "that differ only in it are the same campaign")
        sweep[key] = values
    return sweep


def swept(sweep: dict[Key, list[Any]]) -> list[Key]:
    """The keys that take more than one value."""
    return [k for k, v in sweep.items() if len(v) > 1]


def sweep_specs(spec: dict[str, Any], sweep: dict[Key, list[Any]], seeds: list[int]) -> list[dict[str, Any]]:
    """Every validated spec of the product (swept values x seeds, seeds fastest). An invalid value
    raises SpecError naming the setting; nothing is created before all are valid."""
    keys = list(sweep)
    out = []
    for combo in itertools.product(*(sweep[k] for k in keys)):
        values = dict(zip(keys, combo))
        try:
            point = apply(spec, values)
            for s in seeds:
                out.append(validate({**point, "campaign": {**point["campaign"], "seed": s}}))
        except SpecError as exc:
            given = " ".join(f"{'.'.join(k)}={v!r}" for k, v in values.items() if k in swept(sweep))
            raise SpecError(f"{exc}" + (f" (in the sweep point {given})" if given else "")) from None
    return out
