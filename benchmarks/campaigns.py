"""Default campaigns end to end, with their accuracy against exact references, in one table.

    python benchmarks/campaigns.py                       # every 2-D spec, 3 seeds, 2 processes
    python benchmarks/campaigns.py --specs workflows/mueller-brown-autoencoder.toml --seeds 1
    python benchmarks/campaigns.py --specs workflows/mueller-brown-autoencoder.toml --seeds 5 \
        --set system.scale=0.1226 --set bias.barrier=14.0        # a deeper barrier (~13 kT)
    python benchmarks/campaigns.py --specs workflows/mueller-brown-committor-variational.toml \
        --seeds 5 --time-steps 2e-3 1e-3 5e-4                   # the time-step study

Each campaign runs in its own process, from scratch, in --out, on its spec's resources.cpus
(torch threads, and processes that train the ensemble's members at once). Reported:
wall time per campaign, iterations and walker steps to convergence, the reweighted FES RMSE
against F = V over F - Fmin <= 8 kT, and the committor quality of the final CV (R^2 and
histogram width at q ~ 0.5) next to straight-line CVs and the exact committor on the same grid.
Committor campaigns add the RMSE of the learned q against the exact one (0.05 < q < 0.95,
F - Fmin <= 12 kT or 1 kT above the transition state) and the transition-path-theory rate k_AB of the learned q over the exact one.
Particle systems without an exact answer (LJ7) report the FES RMSE against the system's stored
reference and the free energy of the other states relative to the first, F(others) - F(A).
Every campaign also reports its last committor histogram test (the convergence gate,
convergence.committor_test: mean p_B and the width without binomial noise) and the convergence
checks its last iteration failed.

--time-steps runs every spec at each time step with the same physical time per iteration and per
campaign: engine.steps, initial_steps, segment_steps, report_stride (so the same frames),
bias.pace and budget.max_total_steps scaled by the spec's dt over the new one (an integer), and
groups the table by dt.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def override(spec: dict, settings: list[str]) -> dict:
    """The spec with SECTION.KEY=VALUE settings applied (VALUE read as TOML, e.g. 0.12, "B", [1, 2])."""
    from cvcycle.settings import apply, split_setting, toml_value

    return apply(spec, {key: toml_value(key, text) for key, text in map(split_setting, settings)})


SCALED = (("engine", "steps"), ("engine", "initial_steps"), ("engine", "segment_steps"), ("engine", "report_stride"),
          ("bias", "pace"), ("budget", "max_total_steps"))


def time_step_settings(spec: dict, dt: float) -> list[str]:
    """--set settings that run `spec` at time step dt for the same physical time per iteration."""
    factor = spec["engine"]["dt"] / dt
    if abs(factor - round(factor)) > 1e-9 or round(factor) < 1:
        raise SystemExit(f"--time-steps: {dt:g} must divide the spec's engine.dt ({spec['engine']['dt']:g}) a whole number of times")
    return [f"engine.dt={dt!r}"] + [f"{section}.{key}={spec[section][key] * round(factor)}" for section, key in SCALED]


def run_one(spec_path: str, seed: int, out: str, settings: tuple[str, ...] = (), name: str | None = None) -> tuple[str, float]:
    """Run one campaign from scratch in OUT/<campaign name><name, default: the settings>-seed<seed>."""
    import torch

    from cvcycle import io as cio
    from cvcycle.spec import load_spec, validate
    from cvcycle.loop import advance

    torch.set_num_threads(1)
    spec = override(load_spec(spec_path), list(settings))
    spec = validate({**spec, "campaign": {**spec["campaign"], "seed": seed}})
    tag = ("".join(f"-{s}" for s in settings) if name is None else name).replace("/", "_")
    path = Path(out) / f"{spec['campaign']['name']}{tag}-seed{seed}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    cio.write_json(path / "signac_statepoint.json", {"spec": spec})
    with open(path / "log.txt", "w") as log:
        t0 = time.perf_counter()
        advance(path, log=lambda line: print(line, file=log, flush=True))
        return str(path), time.perf_counter() - t0


def _end_workers(signum: int, frame: object) -> None:
    """On SIGTERM, end the worker processes (and with them their campaigns) before this one."""
    for child in multiprocessing.active_children():
        child.terminate()
    sys.exit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--specs", nargs="+", default=["workflows/mueller-brown-autoencoder.toml",
                                                        "workflows/wolfe-quapp-autoencoder.toml",
                                                        "workflows/mueller-brown-committor-variational.toml",
                                                        "workflows/mueller-brown-committor-tps.toml"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed ... first-seed + seeds - 1")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change the specs (repeatable; VALUE as TOML), e.g. --set system.scale=0.1226")
    parser.add_argument("--time-steps", nargs="+", type=float, default=[], metavar="DT",
                        help="run each spec at these time steps, the same physical time per iteration")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/out")
    args = parser.parse_args(argv)

    from cvcycle.analysis.benchmark import campaign_summary, straight_line_quality
    from cvcycle.compare import comparison, report
    from cvcycle.spec import load_spec, validate
    from cvcycle.systems import MODEL_POTENTIALS

    def variants(path: str) -> list[tuple[str, ...]]:
        if not args.time_steps:
            return [tuple(args.set)]
        spec = validate(override(load_spec(path), args.set))
        return [tuple(args.set + time_step_settings(spec, dt)) for dt in args.time_steps]

    seeds = range(args.first_seed, args.first_seed + args.seeds)
    tasks = [(s, seed, settings) for s in args.specs for settings in variants(s) for seed in seeds]
    signal.signal(signal.SIGTERM, _end_workers)
    # not a multiprocessing.Pool: its workers are daemonic and may not fork an ensemble's members
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_one, s, seed, args.out, settings, "".join(f"-{x}" for x in settings[:len(args.set) + 1]))
                   for s, seed, settings in tasks]
        rows = []
        for (s, seed, settings), fut in zip(tasks, futures):
            path, seconds = fut.result()
            rows.append(campaign_summary(path))
            dt = f" ({settings[len(args.set)]})" if args.time_steps else ""
            print(f"done: {Path(s).stem}{dt} seed {seed} in {seconds:.0f} s", file=sys.stderr, flush=True)

    changed = f", with {' '.join(args.set)}" if args.set else ""
    print(f"\nCampaigns ({args.jobs} at a time on this machine, each on its resources.cpus{changed}); wall time: "
          "the campaign's phases, from its job document\n")
    print(report(comparison(rows), "markdown"))
    model_specs = [s for s in args.specs if load_spec(s)["system"]["potential"] in MODEL_POTENTIALS]
    if model_specs:  # the other systems have no exact committor to compare with
        print("\nReference CVs on the same grid and metric (R² / width)\n")
        print("| spec | x | -x+0.5y | best straight line | exact committor |")
        print("|---|---|---|---|---|")
    for s in model_specs:
        q = straight_line_quality(validate(override(load_spec(s), args.set)))  # the condition the campaigns ran at
        cells = " | ".join(f"{q[k]['r2']:.4f} / {q[k]['width']:.3f}" for k in ("x", "-x+0.5y", "best line", "exact q"))
        print(f"| {Path(s).stem} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
