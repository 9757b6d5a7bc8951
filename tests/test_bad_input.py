"""Bad input, as a user meets it on the command line: every malformed spec or broken workspace
gets one `error: ...` line naming the problem (the field, or the file), a non-zero exit status,
no traceback, and leaves every file that existed before byte-identical.

Spec cases go through `python -m cvcycle validate` and `python project.py init`. Workspace cases
start from copies of ONE finished tiny campaign (3 iterations, built once per session) and go
through `python -m cvcycle show` and `python project.py run`; for `run` to reach a damaged file,
the job document is set back to an earlier phase of the last iteration, as a resumed run sees it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from cvcycle import io as cio
from cvcycle.spec import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "project.py"
DOC = "signac_job_document.json"
SP = "signac_statepoint.json"

TINY_SPEC = """\
[campaign]
name = "bad-input"
seed = 0

[system]
potential = "mueller-brown"
scale = 0.1
temperature = 1.0

[system.states.A]
center = [-0.558, 1.442]
radius = 0.15

[system.states.B]
center = [0.623, 0.028]
radius = 0.15

[engine]
dt = 2e-3
walkers = 8
initial_steps = 200
steps = 400
segment_steps = 200
report_stride = 10
start = "A"

[learner]
epochs = 5
ensemble = 1
max_samples = 2000

[budget]
max_iterations = 3

[convergence]
min_iterations = 3

[analysis]
grid_bins = 40
plots = false
"""


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k != "CVCYCLE_WALLTIME_SECONDS"}
    e["SIGNAC_FLOW_ENVIRONMENT"] = "StandardEnvironment"  # no scheduler queries, even where SLURM is installed
    return e


def command(cwd: Path, args: tuple[str, ...], **variables: str) -> subprocess.CompletedProcess:
    """`project ARGS` runs project.py, anything else `python -m cvcycle ARGS` (with extra
    environment variables)."""
    argv = [str(PROJECT), *args[1:]] if args[0] == "project" else ["-m", "cvcycle", *args]
    return subprocess.run([sys.executable, *argv], cwd=cwd, env={**env(), **variables}, capture_output=True, text=True,
                          timeout=300)


def tree(root: Path, ignore: set[str]) -> dict[str, str]:
    """sha256 of every file under root, except those whose name is in `ignore`."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in ignore}


def check_failure(r: subprocess.CompletedProcess, needles: tuple[str, ...]) -> None:
    """Non-zero exit, exactly one stderr line `error: ...` holding every needle, no traceback."""
    out = f"--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"
    assert r.returncode != 0, out
    assert "Traceback" not in r.stdout + r.stderr, out
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and len(lines) == 1, f"expected one line `error: ...` on stderr\n{out}"
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in the error line\n{out}"


# -- spec cases ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SpecCase:
    id: str
    command: str  # "validate" or "init"
    needles: tuple[str, ...]
    old: str = ""  # TINY_SPEC with `old` replaced by `new`
    new: str = ""
    text: str | bytes | None = None  # or this content instead
    path: str = "spec.toml"  # the argument; "." for a directory, "missing.toml" for none


