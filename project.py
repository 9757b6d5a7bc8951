"""signac-flow workflow for cvcycle campaigns: the only module that imports `flow`.

    python project.py init workflows/mueller-brown-autoencoder.toml --seeds 3
    python project.py run            # every campaign, until converged or budget spent
    python project.py submit         # SLURM jobs from templates/script.sh
    python project.py status -d      # iteration, phase, status per campaign

All the work happens in cvcycle.loop.advance(job directory); this file only maps jobs to it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

import signac
from flow import FlowProject
from flow.errors import NoSchedulerError, UserOperationError

from cvcycle.campaign import Campaign, latest_failed_checks, science
from cvcycle.errors import CvcycleError
from cvcycle.scheduler import slurm_state, walltime_from_environment
from cvcycle.spec import ResourcesSpec

class Project(FlowProject):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not os.path.isdir(self._template_dir):  # campaigns outside the repo: use its templates/
            self._template_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


def _progress(job) -> dict:
    try:
        return Campaign(job.path).progress()
    except CvcycleError as exc:
        return {"error": str(exc)}


def _resource(key: str):
    """A directive read from the campaign's [resources] settings (the state point's, or what
    `python -m cvcycle extend` set since); the default for a job that is not a campaign."""
    def directive(job):
        try:
            return Campaign(job.path).spec["resources"][key]
        except CvcycleError:  # skipped by the precondition, reported after the run
            return getattr(ResourcesSpec(), key)
    return directive


def finished(job) -> bool:
    return _progress(job).get("status") in ("converged", "budget")


def eligible(job) -> bool:
    """A runnable campaign (jobs that are not, _progress's "error", are skipped by `run` and
    `submit` and reported after them) that is still running and whose last run did not fail."""
    p = _progress(job)
    return "error" not in p and p["status"] not in ("converged", "budget") and not p.get("last_error")


# -- labels for `status` ---------------------------------------------------------------------
# The overview counts each distinct label text: `state` takes six values (one row each); the
# per-campaign details are one `progress` label, so N campaigns give at most N rows.
@Project.label
def state(job) -> str:
    """not a campaign | not started | running | failed (last run stopped by an error) | converged | budget."""
    p = _progress(job)
    if "error" in p:
        return "not a campaign"
    if p["status"] != "running":
        return p["status"]
    if p.get("last_error"):
        return "failed"
    return "running" if p.get("run") else "not started"


@Project.label
def progress(job):
    """iteration, phase, walker steps, the checks the last analysis failed, the newest checkpoint
    and the SLURM job that last advanced the campaign (with its state now)."""
    p = _progress(job)
    if "error" in p:
        return f"error: {p['error'][:160]}"
    failed = latest_failed_checks(p)
    parts = [f"iteration {p['iteration']} {p['phase']}", f"{p['total_steps']:,} steps"]
    if failed and p["status"] != "converged":
        parts.append(f"checks failed: {', '.join(failed)}")
    stamp = Campaign(job.path).last_checkpoint()
    if stamp:
        parts.append(f"checkpoint {stamp}")
    slurm_job = (p.get("run") or {}).get("slurm_job")
    if slurm_job:
        parts.append(f"slurm {slurm_job} {slurm_state(slurm_job) or '?'}")
    return ", ".join(parts)


@Project.label
def last_error(job):
    """The error that stopped the last run, until a run starts again."""
    error = _progress(job).get("last_error")
    return f"error in iteration {error['iteration']} {error['phase']}: {error['message'][:120]}" if error else None


# -- the one operation ----------------------------------------------------------------------
# With an omp_num_threads directive, `run` executes each operation in a fresh process
# (`project.py exec advance <id>` with OMP_NUM_THREADS set), which reports its own errors.
# A campaign whose last run failed (a divergence, a damaged file) would fail the same way again,
# so it is not eligible (a cron-driven `submit` would resubmit it forever) until the cause is
# fixed and it is run by hand: `python project.py run -j ID --ignore-conditions pre`.
@Project.pre(eligible)
@Project.post(finished)
# `advance` stops between phases early enough to checkpoint before the walltime (script.sh).
@Project.operation(directives={"np": _resource("cpus"), "omp_num_threads": _resource("cpus"), "ngpu": _resource("gpus"),
                               "memory": _resource("memory_gb"), "walltime": _resource("walltime_hours")})
def advance(job):
    """Cycle simulate -> train -> analyze until converged, out of budget or out of walltime."""
    from cvcycle.loop import advance as advance_campaign

    try:
        advance_campaign(job.path, walltime=walltime_from_environment())
    except CvcycleError as exc:
        print(f"error: campaign {job.id}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"interrupted: campaign {job.id} continues from its last checkpoint on the next run",
              file=sys.stderr)
        raise SystemExit(130) from None


# -- init: create one job per seed and sweep point --------------------------------------------
def init(argv: list[str]) -> int:
    from cvcycle.settings import Key
    from cvcycle.spec import load_spec
    from cvcycle.sweep import parse_seeds, parse_sweep, swept, sweep_specs

    parser = argparse.ArgumentParser(
        prog="project.py init", description="Create one campaign (job) per seed, or a sweep: the product of the "
        "--set values and the seeds, e.g. `init SPEC --set learner.ensemble=1,3,5 --set bias.sigma=0.025,0.035 "
        "--seeds 0-4` (30 campaigns). Every spec is checked before any campaign is created.")
    parser.add_argument("spec", help="campaign spec (TOML)")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", metavar="N|A-B|A,B,...",
                       help="a count N (seeds campaign.seed, +1, ..., +N-1), a range A-B or a list A,B,...")
    seeds.add_argument("--seed-list", type=int, nargs="+", metavar="SEED", help="explicit seeds")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=V1,V2,...",
                        help="change the spec (VALUE as TOML); comma-separated values sweep the key (repeatable)")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec)
        seed_list = args.seed_list or parse_seeds(args.seeds or "1", spec["campaign"]["seed"])
        sweep = parse_sweep(args.set)
        specs = sweep_specs(spec, sweep, seed_list)
    except CvcycleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if specs[0]["resources"]["gpus"] and specs[0]["engine"]["name"] != "openmm":
        print(f"warning: resources.gpus = {specs[0]['resources']['gpus']}: engine.name = {specs[0]['engine']['name']!r} "
              "runs on the CPU; SLURM jobs will hold GPUs that stay idle", file=sys.stderr)
    keys: list[Key] = swept(sweep)
    project = signac.init_project()
    existing = {}  # the science of each campaign already here -> its job id
    for other in project:
        try:
            existing[json.dumps(science(Campaign(other.path).created_spec), sort_keys=True)] = other.id
        except CvcycleError:
            continue
    job = None
    counts = {"created": 0, "exists": 0, "twin": 0}
    try:
        for s in specs:
            point = "".join(f"  {section}.{name}={s[section][name]!r}" for section, name in keys)
            label = f"{s['campaign']['name']}  seed {s['campaign']['seed']}{point}"
            twin = existing.get(json.dumps(science(s), sort_keys=True))
            job = project.open_job({"spec": s})
            if twin is not None and twin != job.id:  # the same campaign with other run settings
                counts["twin"] += 1
                print(f"{twin}  {label}  exists with other run settings "
                      f"(change them with `python -m cvcycle extend {twin[:8]} --set ...`)")
                continue
            state = "exists" if os.path.isfile(os.path.join(job.path, "signac_statepoint.json")) else "created"
            job.init()
            counts[state] += 1
            print(f"{job.id}  {label}  {state}")
    except KeyboardInterrupt:  # leave no job folder without its state point behind
        if job is not None and os.path.isdir(job.path) and not os.path.isfile(os.path.join(job.path, "signac_statepoint.json")):
            shutil.rmtree(job.path, ignore_errors=True)
        print("interrupted: the campaigns listed above were created; run init again to create the rest", file=sys.stderr)
        return 130
    if keys:
        print(f"{len(specs)} campaigns: {counts['created']} created, {counts['exists'] + counts['twin']} already here")
    return 0


def remove_empty_job_folders(project) -> None:
    """Remove workspace folders that hold nothing at all (what an `init` killed between creating a
    job's folder and writing its state point leaves): signac would refuse the whole project."""
    workspace = project.workspace
    if not os.path.isdir(workspace):
        return
    for name in sorted(os.listdir(workspace)):
        folder = os.path.join(workspace, name)
        if os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)
            print(f"warning: removed the empty job folder {folder} (left by an interrupted init; it held no data)",
                  file=sys.stderr)


