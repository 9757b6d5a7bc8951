"""Walker steps per second of the OpenMM engine on alanine dipeptide: unbiased, with cvcycle's bias on
a learned-CV stand-in evaluated every k steps, and OpenMM's own Metadynamics on (phi, psi) at the
same settings, measured side by side in one run (each path `--repeats` times, interleaved; the
table gives the median and the range).

    python benchmarks/openmm_speed.py [--walkers 8] [--steps 2000] [--repeats 3] [--platform CPU]
                                      [--lepton-hidden 8 16]

The bias: OPES on a 1-D CV given by a small network (29 internal-coordinate features -> 32 -> 32
-> 1, tanh, random weights), the shape of a learned CV; the bias is primed with some kernels and
then deposits every 50 steps as in a campaign.

With --lepton-hidden, also the bias inside OpenMM: the same kind of network (widths H, H) written
out as a CustomCVForce expression over torsion and distance CVs, inside a second CustomCVForce
that tabulates the bias on it (piecewise linear on OPES's grid, as cvcycle's Grid interpolates;
one walker). The time to create its Context is printed too: Lepton expands the network's shared
hidden units into one tree and differentiates it once per input CV.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def stand_in_cv(n_features: int, hidden: int) -> torch.nn.Sequential:
    """A learned CV's shape with fixed random weights: n_features -> hidden -> hidden -> 1, tanh."""
    from cvcycle.models.autoencoder import mlp

    torch.manual_seed(0)
    return mlp([n_features, hidden, hidden, 1], "tanh")


def prepared_engine(spec: dict, walkers: int, biased: bool, start: str = "C7eq") -> tuple[object, object]:
    """The spec's engine with `walkers` walkers in state `start` (thermal velocities), and the bias
    hook, OPES on `stand_in_cv` (primed, depositing as in a campaign), or None when not `biased`."""
    from cvcycle.bias import CVBias, make_bias
    from cvcycle.engines import make_engine
    from cvcycle.systems import make_system, thermal_energy

    system = make_system(spec)
    engine = make_engine({**spec, "engine": {**spec["engine"], "walkers": walkers}}, system)
    engine.set_positions(system.start([start], walkers, 0.0, np.random.default_rng(0)))
    engine.draw_velocities(1)
    if not biased:
        return engine, None
    net = stand_in_cv(len(engine.feature_names), 32)
    bias = make_bias(spec, 1)
    bias.prime(torch.linspace(-0.5, 0.5, 200, dtype=torch.float64)[:, None], torch.full((200,), 1.0 / 200, dtype=torch.float64), 50)
    return engine, CVBias(net, bias, kT=thermal_energy(spec))


def cvcycle_rate(spec: dict, walkers: int, steps: int, bias_stride: int | None) -> float:
    engine, hook = prepared_engine(spec, walkers, bias_stride is not None)
    engine.run(100, 50, hook, bias_stride=bias_stride or 1)  # warm-up
    t0 = time.perf_counter()
    engine.run(steps, 50, hook, bias_stride=bias_stride or 1)
    return walkers * steps / (time.perf_counter() - t0)


def openmm_metad_rate(spec: dict, steps: int, platform: str) -> float:
    """One walker with openmm.app.Metadynamics on (phi, psi): well-tempered, bias factor 10,
    height 1.2 kJ/mol, width 0.35 rad, every 50 steps, grid 72 x 72."""
    import openmm
    import openmm.app as app
    import openmm.unit as unit

    from cvcycle.systems import make_system

    system = make_system(spec)
    omm = system.openmm_system()
    variables = []
    for name in ("phi", "psi"):
        torsion = openmm.CustomTorsionForce("theta")
        torsion.addTorsion(*system.dihedral_atoms(name), [])
        variables.append(app.BiasVariable(torsion, -np.pi, np.pi, 0.35, True, 72))
    meta = app.Metadynamics(omm, variables, 300.0 * unit.kelvin, 10.0, 1.2 * unit.kilojoules_per_mole, 50)
    integrator = openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.002)
    props = {"Threads": "1"} if platform == "CPU" else {}
    simulation = app.Simulation(system.topology, omm, integrator, openmm.Platform.getPlatformByName(platform), props)
    simulation.context.setPositions(system.structure(-83.0, 74.0))
    meta.step(simulation, 100)
    t0 = time.perf_counter()
    meta.step(simulation, steps)
    return steps / (time.perf_counter() - t0)


def network_expression(net: torch.nn.Sequential, inputs: list[str]) -> str:
    """The network's output as a Lepton expression, its units named subexpressions."""
    defs, prev = [], inputs
    layers = [m for m in net if isinstance(m, torch.nn.Linear)]
    for li, lin in enumerate(layers):
        w, b = lin.weight.detach().double().numpy(), lin.bias.detach().double().numpy()
        names = [f"h{li}_{j}" for j in range(len(b))]
        for j, name in enumerate(names):
            body = f"{b[j]!r}+" + "+".join(f"({w[j, i]!r})*{prev[i]}" for i in range(len(prev)))
            defs.append(f"{name}={body}" if li == len(layers) - 1 else f"{name}=tanh({body})")
        prev = names
    return f"{prev[0]}; " + "; ".join(reversed(defs))


