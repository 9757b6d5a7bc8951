"""A campaign on disk: one signac job directory, read and written without signac.

State point (signac_statepoint.json) = what the campaign is: {"spec": {...}} with the seed in
spec.campaign.seed. It is fixed once the campaign starts: the first run records it in the job
document (spec_at_start) and every later run or `show` refuses a state point that differs.
Job document (signac_job_document.json) = where it stands: iteration, phase, status, history of
metrics, `seconds`: the wall time of the finished phases per phase, and `settings`: the run
settings (budget, resources) that `extend` changed since the campaign was created, which override
the state point's. Bulk data live in iteration folders
iter-000/, iter-001/, ... The document is rewritten atomically and only after the files it
points to are complete.
"""

from __future__ import annotations

import fcntl
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import io as cio
from .errors import SpecError, WorkspaceError
from .spec import validate

# what describes the run, not the science: `extend` changes it (section -> its keys, None for all)
RUN_SETTINGS: dict[str, tuple[str, ...] | None] = {"budget": None, "resources": None, "analysis": ("plots",)}


def is_run_setting(section: str, key: str) -> bool:
    return section in RUN_SETTINGS and (RUN_SETTINGS[section] is None or key in RUN_SETTINGS[section])


def science(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec without its run settings: what two campaigns must share to be the same campaign."""
    return {section: {k: v for k, v in body.items() if not is_run_setting(section, k)} if isinstance(body, dict) else body
            for section, body in spec.items()}


def run_setting_names() -> str:
    """budget.*, resources.*, analysis.plots"""
    return ", ".join(f"{s}.*" if keys is None else ", ".join(f"{s}.{k}" for k in keys) for s, keys in RUN_SETTINGS.items())
STATEPOINT = "signac_statepoint.json"
DOCUMENT = "signac_job_document.json"
PHASES = ("simulate", "train", "analyze", "done")
STATUSES = ("running", "converged", "budget")
PhaseFiles = dict[str, tuple[str, ...]]  # phase -> files a finished phase leaves (the route's Route.files)


def failed_checks(metrics: dict[str, Any]) -> list[str]:
    """The convergence checks an iteration's metrics record as failed."""
    return [name for name, ok in metrics.get("checks", {}).items() if not ok]


def latest_failed_checks(doc: dict[str, Any]) -> list[str]:
    """The checks the latest analysed iteration of a job document failed (none before one)."""
    history = doc.get("history") or []
    return failed_checks(max(history, key=lambda h: h.get("iteration", -1))) if history else []


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- spec schema version of a state point (see cvcycle.spec: SCHEMA_VERSION) -------------------
def check_schema_version(statepoint: Path, spec: dict[str, Any]) -> None:
    """Refuse a state point written under another spec schema than this cvcycle's: one
    WorkspaceError naming the file, both versions and what to do. Nothing is migrated."""
    from .spec import SCHEMA_VERSION

    campaign = spec.get("campaign")
    if not isinstance(campaign, dict):
        return  # not a spec: validate names the problem
    found = campaign.get("schema", 1)  # 1: state points from before cvcycle recorded the version
    if type(found) is int and found == SCHEMA_VERSION:
        return
    made = ("written before cvcycle recorded schema versions: no campaign.schema" if "schema" not in campaign
            else "not a version number" if type(found) is not int
            else "made by a newer cvcycle" if found > SCHEMA_VERSION else "made by an older cvcycle")
    raise WorkspaceError(f"{statepoint}: campaign spec of schema version {found!r} ({made}); this cvcycle reads "
                         f"schema version {SCHEMA_VERSION} and does not convert campaigns: re-create it from its spec "
                         "with `python project.py init SPEC.toml` (a new job id), or run it with the cvcycle version "
                         "that made it")
# -- end of spec schema version ----------------------------------------------------------------


class Campaign:
    """Paths, spec and progress of one campaign directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()
        self.held: CampaignLock | None = None
        sp = self.path / STATEPOINT
        if not sp.is_file():
            raise WorkspaceError(f"{self.path} is not a campaign directory (no {STATEPOINT})")
        raw = cio.read_json(sp)
        if not isinstance(raw, dict) or not isinstance(raw.get("spec"), dict):
            raise WorkspaceError(f"{sp}: not a cvcycle state point (expected {{\"spec\": {{...}}}})")
        check_schema_version(sp, raw["spec"])
        try:
            self.created_spec = validate(raw["spec"])
        except SpecError as exc:
            raise SpecError(f"{sp}: invalid campaign spec: {exc}") from None
        self.spec = self.created_spec
        settings = self.doc().get("settings") or {}
        if settings:
            try:
                self.spec = self.with_settings(settings)
            except SpecError as exc:
                raise SpecError(f"{self.path / DOCUMENT}: settings: {exc}") from None

    def with_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The state point's spec with run settings {section: {key: value}} (RUN_SETTINGS only)
        applied and validated; a SpecError names the setting."""
        if not all(isinstance(body, dict) for body in settings.values()):
            raise SpecError("settings: expected a table per section")
        for section, body in settings.items():
            for key in body:
                if not is_run_setting(section, key):
                    raise SpecError(f"{section}.{key}: not a run setting (those that may change: {run_setting_names()})")
        return validate({name: {**body, **settings.get(name, {})} for name, body in self.created_spec.items()})

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def seed(self) -> int:
        return int(self.spec["campaign"]["seed"])

    def iter_dir(self, k: int) -> Path:
        return self.path / f"iter-{k:03d}"

    # -- progress document -------------------------------------------------------------
    def doc(self) -> dict[str, Any]:
        path = self.path / DOCUMENT
        if not path.exists():
            return {}
        raw = cio.read_json(path)
        if not isinstance(raw, dict):
            raise WorkspaceError(f"{path}: expected a JSON object (the campaign's progress), got {type(raw).__name__}")
        return raw

    def progress(self) -> dict[str, Any]:
        """The document with defaults for a campaign that has not started."""
        d = {"iteration": 0, "phase": "simulate", "status": "running", "converged": False,
             "total_steps": 0, "history": []}
        d.update(self.doc())
        return d

    def update_doc(self, **changes: Any) -> dict[str, Any]:
        if self.held is not None:
            self.held.check_held()  # never write the progress record under a lock that is no longer ours
        doc = self.progress()
        doc.update(changes)
        doc["updated"] = now_iso()
        cio.write_json(self.path / DOCUMENT, doc)
        return doc

    def check(self, phase_files: PhaseFiles) -> None:
        """Raise WorkspaceError naming the first inconsistency between the job document and the
        files on disk: a document that is not a progress record (or is gone while iterations have
        finished), an unknown phase or status, or a missing iteration folder or file of a phase the
        document records as finished."""
        doc_path = self.path / DOCUMENT
        raw = self.doc()
        if not raw and (self.iter_dir(0) / "samples.npz").is_file():  # (a first segment may precede the first document)
            found = ", ".join(sorted(p.name for p in self.path.glob("iter-[0-9][0-9][0-9]*") if p.is_dir()))
            raise WorkspaceError(f"{doc_path} is missing or empty but iterations have finished ({found}): "
                                 "the campaign's progress record is lost; restore it from a backup")
        doc = self.progress()
        k, phase, status = doc["iteration"], doc["phase"], doc["status"]
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise WorkspaceError(f"{doc_path}: iteration must be a non-negative integer, got {k!r}")
        if phase not in PHASES:
            raise WorkspaceError(f"{doc_path}: unknown phase {phase!r} (known: {', '.join(PHASES)})")
        if status not in STATUSES:
            raise WorkspaceError(f"{doc_path}: unknown status {status!r} (known: {', '.join(STATUSES)})")
        if not isinstance(doc["converged"], bool):
            raise WorkspaceError(f"{doc_path}: converged must be true or false, got {doc['converged']!r}")
        if not isinstance(doc["total_steps"], int) or isinstance(doc["total_steps"], bool):
            raise WorkspaceError(f"{doc_path}: total_steps must be an integer, got {doc['total_steps']!r}")
        self.check_spec_unchanged()
        history = doc["history"]
        if not isinstance(history, list) or not all(isinstance(h, dict) and isinstance(h.get("iteration"), int)
                                                    for h in history):
            raise WorkspaceError(f"{doc_path}: history must be a list of per-iteration metrics")
        for i, finished, path in self.finished_files(phase_files):
            if not path.parent.is_dir():
                raise WorkspaceError(f"missing iteration folder {path.parent} (the job document is at iteration {k}, "
                                     f"phase {phase})")
            if not path.is_file():
                raise WorkspaceError(f"missing file {path} (iteration {i} finished its {finished} phase)")

    def check_spec_unchanged(self) -> None:
        """Raise WorkspaceError when the state point's spec differs from the one the campaign
        started with (an edit through signac's API, or by hand), naming the fields that changed."""
        started = self.doc().get("spec_at_start")
        if started is None or started == self.created_spec:
            return
        diffs = _differences(started, self.created_spec)
        shown = "; ".join(f"{path}: {a!r} -> {b!r}" for path, a, b in diffs[:4])
        more = f"; and {len(diffs) - 4} more" if len(diffs) > 4 else ""
        run_only = all(is_run_setting(*path.split(".", 1)) for path, _, _ in diffs if "." in path)
        raise WorkspaceError(f"{self.path / STATEPOINT}: the campaign spec changed after the campaign started ({shown}{more}); "
                             "its finished iterations were made with the old one. Put the old values back, or start a "
                             "new campaign from the changed spec with `python project.py init SPEC.toml`"
                             + (f"; run settings ({run_setting_names()}) change with `python -m cvcycle extend`"
                                if run_only else ""))

    def finished_files(self, phase_files: PhaseFiles) -> list[tuple[int, str, Path]]:
        """(iteration, phase, file) for every file left by a phase the job document records as finished."""
        doc = self.progress()
        k, phase = doc["iteration"], doc["phase"]
        out = []
        for i in range(k + 1):
            for finished in PHASES[:-1] if i < k else PHASES[:PHASES.index(phase)]:
                out += [(i, finished, self.iter_dir(i) / name) for name in phase_files[finished]]
        return out

    def last_checkpoint(self) -> str | None:
        """UTC time of the newest simulation or training checkpoint of the latest iteration that has one."""
        for k in range(self.progress()["iteration"], -1, -1):
            files = [p for sub in ("sim", "train") for p in (self.iter_dir(k) / sub).glob("*-[0-9]*.npz")]
            if files:
                stamp = max(p.stat().st_mtime for p in files)
                return datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="seconds")
        return None

    def record_run(self) -> None:
        """Note in the document which process (and SLURM job, if any) now advances the campaign;
        the error of an earlier run, if any, is cleared (a new one is recorded by loop.advance).
        The first run also records the spec, cvcycle version and schema the campaign starts with."""
        from . import __version__

        first = {} if "spec_at_start" in self.doc() else {
            "spec_at_start": self.created_spec, "started_with": {"cvcycle": __version__,
                                                                 "schema": self.created_spec["campaign"]["schema"]}}
        self.update_doc(run={"host": os.uname().nodename, "pid": os.getpid(), "started": now_iso(),
                             "slurm_job": os.environ.get("SLURM_JOB_ID")}, last_error=None, **first)

    @property
    def finished(self) -> bool:
        return self.progress()["status"] in ("converged", "budget")

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete the temporary files of atomic writes that a killed process left behind
        (`.<name>.<random>.tmp`, never read as data); call only while holding the lock."""
        stale = [p for p in self.path.rglob(".*.tmp") if p.is_file()]
        for p in stale:
            p.unlink()
        return stale

    # -- locking -------------------------------------------------------------------------
    def lock(self) -> "CampaignLock":
        """The campaign's lock; while it is held, every update of the job document first checks
        that its lock file is still the one locked (see CampaignLock.check_held)."""
        self.held = CampaignLock(self.path / ".cvcycle.lock")
        return self.held

    def lock_holder(self) -> str | None:
        """Who is advancing the campaign right now ("pid N on HOST since ..."), or None.
        Only reads: the lock file is neither created nor taken."""
        path = self.path / ".cvcycle.lock"
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        except BlockingIOError:
            return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        finally:
            os.close(fd)


def _differences(a: Any, b: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted path, old, new) for every leaf where two nested dicts differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in list(a) + [k for k in b if k not in a]
                for d in _differences(a.get(key), b.get(key), f"{path}.{key}" if path else key)]
    return [] if a == b else [(path, a, b)]


class CampaignLock:
    """An exclusive, non-blocking advisory lock; released when the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> "CampaignLock":
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise cio.os_error(exc) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(self.fd)
            self.fd = None
            raise WorkspaceError(f"campaign {self.path.parent.name} is being run by {holder}; "
                                 "wait for it to finish or stop it first") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()} on {os.uname().nodename} since {time.ctime()}".encode(), 0)
        return self

    def check_held(self) -> None:
        """Raise WorkspaceError if the lock file was deleted or replaced while this lock was held:
        a second run could then have taken a new lock file and be working in the same job."""
        if self.fd is None:
            return
        held = os.fstat(self.fd)
        try:
            now = os.stat(self.path)
            same = (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)
        except FileNotFoundError:
            same = False
        if not same:
            raise WorkspaceError(f"{self.path} was deleted or replaced while this run held it: another run may be working "
                                 "in the same job now, so this one stops here (what it finished is saved; the other "
                                 "run, or the next one, goes on from there)")

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
