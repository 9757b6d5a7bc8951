"""HOOMD-blue: many walkers of a particle system, one `hoomd.Simulation` each, Langevin dynamics.

HOOMD-blue (v4.8+, conda-forge) runs in the system's reduced units, so no conversion is needed. The
system supplies its forces as HOOMD objects (`hoomd_forces`, e.g. Lennard-Jones on a cell list);
a system without them gets its torch potential through a `hoomd.md.force.Custom` with autograd
forces (slow, for small test systems). Each particle of mass m feels the drag m x engine.friction
(so the friction is a rate, as in the other engines): particles of different masses get types of
their own.

The bias acts as a velocity kick, v += k dt F / m, written into each walker's state at the steps
that are multiples of the stride k (the run loop is `external.ExternalEngine`'s): the impulse
multiple time stepping (RESPA) of the other engines. A `hoomd.md.force.Custom` holding the force
would act one step late, since HOOMD-blue integrates step t with the forces it computed at the end
of step t - 1 and does not recompute them from Python. The kick adds no virial: pressure coupling
with the bias is not supported.

Random streams: HOOMD-blue draws the Langevin noise from (seed, time step, particle tag), with a
16-bit seed; each run sets every walker's seed from (seed, stream key, walker) or (seed, global
step, walker), and the global step is HOOMD-blue's time step, so a restored walker continues with
the same noise. Saved state: positions, images, velocities, accelerations (HOOMD-blue's Langevin
step starts from the acceleration of the previous one, drag and noise included) and the step, as
arrays. A restored walker continues the same trajectory up to rounding (its new neighbour list
sums the forces in another order), not bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import io as cio
from ..errors import SimulationError
from ..systems.base import System
from .external import ExternalEngine

OPEN_BOX = 100.0  # edge of the periodic box HOOMD-blue needs around an open (non-periodic) system


def _potential_force_class(hoomd: Any) -> type:
    """A hoomd.md.force.Custom with a system's torch potential and its autograd forces."""

    class TorchPotential(hoomd.md.force.Custom):
        def __init__(self, system: System) -> None:
            super().__init__()
            self.system = system

        def set_forces(self, timestep: int) -> None:
            with self._state.cpu_local_snapshot as snap:
                tag = np.array(snap.particles.tag, copy=True)
                x = np.empty((len(tag), self.system.dim))
                x[tag] = np.array(snap.particles.position, copy=True)[:, :self.system.dim]
            xt = torch.as_tensor(x).requires_grad_(True)
            energy = self.system.potential(xt)
            (grad,) = torch.autograd.grad(energy, xt)
            energy = energy.detach()
            with self.cpu_local_force_arrays as arrays:
                arrays.force[:, :self.system.dim] = -grad.numpy()[tag]
                arrays.potential_energy[:] = float(energy) / len(tag)

    return TorchPotential


