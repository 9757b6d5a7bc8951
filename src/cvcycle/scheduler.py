"""What the batch scheduler says about the jobs that ran a campaign (SLURM's squeue)."""

from __future__ import annotations

import os
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


WALLTIME_VARIABLE = "CVCYCLE_WALLTIME_SECONDS"


def walltime_from_environment() -> float | None:
    """The seconds a run may take, from CVCYCLE_WALLTIME_SECONDS (set by templates/script.sh),
    or None where it is unset or empty; anything but a positive finite number is an error."""
    import math

    from .errors import CvcycleError

    text = os.environ.get(WALLTIME_VARIABLE, "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise CvcycleError(f"{WALLTIME_VARIABLE}: expected a positive number of seconds, got {text!r} "
                           "(unset it to run without a walltime)")
    return seconds
