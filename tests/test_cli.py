"""End-to-end tests of the command line: project.py init/run/status/submit and python -m cvcycle.

One tiny campaign pair (2 seeds, 2 iterations, a few hundred steps) is run once per module
through `python project.py run` in a temporary signac project; the other tests read it.
"""

from __future__ import annotations

import csv
import fcntl
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "project.py"
SPEC = ROOT / "workflows" / "mueller-brown-autoencoder.toml"

TINY = {
    "engine": {"walkers": 8, "initial_steps": 200, "steps": 400, "segment_steps": 200, "report_stride": 10},
    "learner": {"epochs": 5, "max_samples": 2000},
    "analysis": {"grid_bins": 40},
    "budget": {"max_iterations": 2},
    "convergence": {"min_iterations": 2},
}


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def to_toml(table: dict, prefix: tuple[str, ...] = ()) -> str:
    """A minimal TOML writer for specs: nested tables of scalars and lists."""
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    lines = [f"[{'.'.join(prefix)}]"] if prefix and scalars else []
    lines += [f"{k} = {_toml_value(v)}" for k, v in scalars.items()]
    text = "\n".join(lines) + "\n"
    for k, v in table.items():
        if isinstance(v, dict):
            text += to_toml(v, prefix + (k,))
    return text


def write_spec(path: Path, **changes: dict) -> Path:
    spec = tomllib.loads(SPEC.read_text())
    for section, values in {**TINY, **changes}.items():
        spec.setdefault(section, {}).update(values)
    path.write_text(to_toml(spec))
    return path


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k != "CVCYCLE_WALLTIME_SECONDS"}
    e["SIGNAC_FLOW_ENVIRONMENT"] = "StandardEnvironment"  # no scheduler queries, even where SLURM is installed
    return e


def project(cwd: Path, *args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROJECT), *args], cwd=cwd, env={**env(), **(extra_env or {})},
                          capture_output=True, text=True, timeout=300)


