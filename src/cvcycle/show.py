"""`python -m cvcycle show`: where one campaign stands, read from its job directory.

Reads the state point, the progress document and the iteration folders directly (no signac),
so it also works on a copied job directory or while a run is writing to it.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any

from . import io as cio
from .campaign import STATEPOINT, Campaign, failed_checks
from .errors import WorkspaceError
from .features import make_featurizer
from .scheduler import slurm_state
from .routes import route_for



def find_campaign(ref: str, workspace: str | Path = "workspace") -> Campaign:
    """A job directory given as a path, or as a job id / unique id prefix under `workspace`."""
    path = Path(ref)
    if (path / STATEPOINT).is_file():
        return Campaign(path)
    ws = Path(workspace)
    if not ws.is_dir():
        if path.is_dir():
            return Campaign(path)
        raise WorkspaceError(f"'{ref}' is not a job directory and there is no {ws}/ here to look up job ids "
                             "(run from the project directory or pass the job directory)")
    if ref and (ws / ref).is_dir():  # a full job id: a damaged job is reported as such
        return Campaign(ws / ref)
    # every job folder counts, so that a damaged job is reported rather than "no job matches"
    matches = sorted(p for p in ws.iterdir() if p.name.startswith(ref) and p.is_dir())
    if not matches:
        if path.is_dir():
            return Campaign(path)
        raise WorkspaceError(f"no job matches '{ref}' in {ws.resolve()}")
    if len(matches) > 1:
        shown = ", ".join(p.name for p in matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise WorkspaceError(f"job id prefix '{ref}' is ambiguous: {len(matches)} jobs match ({shown})")
    return Campaign(matches[0])


def _verify(path: str | None) -> None:
    """Check a file that `show` points to: .npz against its checksum, cv.pt as a TorchScript
    (zip) archive, without importing torch."""
    if path is None:
        return
    p = Path(path)
    if p.suffix == ".npz":
        cio.read_npz(p)
        return
    what = "CV" if p.name == "cv.pt" else "model"
    try:
        with zipfile.ZipFile(p) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise WorkspaceError(f"unreadable TorchScript {what} {p}: not a TorchScript archive ({exc})") from None
    if bad is not None:
        raise WorkspaceError(f"unreadable TorchScript {what} {p}: corrupted entry {bad}")


def _iter_dirs(c: Campaign) -> list[Path]:
    return sorted((p for p in c.path.glob("iter-[0-9][0-9][0-9]*") if p.is_dir()), reverse=True)


def _newest(c: Campaign, name: str) -> str | None:
    """Absolute path of `name` in the newest iteration folder that has it."""
    for d in _iter_dirs(c):
        if (d / name).is_file():
            return str(d / name)
    return None


def _finite(v: Any) -> Any:
    """Strict JSON: non-finite numbers (e.g. an RMSE over no covered bins) become null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def summary(c: Campaign) -> dict[str, Any]:
    """Everything `show` reports, as a JSON-ready dict."""
    route = route_for(c.spec)
    c.check(route.files)
    doc = c.progress()
    history = sorted(doc["history"], key=lambda h: h["iteration"])
    plots = {"convergence": str(c.path / "convergence.png") if (c.path / "convergence.png").is_file() else None,
             "fes_xy": _newest(c, "fes_xy.png"), "fes_cv": _newest(c, "fes_cv.png")}
    cv_model, fes = _newest(c, "cv.pt"), _newest(c, "fes.npz")
    committor_model = _newest(c, "committor.pt") if route.logit_q else None
    for path in (cv_model, committor_model, fes):
        _verify(path)
    keys = route.metric_keys + tuple(k for k in ("fes_rmse_reference",) if any(h.get(k) is not None for h in history))
    return _finite({
        "id": c.id,
        "path": str(c.path),
        "campaign": c.spec["campaign"]["name"],
        "seed": c.seed,
        "iteration": doc["iteration"],
        "phase": doc["phase"],
        "status": doc["status"],
        "converged": bool(doc["converged"]),
        "features": list(make_featurizer(c.spec).names),
        "cv_model": cv_model,
        "committor_model": committor_model,
        "fes": fes,
        "total_steps": doc["total_steps"],
        "last_checkpoint": c.last_checkpoint(),
        "running_now": c.lock_holder(),
        "last_run": _last_run(doc.get("run")),
        "last_error": doc.get("last_error"),
        "updated": doc.get("updated"),
        "metrics": history[-1] if history else None,
        "plots": {k: v for k, v in plots.items() if v},
        "iterations": [{"iteration": h["iteration"], **{k: h.get(k) for k in keys},
                        "committor_test": _test(h.get("committor_test")), "converged": bool(h.get("converged")),
                        "failed": failed_checks(h)} for h in history],
    })


