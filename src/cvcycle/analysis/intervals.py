"""Means with 95 % Student-t intervals over independent estimates (seeds)."""

from __future__ import annotations

import math
from typing import Iterable


def t_interval(values: Iterable[float | None]) -> tuple[float, float, int] | None:
    """(mean, half-width of the 95 % t-interval, n) of the finite values; half-width nan for one
    value, None for none."""
    import numpy as np
    from scipy import stats

    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if not len(v):
        return None
    if len(v) == 1:
        return float(v[0]), float("nan"), 1
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(half), len(v)


def format_interval(values: Iterable[float | None], form: str = ".3f") -> str:
    """'mean ± half' ('-' when no value, the value alone when one)."""
    r = t_interval(values)
    if r is None:
        return "-"
    mean, half, n = r
    return format(mean, form) if n == 1 else f"{format(mean, form)} ± {format(half, form)}"
