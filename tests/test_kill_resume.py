"""Kill-and-resume: `python project.py run` is SIGKILLed again and again, at random moments of
its work and in the middle of atomic file writes, and restarted each time. The final outputs must
be byte-identical to an uninterrupted run, and no phase output is ever rewritten after the job
document recorded that phase as finished.

Timed kills strike within 0.8 s of the first progress line of a restarted run; kills aimed at
the short analysis phase strike within 0.3 s of the line that ends training.
Kills hit the whole process group (flow's `run` executes `advance` in a child process), as a
scheduler's kill does. Mid-write kills come from a sitecustomize module that SIGKILLs the group
at the N-th os.fsync of the process, i.e. after a temporary file is written, before its rename.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from cvcycle.campaign import Campaign
from cvcycle.routes import route_for
from digests import campaign_digests
from test_cli import PROJECT, env, write_spec

SPEC = {
    "engine": {"walkers": 8, "initial_steps": 200, "steps": 800, "segment_steps": 100, "report_stride": 10},
    "learner": {"epochs": 40, "max_samples": 2000, "ensemble": 2, "checkpoint_epochs": 3, "patience": 100},
    "analysis": {"grid_bins": 40, "plots": True},
    "budget": {"max_iterations": 4},
    "convergence": {"min_iterations": 4},
    "resources": {"cpus": 2},  # the members train in two forked processes, which the kills hit too
}
KILLS = 26  # then the run may finish; at least 20 must have hit work in progress
SITECUSTOMIZE = '''
import os, signal
_target = int(os.environ.get("CVCYCLE_TEST_KILL_AT_FSYNC", "0"))
if _target:
    _fsync, _count = os.fsync, [0]
    def _killing_fsync(fd):
        _count[0] += 1
        if _count[0] == _target:
            os.killpg(0, signal.SIGKILL)
        _fsync(fd)
    os.fsync = _killing_fsync
'''


def finished_outputs(job: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of the outputs of every phase that the job document records as done."""
    stats = {}
    c = Campaign(job)
    for _, _, f in c.finished_files(route_for(c.spec).files):
        st = f.stat()
        stats[str(f.relative_to(job))] = (st.st_ino, st.st_mtime_ns)
    return stats


def start_run(cwd: Path, log: Path, extra: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(PROJECT), "run"], cwd=cwd, env={**env(), **extra},
                            stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_line(proc: subprocess.Popen, log: Path, marker: str, lines_before: int, timeout: float = 120.0) -> bool:
    """Wait until the run prints a new line containing `marker`; False if the run ended first."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            return False
        if any(marker in line for line in log.read_text().splitlines()[lines_before:]):
            return True
        time.sleep(0.02)
    raise AssertionError(f"project.py run printed no line with {marker!r} within {timeout:.0f} s")


def test_campaign_survives_repeated_sigkill(tmp_path):
    spec = write_spec(tmp_path / "kill.toml", **SPEC)
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "killed"
    for d in (ref_dir, run_dir):
        d.mkdir()
        r = subprocess.run([sys.executable, str(PROJECT), "init", str(spec)], cwd=d, env=env(),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    job_id = r.stdout.split()[0]

    t0 = time.monotonic()
    r = subprocess.run([sys.executable, str(PROJECT), "run"], cwd=ref_dir, env=env(), capture_output=True, text=True, timeout=600)
    reference_seconds = time.monotonic() - t0
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    reference = campaign_digests(ref_dir / "workspace" / job_id)

    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(SITECUSTOMIZE)
    job, log = run_dir / "workspace" / job_id, tmp_path / "killed.log"
    log.touch()
    rng = random.Random(20261123)
    kills: list[tuple[str, str]] = []  # (how, where the doc stood afterwards)
    frozen: dict[str, tuple[int, int]] = {}
    t0 = time.monotonic()
    while len(kills) < KILLS:
        phase_now = kills[-1][1].split()[-1] if kills else "simulate"
        how = rng.choice(["time", "time", "write"] + (["analyze"] if phase_now == "train" else []))
        extra = {}
        if how == "write":
            extra = {"PYTHONPATH": str(inject), "CVCYCLE_TEST_KILL_AT_FSYNC": str(rng.randint(1, 24))}
        lines = len(log.read_text().splitlines())
        proc = start_run(run_dir, log, extra)
        # "time": soon after the first line of work; "analyze": soon after training ends (analysis is short)
        if how != "write" and wait_for_line(proc, log, ": keeping model" if how == "analyze" else "[", lines):
            time.sleep(rng.uniform(0.0, 0.3 if how == "analyze" else 0.8))
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=600)
        if proc.returncode != -signal.SIGKILL:
            assert proc.returncode == 0, log.read_text()[-3000:]
            break  # the campaign finished before this kill
        doc = json.loads((job / "signac_job_document.json").read_text()) if (job / "signac_job_document.json").exists() else {}
        kills.append((how, f"iteration {doc.get('iteration', 0)} {doc.get('phase', 'simulate')}"))
        now = finished_outputs(job)
        assert {f: now[f] for f in frozen} == frozen, "a finished phase output was rewritten after a restart"
        frozen = now
    proc = start_run(run_dir, log, {})
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    killed_seconds = time.monotonic() - t0
    now = finished_outputs(job)
    assert {f: now[f] for f in frozen} == frozen, "a finished phase output was rewritten after a restart"

    text = log.read_text()
    assert "Traceback" not in text
    assert campaign_digests(job) == reference
    assert not list(job.rglob(".*.tmp")), "temporary files of killed writes were left behind"
    phases = {where.split()[-1] for _, where in kills}
    assert len(kills) >= 20 and {"simulate", "train", "analyze"} <= phases, kills
    print(f"\n{len(kills)} kills survived ({sum(h == 'write' for h, _ in kills)} inside file writes); "
          f"phases hit: {sorted(phases)}; uninterrupted run {reference_seconds:.1f} s, killed+resumed "
          f"{killed_seconds:.1f} s, resume overhead {(killed_seconds - reference_seconds) / len(kills):.1f} s per kill")
