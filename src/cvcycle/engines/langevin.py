"""Langevin dynamics of many independent walkers of a system, in torch.

Overdamped by the Leimkuhler-Matthews scheme, x += F dt/gamma + sqrt(kT dt/(2 gamma)) (xi_n + xi_{n+1}),
whose invariant measure is second-order accurate in dt (Euler-Maruyama's first-order error inflates
free energies of stiff wells by ~k dt/2 relative), or underdamped (BAOAB, friction gamma in 1/time,
per-particle masses). Positions are (walkers, N, d); all walkers advance in one vectorised step;
forces come from one autograd call through potential + bias. The random stream of a `run` is a
pure function of (seed, stream key) or (seed, global step), so a run split into segments
reproduces the uninterrupted one bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .. import io as cio
from ..errors import SimulationError
from ..features import make_featurizer
from ..systems.base import System
from .base import BiasHook, Engine, Frames, torch_threads

Forces = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class LangevinEngine(Engine):
    deterministic_restart = True

    def __init__(self, system: System, featurizer: torch.nn.Module, dt: float, friction: float, n_walkers: int,
                 integrator: str = "overdamped", mass: float = 1.0, seed: int = 0, threads: int = 1,
                 device: str = "cpu") -> None:
        if integrator not in ("overdamped", "underdamped"):
            raise ValueError(f"unknown integrator {integrator!r}")
        torch.set_num_threads(threads)
        self.system, self.featurizer = system, featurizer
        self.dt, self.friction, self.n_walkers, self.integrator = dt, friction, n_walkers, integrator
        self.seed, self.step, self.device = int(seed), 0, torch.device(device)
        shape = (n_walkers, system.n_particles, system.dim)
        self.mass = torch.as_tensor(mass * system.masses, dtype=torch.float64, device=self.device)[:, None]  # (N, 1)
        box = system.box
        self.box = None if box is None else torch.as_tensor(box, dtype=torch.float64, device=self.device)
        self.x = torch.zeros(shape, dtype=torch.float64, device=self.device)
        self.v = torch.zeros_like(self.x)
        self.noise = torch.zeros_like(self.x)  # previous xi of the overdamped scheme

    @classmethod
    def from_spec(cls, spec: dict[str, Any], system: System) -> "LangevinEngine":
        en = spec["engine"]
        return cls(system, make_featurizer(spec), dt=en["dt"], friction=en["friction"], n_walkers=en["walkers"],
                   integrator=en["integrator"], mass=en["mass"], seed=spec["campaign"]["seed"],
                   threads=torch_threads(spec["resources"]["cpus"], en["walkers"], system.n_particles))

    def set_positions(self, positions: np.ndarray, velocities: np.ndarray | None = None) -> None:
        pos = self._walker_array(positions, "positions")
        if not torch.isfinite(pos).all():
            bad = int((~torch.isfinite(pos)).flatten(1).any(dim=1).nonzero()[0])
            raise SimulationError(f"initial positions are not finite (walker {bad}: {pos[bad].tolist()})")
        self.x = pos.clone()
        # without velocities, BAOAB thermalises v within a few 1/friction
        self.v = torch.zeros_like(self.x) if velocities is None else self._walker_array(velocities, "velocities").clone()
        self.noise = torch.zeros_like(self.x)

    def draw_velocities(self, seed: int) -> None:
        """v ~ N(0, kT/m) per component (BAOAB); for the overdamped scheme the last noise term
        xi_n ~ N(0, 1), so the first step has the full noise xi_n + xi_{n+1} of every later one."""
        gen = torch.Generator(device=self.device).manual_seed(cio.derive_seed(seed, 7_000_003))  # < 2**63
        xi = torch.randn(self.x.shape, generator=gen, dtype=self.x.dtype, device=self.device)
        if self.integrator == "overdamped":
            self.noise, self.v = xi, torch.zeros_like(self.x)
        else:
            self.noise, self.v = torch.zeros_like(self.x), xi * torch.sqrt(self.kT / self.mass)

    def _walker_array(self, a: np.ndarray, what: str) -> torch.Tensor:
        shape = self.x.shape
        a = np.asarray(a, dtype=np.float64)
        if a.size != math.prod(shape):
            raise SimulationError(f"{what} shaped {a.shape} do not fit {shape[0]} walkers x {shape[1]} particles "
                                  f"x {shape[2]} dimensions")
        return torch.as_tensor(a, device=self.device).reshape(shape)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.featurizer(x) if self.box is None else self.featurizer(x, self.box)

    def _forces(self, hook: BiasHook | None, bias_scale: float = 1.0, frame: bool = True) -> Forces:
        """Forces of potential + bias_scale x bias at the current positions, with the frame's
        features, potential, bias and CV. With bias_scale = 0 the bias exerts no force; it is still
        evaluated when `frame` asks for the frame, and otherwise the frame tensors are empty."""
        x = self.x.detach().requires_grad_(True)
        if frame or (hook is not None and bias_scale):
            feats = self._features(x)
        else:
            feats = torch.zeros(len(x), 0, dtype=x.dtype)
        u = self.system.potential(x)
        total = u
        if hook is None or not (bias_scale or frame):
            bias = torch.zeros_like(u)
            cv = torch.zeros(len(u), 0, dtype=x.dtype)
        else:
            bias, cv = hook.energy(feats, x)
            if bias_scale == 1.0:
                total = u + bias
            elif bias_scale:
                total = u + bias_scale * bias
        (grad,) = torch.autograd.grad(total.sum(), x)
        return -grad, feats.detach(), u.detach(), bias.detach(), cv.detach()

    def run(self, n_steps: int, report_stride: int, bias: BiasHook | None = None, *, bias_stride: int = 1,
            stream: tuple[int, ...] | None = None) -> Frames:
        """With bias_stride = k > 1 the bias acts as an impulse (multiple time stepping, as PLUMED's
        STRIDE): k times its force at the global steps that are multiples of k, none in between;
        depositions happen at those steps only, so a bias's pace must be a multiple of k."""
        if bias_stride < 1:
            raise ValueError(f"bias_stride must be a positive number of steps, got {bias_stride}")
        key = (self.seed, *stream) if stream is not None else (self.seed, self.step)
        gen = torch.Generator(device=self.device).manual_seed(cio.derive_seed(*key))  # < 2**63
        hook, dt, g, kT = bias, self.dt, self.friction, self.kT
        beta = 1.0 / kT
        noise_od = math.sqrt(0.5 * kT * dt / g)
        c1 = math.exp(-g * dt)
        c2 = torch.sqrt((1.0 - c1 * c1) * kT / self.mass)
        half_kick = (0.5 * dt) / self.mass
        rows: dict[str, list[np.ndarray]] = {k: [] for k in ("step", "positions", "features", "potential", "cv", "bias", "log_weight")}
        start = self.step

        def forces_at(step: int) -> Forces:  # at the current positions, which are those of `step`
            on = step % bias_stride == 0
            return self._forces(hook, float(bias_stride) if on else 0.0,
                                frame=(step - start) % report_stride == 0 or (on and hook is not None))

        force, feats, u, b, cv = forces_at(start)
        for i in range(n_steps):
            step = self.step
            if hook is not None and step % bias_stride == 0 and hook.observe(step, cv):  # deposit at the current configuration
                force, feats, u, b, cv = forces_at(step)
            if i % report_stride == 0:
                offset = hook.offset() if hook is not None else 0.0
                for name, val in (("step", np.array(step)), ("positions", self.x.cpu().numpy().copy()),
                                  ("features", feats.cpu().numpy()), ("potential", u.cpu().numpy()), ("cv", cv.cpu().numpy()),
                                  ("bias", b.cpu().numpy()), ("log_weight", (beta * (b - offset)).cpu().numpy())):
                    rows[name].append(val)
            xi = torch.randn(self.x.shape, generator=gen, dtype=self.x.dtype, device=self.device)
            if self.integrator == "overdamped":
                self.x = self.x + force * (dt / g) + noise_od * (self.noise + xi)
                self.noise = xi
                force, feats, u, b, cv = forces_at(step + 1)
            else:  # BAOAB
                self.v = self.v + half_kick * force
                self.x = self.x + 0.5 * dt * self.v
                self.v = c1 * self.v + c2 * xi
                self.x = self.x + 0.5 * dt * self.v
                force, feats, u, b, cv = forces_at(step + 1)
                self.v = self.v + half_kick * force
            self.step += 1
            if not torch.isfinite(force).all():
                walker = int((~torch.isfinite(force).flatten(1).all(dim=1)).nonzero()[0])
                raise SimulationError(f"simulation diverged at step {self.step}, walker {walker}: "
                                      f"position {self.x[walker].tolist()}, force {force[walker].tolist()} "
                                      f"(engine.dt = {dt} may be too large)")
        return Frames(**{k: np.stack(v) for k, v in rows.items()})

    def forces(self, bias: BiasHook | None = None) -> np.ndarray:
        return self._forces(bias)[0].cpu().numpy()

    def keep_walkers(self, walkers: np.ndarray) -> None:
        idx = torch.as_tensor(np.asarray(walkers, dtype=np.int64), device=self.device)
        self.x, self.v, self.noise = self.x[idx], self.v[idx], self.noise[idx]
        self.n_walkers = len(idx)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"positions": self.x.cpu().numpy().copy(), "velocities": self.v.cpu().numpy().copy(),
                "noise": self.noise.cpu().numpy().copy(), "step": np.array(self.step, dtype=np.int64)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.x = self._walker_array(state["positions"], "positions").clone()
        self.v = self._walker_array(state["velocities"], "velocities").clone()
        self.noise = self._walker_array(state["noise"], "noise").clone()
        self.step = int(state["step"])
