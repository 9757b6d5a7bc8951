"""Forked workers (cvcycle.forked): results, log lines and errors come back, a failed task
stops the rest, workers die with their parent, and an ensemble fitted in two processes is bit
for bit the ensemble fitted in one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cvcycle import io as cio
from cvcycle.campaign import Campaign
from cvcycle.errors import SimulationError
from cvcycle.forked import WorkerTraceback, fork_map, usable_workers
from test_campaign import make_campaign, tiny_spec

pytestmark = pytest.mark.skipif(usable_workers(2) < 2, reason="needs Linux and two usable cores")


def test_results_and_log_lines_come_back_from_worker_processes():
    def task(i):
        def run(log):
            log(f"task {i} in pid {os.getpid()}")
            return i, os.getpid(), torch.full((3,), float(i)), torch.get_num_threads()
        return run

    lines: list[str] = []
    results = fork_map([task(i) for i in range(3)], 2, lines.append)
    assert [r[0] for r in results] == [0, 1, 2]
    pids = {r[1] for r in results}
    assert os.getpid() not in pids and len(pids) == 3
    assert all(torch.equal(r[2], torch.full((3,), float(r[0]))) and r[3] == 1 for r in results)
    assert sorted(lines) == sorted(f"task {i} in pid {pid}" for i, pid, *_ in results)


def _touching(path: Path, value: str, delay: float = 0.0):
    """A task that waits `delay` s, creates `path` and returns `value`."""
    def task(log):
        time.sleep(delay)
        path.touch()
        return value
    return task


def test_an_error_is_raised_in_the_parent_after_the_running_tasks_and_no_further_task_starts(tmp_path):
    def fails(log):
        log("about to fail")
        raise SimulationError("NaN at step 7")

    late = _touching(tmp_path / "started", "late")
    lines: list[str] = []
    with pytest.raises(SimulationError, match="NaN at step 7") as raised:
        fork_map([fails, _touching(tmp_path / "slow finished", "slow", 1.0), late, late], 2, lines.append)
    assert isinstance(raised.value.__cause__, WorkerTraceback)
    assert "in fails" in str(raised.value.__cause__)  # the worker's traceback, for debugging
    assert lines == ["about to fail"]
    assert (tmp_path / "slow finished").exists() and not (tmp_path / "started").exists()


def test_a_killed_worker_yields_none_for_the_caller_to_rerun(tmp_path):
    def killed(log):
        os.kill(os.getpid(), signal.SIGKILL)

    slow = _touching(tmp_path / "slow finished", "slow", 1.0)
    assert fork_map([killed, slow, _touching(tmp_path / "started", "late")], 2, print) == [None, "slow", None]
    assert not (tmp_path / "started").exists()
    assert fork_map([slow, slow], 1, print) == [None, None]  # one worker: the caller runs them


def test_no_workers_inside_a_daemonic_pool_worker():
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(usable_workers, (2,)) == 0
    assert usable_workers(2) == 2 and usable_workers(1) == 1


def test_workers_die_with_their_parent(tmp_path):
    script = f"""
import os, time
from cvcycle.forked import fork_map
def sleeper(log):
    open(os.path.join({str(tmp_path)!r}, str(os.getpid())), "w").close()
    time.sleep(120)
fork_map([sleeper, sleeper], 2, print)
"""
    parent = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = [int(p.name) for p in tmp_path.iterdir()]
    assert len(workers) == 2
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for its new parent to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_an_ensemble_fitted_in_two_processes_equals_one_fitted_in_one(tmp_path):
    from cvcycle.loop import advance

    trained = {}
    for cpus in (1, 2):
        spec = tiny_spec(learner={"ensemble": 3, "epochs": 6}, budget={"max_iterations": 2},
                         convergence={"min_iterations": 2}, resources={"cpus": cpus})
        path = make_campaign(tmp_path / f"cpus{cpus}", spec)
        lines: list[str] = []
        advance(path, log=lines.append)
        assert Campaign(path).finished
        assert any("fitting 3 members in 2 processes" in line for line in lines) == (cpus == 2)
        assert sum("train 3/3] epoch    6/6" in line for line in lines) == 2  # members' lines reach the log
        trained[cpus] = [(path / f"iter-{k:03d}" / "model.npz").read_bytes() for k in (0, 1)]
        record = cio.read_json(path / "iter-001" / "train.json")
        trained[cpus].append({key: v for key, v in record.items() if key != "seconds"})
    assert trained[1] == trained[2]
