"""What the batch scheduler says about the jobs that ran a campaign (SLURM's squeue)."""

from __future__ import annotations

import shutil
import subprocess


def slurm_state(job_id: str | None) -> str | None:
    """State of SLURM job `job_id` (PENDING, RUNNING, COMPLETING, ...), "not in queue" once it has
    left the queue, or None without a job id or where squeue is missing or does not answer."""
    if not job_id or shutil.which("squeue") is None:
        return None
    try:
        r = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:  # squeue exits 1 for a job id that the controller has already purged
        return "not in queue" if "Invalid job id" in r.stderr else None
    return r.stdout.strip() or "not in queue"
