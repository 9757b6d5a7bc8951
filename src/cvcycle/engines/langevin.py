"""Langevin dynamics of many independent walkers on an analytic 2-D potential, in torch.

Overdamped by the Leimkuhler-Matthews scheme, x += F dt/gamma + sqrt(kT dt/(2 gamma)) (xi_n + xi_{n+1}),
whose invariant measure is second-order accurate in dt (Euler-Maruyama's first-order error inflates
free energies of stiff wells by ~k dt/2 relative), or underdamped (BAOAB, friction gamma in 1/time). All walkers advance in one vectorised step; forces come from one
autograd call through potential + bias. The random stream of a `run` is a pure function of its
seed, so a run split into segments reproduces the uninterrupted one bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import SimulationError
from ..features import make_featurizer
from ..systems.potentials import Potential2D
from .base import BiasHook, Engine, Frames


class LangevinEngine(Engine):
    def __init__(self, potential: Potential2D, featurizer: torch.nn.Module, kT: float, dt: float,
                 friction: float, n_walkers: int, integrator: str = "overdamped", mass: float = 1.0,
                 threads: int = 1) -> None:
        if integrator not in ("overdamped", "underdamped"):
            raise ValueError(f"unknown integrator {integrator!r}")
        torch.set_num_threads(threads)
        self.potential, self.featurizer = potential, featurizer
        self.feature_names = list(featurizer.names)
        self.kT, self.dt, self.friction, self.mass = kT, dt, friction, mass
        self.n_walkers, self.integrator = n_walkers, integrator
        self.x = torch.zeros(n_walkers, 2, dtype=torch.float64)
        self.v = torch.zeros(n_walkers, 2, dtype=torch.float64)
        self.noise = torch.zeros(n_walkers, 2, dtype=torch.float64)  # previous xi of the overdamped scheme

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "LangevinEngine":
        sy, en = spec["system"], spec["engine"]
        return cls(Potential2D(sy["potential"], sy["scale"]), make_featurizer(spec), kT=sy["temperature"],
                   dt=en["dt"], friction=en["friction"], n_walkers=en["walkers"],
                   integrator=en["integrator"], mass=en["mass"], threads=spec["resources"]["cpus"])

    def set_positions(self, positions: np.ndarray) -> None:
        pos = torch.as_tensor(np.asarray(positions, dtype=np.float64)).reshape(self.n_walkers, 2)
        if not torch.isfinite(pos).all():
            bad = int((~torch.isfinite(pos)).any(dim=1).nonzero()[0])
            raise SimulationError(f"initial positions are not finite (walker {bad}: {pos[bad].tolist()})")
        self.x = pos.clone()
        self.v = torch.zeros_like(self.x)  # BAOAB thermalises v within a few 1/friction
        self.noise = torch.zeros_like(self.x)

    def _forces(self, hook: BiasHook | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.x.detach().requires_grad_(True)
        feats = self.featurizer(x)
        u = self.potential(x)
        if hook is None:
            bias = torch.zeros_like(u)
            cv = torch.zeros(len(u), 0, dtype=x.dtype)
        else:
            bias, cv = hook.energy(feats)
        (grad,) = torch.autograd.grad((u + bias).sum(), x)
        return -grad, feats.detach(), u.detach(), bias.detach(), cv.detach()

    def run(self, n_steps: int, report_stride: int, seed: int, hook: BiasHook | None = None,
            first_step: int = 0) -> Frames:
        gen = torch.Generator().manual_seed(int(seed) % (2**63))
        beta, dt, g = 1.0 / self.kT, self.dt, self.friction
        noise_od = math.sqrt(0.5 * self.kT * dt / g)
        c1 = math.exp(-g * dt)
        c2 = math.sqrt((1.0 - c1 * c1) * self.kT / self.mass)
        rows: dict[str, list[np.ndarray]] = {k: [] for k in ("step", "positions", "features", "potential", "cv", "bias", "log_weight")}
        force, feats, u, bias, cv = self._forces(hook)
        for i in range(n_steps):
            step = first_step + i
            if hook is not None and hook.observe(step, cv):  # deposit at the current configuration
                force, feats, u, bias, cv = self._forces(hook)
            if i % report_stride == 0:
                offset = hook.offset() if hook is not None else 0.0
                for key, val in (("step", np.array(step)), ("positions", self.x.numpy().copy()),
                                 ("features", feats.numpy()), ("potential", u.numpy()), ("cv", cv.numpy()),
                                 ("bias", bias.numpy()), ("log_weight", (beta * (bias - offset)).numpy())):
                    rows[key].append(val)
            xi = torch.randn(self.x.shape, generator=gen, dtype=self.x.dtype)
            if self.integrator == "overdamped":
                self.x = self.x + force * (dt / g) + noise_od * (self.noise + xi)
                self.noise = xi
                force, feats, u, bias, cv = self._forces(hook)
            else:  # BAOAB
                self.v = self.v + (0.5 * dt / self.mass) * force
                self.x = self.x + 0.5 * dt * self.v
                self.v = c1 * self.v + c2 * xi
                self.x = self.x + 0.5 * dt * self.v
                force, feats, u, bias, cv = self._forces(hook)
                self.v = self.v + (0.5 * dt / self.mass) * force
            if not torch.isfinite(force).all():
                walker = int((~torch.isfinite(force).all(dim=1)).nonzero()[0])
                raise SimulationError(f"simulation diverged at step {step + 1}, walker {walker}: "
                                      f"position {self.x[walker].tolist()}, force {force[walker].tolist()} "
                                      f"(engine.dt = {dt} may be too large)")
        return Frames(**{k: np.stack(v) for k, v in rows.items()})

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"positions": self.x.numpy().copy(), "velocities": self.v.numpy().copy(),
                "noise": self.noise.numpy().copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.x = torch.as_tensor(state["positions"]).clone()
        self.v = torch.as_tensor(state["velocities"]).clone()
        self.noise = torch.as_tensor(state["noise"]).clone()