def cvcycle(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cvcycle", *args], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=60)


def show_json(cwd: Path, ref: str) -> dict:
    r = cvcycle(cwd, "show", ref, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A signac project with two tiny campaigns run to completion by `project.py run`."""
    d = tmp_path_factory.mktemp("campaigns")
    spec = write_spec(d / "tiny.toml")
    r = project(d, "init", str(spec), "--seeds", "2")
    assert r.returncode == 0, r.stderr
    assert [line.split()[2:] for line in r.stdout.splitlines()] == [["seed", "0", "created"], ["seed", "1", "created"]]
    ids = [line.split()[0] for line in r.stdout.splitlines()]
    r = project(d, "run")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return d, ids


def test_init_is_idempotent_and_accepts_seed_lists(tmp_path):
    spec = write_spec(tmp_path / "tiny.toml")
    first = project(tmp_path, "init", str(spec), "--seed-list", "3", "7")
    again = project(tmp_path, "init", str(spec), "--seed-list", "7")
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert first.stdout.split()[-4:] == ["mueller-brown-autoencoder", "seed", "7", "created"]
    assert again.stdout.split() == first.stdout.split()[-5:-1] + ["exists"]
    sp = json.loads((tmp_path / "workspace" / again.stdout.split()[0] / "signac_statepoint.json").read_text())
    assert sp["spec"]["campaign"]["seed"] == 7 and sp["spec"]["engine"]["walkers"] == 8


def test_init_of_the_same_campaign_with_another_budget_points_to_extend(tmp_path):
    first = project(tmp_path, "init", str(write_spec(tmp_path / "a.toml")))
    job_id = first.stdout.split()[0]
    larger = write_spec(tmp_path / "b.toml", budget={"max_iterations": 9}, resources={"walltime_hours": 3.0})
    r = project(tmp_path, "init", str(larger), "--seed-list", "0", "1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == (f"{job_id}  mueller-brown-autoencoder  seed 0  exists with other run settings "
                        f"(change them with `python -m cvcycle extend {job_id[:8]} --set ...`)")
    assert lines[1].endswith("seed 1  created")  # another seed is another campaign
    assert len(list((tmp_path / "workspace").iterdir())) == 2


def test_init_rejects_bad_spec_with_field_name(tmp_path):
    spec = write_spec(tmp_path / "bad.toml", engine={"walkers": -3})
    r = project(tmp_path, "init", str(spec))
    assert r.returncode == 2
    assert "engine.walkers" in r.stderr and r.stderr.startswith("error: ")
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "workspace").exists()


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_run_finishes_every_campaign(finished):
    d, ids = finished
    assert sorted(p.name for p in (d / "workspace").iterdir()) == sorted(ids)
    for job_id in ids:
        s = show_json(d, job_id[:8])
        assert s["id"] == job_id and s["seed"] in (0, 1)
        assert s["status"] in ("converged", "budget") and s["phase"] == "done"
        assert s["iteration"] >= 1 and s["features"] == ["x", "y"]
        n_iter = len(s["iterations"])
        assert n_iter == s["iteration"] + 1 and s["metrics"]["iteration"] == s["iteration"]
        assert s["total_steps"] == 8 * (200 + 400 * (n_iter - 1))
        cv = torch.jit.load(s["cv_model"])
        assert tuple(cv(torch.zeros(5, 2)).shape) == (5, 1)
        assert Path(s["cv_model"]).parent.name == f"iter-{s['iteration']:03d}"
        with np.load(s["fes"]) as fes:
            assert "F_xy" in fes.files
        assert Path(s["plots"]["convergence"]).is_file() and set(s["plots"]) <= {"convergence", "fes_xy", "fes_cv"}
        assert {"iteration", "cv_r2", "fes_change", "fes_rmse_exact", "committor_r2", "converged"} <= set(s["iterations"][-1])


def test_status_shows_labels(finished):
    d, ids = finished
    r = project(d, "status", "-d")
    assert r.returncode == 0, r.stderr
    for job_id in ids:
        line = next(line for line in r.stdout.splitlines() if line.startswith(job_id))
        assert "iteration 1 done, 4,800 steps" in line and "checkpoint 20" in line
        assert ("budget" in line and "checks failed: " in line) or "converged" in line
    # the overview: one row per state the campaigns are in, one progress row per campaign at most
    overview = r.stdout.split("Detailed View")[0]
    rows = [line for line in overview.splitlines() if "|" in line and "/2 (" in line]
    assert 3 <= len(rows) <= 4, overview


def test_a_failed_campaign_shows_as_failed_and_is_not_run_again_until_asked(finished, tmp_path):
    import shutil

    d = tmp_path / "p"
    shutil.copytree(finished[0], d, symlinks=True)
    doc_path = d / "workspace" / finished[1][0] / "signac_job_document.json"
    doc = json.loads(doc_path.read_text())
    doc.update(status="running", phase="simulate", iteration=2, last_error={"time": "t", "iteration": 2, "phase": "simulate",
                                                                              "message": "simulation diverged at step 9"})
    doc_path.write_text(json.dumps(doc))
    r = project(d, "status", "-d")
    line = next(line for line in r.stdout.splitlines() if line.startswith(finished[1][0]))
    assert ", failed, iteration 2 simulate" in line and "error in iteration 2 simulate: simulation diverged at step 9" in line
    r = project(d, "run")
    assert r.returncode == 0 and "[iter" not in r.stdout + r.stderr, r.stderr
    assert json.loads(doc_path.read_text()) == doc  # not eligible: untouched


def test_second_run_does_nothing(finished):
    d, ids = finished
    docs = [d / "workspace" / i / "signac_job_document.json" for i in ids]
    before = [p.read_text() for p in docs]
    r = project(d, "run")
    assert r.returncode == 0, r.stderr
    assert "[iter" not in r.stdout + r.stderr
    assert [p.read_text() for p in docs] == before


def test_show_report_and_lookup(finished):
    d, ids = finished
    r = cvcycle(d, "show", ids[0])
    assert r.returncode == 0, r.stderr
    assert "mueller-brown-autoencoder" in r.stdout and "committor_r2" in r.stdout and "cv.pt" in r.stdout
    by_path = show_json(d.parent, str(d / "workspace" / ids[1]))  # a job directory works from anywhere
    assert by_path["id"] == ids[1]

    missing = cvcycle(d, "show", "zzzz")
    assert missing.returncode == 2 and "no job matches 'zzzz'" in missing.stderr and "Traceback" not in missing.stderr
    ws = d.parent / "twins" / "workspace"
    for name in ("abc1", "abc2"):
        shutil.copytree(d / "workspace" / ids[0], ws / name)
    ambiguous = cvcycle(ws.parent, "show", "abc")
    assert ambiguous.returncode == 2 and "ambiguous" in ambiguous.stderr and "Traceback" not in ambiguous.stderr
    assert show_json(ws.parent, "abc2")["id"] == "abc2"


def test_show_unstarted_campaign_and_operation_errors(tmp_path):
    spec = write_spec(tmp_path / "tiny.toml")
    job_id = project(tmp_path, "init", str(spec)).stdout.split()[0]
    s = show_json(tmp_path, job_id)
    assert (s["iteration"], s["phase"], s["status"]) == (0, "simulate", "running")
    assert s["cv_model"] is None and s["fes"] is None and s["metrics"] is None
    assert s["iterations"] == [] and s["plots"] == {}

    # A campaign held by another process: one line naming the campaign, no traceback.
    with open(tmp_path / "workspace" / job_id / ".cvcycle.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        r = project(tmp_path, "run")
    assert r.returncode == 2
    assert f"error: campaign {job_id}:" in r.stderr and "being run by" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_validate(tmp_path):
    r = cvcycle(tmp_path, "validate", str(SPEC))
    assert (r.returncode, r.stdout.strip()) == (0, "ok: mueller-brown-autoencoder")
    bad = write_spec(tmp_path / "bad.toml", learner={"epochz": 3})
    r = cvcycle(tmp_path, "validate", str(bad))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "learner.epochz" in r.stderr
    assert "Traceback" not in r.stderr
    r = cvcycle(tmp_path, "validate", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "not found" in r.stderr


def test_submit_script_renders_for_slurm(tmp_path):
    """Render templates/script.sh through `submit --pretend` with stand-in sbatch/squeue."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {"sbatch": 'echo "slurm 22.05.8"', "squeue": "exit 0"}.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    spec = write_spec(tmp_path / "tiny.toml", resources={"cpus": 2, "gpus": 1, "memory_gb": 3.5, "walltime_hours": 2.0})
    job_id = project(tmp_path, "init", str(spec)).stdout.split()[0]
    r = project(tmp_path, "submit", "--pretend", "--force", extra_env={  # --force: GPUs on a generic partition
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SIGNAC_FLOW_ENVIRONMENT": "DefaultSlurmEnvironment"})
    assert r.returncode == 0, r.stderr
    script = r.stdout
    assert script.lstrip().startswith("#!/bin/bash")
    assert "#SBATCH -t 02:00:00" in script and "#SBATCH --cpus-per-task=2" in script
    assert "#SBATCH --gres=gpu:1" in script and "#SBATCH --mem=3584M" in script
    assert "export OMP_NUM_THREADS=2" in script
    assert "export CVCYCLE_WALLTIME_SECONDS=6600" in script  # 2 h less a 10-minute safety margin
    assert f"project.py run -o advance -j {job_id}" in script
    assert "VIRTUAL_ENV" in script


def test_help_lists_init_with_and_without_a_project(tmp_path):
    r = project(tmp_path, "-h")  # no project yet
    assert r.returncode == 0 and "init SPEC.toml [--seeds N|A-B]" in r.stdout and "no signac project here yet" in r.stdout
    assert project(tmp_path, "init", str(SPEC)).returncode == 0
    r = project(tmp_path, "-h")
    assert r.returncode == 0, r.stderr
    assert "{status,next,run,submit,exec}" in r.stdout and "init SPEC.toml [--seeds N|A-B]" in r.stdout


def test_submit_without_a_scheduler_is_one_clear_error(tmp_path):
    assert project(tmp_path, "init", str(SPEC)).returncode == 0
    r = project(tmp_path, "submit", "--pretend")  # the test environment has no scheduler
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: no batch scheduler on this machine")


def test_init_warns_that_a_cpu_engine_leaves_gpus_idle(tmp_path):
    spec = write_spec(tmp_path / "gpu.toml", resources={"gpus": 1})
    r = project(tmp_path, "init", str(spec))
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("warning: resources.gpus = 1: engine.name = 'langevin' runs on the CPU")
    assert "created" in r.stdout
    assert "warning" not in project(tmp_path, "init", str(write_spec(tmp_path / "cpu.toml"))).stderr


def test_bad_jobs_are_skipped_and_reported_and_the_other_campaigns_run(tmp_path):
    """A foreign signac job and the empty folder an interrupted init leaves do not stop `run`:
    the campaign runs to its end, the empty folder is removed (it held nothing), and the foreign
    job is named in one error line with exit status 2."""
    import signac

    spec = write_spec(tmp_path / "tiny.toml", budget={"max_iterations": 2}, convergence={"min_iterations": 2})
    r = project(tmp_path, "init", str(spec))
    assert r.returncode == 0, r.stderr
    campaign = r.stdout.split()[0]
    foreign = signac.get_project(str(tmp_path)).open_job({"a": 1}).init().id
    empty = tmp_path / "workspace" / ("0" * 32)
    empty.mkdir()
    r = project(tmp_path, "run")
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines == [f"warning: removed the empty job folder {empty} (left by an interrupted init; it held no data)",
                     f"error: job {foreign} skipped: {tmp_path / 'workspace' / foreign / 'signac_statepoint.json'}: not a "
                     "cvcycle state point (expected {\"spec\": {...}}) (the other campaigns ran)"]
    assert show_json(tmp_path, campaign)["status"] in ("converged", "budget") and not empty.exists()
    out = [line for line in r.stdout.splitlines() if line.strip() and not line.startswith(("Using environment", "Fetching"))]
    assert out and all(line.startswith(f"[{campaign[:8]}] ") for line in out), out[:5]  # whose line it is
    assert out[-1].startswith(f"[{campaign[:8]}] summary: mueller-brown-autoencoder seed 0: ")


def test_each_campaign_keeps_a_log_file_with_times_levels_and_a_summary(finished):
    import re

    d, ids = finished
    for seed, job_id in enumerate(ids):
        lines = (d / "workspace" / job_id / "campaign.log").read_text().splitlines()
        assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 (INFO|WARNING|ERROR) ", line) for line in lines)
        assert any("[iter 0 simulate] unbiased: segment 1/" in line and "elapsed" in line for line in lines)
        assert re.search(rf"INFO summary: mueller-brown-autoencoder seed {seed}: (budget|converged) at iteration 1, "
                         r"4,800 walker steps, \d+ s in this run", lines[-1]), lines[-1]


def test_init_creates_a_job_whose_folder_exists_without_its_state_point(tmp_path):
    spec = write_spec(tmp_path / "tiny.toml")
    job_id = project(tmp_path, "init", str(spec)).stdout.split()[0]
    (tmp_path / "workspace" / job_id / "signac_statepoint.json").unlink()  # as a killed init leaves it
    r = project(tmp_path, "init", str(spec))
    assert r.returncode == 0 and r.stdout.split()[-1] == "created", r.stderr
    assert (tmp_path / "workspace" / job_id / "signac_statepoint.json").is_file()


def test_compare_tables_and_plots_of_finished_campaigns(finished, tmp_path):
    d, ids = finished
    r = cvcycle(d, "compare", "--format", "csv")
    assert r.returncode == 0, r.stderr
    (group,) = list(csv.DictReader(io.StringIO(r.stdout)))
    r2 = [show_json(d, i)["metrics"]["committor_r2"] for i in ids]
    assert group["seeds"] == "2" and float(group["committor_r2_mean"]) == pytest.approx(np.mean(r2))
    assert float(group["committor_r2_ci95"]) == pytest.approx(12.706 * abs(r2[0] - r2[1]) / 2, rel=1e-3)
    assert float(group["wall_s_mean"]) > 0 and group["walker_steps_n"] == "2"
    assert "compared 2 campaigns in 1 groups" in r.stderr
    r = cvcycle(d, "compare", ids[1][:8], "--campaigns", "--out", str(tmp_path / "cmp"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and lines[1].split()[:3] == ["mueller-brown-autoencoder", "1", show_json(d, ids[1])["status"]]
    assert (tmp_path / "cmp" / "convergence.pdf").is_file() and (tmp_path / "cmp" / "groups.csv").is_file()
    bad = cvcycle(d, "compare", "bias.nope=1")
    assert bad.returncode == 2 and bad.stderr.startswith("error: filter 'bias.nope=1': bias.nope is not a spec key")
    none = cvcycle(d, "compare", "status=running")
    assert none.returncode == 2 and "no campaign in workspace matches status=running" in none.stderr


def test_load_gives_the_campaigns_data_models_and_fes(tmp_path):
    import cvcycle as package

    # a ~2 kT barrier and longer steps: walkers cross between the states in a tiny run
    engine = {**TINY["engine"], "initial_steps": 1000, "steps": 2000, "segment_steps": 1000, "dt": 5e-3}
    spec = write_spec(tmp_path / "low.toml", system={"scale": 0.02}, engine=engine)
    job = project(tmp_path, "init", str(spec)).stdout.split()[0]
    run = project(tmp_path, "run")
    assert run.returncode == 0, run.stderr[-3000:]
    r = package.load(job[:10], workspace=tmp_path / "workspace")
    s = show_json(tmp_path, job)
    assert r.status == s["status"] and len(r.history) == len(s["iterations"]) and r.iterations == [0, 1]
    assert set(r.seconds) == {"simulate", "train", "analyze"} and all(v > 0 for v in r.seconds.values())
    samples, w = r.samples(), r.weights()
    assert samples["features"].shape[:2] == w.shape and w.sum() == pytest.approx(1.0)
    with torch.no_grad():  # the CV that biased iteration 1 is the one trained in iteration 0
        cv = r.cv_model(0)(torch.as_tensor(samples["features"][:5, 0], dtype=torch.float32)).numpy()
    np.testing.assert_allclose(cv, samples["cv"][:5, 0], rtol=1e-4, atol=1e-4)
    fes = r.fes(bootstrap=20)
    assert fes.iterations == r.history[-1]["fes_iterations"] and fes.iterations
    stored = np.load(tmp_path / "workspace" / job / "iter-001" / "fes.npz")
    np.testing.assert_array_equal(fes.F, stored["F_xy"])  # the same estimate the campaign recorded
    filled = np.isfinite(fes.F)
    assert filled.sum() > 50 and np.isfinite(fes.error[filled]).mean() > 0.9 and np.nanmin(fes.error) >= 0
    assert np.nanmedian(fes.error[filled & (fes.F < 3)]) < np.nanmedian(fes.error[filled & (fes.F > 3)])
    assert fes.coordinates == ("x", "y")
    with pytest.raises(Exception, match="iteration 5 has no cv.pt"):
        r.cv_model(5)

    figure = cvcycle(tmp_path, "figure", job[:8])
    assert figure.returncode == 0, figure.stderr
    assert [Path(p).name for p in figure.stdout.split()] == ["summary.png", "summary.pdf"]
    assert all(Path(p).stat().st_size > 20_000 for p in figure.stdout.split())

    # export: PLUMED reads the particle's position; mlcolvar's AutoEncoderCV gives the same CV
    out = tmp_path / "plumed"
    assert cvcycle(tmp_path, "export", job[:8], "--format", "plumed", "--out", str(out)).returncode == 0
    dat = (out / "plumed.dat").read_text().splitlines()
    assert dat[2:] == ["UNITS NATURAL  # the system's reduced units (kB = 1: TEMP is kT)", "p0: POSITION ATOM=1 NOPBC",
                       "cv: PYTORCH_MODEL FILE=model.ptc ARG=p0.x,p0.y",
                       "opes: OPES_METAD ARG=cv.node-0 PACE=50 SIGMA=0.035 TEMP=1 BARRIER=11 STATE_RFILE=STATE RESTART=YES",
                       "PRINT ARG=cv.node-0,opes.bias STRIDE=10 FILE=COLVAR"]
    info = json.loads((out / "export.json").read_text())
    assert info["max_abs_difference"] == 0.0
    # no iteration 2 yet: the bias is the one iteration 2 would start with (tests/test_plumed_state.py reads it)
    assert info["bias"].endswith("primed from iterations <= 1 as iteration 2 would start")
    assert (out / "STATE").read_text().startswith("#! FIELDS time cv.node-0 sigma_cv.node-0 height\n")
    if importlib.util.find_spec("mlcolvar") is None:
        pytest.skip("mlcolvar is not installed (pip install -e '.[export]')")
    assert cvcycle(tmp_path, "export", job[:8], "--format", "mlcolvar", "--out", str(tmp_path / "ml")).returncode == 0
    np.save(tmp_path / "x.npy", r.samples()["features"].reshape(-1, 2).astype(np.float32))
    assert mlcolvar_difference(tmp_path / "ml" / "cv.ckpt", "AutoEncoderCV", tmp_path / "x.npy",
                               tmp_path / "workspace" / job / "iter-001" / "cv.pt") < 1e-6


def mlcolvar_difference(ckpt: Path, cls: str, features: Path, cv_pt: Path) -> float:
    """The largest |difference| between mlcolvar's `cls` restored from `ckpt` and the campaign's cv.pt
    on the features, in a fresh process, as a user would load it (and lightning stays out of
    this test process, which forks training workers later)."""
    code = ("import sys, numpy as np, torch, mlcolvar.cvs as m; "
            "x = torch.as_tensor(np.load(sys.argv[3])); "
            "a = getattr(m, sys.argv[2]).load_from_checkpoint(sys.argv[1]).eval(); b = torch.jit.load(sys.argv[4]); "
            "print(float((a(x) - b(x)).abs().max().detach()))")
    r = subprocess.run([sys.executable, "-c", code, str(ckpt), cls, str(features), str(cv_pt)], capture_output=True,
                       text=True, timeout=300, env=env())
    assert r.returncode == 0, r.stderr[-3000:]
    return float(r.stdout.split()[-1])


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(_chromium() is None, reason="no Chromium for the headless-browser test (apt-get install chromium)")
def test_dashboard_shows_the_campaigns_in_a_real_browser(finished, tmp_path):
    pytest.importorskip("signac_dashboard", reason="signac-dashboard is not installed (pip install -e '.[dashboard]')")
    import matplotlib.image
    import time
    import urllib.request

    d, ids = finished
    port = _free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "dashboard.py"), "run", "--port", str(port)], cwd=d,
                              env={**env(), "CVCYCLE_DASHBOARD_TOKEN": "t0ken"}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    def browse(*args: str) -> str:  # one browser run: log in, land on the project page
        r = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            f"--user-data-dir={tmp_path / 'profile'}", *args, f"http://127.0.0.1:{port}/login?token=t0ken"],
                           capture_output=True, text=True, timeout=120)
        return r.stdout

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, server.stdout.read()
                time.sleep(0.5)
        home = browse("--dump-dom")
        assert "Comparison (python -m cvcycle compare)" in home
        assert home.count("<td>mueller-brown-autoencoder</td>") == 3  # one group row, two campaign rows
        browse(f"--screenshot={tmp_path / 'home.png'}", "--window-size=1200,1000")
        image = matplotlib.image.imread(tmp_path / "home.png")
        assert image.shape[:2] == (1000, 1200) and image[..., :3].std() > 0.1  # drawn, not a blank page
        # a campaign's page, as the server renders it (the session cookie of a login kept by urllib)
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        opener.open(f"http://127.0.0.1:{port}/login?token=t0ken", timeout=30)
        job = opener.open(f"http://127.0.0.1:{port}/jobs/{ids[0]}", timeout=60).read().decode()
        assert "mueller-brown-autoencoder seed 0" in job and "walker steps" in job and "convergence.png" in job
    finally:
        server.terminate()
        server.wait(timeout=30)
