"""Mean and 95 % t-interval over seeds, as the comparison and benchmark tables print them."""

from __future__ import annotations

import math

from cvcycle.analysis.intervals import format_interval, t_interval


def test_interval_is_the_mean_and_the_95_percent_t_half_width():
    assert format_interval([1.0, 2.0, 3.0]) == "2.000 ± 2.484"  # t(0.975, 2) = 4.303, sd 1, n 3
    assert format_interval([1.0, None, 3.0], ".1f") == "2.0 ± 12.7"  # t(0.975, 1) = 12.71, sd 1.414, n 2
    assert format_interval([0.5]) == "0.500" and format_interval([None, None]) == "-"
    assert format_interval([1e6, 1e6], ",.0f") == "1,000,000 ± 0"


def test_non_finite_values_are_left_out_and_counted_out():
    mean, half, n = t_interval([1.0, float("nan"), 3.0, None, float("inf")])
    assert (mean, n) == (2.0, 2) and math.isclose(half, 12.706 * math.sqrt(2) / math.sqrt(2), rel_tol=1e-4)
    assert t_interval([]) is None and math.isnan(t_interval([4.0])[1])


def test_an_interval_reaching_beyond_the_metrics_support_is_cut_there():
    """An RMSE of 0.01, 0.02, 0.2 over three seeds: the t-interval reaches below zero, which an RMSE
    cannot; the printed interval stops at 0 (and at 1 for a p_B), the mean stays."""
    values = [0.01, 0.02, 0.2]
    mean, half, _ = t_interval(values)
    assert mean - half < 0
    assert format_interval(values, ".3f", (0, None)) == f"{mean:.3f} (0.000 to {mean + half:.3f})"
    assert format_interval(values, ".3f") == f"{mean:.3f} ± {half:.3f}"  # no support given: as before
    assert format_interval([0.9, 0.95, 1.0], ".2f", (0, 1)) == "0.95 (0.83 to 1.00)"  # half 0.124
    assert format_interval([1.0, 1.2, 1.4], ".3f", (0, None)) == "1.200 ± 0.497"  # inside: unchanged