def report_skipped(project, others: str) -> bool:
    """One `error:` line per job that is not a runnable campaign; True if there was one."""
    skipped = [(job.id, why) for job in project if (why := _progress(job).get("error"))]
    for job_id, why in skipped:
        print(f"error: job {job_id} skipped: {why} (the other campaigns {others})", file=sys.stderr)
    return bool(skipped)


INIT_HELP = """
  init SPEC.toml [--seeds N|A-B] [--set SECTION.KEY=V1,V2,...]
                        create the project and one campaign (job) per seed and sweep point
                        from a campaign spec; `python project.py init -h` for its options"""

if __name__ == "__main__":
    if sys.argv[1:2] == ["init"]:
        sys.exit(init(sys.argv[2:]))
    wants_help = sys.argv[1:2] in (["-h"], ["--help"])
    try:
        project = Project.get_project()
    except LookupError:
        if wants_help:
            print("usage: project.py {init,status,next,run,submit,exec} ...\n\nno signac project here yet; start with"
                  + INIT_HELP)
            sys.exit(0)
        sys.exit("error: no signac project here; create one with `python project.py init SPEC.toml`")
    runs = sys.argv[1:2] in (["run"], ["submit"])
    if runs:
        remove_empty_job_folders(project)
    try:
        project.main()
        if runs and report_skipped(project, "ran" if sys.argv[1] == "run" else "were submitted"):
            sys.exit(2)
    except SystemExit:
        if wants_help:
            print("\nand, before any of these:" + INIT_HELP)
        raise
    except NoSchedulerError:
        sys.exit("error: no batch scheduler on this machine (SLURM's sbatch is not on PATH): `submit` needs one. "
                 "Run the campaigns here with `python project.py run`, or submit from a SLURM login node.")
    except signac.errors.JobsCorruptedError as exc:
        for job_id in exc.job_ids:
            print(f"error: job {job_id}: workspace/{job_id}/signac_statepoint.json is missing, corrupted or edited "
                  "(it no longer matches the job id)", file=sys.stderr)
        sys.exit(2)
    except UserOperationError as exc:
        failed = exc.__cause__
        if not isinstance(failed, subprocess.CalledProcessError):
            raise  # an unexpected error inside this process: keep the traceback
        if failed.returncode != 2:  # 2: the operation already printed its one-line error
            print(f"error: {exc} (exit status {failed.returncode})", file=sys.stderr)
        sys.exit(failed.returncode if failed.returncode > 0 else 1)
    except KeyboardInterrupt:
        sys.exit(130)
