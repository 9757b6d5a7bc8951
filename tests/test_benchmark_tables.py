"""The benchmark tables' intervals: mean and 95 % t-interval over seeds."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_interval_is_the_mean_and_the_95_percent_t_half_width():
    from campaigns import interval

    assert interval([1.0, 2.0, 3.0]) == "2.000 ± 2.484"  # t(0.975, 2) = 4.303, sd 1, n 3
    assert interval([1.0, None, 3.0], ".1f") == "2.0 ± 12.7"  # t(0.975, 1) = 12.71, sd 1.414, n 2
    assert interval([0.5]) == "0.500" and interval([None, None]) == "-"
    assert interval([1e6, 1e6], ",.0f") == "1,000,000 ± 0"
