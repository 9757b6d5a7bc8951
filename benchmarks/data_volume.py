"""Disk per iteration and peak memory of the train and analyze phases against the iteration.

    python benchmarks/data_volume.py workflows/mueller-brown-autoencoder.toml --iterations 6
    python benchmarks/data_volume.py workflows/lj7-autoencoder.toml --iterations 6

Runs one campaign for exactly --iterations iterations (convergence.min_iterations and
budget.max_iterations set to it), each phase in a fresh Python process, and prints per
iteration: the size of its folder on disk, and the peak resident memory (ru_maxrss) of its
train and analyze processes, next to that of a process that only imports what they import
(torch alone is a few hundred MB). Memory that grows with the iteration is the data the phase
loads; with positions read one iteration at a time it should stay flat.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

PHASE = r"""
import json, resource, sys
from cvcycle.campaign import Campaign
from cvcycle.loop import record
from cvcycle.routes import route_for
c = Campaign(sys.argv[1])
doc = c.progress()
k, phase = doc["iteration"], doc["phase"]
if phase != "import-only":
    with c.lock():
        result = route_for(c.spec).phase(phase)(c, k, lambda line: None)
        if phase == "analyze":
            record(c, k, result, lambda line: None)
print(json.dumps({"iteration": k, "phase": phase, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_phase(path: Path, only_import: bool = False) -> dict:
    args = [sys.executable, "-c", PHASE.replace('doc["phase"]', '"import-only"') if only_import else PHASE, str(path)]
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec")
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/out/data-volume")
    args = parser.parse_args()

    from cvcycle import io as cio
    from cvcycle.campaign import Campaign
    from cvcycle.spec import load_spec, validate

    spec = load_spec(args.spec)
    spec["campaign"]["seed"] = args.seed
    spec["convergence"]["min_iterations"] = spec["budget"]["max_iterations"] = args.iterations
    spec["budget"]["max_total_steps"] = 10**12
    spec["analysis"]["plots"] = False
    spec = validate(spec)
    path = Path(args.out) / Path(args.spec).stem
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    cio.write_json(path / "signac_statepoint.json", {"spec": spec})

    base = run_phase(path, only_import=True)["maxrss_mb"]
    rows: dict[int, dict[str, float]] = {}
    while not Campaign(path).finished:
        r = run_phase(path)
        rows.setdefault(r["iteration"], {})[r["phase"]] = r["maxrss_mb"]
        if r["phase"] == "analyze":
            k = r["iteration"]
            rows[k]["disk"] = folder_mb(Campaign(path).iter_dir(k))
            print(f"iteration {k}: {rows[k]['disk']:.2f} MB on disk, train {rows[k]['train']:.0f} MB, "
                  f"analyze {rows[k]['analyze']:.0f} MB peak", flush=True)
    walkers, frames = spec["engine"]["walkers"], spec["engine"]["steps"] // spec["engine"]["report_stride"]
    print(f"\n{args.spec}: {walkers} walkers x {frames} frames per iteration, "
          f"position_stride {spec['engine']['position_stride']}; a process that only imports: {base:.0f} MB")
    print("| iteration | disk (MB) | train peak RSS (MB) | analyze peak RSS (MB) |")
    print("|---|---|---|---|")
    for k, r in sorted(rows.items()):
        print(f"| {k} | {r['disk']:.2f} | {r['train']:.0f} | {r['analyze']:.0f} |")


if __name__ == "__main__":
    main()
