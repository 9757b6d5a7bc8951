"""OpenMM: many walkers of a molecular or particle system, one Context each, Langevin (middle) dynamics.

The system supplies the openmm.System (force field, constraints); the engine adds one force of
its own, a CustomExternalForce holding a per-atom force vector (fx, fy, fz), through which the
bias on the learned CV acts (written with updateParametersInContext; the run loop and its
multiple time stepping are `external.ExternalEngine`'s). The potential energy of reported frames
comes from OpenMM.

Units: a molecule is in OpenMM's own (nm, ps, kJ/mol, kelvin). A system in reduced units declares
`openmm_units` (lengths, energies and masses of one reduced unit, e.g. argon's for Lennard-Jones
particles, `systems.lj_bulk.LJUnits`): its OpenMM System is in OpenMM's units, and the engine
converts at its boundary, so positions, velocities, potentials, forces, engine.dt,
engine.friction and kT are all in the system's reduced units outside it.

Random streams: each run seeds every walker's integrator from (seed, stream key, walker) or
(seed, global step, walker) and reinitialises its Context with positions and velocities kept,
so a run split into segments repeats the same random numbers as the uninterrupted one. Saved state is each
Context's own checkpoint (positions, velocities, integrator state) as uint8 arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import SimulationError
from ..systems import GAS_CONSTANT
from ..systems.base import System
from .external import ExternalEngine, seed31


class OpenMMEngine(ExternalEngine):
    deterministic_restart = True
    reseed_is_costly = True  # a Context takes a new seed only when reinitialised: ~3-10 ms for 22 atoms

    def __init__(self, system: System, featurizer: torch.nn.Module, dt: float, friction: float, n_walkers: int,
                 seed: int = 0, platform: str = "auto") -> None:
        import openmm

        if not hasattr(system, "openmm_system"):
            raise SimulationError(f"engine.name = 'openmm' runs systems with an OpenMM model; '{system.name}' has none")
        self.system, self.featurizer = system, featurizer
        self.dt, self.friction, self.n_walkers = float(dt), float(friction), int(n_walkers)
        self.seed, self.step, self.device = int(seed), 0, torch.device("cpu")
        units = getattr(system, "openmm_units", None)
        # OpenMM's value of the system's unit of length (nm), energy (kJ/mol) and time (ps)
        self.length, self.energy, self.time = (1.0, 1.0, 1.0) if units is None else \
            (units.sigma_nm, units.epsilon_kj, units.tau_ps)
        self.temperature = system.kT * self.energy / GAS_CONSTANT  # kelvin
        self.mm = openmm
        self.omm_system = system.openmm_system()
        self.bias_force = openmm.CustomExternalForce("-(fx*x + fy*y + fz*z)")
        for name in ("fx", "fy", "fz"):
            self.bias_force.addPerParticleParameter(name)
        for i in range(system.n_particles):
            self.bias_force.addParticle(i, [0.0, 0.0, 0.0])
        self.bias_force.setForceGroup(1)
        self.omm_system.addForce(self.bias_force)
        self.platform = openmm.Platform.getPlatformByName(_best_platform() if platform == "auto" else platform)
        # one thread per Context: with more, the CPU platform's force sums vary from call to call
        # (measured: the 8th digit of the energy after 200 steps with 2 threads), and a molecule
        # this small gains nothing from them
        self.properties = {"Threads": "1"} if self.platform.getName() == "CPU" else {}
        mass = np.array([self.omm_system.getParticleMass(i)._value for i in range(system.n_particles)])  # amu
        with np.errstate(divide="ignore"):  # massless (virtual) particles do not move
            self._half_kick = np.where(mass > 0, 0.5 * self.dt * self.time / mass, 0.0)[:, None]  # ps / amu
        self.contexts = [self._context() for _ in range(self.n_walkers)]
        self._bias_held = False  # whether the Contexts hold nonzero bias forces

    def _context(self) -> Any:
        integrator = self.mm.LangevinMiddleIntegrator(self.temperature, self.friction / self.time, self.dt * self.time)
        integrator.setConstraintTolerance(1e-8)
        return self.mm.Context(self.omm_system, integrator, self.platform, self.properties)

    # -- positions and velocities -----------------------------------------------------------------
    def set_positions(self, positions: np.ndarray, velocities: np.ndarray | None = None) -> None:
        """Positions and velocities at the same time, as velocities() gives them (zero if None);
        the Context gets the half-step velocities its Langevin middle scheme keeps."""
        pos, vel = self._start_arrays(positions, velocities)
        pos, vel = pos * self.length, vel * (self.length / self.time)
        for context, p, v in zip(self.contexts, pos, vel):
            context.setPositions(p)
            context.applyConstraints(1e-8)
            if velocities is not None:
                v = v - self._half_kick * context.getState(getForces=True).getForces(asNumpy=True)._value
            context.setVelocities(v)
            context.applyVelocityConstraints(1e-8)

    def draw_velocities(self, seed: int) -> None:
        for i, context in enumerate(self.contexts):
            context.setVelocitiesToTemperature(self.temperature, seed31(seed, 7_000_003, i))

    def positions(self) -> np.ndarray:
        """Positions (walkers, N, 3) in nm (in the system's length unit)."""
        x = np.stack([c.getState(getPositions=True).getPositions(asNumpy=True)._value for c in self.contexts])
        return x / self.length

    def velocities(self) -> np.ndarray:
        """Velocities (walkers, N, 3) in nm/ps (the system's units) at the positions' time: the
        half-step velocities the Langevin middle scheme keeps, v(t - dt/2), plus half a step of
        the acceleration at t. Negated, they reverse the deterministic part of the dynamics to
        O(dt^2), as path sampling's backward halves need; the half-step ones negated are off by a
        whole kick dt F/m (measured: alanine dipeptide's transition paths heated to thousands of
        kelvin over a few hundred shooting moves)."""
        states = [c.getState(getVelocities=True, getForces=True) for c in self.contexts]
        v = np.stack([s.getVelocities(asNumpy=True)._value + self._half_kick * s.getForces(asNumpy=True)._value
                      for s in states])
        return v * (self.time / self.length)

    # -- the bias ---------------------------------------------------------------------------------
    def _set_bias_force(self, forces: np.ndarray | None) -> None:
        """Per-atom bias forces (walkers, N, 3) in the system's units (kJ/mol/nm for a molecule)
        into every Context, or zero (None)."""
        if forces is None:
            if not self._bias_held:
                return
            self._write_force(None)
        else:
            forces = forces * (self.energy / self.length)
        for i, context in enumerate(self.contexts):
            if forces is not None:
                self._write_force(forces[i])
            self.bias_force.updateParametersInContext(context)
        self._bias_held = forces is not None

    def _write_force(self, f: np.ndarray | None) -> None:
        """Per-atom forces (N, 3), or zeros, into the force object (not yet into a Context)."""
        for atom in range(self.system.n_particles):
            self.bias_force.setParticleParameters(atom, atom, [0.0] * 3 if f is None else f[atom].tolist())

    def _potentials(self) -> np.ndarray:
        return np.array([c.getState(getEnergy=True, groups={0}).getPotentialEnergy()._value
                         for c in self.contexts]) / self.energy

    # -- dynamics ---------------------------------------------------------------------------------
    def _reseed(self, key: tuple[int, ...]) -> None:
        """Seed every walker's integrator from (key, walker). A Context takes a new seed only when
        reinitialised, and reinitialize(preserveState=True) would restore the old generator's
        state with the rest, so the positions and velocities are carried over by hand. A
        reinitialised Context takes its bias parameters from the force object, which holds the
        last walker's forces written: zero first."""
        self._write_force(None)
        for i, context in enumerate(self.contexts):
            state = context.getState(getPositions=True, getVelocities=True)
            context.getIntegrator().setRandomNumberSeed(seed31(*key, i))
            context.reinitialize(preserveState=False)
            context.setState(state)
        self._bias_held = False

    def _advance(self, n: int) -> None:
        for walker, context in enumerate(self.contexts):
            try:
                context.getIntegrator().step(n)
            except self.mm.OpenMMException as exc:  # "Particle coordinate is NaN", a constraint failure
                raise SimulationError(f"simulation diverged by step {self.step + n}, walker {walker} (after step "
                                      f"{self.step}): {str(exc).split('.')[0]} (engine.dt = {self.dt}, or the bias's "
                                      f"forces with engine.bias_stride = k acting as k-fold impulses, may be too "
                                      "large)") from None
        self.step += n

    def _potential_forces(self) -> np.ndarray:
        f = np.stack([c.getState(getForces=True, groups={0}).getForces(asNumpy=True)._value for c in self.contexts])
        return f * (self.length / self.energy)

    def keep_walkers(self, walkers: np.ndarray) -> None:
        self.contexts = [self.contexts[int(i)] for i in walkers]
        self.n_walkers = len(self.contexts)

    def state_dict(self) -> dict[str, np.ndarray]:
        self._set_bias_force(None)
        blobs = [np.frombuffer(c.createCheckpoint(), dtype=np.uint8) for c in self.contexts]
        size = max(len(b) for b in blobs)
        packed = np.zeros((len(blobs), size), dtype=np.uint8)
        for i, b in enumerate(blobs):
            packed[i, :len(b)] = b
        return {"checkpoints": packed, "checkpoint_sizes": np.array([len(b) for b in blobs], dtype=np.int64),
                "positions": self.positions(), "velocities": self.velocities(), "step": np.array(self.step, dtype=np.int64)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        blobs, sizes = state["checkpoints"], state["checkpoint_sizes"]
        if len(sizes) != self.n_walkers:
            raise SimulationError(f"the saved state holds {len(sizes)} walkers, the engine {self.n_walkers}")
        for context, blob, size in zip(self.contexts, blobs, sizes):
            try:
                context.loadCheckpoint(blob[:size].tobytes())
            except Exception as exc:  # OpenMM raises its own OpenMMException
                raise SimulationError(f"cannot restore an OpenMM checkpoint: {exc}") from None
        self._bias_held = False
        self.step = int(state["step"])


def _best_platform() -> str:
    """CUDA where OpenMM has it, else CPU."""
    import openmm

    names = {openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())}
    return "CUDA" if "CUDA" in names else "CPU"
