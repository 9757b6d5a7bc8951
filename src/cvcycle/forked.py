"""Independent tasks in forked worker processes, a few at a time.

A task logs through the function it is given: its lines reach the parent's `log` as they come.
An exception a task raises (an error, a walltime stop) is raised again in the parent once the
workers still running have ended; a task whose worker ended without a word (killed) yields None
for the caller to run in its own process. Either way no further task is started. Workers run one
torch thread each and die with their parent (Linux PR_SET_PDEATHSIG), so a killed run leaves no
writers behind. Forking is used on Linux only, and not inside a daemonic multiprocessing worker
(a multiprocessing.Pool's), which may not have children.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import signal
import sys
import traceback
from multiprocessing.connection import Connection, wait
from typing import Callable, Sequence, TypeVar

import torch

T = TypeVar("T")
Log = Callable[[str], None]
_PR_SET_PDEATHSIG = 1
_LINE, _RESULT, _RAISED = b"L", b"R", b"E"


class WorkerTraceback(Exception):
    """The traceback, as text, of an exception raised in a worker: the cause of its re-raise."""


def usable_workers(requested: int) -> int:
    """How many workers to fork for `requested` cores: no more than this process may run on,
    and none (0) off Linux or inside a daemonic multiprocessing worker, which may not fork."""
    if not sys.platform.startswith("linux") or multiprocessing.current_process().daemon:
        return 0
    return min(requested, len(os.sched_getaffinity(0)))


def fork_map(tasks: Sequence[Callable[[Log], T]], workers: int, log: Log) -> list[T | None]:
    """Results of `tasks` (each called with a log function), run in up to `workers` forked
    processes at once, or the first task's exception; None for each task whose worker was
    killed, and for all when `workers` < 2. Results and exceptions come back pickled through a
    pipe, after the task's log lines."""
    results: list[T | None] = [None] * len(tasks)
    if workers < 2 or len(tasks) < 2:
        return results
    context = multiprocessing.get_context("fork")
    pending = list(range(len(tasks)))
    running: dict[Connection, tuple[int, multiprocessing.process.BaseProcess]] = {}
    returned: set[int] = set()
    raised: dict[int, BaseException] = {}
    failed = False
    sys.stdout.flush()  # else a worker would write the parent's buffered output again
    sys.stderr.flush()
    try:
        while running or (pending and not failed):
            while pending and not failed and len(running) < workers:
                i = pending.pop(0)
                receive, send = context.Pipe(duplex=False)
                process = context.Process(target=_work, args=(tasks[i], send, os.getpid()), daemon=True)
                process.start()
                send.close()
                running[receive] = (i, process)
            for receive in wait(list(running)):  # reads before a worker's exit: no pipe deadlock
                i, process = running[receive]
                try:
                    message = receive.recv_bytes()
                except EOFError:  # the worker has ended
                    del running[receive]
                    receive.close()
                    process.join()
                    failed = failed or i not in returned
                    continue
                tag, body = message[:1], message[1:]
                if tag == _LINE:
                    log(body.decode())
                elif tag == _RAISED:
                    exc, trace = pickle.loads(body)
                    exc.__cause__ = WorkerTraceback(f"in worker {process.pid}:\n{trace}")
                    raised[i] = exc
                else:
                    results[i] = pickle.loads(body)
                    returned.add(i)
    finally:
        for _, process in running.values():
            process.kill()
            process.join()
    if raised:
        raise raised[min(raised)]
    return results


def _work(task: Callable[[Log], T], send: Connection, parent: int) -> None:
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)
    torch.set_num_threads(1)
    try:
        result = task(lambda line: send.send_bytes(_LINE + line.encode()))
        send.send_bytes(_RESULT + pickle.dumps(result))  # plain pickle: tensors by value, not by shared memory
    except BaseException as exc:  # noqa: BLE001 - raised again in the parent
        try:
            send.send_bytes(_RAISED + pickle.dumps((exc, traceback.format_exc())))
        except Exception:  # noqa: BLE001 - unpicklable: the parent reruns the task and meets it there
            pass
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
