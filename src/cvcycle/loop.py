"""The campaign loop: iteration k = simulate -> train -> analyze, with the phases of the
campaign's learner route (cvcycle.routes), until the campaign converges or spends its budget.

Each phase writes its files atomically, then advances the job document; a phase interrupted
before that is redone from its last checkpoint (simulation segments, training epochs) on the
next call. The loop records each analysis and decides what comes next.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from .campaign import Campaign, latest_failed_checks, now_iso
from . import io as cio
from . import timing
from .errors import CvcycleError, WalltimeReached
from .routes import Analysis, route_for

Log = Callable[[str], None]


LOG_FILE = "campaign.log"


def advance(path: str | Path, walltime: float | None = None, log: Log | None = None) -> dict[str, Any]:
    """Run phases of one campaign until it converges, spends its budget, or (with `walltime`
    seconds) until the walltime is nearly spent: between phases when the next would likely not
    fit, inside simulation and training at a checkpoint. Returns the job document. An OSError
    (disk full, read-only file system) becomes one WorkspaceError with the path and the remedy;
    every error that stops a phase is kept in the document's last_error where the disk allows.

    Every line goes to the campaign's log file (campaign.log: UTC time, level, line) and to
    `log`, by default the console with the job id in front; the run ends with a summary line."""
    c = Campaign(path)
    console = log if log is not None else (lambda line: print(f"[{c.id[:8]}] {line}", flush=True))
    t0 = time.monotonic()
    with c.lock():
        try:
            with open(c.path / LOG_FILE, "a") as fh:
                def both(line: str) -> None:
                    fh.write(f"{now_iso()} {'WARNING' if line.startswith('warning:') else 'INFO'} {line}\n")
                    fh.flush()
                    console(line)
                try:
                    doc = _phases(c, walltime, both)
                except Exception as exc:
                    fh.write(f"{now_iso()} ERROR {cio.os_error(exc) if isinstance(exc, OSError) else exc}\n")
                    raise
                both(summary_line(c, doc, time.monotonic() - t0))
                return doc
        except OSError as exc:
            raise cio.os_error(exc) from None


def summary_line(c: Campaign, doc: dict[str, Any], seconds: float) -> str:
    """One line on where the campaign stands after a run."""
    failed = latest_failed_checks(doc)
    where = f"{doc['status']} at iteration {doc['iteration']}" + (f" {doc['phase']}" if doc["status"] == "running" else "")
    checks = f"; checks failed: {', '.join(failed)}" if failed and doc["status"] != "converged" else ""
    return (f"summary: {c.spec['campaign']['name']} seed {c.seed}: {where}, {doc['total_steps']:,} walker steps, "
            f"{timing.clock(seconds)} in this run{checks}")


def _phases(c: Campaign, walltime: float | None, log: Log) -> dict[str, Any]:
    t_start = time.monotonic()
    longest = 0.0
    route = route_for(c.spec)
    c.check(route.files)
    if stale := c.remove_stale_temporaries():
        log(f"[start] removed {len(stale)} temporary file(s) of writes interrupted by a kill")
    if not c.finished:
        c.record_run()
    while not c.finished:
        doc = c.progress()
        k, phase = doc["iteration"], doc["phase"]
        if walltime is not None and longest and time.monotonic() - t_start + 1.5 * longest > walltime:
            log(f"[iter {k} {phase}] stopping before it: walltime budget nearly spent")
            break
        t0 = time.monotonic()
        try:
            result = route.phase(phase)(c, k, log, deadline=None if walltime is None else t_start + walltime)
            if phase == "analyze":
                record(c, k, result, log)
        except WalltimeReached as stop:
            log(str(stop))
            break
        except Exception as exc:  # kept in the document for `status -d` and `show`; nothing else changes
            message = str(cio.os_error(exc) if isinstance(exc, OSError) else exc)
            _record_error(c, k, phase, message if isinstance(exc, (CvcycleError, OSError)) else f"{type(exc).__name__}: {exc}")
            raise
        seconds = time.monotonic() - t0
        longest = max(longest, seconds)
        spent = c.progress().get("seconds", {})
        c.update_doc(seconds={**spent, phase: round(spent.get(phase, 0.0) + seconds, 3)})
    return c.progress()


def _record_error(c: Campaign, k: int, phase: str, message: str) -> None:
    """Keep the error that stopped the run in the job document, where the disk allows."""
    try:
        c.update_doc(last_error={"time": now_iso(), "iteration": k, "phase": phase, "message": message})
    except (OSError, CvcycleError):
        pass  # the document cannot be written (a full or read-only disk, a lost lock): the console has the error


def record(c: Campaign, k: int, analysis: Analysis, log: Log) -> str:
    """Run the convergence gate of the committor histogram test where it applies, record iteration
    k's analysis in the job document, log its summary, and return the status."""
    from .analysis.committor_histogram import convergence_gate, levels_text

    convergence_gate(c, k, analysis.metrics, log)
    status = finish_iteration(c, k, analysis.metrics, analysis.next_steps)
    test = analysis.metrics["committor_test"]
    summary = analysis.summary if test is None else (
        f"{analysis.summary}, committor test: {test['error']}" if "error" in test else
        f"{analysis.summary}, committor test p_B {test['p_B_mean']:.3f} width {test['p_B_std_intrinsic']:.3f} "
        f"(without binomial noise){levels_text(test)}")
    log(f"[iter {k} analyze] {summary} -> {status}")
    return status


def finish_iteration(c: Campaign, k: int, metrics: dict[str, Any], next_steps: int) -> str:
    """Record iteration k's metrics in the job document and move on: 'converged', 'budget' (the
    next iteration, ending at `next_steps` total steps, would exceed the budget) or 'running'."""
    spec = c.spec
    history = [h for h in c.progress()["history"] if h["iteration"] != k] + [metrics]
    budget = spec["budget"]
    converged = bool(metrics["converged"])
    status = "converged" if converged else (
        "budget" if k + 1 >= budget["max_iterations"] or next_steps > budget["max_total_steps"] else "running")
    if spec["analysis"]["plots"]:
        from .analysis.plots import plot_convergence

        plot_convergence(c.path / "convergence.png", history, spec["convergence"])
    c.update_doc(history=history, iteration=k + 1 if status == "running" else k, phase="simulate" if status == "running" else "done",
                 status=status, converged=converged, next_total_steps=next_steps)
    return status
