"""Means with 95 % Student-t intervals over independent estimates (seeds)."""

from __future__ import annotations

import math
from typing import Iterable

Support = tuple[float | None, float | None]  # the values a metric can take: (lowest, highest), None open


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


def clipped(mean: float, half: float, support: Support) -> tuple[float, float]:
    """(low, high) of mean ± half intersected with the metric's support: the true value lies in the
    support, so the intersection covers it as often as the t-interval does (a width or an RMSE
    cannot be negative, a p_B not above 1)."""
    low, high = mean - half, mean + half
    if support[0] is not None:
        low = max(low, support[0])
    if support[1] is not None:
        high = min(high, support[1])
    return low, high


def format_interval(values: Iterable[float | None], form: str = ".3f", support: Support = (None, None)) -> str:
    """'mean ± half' ('-' when no value, the value alone when one); 'mean (low to high)' where the
    interval reaches beyond the support and is cut there."""
    r = t_interval(values)
    if r is None:
        return "-"
    mean, half, n = r
    if n == 1:
        return format(mean, form)
    low, high = clipped(mean, half, support)
    if (low, high) != (mean - half, mean + half):
        return f"{format(mean, form)} ({format(low, form)} to {format(high, form)})"
    return f"{format(mean, form)} ± {format(half, form)}"