def lepton_rate(spec: dict, hidden: int, steps: int, platform: str) -> tuple[float, float]:
    """(walker steps / s, seconds to create the Context) with the bias inside OpenMM: an inner
    CustomCVForce computes the network s from torsion and distance CVs, an outer one V(s) from a
    table (Discrete1DFunction) interpolated linearly on OPES's grid, as cvcycle's Grid does."""
    import openmm

    from cvcycle.features import make_featurizer
    from cvcycle.systems import make_system

    system, featurizer = make_system(spec), make_featurizer(spec)
    net = stand_in_cv(len(featurizer.names), hidden)
    inputs = [f"{f}({d})" for d in featurizer.dihedral_names for f in ("sin", "cos")]
    inputs += [f"d{i}" for i in range(len(featurizer.distance_names))]
    cv = openmm.CustomCVForce(network_expression(net, inputs))
    for d in featurizer.dihedral_names:
        torsion = openmm.CustomTorsionForce("theta")
        torsion.addTorsion(*system.dihedral_atoms(d), [])
        cv.addCollectiveVariable(d, torsion)
    for i, (a, b) in enumerate(featurizer.distance_atoms):
        bond = openmm.CustomBondForce("r")
        bond.addBond(a, b, [])
        cv.addCollectiveVariable(f"d{i}", bond)
    bins, (lo, hi) = spec["bias"]["grid_bins"], (-8.0, 8.0)
    bias = openmm.CustomCVForce(f"v0+(v1-v0)*f; v0=V(i); v1=V(i+1); f=min(max(t-i,0),1); "
                                f"i=min(max(floor(t),0),{bins - 2}); t=(s-({lo!r}))/{(hi - lo) / (bins - 1)!r}")
    bias.addTabulatedFunction("V", openmm.Discrete1DFunction(np.linspace(0.0, 10.0, bins).tolist()))
    bias.addCollectiveVariable("s", cv)
    omm = system.openmm_system()
    omm.addForce(bias)
    props = {"Threads": "1"} if platform == "CPU" else {}
    t0 = time.perf_counter()
    context = openmm.Context(omm, openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.002),
                             openmm.Platform.getPlatformByName(platform), props)
    context.setPositions(system.structure(-83.0, 74.0))
    context.getState(getEnergy=True)
    created = time.perf_counter() - t0
    context.getIntegrator().step(100)
    t0 = time.perf_counter()
    context.getIntegrator().step(steps)
    return steps / (time.perf_counter() - t0), created


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--walkers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--platform", default="CPU")
    parser.add_argument("--lepton-hidden", type=int, nargs="*", default=[], metavar="H",
                        help="also the bias as a CustomCVForce expression of an (H, H) network (slow to set up)")
    args = parser.parse_args()
    from cvcycle.spec import load_spec

    spec = load_spec(ROOT / "workflows" / "alanine-dipeptide-autoencoder.toml")
    spec = copy.deepcopy(spec)
    spec["engine"]["platform"] = args.platform
    spec["resources"]["cpus"] = 1
    paths = {"unbiased": lambda: cvcycle_rate(spec, args.walkers, args.steps, None)}
    for k in (1, 5, 10):
        paths[f"cvcycle OPES on a network CV, every {k} step{'s' if k > 1 else ''}"] = \
            (lambda k=k: cvcycle_rate(spec, args.walkers, args.steps, k))
    paths["OpenMM Metadynamics on (phi, psi), one walker"] = lambda: openmm_metad_rate(spec, args.steps, args.platform)
    created: dict[str, list[float]] = {}
    for h in args.lepton_hidden:
        name = f"the network ({h}, {h}) and the bias as CustomCVForces, every step, one walker"
        created[name] = []

        def lepton(h: int = h, name: str = name) -> float:
            rate, seconds = lepton_rate(spec, h, args.steps, args.platform)
            created[name].append(seconds)
            return rate
        paths[name] = lepton
    rates: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.repeats):
        for name, measure in paths.items():
            rates[name].append(measure())
    base = float(np.median(rates["unbiased"]))
    print(f"\nAlanine dipeptide, OpenMM {args.platform} platform, {args.walkers} walkers (one Context each), "
          f"{args.steps} steps per measurement, {args.repeats} repeats interleaved\n")
    print("| path | walker steps / s (median) | range | / unbiased |")
    print("|---|---|---|---|")
    for name, r in rates.items():
        med = float(np.median(r))
        print(f"| {name} | {med:,.0f} | {min(r):,.0f} - {max(r):,.0f} | {med / base:.2f} |")
    for name, seconds in created.items():
        print(f"\n{name}: creating its Context took {np.median(seconds):.1f} s (median)")


if __name__ == "__main__":
    main()