def _test(test: dict[str, Any] | None) -> str | None:
    """An iteration's committor histogram test (the convergence gate): mean p_B / width without
    binomial noise, or the reason it could not run; None if it did not run."""
    if test is None:
        return None
    from .analysis.committor_histogram import levels_text

    return "not run" if "error" in test else f"{test['p_B_mean']:.3f}/{test['p_B_std_intrinsic']:.3f}{levels_text(test)}"


def _last_run(run: dict[str, Any] | None) -> dict[str, Any] | None:
    """The process (and SLURM job) that last advanced the campaign, with the job's state now."""
    if not run:
        return None
    return {**run, "slurm_state": slurm_state(run.get("slurm_job"))}


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def render(s: dict[str, Any]) -> str:
    """A readable report: header, per-iteration metrics table, paths."""
    n = len(s["iterations"])  # iterations are numbered from 0, as in `status`, iter-NNN/ and the plots
    done = f"at iteration {s['iteration']} ({n} iteration{'s' if n != 1 else ''}, 0-{s['iteration']})"
    state = {"running": f"running (iteration {s['iteration']}, phase {s['phase']})",
             "converged": f"converged {done}",
             "budget": f"budget spent {done}, not converged"}.get(s["status"], s["status"])
    lines = [
        f"campaign   {s['campaign']}  (seed {s['seed']})",
        f"job        {s['id']}",
        f"status     {state}",
        f"steps      {s['total_steps']:,} walker steps",
        f"features   {', '.join(s['features'])}",
        f"checkpoint {s['last_checkpoint'] or '-'}",
    ]
    run = s["last_run"]
    if s["running_now"]:
        lines.append(f"running    now: {s['running_now']}")
    if run:
        slurm = f", SLURM job {run['slurm_job']} ({run['slurm_state'] or 'state unknown'})" if run.get("slurm_job") else ""
        lines.append(f"last run   pid {run['pid']} on {run['host']} from {run['started']}{slurm}")
    if s["last_error"]:
        e = s["last_error"]
        lines.append(f"error      iteration {e['iteration']} {e['phase']} at {e['time']}: {e['message']}")
    lines += [
        "",
    ]
    if s["iterations"]:
        keys = [k for k in s["iterations"][0] if k not in ("iteration", "converged", "failed")]
        if not any(it["committor_test"] for it in s["iterations"]):
            keys.remove("committor_test")
        head = ("iter", *keys, "converged")
        rows = [[str(it["iteration"])] + [_fmt(it[k]) for k in keys]
                + ["yes" if it["converged"] else "no: " + ", ".join(it["failed"]) if it["failed"] else "no"]
                for it in s["iterations"]]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells[:-1], widths)) + "  " + cells[-1]  # noqa: E731
        lines += [line(head)] + [line(r) for r in rows] + [""]
    else:
        lines += ["no iteration analysed yet", ""]
    paths = {"job dir": s["path"], "cv model": s["cv_model"], "committor": s["committor_model"], "fes": s["fes"],
             **s["plots"]}
    lines += [f"{name:<12} {p}" for name, p in paths.items() if p]
    return "\n".join(lines)
