"""`cvcycle.load(job)`: a campaign's results as Python objects, for notebooks and scripts.

    import cvcycle
    r = cvcycle.load("workspace/3f2a...")        # a job folder, a job id (prefix) or a signac job
    r.status, r.history[-1]["fes_rmse_exact"]     # where it stands, metrics per iteration
    s = r.samples()                               # last iteration: features, cv, log_weight, state ...
    cv = r.cv_model()                             # TorchScript: features (n, f) -> CV (n, d)
    fes = r.fes()                                 # reweighted FES on the state plane with its error

Reads the job folder only (no signac), like `python -m cvcycle show`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .campaign import Campaign
from .errors import WorkspaceError


@dataclass
class FES:
    """Free energy (kT) on the state plane, its walker-bootstrap standard error, and the 1-D FES
    along the CV the campaign recorded (no error)."""
    x_edges: np.ndarray
    y_edges: np.ndarray
    F: np.ndarray          # (len(y_edges) - 1, len(x_edges) - 1), minimum 0, NaN where no frame fell
    error: np.ndarray      # standard error per bin over bootstrap resamples of the walkers
    iterations: list[int]  # the iterations whose frames it pools (the campaign's FES iterations)
    coordinates: tuple[str, ...]
    cv_centers: np.ndarray
    F_cv: np.ndarray


class Results:
    """A campaign read from its job folder; every method reads files when called."""

    def __init__(self, campaign: Campaign) -> None:
        self.campaign = campaign
        self.path: Path = campaign.path
        self.id: str = campaign.id
        self.spec: dict[str, Any] = campaign.spec
        doc = campaign.progress()
        self.status: str = doc["status"]
        self.converged: bool = bool(doc["converged"])
        self.total_steps: int = doc["total_steps"]
        self.seconds: dict[str, float] = doc.get("seconds") or {}
        self.history: list[dict[str, Any]] = sorted(doc["history"], key=lambda h: h["iteration"])

    def __repr__(self) -> str:
        return (f"<cvcycle results {self.spec['campaign']['name']} seed {self.spec['campaign']['seed']}: {self.status}, "
                f"{len(self.history)} iterations analysed, {self.total_steps:,} walker steps>")

    @property
    def iterations(self) -> list[int]:
        """Iterations with simulation data, in order."""
        return sorted(int(p.name[5:]) for p in self.path.glob("iter-[0-9][0-9][0-9]") if (p / "samples.npz").is_file())

    def iteration_with(self, k: int | None, name: str) -> int:
        """Iteration k (None: the newest; negative: from the end) among those whose folder has `name`."""
        its = [i for i in self.iterations if (self.campaign.iter_dir(i) / name).is_file()] if name != "samples.npz" \
            else self.iterations
        if not its:
            raise WorkspaceError(f"campaign {self.id}: no iteration has {name} yet")
        if k is None:
            return its[-1]
        k = its[k] if k < 0 else k
        if k not in its:
            raise WorkspaceError(f"campaign {self.id}: iteration {k} has no {name} (iterations with it: {its})")
        return k

    def samples(self, k: int | None = None) -> dict[str, np.ndarray]:
        """Iteration k's per-frame arrays (frames, walkers, ...): step, features, potential, cv (the
        CV that biased this iteration, trained in the one before; in iteration 0 the bias.explore
        feature), bias, log_weight, state (index of the state a frame is in, -1 outside),
        state_coordinates. Default: the last iteration; negative k counts from the end."""
        from .routes.data import load_samples

        return load_samples(self.campaign, self.iteration_with(k, "samples.npz"))

    def weights(self, k: int | None = None) -> np.ndarray:
        """Iteration k's reweighting weights (frames, walkers), summing to 1."""
        from .learn.reweight import normalized_weights

        return normalized_weights(self.samples(k)["log_weight"])

    def positions(self, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Iteration k's stored positions (stored frames, walkers, N, d) and their frame numbers."""
        from .routes.data import load_positions

        return load_positions(self.campaign, self.iteration_with(k, "trajectory.npz"))

    def cv_model(self, k: int | None = None) -> Any:
        """The TorchScript CV trained in iteration k (default the newest): features -> CV."""
        import torch

        return torch.jit.load(str(self.campaign.iter_dir(self.iteration_with(k, "cv.pt")) / "cv.pt"))

    def committor_model(self, k: int | None = None) -> Any:
        """The TorchScript committor (features -> q) of a committor campaign, trained in iteration k."""
        import torch

        return torch.jit.load(str(self.campaign.iter_dir(self.iteration_with(k, "committor.pt")) / "committor.pt"))

    def fes(self, bootstrap: int = 100, seed: int = 0) -> FES:
        """The reweighted FES of the last analysed iteration on the state plane, as the campaign
        computed it (same frames, same mixture weights), with the standard error from `bootstrap`
        resamples of the walkers of each pooled iteration (walkers are the independent units;
        frames of one walker are correlated)."""
        from . import io as cio
        from .analysis.fes import histogram_fes
        from .routes.data import equilibrated, flat, load_samples, mixture_weights, transitions
        from .systems import make_system

        if not self.history:
            raise WorkspaceError(f"campaign {self.id}: no iteration analysed yet")
        k = self.history[-1]["iteration"]
        stored = cio.read_npz(self.campaign.iter_dir(k) / "fes.npz")
        xe, ye = stored["x_edges"], stored["y_edges"]
        if not len(xe):
            raise WorkspaceError(f"campaign {self.id}: its system has no state plane to show a FES on")
        names = tuple(make_system(self.spec).state_coordinate_names)
        # the campaign's choice: its FES iterations, or every iteration where the system has no
        # reference and nothing crossed yet (an all-NaN stored FES: none to pool)
        its = self.history[-1]["fes_iterations"] or (list(range(k + 1)) if np.isfinite(stored["F_xy"]).any() else [])
        if not its:
            nan = np.full_like(stored["F_xy"], np.nan)
            return FES(xe, ye, nan, nan.copy(), [], names, stored["cv_centers"], stored["F_cv"])
        data = [load_samples(self.campaign, i) for i in range(k + 1)]
        crossings = [transitions(s) for s in data]
        eq = [equilibrated(s, self.spec["analysis"]["equilibration"]) for s in data]

        def estimate(eq: list[dict[str, np.ndarray]]) -> np.ndarray:
            z = np.concatenate([flat(eq[i], "state_coordinates") for i in its])
            return histogram_fes(z, mixture_weights(eq, its, crossings), [xe, ye])

        F = estimate(eq)
        rng = np.random.default_rng(seed)
        reps = []
        for _ in range(bootstrap):
            resampled = list(eq)
            for i in its:
                cols = rng.integers(0, eq[i]["log_weight"].shape[1], eq[i]["log_weight"].shape[1])
                resampled[i] = {key: v[:, cols] if v.ndim >= 2 else v for key, v in eq[i].items()}
            Fb = estimate(resampled)
            both = np.isfinite(Fb) & np.isfinite(F)
            reps.append(Fb - (Fb[both] - F[both]).mean() if both.any() else Fb)
        with warnings.catch_warnings():  # bins that one resample or none fills: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            error = np.nanstd(np.array(reps), axis=0, ddof=1) if bootstrap > 1 else np.full_like(F, np.nan)
        error[~np.isfinite(F)] = np.nan
        return FES(xe, ye, F, error, list(its), names, stored["cv_centers"], stored["F_cv"])


def load(job: Any, workspace: str | Path = "workspace") -> Results:
    """A campaign's results: `job` is a job folder, a job id or unique prefix under `workspace`,
    or a signac job (anything with a `.path`)."""
    from .show import find_campaign

    return Results(find_campaign(str(getattr(job, "path", job)), workspace))