class HOOMDEngine(ExternalEngine):
    # a restored walker builds a new neighbour list, whose force sums run in another order: it
    # continues the trajectory to rounding (1e-15 in positions after 60 steps), not bit for bit
    deterministic_restart = False

    def __init__(self, system: System, featurizer: torch.nn.Module, dt: float, friction: float, n_walkers: int,
                 seed: int = 0, platform: str = "auto") -> None:
        import hoomd

        self.hoomd, self.system, self.featurizer = hoomd, system, featurizer
        self.dt, self.friction, self.n_walkers = float(dt), float(friction), int(n_walkers)
        self.seed, self.step, self.device = int(seed), 0, torch.device("cpu")
        self.dim = system.dim
        self.box = np.full(self.dim, OPEN_BOX) if system.box is None else np.asarray(system.box, dtype=float)
        self.masses = np.asarray(system.masses, dtype=float)
        self.mass_types, self.typeid = np.unique(self.masses, return_inverse=True)
        self.hoomd_device = _device(hoomd, platform)
        self.walkers: list[Any] = []
        self.potential_forces: list[list[Any]] = []
        self.kick: np.ndarray | None = None  # bias forces (walkers, N, d) for the next step's kick
        positions = np.zeros((self.n_walkers, system.n_particles, self.dim))
        self._build(positions, np.zeros((self.n_walkers, system.n_particles, self.dim)),
                    np.zeros((self.n_walkers, system.n_particles, self.dim), dtype=np.int64), step=0)

    # -- the simulations ----------------------------------------------------------------------------
    def _snapshot(self, positions: np.ndarray, velocities: np.ndarray, images: np.ndarray) -> Any:
        snap = self.hoomd.Snapshot()
        n = self.system.n_particles
        snap.configuration.box = [*self.box, 0.0, 0.0, 0.0] if self.dim == 3 else [*self.box, 0.0, 0.0, 0.0, 0.0]
        snap.particles.N = n
        snap.particles.types = [f"m{i}" for i in range(len(self.mass_types))]
        snap.particles.typeid[:] = self.typeid
        snap.particles.mass[:] = self.masses
        pad = np.zeros((n, 3 - self.dim))
        snap.particles.position[:] = np.hstack([positions, pad])
        snap.particles.velocity[:] = np.hstack([velocities, pad])
        snap.particles.image[:] = np.hstack([images, pad.astype(np.int64)])
        return snap

    def _simulation(self, positions: np.ndarray, velocities: np.ndarray, images: np.ndarray, step: int) -> Any:
        hoomd = self.hoomd
        sim = hoomd.Simulation(device=self.hoomd_device, seed=0)
        sim.timestep = int(step)
        sim.create_state_from_snapshot(self._snapshot(positions, velocities, images))
        if self.system.box is None:  # the particle sorter's grid spans the box: ~80 MB per walker in an open one
            sim.operations.tuners.clear()
        langevin = hoomd.md.methods.Langevin(filter=hoomd.filter.All(), kT=self.system.kT)
        for i, m in enumerate(self.mass_types):
            langevin.gamma[f"m{i}"] = float(m) * self.friction
        forces = self.system.hoomd_forces(hoomd, [f"m{i}" for i in range(len(self.mass_types))]) \
            if hasattr(self.system, "hoomd_forces") else [_potential_force_class(hoomd)(self.system)]
        sim.operations.integrator = hoomd.md.Integrator(dt=self.dt, methods=[langevin], forces=forces,
                                                        integrate_rotational_dof=False)
        sim.run(0)  # attach: forces and energies are defined from here on
        self.potential_forces.append(forces)
        return sim

    def _build(self, positions: np.ndarray, velocities: np.ndarray, images: np.ndarray, step: int,
               accelerations: np.ndarray | None = None) -> None:
        """New simulations of the walkers; their accelerations those of the forces at the positions, or
        the saved ones (which carry the last step's drag and noise)."""
        self.walkers, self.potential_forces, self.kick = [], [], None
        for x, v, im in zip(positions, velocities, images):
            self.walkers.append(self._simulation(x, v, im, step))
        if accelerations is not None:
            for sim, a in zip(self.walkers, accelerations):
                with sim.state.cpu_local_snapshot as snap:
                    snap.particles.acceleration[:, :self.dim] = a[np.array(snap.particles.tag, copy=True)]
        self.step = int(step)

    def _wrapped(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions (walkers, N, d) inside the box [-L/2, L/2) and their images (x = wrapped + image L);
        SimulationError naming the first walker beyond HOOMD-blue's 32-bit image counts."""
        images = np.floor(positions / self.box + 0.5)
        far = np.flatnonzero((np.abs(images) >= 2**31 - 1).reshape(len(images), -1).any(axis=1))
        if len(far):
            raise SimulationError(f"walker {far[0]}: positions up to {np.abs(positions[far[0]]).max():.3g} lie too many "
                                  f"periodic boxes (edges {self.box.tolist()}) away for HOOMD-blue's image counts")
        return positions - images * self.box, images.astype(np.int64)

    def set_positions(self, positions: np.ndarray, velocities: np.ndarray | None = None) -> None:
        pos, vel = self._start_arrays(positions, velocities)
        wrapped, images = self._wrapped(pos)
        self._build(wrapped, vel, images, self.step)

    def draw_velocities(self, seed: int) -> None:
        rng = np.random.default_rng(cio.derive_seed(seed, 7_000_003))
        v = rng.standard_normal((self.n_walkers, self.system.n_particles, self.dim))
        v *= np.sqrt(self.system.kT / self.masses)[None, :, None]
        self._build(self._local("wrapped"), v, self._local("images").astype(np.int64), self.step)

    def _local(self, what: str) -> np.ndarray:
        """A per-particle array of every walker, (walkers, N, d), in tag order: "wrapped" positions,
        their "images", "velocities" or "accelerations"."""
        out = np.empty((self.n_walkers, self.system.n_particles, self.dim))
        for w, sim in enumerate(self.walkers):
            with sim.state.cpu_local_snapshot as snap:
                p = snap.particles
                value = {"wrapped": p.position, "images": p.image, "velocities": p.velocity,
                         "accelerations": p.acceleration}[what]
                out[w, np.array(p.tag, copy=True)] = np.array(value, copy=True)[:, :self.dim]
        return out

    def positions(self) -> np.ndarray:
        """Positions (walkers, N, d), unwrapped (position + image x box)."""
        return self._local("wrapped") + self._local("images") * self.box

    def velocities(self) -> np.ndarray:
        return self._local("velocities")

    # -- the bias and the potential -----------------------------------------------------------------
    def _set_bias_force(self, forces: np.ndarray | None) -> None:
        """The bias forces (walkers, N, d) that kick the velocities at the start of the next step."""
        self.kick = None if forces is None else np.asarray(forces, dtype=np.float64)

    def _apply_kick(self) -> None:
        """v += dt F / m for the held bias forces F, in every walker's state; then none held."""
        if self.kick is None:
            return
        for sim, f in zip(self.walkers, self.kick):
            with sim.state.cpu_local_snapshot as snap:
                tag = np.array(snap.particles.tag, copy=True)
                snap.particles.velocity[:, :self.dim] += self.dt * f[tag] / self.masses[tag, None]
        self.kick = None

    def _potentials(self) -> np.ndarray:
        return np.array([sum(float(f.energy) for f in forces) for forces in self.potential_forces])

    def _potential_forces(self) -> np.ndarray:
        """The system's forces (each HOOMD force's `forces` is computed at the current step, by tag)."""
        out = np.zeros((self.n_walkers, self.system.n_particles, self.dim))
        for w, forces in enumerate(self.potential_forces):
            for f in forces:
                out[w] += np.asarray(f.forces, dtype=np.float64)[:, :self.dim]
        return out

    # -- dynamics ---------------------------------------------------------------------------------
    def _reseed(self, key: tuple[int, ...]) -> None:
        for w, sim in enumerate(self.walkers):
            sim.seed = cio.derive_seed(*key, w) & 0xFFFF
        self._set_bias_force(None)

    def _advance(self, n: int) -> None:
        self._apply_kick()
        for walker, sim in enumerate(self.walkers):
            try:
                sim.run(n)
            except RuntimeError as error:  # e.g. a particle that moved beyond the periodic box in one step
                what = str(error).strip().splitlines()[0]
                raise self._diverged(n, walker, f"HOOMD-blue stopped: {what}") from error
            with sim.state.cpu_local_snapshot as snap:
                finite = bool(np.isfinite(snap.particles.position).all() and np.isfinite(snap.particles.velocity).all())
            if not finite:
                raise self._diverged(n, walker, "positions or velocities are not finite")
        self.step += n

    def _diverged(self, n: int, walker: int, what: str) -> SimulationError:
        return SimulationError(f"simulation diverged by step {self.step + n}, walker {walker} (after step {self.step}): "
                               f"{what} (engine.dt = {self.dt}, or the bias's forces with engine.bias_stride = k "
                               "acting as k-fold impulses, may be too large)")

    def keep_walkers(self, walkers: np.ndarray) -> None:
        keep = [int(i) for i in walkers]
        self.walkers = [self.walkers[i] for i in keep]
        self.potential_forces = [self.potential_forces[i] for i in keep]
        self.n_walkers = len(keep)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Unwrapped positions (the contract's), and HOOMD-blue's own wrapped positions, images and
        accelerations, from which a restored walker continues the trajectory to rounding."""
        wrapped, images = self._local("wrapped"), self._local("images")
        return {"positions": wrapped + images * self.box, "velocities": self.velocities(), "wrapped": wrapped,
                "images": images.astype(np.int64),
                "accelerations": self._local("accelerations"), "step": np.array(self.step, dtype=np.int64)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        if len(state["positions"]) != self.n_walkers:
            raise SimulationError(f"the saved state holds {len(state['positions'])} walkers, the engine {self.n_walkers}")
        self._build(np.asarray(state["wrapped"]), np.asarray(state["velocities"]), np.asarray(state["images"]),
                    int(state["step"]), np.asarray(state["accelerations"]))


def _device(hoomd: Any, name: str) -> Any:
    """hoomd.device.GPU for "CUDA" (or "auto" where HOOMD-blue has a GPU), else hoomd.device.CPU."""
    if name in ("CUDA", "auto") and hoomd.version.gpu_enabled:
        return hoomd.device.GPU(notice_level=1)
    if name == "CUDA":
        raise SimulationError("engine.platform = 'CUDA': this HOOMD-blue was built without GPU support")
    return hoomd.device.CPU(notice_level=1)
