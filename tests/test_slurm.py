"""Campaigns on a real SLURM cluster: `python project.py submit` end to end, and a job cancelled
in the middle of an iteration that a resubmitted job finishes from its last checkpoint.

Needs a running SLURM controller (one node is enough); from the repository root:

    bash ../shared/slurm/start-slurm.sh

Every step is its own `python project.py ...` process: signac-flow refuses a second scheduler
query from one process within 10 s.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from digests import campaign_digests
from test_cli import PROJECT, show_json, write_spec


def _slurm_missing() -> str | None:
    if shutil.which("squeue") is None:
        return "squeue is not installed"
    try:
        r = subprocess.run(["squeue", "-h"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"squeue -h failed: {exc}"
    return f"squeue -h failed: {r.stderr.strip()}" if r.returncode else None


_missing = _slurm_missing()
if _missing:
    pytest.skip(f"SLURM is not running ({_missing}); start it from the repository root with "
                "`bash ../shared/slurm/start-slurm.sh`", allow_module_level=True)

WALKERS = 8
POLL = 0.2  # seconds between scheduler and workspace polls


def slurm_env(flow_environment: str = "DefaultSlurmEnvironment") -> dict[str, str]:
    """This interpreter's environment for project.py and, through sbatch's export, for the batch job."""
    e = {k: v for k, v in os.environ.items() if k != "CVCYCLE_WALLTIME_SECONDS"}
    e["SIGNAC_FLOW_ENVIRONMENT"] = flow_environment
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    if sys.prefix != sys.base_prefix:  # a virtualenv: script.sh activates it in the job
        e["VIRTUAL_ENV"] = sys.prefix
    return e


def project(cwd: Path, *args: str, flow_environment: str = "DefaultSlurmEnvironment",
            timeout: float = 120) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, str(PROJECT), *args], cwd=cwd, env=slurm_env(flow_environment),
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"project.py {' '.join(args)}: {r.stdout[-2000:]}{r.stderr[-3000:]}"
    return r


def init(cwd: Path, spec: Path) -> str:
    return project(cwd, "init", str(spec)).stdout.split()[0]


def queued(campaign_id: str) -> dict[str, str]:
    """SLURM job id -> state of the jobs still in the queue (pending, running, completing) for a campaign."""
    r = subprocess.run(["squeue", "-h", "-o", "%i|%T|%j"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    rows = (line.split("|", 2) for line in r.stdout.splitlines() if line.strip())
    return {job: state for job, state, name in rows if f"/{campaign_id}/" in name}


def wait_until(predicate, what: str, timeout: float = 120.0, poll: float = POLL):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def submit(cwd: Path, campaign_id: str, out: Path) -> set[str]:
    """`project.py submit`; returns the SLURM job ids queued for the campaign afterwards."""
    project(cwd, "submit", "--job-output", str(out / "flow-%j.out"))
    return set(queued(campaign_id))


def wait_for_queue(campaign_id: str, timeout: float = 150.0) -> None:
    wait_until(lambda: not queued(campaign_id), f"the SLURM jobs of campaign {campaign_id} to leave the queue", timeout)


def job_log(out: Path, slurm_id: str) -> str:
    path = out / f"flow-{slurm_id}.out"
    return path.read_text() if path.exists() else f"({path.name} was not written)"


@pytest.fixture
def campaigns():
    """Campaign ids whose SLURM jobs are cancelled at teardown, should a failing test leave any queued."""
    ids: list[str] = []
    yield ids
    leftover = [job for cid in ids for job in queued(cid)]
    if leftover:
        subprocess.run(["scancel", *leftover], timeout=30)


ERRORS = re.compile(r"error|traceback|exception|cancelled|killed|time limit", re.IGNORECASE)


def test_submit_runs_campaign_to_completion(tmp_path, campaigns):
    d, out = tmp_path / "project", tmp_path / "out"
    d.mkdir()
    out.mkdir()
    spec = write_spec(d / "tiny.toml", analysis={"grid_bins": 40, "plots": False})
    cid = init(d, spec)
    campaigns.append(cid)

    t0 = time.monotonic()
    first = submit(d, cid, out)
    assert len(first) == 1, first
    # The job is pending or running: flow finds it in squeue and does not submit the operation again.
    again = submit(d, cid, out)
    assert again == first, (first, again)
    wait_until(lambda: "PENDING" not in queued(cid).values(), "the job to start")
    t_running = time.monotonic()
    wait_for_queue(cid)
    t_done = time.monotonic()
    print(f"\nSLURM round trip: submit -> running {t_running - t0:.1f} s, submit -> queue empty {t_done - t0:.1f} s")

    jobs = set(first)
    for _ in range(5):  # the first job normally finishes the campaign; resubmit if it stopped early
        if show_json(d, cid)["status"] in ("converged", "budget"):
            break
        jobs |= submit(d, cid, out)
        wait_for_queue(cid)
    s = show_json(d, cid)
    assert s["status"] in ("converged", "budget") and s["phase"] == "done", s
    assert s["iteration"] == 1 and len(s["iterations"]) == 2
    assert s["total_steps"] == WALKERS * (200 + 400)
    ws = d / "workspace" / cid
    for k in range(2):
        for name in ("samples.npz", "cv.pt", "metrics.json"):
            assert (ws / f"iter-{k:03d}" / name).is_file(), f"iter-{k:03d}/{name} missing"

    logs = sorted(out.glob("flow-*.out"))
    assert {p.name for p in logs} == {f"flow-{j}.out" for j in jobs}
    for p in logs:
        text = p.read_text()
        assert not ERRORS.search(text), f"{p.name}:\n{text[-3000:]}"
        assert "[iter 1 analyze]" in text

    # The job document names the SLURM job that ran the campaign; `status -d` shows it.
    slurm_job = json.loads((ws / "signac_job_document.json").read_text())["run"]["slurm_job"]
    assert slurm_job in jobs
    assert f"slurm {slurm_job} not in queue" in project(d, "status", "-d").stdout
    # Finished: the post-condition holds and submit has nothing left to do.
    assert not submit(d, cid, out)


def test_cancelled_job_resumes_bit_for_bit(tmp_path, campaigns):
    segments = 10
    engine = {"walkers": WALKERS, "initial_steps": 200, "steps": 400 * segments, "segment_steps": 400,
              "report_stride": 10}
    spec = write_spec(tmp_path / "resume.toml", engine=engine, analysis={"grid_bins": 40, "plots": False})

    # The same campaign without SLURM, uninterrupted, on the second core meanwhile.
    ref = tmp_path / "reference"
    ref.mkdir()
    ref_id = init(ref, spec)
    reference = subprocess.Popen([sys.executable, str(PROJECT), "run"], cwd=ref, env=slurm_env("StandardEnvironment"),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        d, out = tmp_path / "project", tmp_path / "out"
        d.mkdir()
        out.mkdir()
        cid = init(d, spec)
        campaigns.append(cid)
        assert cid == ref_id
        ws = d / "workspace" / cid
        sim = ws / "iter-001" / "sim"

        (first,) = submit(d, cid, out)

        def in_iteration_1():
            try:
                doc = json.loads((ws / "signac_job_document.json").read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                doc = {}
            if not queued(cid):
                raise AssertionError(f"job {first} left the queue before iteration 1:\n{job_log(out, first)}")
            return doc if doc.get("iteration", 0) >= 1 and doc.get("phase") == "simulate" else None

        # The cancel must land between segment 2 and the iteration's end: rather than racing the
        # job, hold its process (SIGSTOP) as soon as iteration 1 starts, then let it run in short
        # slices until two segments are written; scancel (SIGCONT, SIGTERM, later SIGKILL) ends it.
        pid = wait_until(in_iteration_1, "iteration 1 to start", poll=0.005)["run"]["pid"]
        os.kill(pid, signal.SIGSTOP)
        while len(list(sim.glob("segment-*.npz"))) < 2:
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.01)
            os.kill(pid, signal.SIGSTOP)
        subprocess.run(["scancel", first], check=True, timeout=30)
        wait_for_queue(cid)
        done = sorted(p.name for p in sim.glob("segment-*.npz"))
        doc = json.loads((ws / "signac_job_document.json").read_text())
        assert (doc["iteration"], doc["phase"]) == (1, "simulate"), doc
        assert 2 <= len(done) < segments, f"not cancelled mid-iteration: {done}"
        assert "CANCELLED" in job_log(out, first)

        (second,) = submit(d, cid, out)
        assert second != first
        wait_for_queue(cid)
        log = job_log(out, second)
        assert not ERRORS.search(log), log[-3000:]
        resumed = re.search(r"\[iter 1 simulate\] resuming at segment (\d+)/(\d+)", log)
        assert resumed, log[-3000:]
        start = int(resumed.group(1))
        # The last checkpoint is written right after its segment: the kill may fall in between.
        assert int(resumed.group(2)) == segments and len(done) - 1 <= start <= len(done) and start >= 1, (start, done)
        assert "[iter 1 simulate] bias primed" not in log and "[iter 0" not in log
        s = show_json(d, cid)
        assert s["status"] in ("converged", "budget") and s["phase"] == "done", s
        assert s["iteration"] == 1 and s["total_steps"] == WALKERS * (200 + 400 * segments)
        assert json.loads((ws / "signac_job_document.json").read_text())["run"]["slurm_job"] == second
        print(f"\ncancelled job {first} after segments {done}; job {second} resumed at segment {start}/{segments}")
    finally:
        try:
            ref_log, _ = reference.communicate(timeout=150)
        finally:
            reference.kill()
    assert reference.returncode == 0, ref_log[-3000:]
    expected = campaign_digests(ref / "workspace" / cid)
    assert len(expected) >= 8 and any(name.endswith("cv.pt") for name in expected)
    assert campaign_digests(ws) == expected


def test_sweep_is_submitted_in_bundles_and_every_campaign_finishes(tmp_path):
    """A sweep (2 values x 2 seeds) submitted as bundles of 2 campaigns that run side by side in
    one SLURM job each (`submit --bundle 2 --parallel`): 2 jobs, 4 finished campaigns."""
    d, out = tmp_path / "project", tmp_path / "out"
    d.mkdir()
    out.mkdir()
    spec = write_spec(d / "tiny.toml", analysis={"grid_bins": 40, "plots": False})
    r = project(d, "init", str(spec), "--set", "bias.sigma=0.025,0.035", "--seeds", "0-1", "--set", "resources.cpus=1")
    ids = [line.split()[0] for line in r.stdout.splitlines() if line.endswith("created")]
    assert len(ids) == 4 and r.stdout.splitlines()[-1] == "4 campaigns: 4 created, 0 already here", r.stdout
    r = project(d, "submit", "--bundle", "2", "--parallel", "--job-output", str(out / "flow-%j.out"))
    submitted = r.stdout + r.stderr
    assert submitted.count("Submitting cluster job 'Project/bundle/") == 2, submitted

    def bundles() -> list[str]:
        r = subprocess.run(["squeue", "-h", "-o", "%i|%j"], capture_output=True, text=True, timeout=30)
        return [line for line in r.stdout.splitlines() if "Project/bundle/" in line]

    try:
        wait_until(lambda: not bundles(), "the two bundles to leave the queue", timeout=240)
    finally:
        if left := [line.split("|")[0] for line in bundles()]:
            subprocess.run(["scancel", *left], timeout=30)
    logs = sorted(out.glob("flow-*.out"))
    assert len(logs) == 2
    for p in logs:
        assert not ERRORS.search(p.read_text()), p.read_text()[-3000:]
    sigmas = set()
    for cid in ids:
        s = show_json(d, cid)
        assert s["status"] in ("converged", "budget") and s["total_steps"] == WALKERS * (200 + 400), s
        sp = json.loads((d / "workspace" / cid / "signac_statepoint.json").read_text())["spec"]
        sigmas.add((sp["bias"]["sigma"], sp["campaign"]["seed"], sp["resources"]["cpus"]))
    assert sigmas == {(sigma, seed, 1) for sigma in (0.025, 0.035) for seed in (0, 1)}