SPEC_CASES = [
    SpecCase("unknown-key-with-suggestion", "init", ("engine.stepz: unknown key", "did you mean 'steps'"),
             "walkers = 8\n", "walkers = 8\nstepz = 400\n"),
    SpecCase("wrong-type", "validate", ("engine.walkers: expected int, got str",),
             "walkers = 8\n", 'walkers = "eight"\n'),
    SpecCase("negative-steps", "init", ("engine.steps: must be >= 1, got -400",), "steps = 400\n", "steps = -400\n"),
    SpecCase("missing-potential", "validate", ("system.potential: required field is missing",),
             'potential = "mueller-brown"\n', ""),
    SpecCase("unknown-potential", "init", ("system.potential: must be one of", "'muller-brown'"),
             'potential = "mueller-brown"', 'potential = "muller-brown"'),
    SpecCase("nan-start-point", "init", ("engine.start: must be finite",), 'start = "A"', "start = [nan, 1.0]"),
    SpecCase("inf-start-point", "validate", ("engine.start: must be finite",), 'start = "A"', "start = [0.0, -inf]"),
    SpecCase("nan-state-center", "validate", ("system.states.A.center: must be 2 finite numbers",),
             "center = [-0.558, 1.442]", "center = [nan, 1.442]"),
    SpecCase("state-missing-radius", "init", ("system.states.B.radius: required field is missing",),
             "center = [0.623, 0.028]\nradius = 0.15\n", "center = [0.623, 0.028]\n"),
    SpecCase("invalid-toml", "init", ("spec.toml: not valid TOML", "line 20"), "walkers = 8", "walkers = = 8"),
    SpecCase("not-utf8", "validate", ("spec.toml: not valid TOML: not UTF-8",), text=b"\xff\xfe[campaign]\n"),
    SpecCase("missing-spec-file", "init", ("spec file not found: missing.toml",), path="missing.toml"),
    SpecCase("spec-is-a-directory", "validate", ("cannot read spec file", "Is a directory"), path="."),
    SpecCase("integer-of-400-digits-in-a-float-field", "validate",
             ("system.temperature: must be a finite number, got an integer of 400 digits",),
             "temperature = 1.0", "temperature = " + "9" * 400),
    SpecCase("integer-of-400-digits-in-a-state-centre", "init",
             ("system.states.A.center: must be 2 finite numbers, got [an integer of 400 digits, 1.442]",),
             "center = [-0.558, 1.442]", "center = [" + "9" * 400 + ", 1.442]"),
    SpecCase("integer-beyond-the-conversion-limit", "validate", ("spec.toml: not valid TOML: Exceeds the limit",),
             "walkers = 8", "walkers = " + "9" * 5000),
    SpecCase("a-trillion-walkers", "init", ("engine.walkers: must be <= 100000, got 1000000000000",),
             "walkers = 8", "walkers = 1_000_000_000_000"),
    SpecCase("frames-beyond-the-memory", "validate",
             ("engine.walkers: 100,000 walkers x 4,000,000 steps / report_stride 10", "more than resources.memory_gb = 4"),
             "walkers = 8\ninitial_steps = 200\nsteps = 400", "walkers = 100000\ninitial_steps = 200\nsteps = 4000000"),
    SpecCase("state-without-a-grid-point", "init", ("system.states.A.radius: 0.001 holds no point of the reference grid",
                                                    "analysis.grid_bins = 40"),
             "center = [-0.558, 1.442]\nradius = 0.15", "center = [-0.558, 1.442]\nradius = 0.001"),
    SpecCase("states-at-the-same-centre", "validate", ("system.states.B: overlaps state A",),
             "center = [0.623, 0.028]", "center = [-0.558, 1.442]"),
    SpecCase("state-outside-the-box", "init", ("system.states.B.center: [5.0, 5.0] lies outside the mueller-brown box",),
             "center = [0.623, 0.028]", "center = [5.0, 5.0]"),
    SpecCase("temperature-1e-300", "validate", ("system.temperature: must be >= 0.001, got 1e-300",),
             "temperature = 1.0", "temperature = 1e-300"),
    SpecCase("budget-below-the-first-iteration", "init",
             ("budget.max_total_steps: iteration 0 alone takes engine.walkers x engine.initial_steps = 1,600 walker steps, "
              "got 10",), "max_iterations = 3\n", "max_iterations = 3\nmax_total_steps = 10\n"),
    SpecCase("other-schema-version", "init", (f"spec.toml: campaign.schema: must be {SCHEMA_VERSION}", "got 1"),
             "seed = 0\n", "seed = 0\nschema = 1\n"),
]


@pytest.mark.parametrize("case", SPEC_CASES, ids=lambda c: c.id)
def test_bad_spec(tmp_path, case):
    if case.path == "spec.toml":
        text = case.text
        if text is None:
            assert case.old in TINY_SPEC, case.old
            text = TINY_SPEC.replace(case.old, case.new, 1)
        (tmp_path / "spec.toml").write_bytes(text if isinstance(text, bytes) else text.encode())
    before = tree(tmp_path, set())
    args = ("project", "init", case.path) if case.command == "init" else ("validate", case.path)
    r = command(tmp_path, args)
    check_failure(r, case.needles)
    assert tree(tmp_path, set()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)  # no workspace, no .signac


