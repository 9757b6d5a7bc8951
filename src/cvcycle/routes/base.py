"""What a learner route is: its three phases, the files each finished phase leaves, the metric
columns `show` prints, and whether its CV is logit q (a committor, exported as committor.pt).

A route module (routes/<name>.py) defines ROUTE; `routes.route_for(spec)` finds it by name.
The loop (cvcycle.loop) runs the phases and records each analysis; a phase never advances past
its own analysis, so routes do not depend on the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

PhaseFn = Callable[..., Any]  # (campaign, iteration, log, deadline) -> None; analyze -> Analysis


@dataclass(frozen=True)
class Analysis:
    """Iteration k's analysis: metrics (with 'converged'), the total walker steps the campaign
    would have after one more iteration (for the budget), and a one-line summary for the log."""

    metrics: dict[str, Any]
    next_steps: int
    summary: str


@dataclass(frozen=True)
class Route:
    name: str
    simulate: PhaseFn
    train: PhaseFn
    analyze: PhaseFn
    files: dict[str, tuple[str, ...]]  # phase -> files a finished phase leaves in its iteration folder
    metric_keys: tuple[str, ...]
    logit_q: bool = False

    def phase(self, name: str) -> PhaseFn:
        return {"simulate": self.simulate, "train": self.train, "analyze": self.analyze}[name]


# what the phases of every biased-simulation route leave
BIASED_FILES = {"simulate": ("samples.npz", "trajectory.npz"), "train": ("model.npz", "model.npz.json", "cv.pt"),
                "analyze": ("metrics.json", "fes.npz")}
