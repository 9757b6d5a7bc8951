"""Elapsed and remaining time of long phases, for progress lines."""

from __future__ import annotations


def clock(seconds: float) -> str:
    """12 s, 3.5 min, 2.1 h."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def progress_time(elapsed: float, done: int, total: int, bound: bool = False) -> str:
    """'elapsed 40 s, ~1.2 min left' after `done` of `total` units in `elapsed` seconds, at the
    rate so far; with `bound`, 'at most' (training may stop early)."""
    if done <= 0 or done >= total:
        return f"elapsed {clock(elapsed)}"
    left = elapsed / done * max(total - done, 0)
    return f"elapsed {clock(elapsed)}, {'at most ' if bound else '~'}{clock(left)} left"