# -- the finished campaign the workspace cases break --------------------------------------
@pytest.fixture(scope="session")
def finished_project(tmp_path_factory) -> tuple[Path, str]:
    """A signac project holding one tiny campaign run to its end (3 iterations, budget)."""
    d = tmp_path_factory.mktemp("bad-input-base")
    (d / "tiny.toml").write_text(TINY_SPEC)
    r = command(d, ("project", "init", "tiny.toml"))
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.split()[0]
    r = command(d, ("project", "run"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    doc = cio.read_json(d / "workspace" / job_id / DOC)
    assert (doc["iteration"], doc["phase"]) == (2, "done") and doc["status"] in ("budget", "converged")
    return d, job_id


def _job(d: Path, job_id: str) -> Path:
    return d / "workspace" / job_id


def rm(*rels: str) -> Callable[[Path], None]:
    def f(job: Path) -> None:
        for rel in rels:
            p = job / rel
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    return f


def tamper_array(rel: str) -> Callable[[Path], None]:
    """Change one number of an array file but keep its archive valid and its stored checksum."""
    def f(job: Path) -> None:
        with np.load(job / rel) as archive:
            arrays = {k: archive[k] for k in archive.files}
        arrays["features"] = arrays["features"].copy()
        arrays["features"].flat[0] += 1.0
        np.savez(job / rel, **arrays)
    return f


def garbage(rel: str, data: bytes = b"this is not what the file should hold") -> Callable[[Path], None]:
    return lambda job: (job / rel).write_bytes(data)


def truncate(rel: str) -> Callable[[Path], None]:
    def f(job: Path) -> None:
        data = (job / rel).read_bytes()
        (job / rel).write_bytes(data[: len(data) // 2])
    return f


def set_doc(**changes) -> Callable[[Path], None]:
    def f(job: Path) -> None:
        cio.write_json(job / DOC, {**cio.read_json(job / DOC), **changes})
    return f


def resume(phase: str, iteration: int = 2) -> Callable[[Path], None]:
    """Set the finished campaign back to `phase` of `iteration`, as an interrupted run left it."""
    def f(job: Path) -> None:
        doc = cio.read_json(job / DOC)
        doc.update(iteration=iteration, phase=phase, status="running", converged=False,
                   history=[h for h in doc["history"] if h["iteration"] < iteration])
        cio.write_json(job / DOC, doc)
    return f


def nan_positions(rel: str) -> Callable[[Path], None]:
    """A checkpoint whose positions hold a NaN, rewritten with a valid checksum."""
    def f(job: Path) -> None:
        state = cio.read_npz(job / rel)
        state["positions"][3, 0] = np.nan
        cio.write_npz(job / rel, **state)
    return f


def edit_spec(job: Path) -> None:
    sp = cio.read_json(job / SP)
    sp["spec"]["engine"]["steps"] = -1
    cio.write_json(job / SP, sp)


def set_sp(**changes) -> Callable[[Path], None]:
    """Change `section.key` values of the state point and move the job to the id of the new one,
    as signac's `job.sp[...] = ...` does."""
    def f(job: Path) -> None:
        sp = cio.read_json(job / SP)
        for dotted, value in changes.items():
            section, key = dotted.split("__")
            sp["spec"][section][key] = value
        cio.write_json(job / SP, sp)
        rehash(job)
    return f


def edit_spec_and_rehash(job: Path) -> None:
    """An invalid spec under a job id that matches it (as an older, laxer cvcycle could have made)."""
    from signac.job import calc_id

    edit_spec(job)
    job.rename(job.parent / calc_id(cio.read_json(job / SP)))


def set_schema(version: int | None) -> Callable[[Path], None]:
    """A state point of another spec schema version (None: without one, as cvcycle wrote it before versions)."""
    def f(job: Path) -> None:
        sp = cio.read_json(job / SP)
        sp["spec"]["campaign"].pop("schema")
        if version is not None:
            sp["spec"]["campaign"]["schema"] = version
        cio.write_json(job / SP, sp)
    return f


def rehash(job: Path) -> None:
    """Move the job to the id of its (edited) state point, as the cvcycle that wrote it would have."""
    from signac.job import calc_id

    job.rename(job.parent / calc_id(cio.read_json(job / SP)))


def twin_job(job: Path) -> None:
    shutil.copytree(job, job.parent / (job.name[:4] + "f" * (len(job.name) - 4)))


def chain(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def f(job: Path) -> None:
        for step in steps:
            step(job)
    return f


@dataclass(frozen=True)
class WorkspaceCase:
    id: str
    breaks: Callable[[Path], None]
    args: tuple[str, ...]  # "{id}", "{prefix}", "{id4}": the job id, its first 8 / 4 characters
    needles: tuple[str, ...]  # "{job}": the job directory's absolute path
    resumed: bool = False  # the job document was set back: a run may rewrite it (nothing else)


SHOW, SHOW_JSON, RUN = ("show", "{id}"), ("show", "{id}", "--json"), ("project", "run")
WORKSPACE_CASES = [
    # --- looking a campaign up, and its state point ---
    WorkspaceCase("show-unknown-job-id", lambda job: None, ("show", "zzzz"), ("no job matches 'zzzz'",)),
    WorkspaceCase("show-ambiguous-id-prefix", twin_job, ("show", "{id4}"), ("job id prefix", "is ambiguous: 2 jobs match")),
    WorkspaceCase("show-statepoint-missing", rm(SP), ("show", "{prefix}"),
                  ("{job} is not a campaign directory", f"no {SP}")),
    WorkspaceCase("show-statepoint-invalid-spec", edit_spec, SHOW, (f"{{job}}/{SP}", "engine.steps: must be >= 1, got -1")),
    WorkspaceCase("show-statepoint-without-spec", lambda job: cio.write_json(job / SP, {"seed": 0}), SHOW,
                  (f"{{job}}/{SP}", "not a cvcycle state point")),
    WorkspaceCase("run-statepoint-invalid-spec", edit_spec_and_rehash, RUN, ("engine.steps: must be >= 1, got -1",)),
    WorkspaceCase("run-statepoint-missing", rm(SP), RUN, (SP,)),
    WorkspaceCase("run-statepoint-edited-in-place", edit_spec, RUN, (SP,)),
    WorkspaceCase("show-statepoint-without-schema-version", set_schema(None), SHOW,
                  (f"{{job}}/{SP}: campaign spec of schema version 1", f"this cvcycle reads schema version {SCHEMA_VERSION}",
                   "python project.py init SPEC.toml")),
    WorkspaceCase("show-statepoint-newer-schema-version", set_schema(99), SHOW_JSON,
                  (f"{{job}}/{SP}: campaign spec of schema version 99 (made by a newer cvcycle)",)),
    WorkspaceCase("run-statepoint-without-schema-version", chain(set_schema(None), rehash), RUN,
                  (SP, "schema version 1", f"reads schema version {SCHEMA_VERSION}", "python project.py init SPEC.toml")),
    WorkspaceCase("run-statepoint-segment-changed-after-start", chain(resume("train"), set_sp(engine__segment_steps=100)),
                  RUN, (SP, "the campaign spec changed after the campaign started (engine.segment_steps: 200 -> 100)",
                        "python project.py init"), resumed=True),
    WorkspaceCase("run-statepoint-temperature-changed-after-start", chain(resume("train"), set_sp(system__temperature=3.0)),
                  RUN, ("changed after the campaign started (system.temperature: 1.0 -> 3.0)",), resumed=True),
    WorkspaceCase("run-statepoint-budget-changed-after-start", chain(resume("train"), set_sp(budget__max_iterations=5)),
                  RUN, ("budget.max_iterations: 3 -> 5", "python -m cvcycle extend"), resumed=True),
    WorkspaceCase("extend-not-a-run-setting", lambda job: None, ("extend", "{id}", "--set", "engine.steps=5"),
                  ("--set engine.steps: only the run settings change after a campaign is created (budget.*, resources.*, "
                   "analysis.plots); engine.steps describes the campaign itself",)),
    WorkspaceCase("extend-below-what-is-spent", lambda job: None, ("extend", "{id}", "--set", "budget.max_total_steps=5000"),
                  ("budget.max_total_steps: the campaign has spent 8,000 walker steps, got 5,000",)),
    WorkspaceCase("extend-invalid-value", lambda job: None, ("extend", "{id}", "--set", "resources.cpus=0"),
                  ("resources.cpus: must be >= 1, got 0",)),
    WorkspaceCase("extend-not-a-value", lambda job: None, ("extend", "{id}", "--set", "budget.max_iterations=many"),
                  ("--set budget.max_iterations: 'many' is not a TOML value",)),
    WorkspaceCase("extend-converged-campaign", set_doc(status="converged", converged=True),
                  ("extend", "{id}", "--set", "budget.max_iterations=9"), ("has converged",)),
    WorkspaceCase("run-not-a-signac-project", rm("../../.signac"), RUN, ("no signac project here",)),
    # --- the job document ---
    WorkspaceCase("show-document-truncated", truncate(DOC), SHOW, ("corrupted JSON file", f"{{job}}/{DOC}")),
    WorkspaceCase("run-document-truncated", truncate(DOC), RUN, ("corrupted JSON file", f"{{job}}/{DOC}")),
    WorkspaceCase("show-document-not-an-object", lambda job: cio.write_json(job / DOC, []), SHOW,
                  (f"{{job}}/{DOC}", "expected a JSON object")),
    WorkspaceCase("show-document-missing", rm(DOC), SHOW, (f"{{job}}/{DOC} is missing", "progress record is lost")),
    WorkspaceCase("run-document-missing", rm(DOC), RUN, (DOC,)),
    WorkspaceCase("show-unknown-phase", set_doc(phase="trian", status="running"), SHOW,
                  (f"{{job}}/{DOC}", "unknown phase 'trian'")),
    WorkspaceCase("run-unknown-phase", set_doc(phase="trian", status="running"), RUN, ("phase", "'trian'"),
                  resumed=True),
    WorkspaceCase("show-unknown-status", set_doc(status="finished"), SHOW, (f"{{job}}/{DOC}", "unknown status 'finished'")),
    WorkspaceCase("show-converged-not-a-boolean", set_doc(converged="no"), SHOW_JSON,
                  (f"{{job}}/{DOC}", "converged must be true or false, got 'no'")),
    WorkspaceCase("show-iteration-not-an-integer", set_doc(iteration="two"), SHOW_JSON,
                  (f"{{job}}/{DOC}", "iteration must be a non-negative integer, got 'two'")),
    WorkspaceCase("show-iteration-beyond-folders", set_doc(iteration=7, phase="simulate", status="running"), SHOW,
                  ("missing iteration folder {job}/iter-003", "iteration 7")),
    WorkspaceCase("run-iteration-beyond-folders", resume("train", 7), RUN, ("{job}/iter-003",), resumed=True),
    # --- iteration folders and their files ---
    WorkspaceCase("show-earlier-iteration-folder-deleted", rm("iter-001"), SHOW, ("missing iteration folder {job}/iter-001",)),
    WorkspaceCase("run-earlier-iteration-folder-deleted", chain(resume("train"), rm("iter-001")), RUN,
                  ("missing iteration folder {job}/iter-001 (",), resumed=True),
    WorkspaceCase("run-current-iteration-folder-deleted", chain(resume("train"), rm("iter-002")), RUN,
                  ("missing iteration folder {job}/iter-002 (",), resumed=True),
    WorkspaceCase("run-needed-input-missing", chain(resume("analyze"), rm("iter-002/model.npz")), RUN,
                  ("missing file", "{job}/iter-002/model.npz"), resumed=True),
    WorkspaceCase("show-cv-model-garbage", garbage("iter-002/cv.pt"), SHOW_JSON,
                  ("unreadable TorchScript CV {job}/iter-002/cv.pt",)),
    WorkspaceCase("show-cv-model-truncated", truncate("iter-002/cv.pt"), SHOW,
                  ("unreadable TorchScript CV {job}/iter-002/cv.pt",)),
    WorkspaceCase("show-cv-model-missing", rm("iter-002/cv.pt"), SHOW_JSON, ("missing file {job}/iter-002/cv.pt",)),
    WorkspaceCase("show-fes-truncated", truncate("iter-002/fes.npz"), SHOW, ("checksum mismatch", "{job}/iter-002/fes.npz")),
    WorkspaceCase("run-model-npz-garbage", chain(resume("train"), garbage("iter-001/model.npz")), RUN,
                  ("checksum mismatch", "{job}/iter-001/model.npz"), resumed=True),
    WorkspaceCase("run-model-npz-other-shapes",
                  chain(resume("train"), lambda job: cio.write_npz(job / "iter-001/model.npz", **{
                      **cio.read_npz(job / "iter-001/model.npz"), "cv_scale": np.zeros((3, 3), np.float32)})), RUN,
                  ("{job}/iter-001/model.npz does not match its architecture", "cv_scale"), resumed=True),
    WorkspaceCase("run-model-description-without-architecture",
                  chain(resume("train"), lambda job: cio.write_json(job / "iter-001/model.npz.json", {"kind": "autoencoder"})),
                  RUN, ("{job}/iter-001/model.npz.json is not a valid autoencoder architecture",), resumed=True),
    WorkspaceCase("run-samples-truncated", chain(resume("train"), truncate("iter-000/samples.npz")), RUN,
                  ("checksum mismatch", "{job}/iter-000/samples.npz"), resumed=True),
    WorkspaceCase("run-samples-checksum-mismatch",
                  chain(resume("train"), tamper_array("iter-001/samples.npz")),
                  RUN, ("checksum mismatch", "{job}/iter-001/samples.npz"), resumed=True),
    # --- non-finite simulation state ---
    WorkspaceCase("run-nan-in-current-checkpoint",
                  chain(resume("simulate"), rm("iter-002/samples.npz", "iter-002/trajectory.npz",
                                               "iter-002/sim/checkpoint-0002.npz"),
                        nan_positions("iter-002/sim/checkpoint-0001.npz")), RUN,
                  ("iteration 2", "finite", "iter-002/sim/checkpoint-0001.npz"), resumed=True),
    WorkspaceCase("run-nan-in-previous-final-checkpoint",
                  chain(resume("simulate"), rm("iter-002"), nan_positions("iter-001/sim/checkpoint-0002.npz")), RUN,
                  ("iteration 2", "finite", "iter-001/sim/checkpoint-0002.npz"), resumed=True),
]


def _param(case: WorkspaceCase):
    return pytest.param(case, id=case.id)


@pytest.mark.parametrize("case", [_param(c) for c in WORKSPACE_CASES])
def test_broken_workspace(finished_project, tmp_path, case):
    base, job_id = finished_project
    d = tmp_path / "project"
    shutil.copytree(base, d, symlinks=True)
    case.breaks(_job(d, job_id))
    ignore = {".cvcycle.lock", "campaign.log"} | ({DOC} if case.resumed else set())  # the log records the attempt
    before = tree(d, ignore)
    args = tuple(a.format(id=job_id, prefix=job_id[:8], id4=job_id[:4]) for a in case.args)
    r = command(d, args)
    job_dir = str(_job(d, job_id))
    check_failure(r, tuple(n.replace("{job}", job_dir) for n in case.needles))
    after = tree(d, ignore)
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert not changed, f"files modified or removed: {changed}"


def test_verify_lists_every_damaged_file_and_passes_an_intact_campaign(finished_project, tmp_path):
    base, job_id = finished_project
    d = tmp_path / "project"
    shutil.copytree(base, d, symlinks=True)
    r = command(d, ("verify", job_id[:8]))
    assert r.returncode == 0 and r.stdout.startswith(f"ok: campaign {job_id}: ") and "files intact" in r.stdout, r.stderr
    job = _job(d, job_id)
    damaged = ["iter-001/samples.npz", "iter-002/cv.pt", "iter-002/metrics.json", "iter-000/samples.npz"]
    (job / damaged[0]).write_bytes((job / damaged[0]).read_bytes()[:100])
    garbage(damaged[1])(job)
    truncate(damaged[2])(job)
    tamper_array(damaged[3])(job)  # a number changed under the stored checksum
    before = tree(d, {".cvcycle.lock"})
    r = command(d, ("verify", job_id))
    check_failure(r, (f"campaign {job_id}: 4 problem(s)",))
    listed = [line for line in r.stdout.splitlines() if line.startswith("damaged: ")]
    assert len(listed) == 4 and all(any(str(job / rel) in line for line in listed) for rel in damaged), r.stdout
    assert tree(d, {".cvcycle.lock"}) == before


@pytest.mark.parametrize("value", ["abc", "nan", "-5"])
def test_a_bad_walltime_variable_is_one_error_and_changes_nothing(finished_project, tmp_path, value):
    base, job_id = finished_project
    d = tmp_path / "project"
    shutil.copytree(base, d, symlinks=True)
    resume("train")(_job(d, job_id))
    before = tree(d, {".cvcycle.lock", "campaign.log"})
    r = command(d, ("project", "run"), CVCYCLE_WALLTIME_SECONDS=value)
    check_failure(r, (f"CVCYCLE_WALLTIME_SECONDS: expected a positive number of seconds, got '{value}'",))
    assert tree(d, {".cvcycle.lock", "campaign.log"}) == before
