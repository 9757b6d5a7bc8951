"""Kill-and-resume: `python project.py run` is SIGKILLed again and again, at random moments of
its work and in the middle of atomic file writes, and restarted each time. The final outputs must
be byte-identical to an uninterrupted run, and no phase output is ever rewritten after the job
document recorded that phase as finished.

Kills are aimed: inside a simulation segment (just after a segment's progress line), inside
training (just after an epoch line), inside the short analysis (just after the line that ends
training), and inside atomic writes (a sitecustomize module SIGKILLs the group at the N-th
os.fsync of the process and first records that it fired: at a file's fsync that is after the
temporary file is written, before its rename). Where each kill landed is read back from the
restarted run: "resuming at segment j/n" (j < n) proves a kill inside simulation, "resuming at
epoch e/E" without "(finished)" one inside training, a job document left at the analyze phase
one inside analysis, and "removed N temporary file(s)" one between a write and its rename; the
test asserts that each kind happened. Kills hit the whole process group (flow's `run` executes
`advance` in a child process), as a scheduler's kill does.
"""

from __future__ import annotations

import json
import os
import random
import re
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
    "learner": {"epochs": 60, "max_samples": 2000, "ensemble": 2, "checkpoint_epochs": 3, "patience": 100},
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
            with open(os.environ["CVCYCLE_TEST_KILL_MARK"], "a") as mark:
                mark.write("fired\\n")
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


def where_kills_landed(lines: list[str], starts: list[int], kills: list[tuple[str, str]]) -> dict[str, int]:
    """How many kills provably landed inside a simulation segment, inside training, inside the
    analysis, and between a temporary file's write and its rename, read from the output of the
    run that followed each kill (run i + 1 begins at line starts[i + 1])."""
    counts = {"inside simulation": 0, "inside training": 0, "inside analysis": 0, "between write and rename": 0}
    for i, (_, where) in enumerate(kills):
        after = lines[starts[i + 1]:starts[i + 2] if i + 2 < len(starts) else len(lines)]
        if any((m := re.search(r"resuming at segment (\d+)/(\d+)", line)) and int(m[1]) < int(m[2]) for line in after):
            counts["inside simulation"] += 1
        if any("resuming at epoch" in line and "(finished)" not in line for line in after):
            counts["inside training"] += 1
        if where.endswith("analyze"):
            counts["inside analysis"] += 1
        if any("temporary file(s) of writes interrupted by a kill" in line for line in after):
            counts["between write and rename"] += 1
    return counts


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
    mark = tmp_path / "fsync-kills"
    rng = random.Random(20261123)
    kills: list[tuple[str, str]] = []  # (how, where the doc stood afterwards)
    starts: list[int] = []  # the log line at which each run's output begins
    frozen: dict[str, tuple[int, int]] = {}
    t0 = time.monotonic()
    while len(kills) < KILLS:
        phase_now = kills[-1][1].split()[-1] if kills else "simulate"
        how = rng.choice(["train", "train", "analyze", "analyze", "write"] if phase_now == "train" else ["simulate", "simulate", "write"])
        extra = {}
        if how == "write":
            extra = {"PYTHONPATH": str(inject), "CVCYCLE_TEST_KILL_AT_FSYNC": str(rng.randint(1, 24)),
                     "CVCYCLE_TEST_KILL_MARK": str(mark)}
        lines = len(log.read_text().splitlines())
        starts.append(lines)
        proc = start_run(run_dir, log, extra)
        # within a segment (~0.1 s) of a segment line, an epoch of an epoch line, the analysis of the end of training
        marker, delay = {"simulate": ("walker-steps/s", 0.05), "train": ("] epoch", 0.1),
                         "analyze": (": keeping model", 0.3)}.get(how, (None, 0.0))
        if marker is not None and wait_for_line(proc, log, marker, lines):
            time.sleep(rng.uniform(0.0, delay))
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
    starts.append(len(log.read_text().splitlines()))
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
    landed = where_kills_landed(text.splitlines(), starts, kills)
    assert all(landed.values()), (landed, kills)
    fsync_kills = sum(how == "write" for how, _ in kills)
    assert fsync_kills and len(mark.read_text().splitlines()) == fsync_kills  # every write kill fired at an fsync
    print(f"\n{len(kills)} kills survived ({fsync_kills} at an fsync); where they landed: {landed}; "
          f"phases hit: {sorted(phases)}; uninterrupted run {reference_seconds:.1f} s, killed+resumed "
          f"{killed_seconds:.1f} s, resume overhead {(killed_seconds - reference_seconds) / len(kills):.1f} s per kill")
