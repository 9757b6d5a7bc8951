"""Reference free energy of alanine dipeptide: F(phi > 0) - F(phi < 0) by well-tempered
metadynamics on (phi, psi) with OpenMM's own `Metadynamics`, in the force field cvcycle's
campaigns use, over independent seeds.

    python benchmarks/adp_reference.py [--seeds 4] [--ns 10] [--platform Reference]

The system is the one of workflows/alanine-dipeptide-*.toml (cvcycle builds it: amber99sb-ildn,
vacuum, no cut-off, bonds to hydrogen constrained), Langevin middle at 300 K, 2 fs, friction
1/ps. Bias on phi and psi: Gaussians of width 0.35 rad and initial height 1.2 kJ/mol every 500
steps, bias factor 6, on a 72 x 72 periodic grid. The free energy is OpenMM's well-tempered
estimate from the final bias, F = -(gamma / (gamma - 1)) V, summed over the grid points (OpenMM
puts 72 points on [-180, 180] degrees, both ends included: they are one periodic point and count
half each). Each seed
starts from C7eq with its own velocities and random stream; the table gives every seed's
DeltaF after each nanosecond (how it converges) and, at the end, the mean with a 95 %
t-interval over the seeds (independent runs: the honest statistical error).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

WIDTH = 72  # grid points per variable
PACE = 500
BIAS_FACTOR = 6.0
HEIGHT = 1.2  # kJ/mol
SIGMA = 0.35  # rad


def delta_f(free_energy: np.ndarray, kT: float) -> float:
    """F(phi > 0) - F(phi < 0) in kJ/mol from F on the (psi, phi) grid OpenMM returns: its points
    lie at linspace(-180, 180, WIDTH) along each variable, the two ends being one periodic point,
    so each end counts half (and phi = +-180 half to each side)."""
    ends = np.ones(WIDTH)
    ends[[0, -1]] = 0.5
    phi = np.linspace(-180.0, 180.0, WIDTH)
    p = (np.exp(-(free_energy - free_energy.min()) / kT) * ends[:, None]).sum(axis=0) * ends  # per phi point
    return float(-kT * np.log(p[phi > 0].sum() / p[phi < 0].sum()))


def run(seed: int, ns: float, platform: str) -> list[tuple[float, float, float]]:
    """(ns, DeltaF in kJ/mol, steps per second so far) after every nanosecond of one seed."""
    import openmm
    import openmm.app as app
    import openmm.unit as unit

    from cvcycle.spec import load_spec
    from cvcycle.systems import GAS_CONSTANT, make_system

    system = make_system(load_spec("workflows/alanine-dipeptide-autoencoder.toml"))
    omm = system.openmm_system()
    variables = []
    for name in ("phi", "psi"):
        torsion = openmm.CustomTorsionForce("theta")
        torsion.addTorsion(*system.dihedral_atoms(name), [])
        variables.append(app.BiasVariable(torsion, -np.pi, np.pi, SIGMA, True, WIDTH))
    temperature = system.kT / GAS_CONSTANT
    meta = app.Metadynamics(omm, variables, temperature * unit.kelvin, BIAS_FACTOR,
                            HEIGHT * unit.kilojoules_per_mole, PACE)
    integrator = openmm.LangevinMiddleIntegrator(temperature, 1.0, 0.002)
    integrator.setRandomNumberSeed(1000 + seed)
    simulation = app.Simulation(system.topology, omm, integrator, openmm.Platform.getPlatformByName(platform))
    simulation.context.setPositions(system.structure(-83.0, 74.0))
    simulation.context.setVelocitiesToTemperature(temperature, 2000 + seed)
    per_ns = 500_000
    out, t0 = [], time.perf_counter()
    for k in range(1, int(round(ns)) + 1):
        meta.step(simulation, per_ns)
        F = meta.getFreeEnergy().value_in_unit(unit.kilojoules_per_mole)
        out.append((float(k), delta_f(np.asarray(F), system.kT), k * per_ns / (time.perf_counter() - t0)))
        print(f"seed {seed}: {k} ns, DeltaF {out[-1][1]:.2f} kJ/mol, {out[-1][2]:,.0f} steps/s", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--ns", type=float, default=10.0, help="nanoseconds per seed (default 10)")
    parser.add_argument("--platform", default="Reference", help="OpenMM platform (default Reference: fastest for "
                                                                "22 atoms on this machine's CPUs)")
    args = parser.parse_args(argv)

    from cvcycle.analysis.intervals import format_interval

    runs = [run(seed, args.ns, args.platform) for seed in range(args.seeds)]
    print("| ns | " + " | ".join(f"seed {s}" for s in range(args.seeds)) + " | mean [95 % t-interval] |")
    print("|---|" + "---|" * (args.seeds + 1))
    for row in zip(*runs):
        values = [v for _, v, _ in row]
        print(f"| {row[0][0]:g} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {format_interval(values, '.2f')} |")
    rates = [r[-1][2] for r in runs]
    print(f"\nDeltaF = F(phi > 0) - F(phi < 0) in kJ/mol; {args.ns:g} ns per seed, {args.platform} platform, "
          f"{np.mean(rates):,.0f} steps/s per run (mean over seeds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
