"""The grader's worker pool: symbolic comparisons (train/grader_symbolic.py) in worker processes, each with
its own time limit, a whole batch with a deadline. train/rewards_math.py is the grader's face.

A worker that runs over is killed and replaced, its answer scores 0 and ``timeout_count()`` goes up; what is
not graded by a batch's deadline scores 0 and is counted as cut. A timeout never hangs the trainer.

Plain subprocesses, not a maintained pool, because none of those does both things asked of it: kill
one comparison that runs over, and drop what is left of a batch at its deadline.
- concurrent.futures.ProcessPoolExecutor and multiprocessing.Pool cannot stop a running task: a hung
  sympy call can only be ended by breaking the whole pool. Their 'spawn' start also re-imports the
  trainer's __main__ (and our package) in every worker, and 'fork' would fork the CUDA-threaded trainer.
- pebble (5.2.3) kills a task past its timeout, but cancelling its queued tasks at a batch deadline does
  not drop them: a trivial job sent after a batch whose 38 queued hangs were cancelled at its 2 s
  deadline waited 48 s while they still ran, each to its own timeout.
Here each worker runs train/grader_symbolic.py as a script (-P: no script dir on sys.path), starts clean,
never forks the trainer (subprocess does fork+exec at once), and can be killed and replaced on its own.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import selectors
import subprocess
import sys
import threading
import time

from train import grader_symbolic
from train.grader_equal import Pending

logger = logging.getLogger(__name__)

WORKER_START_TIMEOUT_S = 60.0
# The script each worker runs: it imports nothing of the project (see its docstring).
_WORKER_SCRIPT = os.path.abspath(grader_symbolic.__file__)

_STATS_LOCK = threading.Lock()
# timeouts: comparisons past their own limit; cut: left ungraded at the batch deadline (both score 0).
_STATS = {"timeouts": 0, "cut": 0, "worker_errors": 0, "symbolic_jobs": 0}


def count_stat(key: str, n: int = 1) -> None:
    """Add ``n`` to one of ``grader_stats()``'s counters (the batch's cut answers are counted by its caller)."""
    with _STATS_LOCK:
        _STATS[key] += n


def timeout_count() -> int:
    """Number of symbolic comparisons that ran over their time limit (and scored 0) in this process."""
    with _STATS_LOCK:
        return _STATS["timeouts"]


def grader_stats() -> dict[str, int]:
    """Counters since this process started: timeouts (symbolic comparisons past their own limit), cut
    (comparisons, or answers not yet compared, left ungraded at a batch's deadline), worker_errors (a worker
    died or failed to start), symbolic_jobs. What timed out or was cut scored 0."""
    with _STATS_LOCK:
        return dict(_STATS)


class _Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-P", _WORKER_SCRIPT, "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,  # Ctrl-C is for the trainer; workers exit when their stdin closes
        )
        self.buf = b""
        self.ready = False
        self.job: int | None = None
        self.deadline = time.monotonic() + WORKER_START_TIMEOUT_S

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()


class _Pool:
    def __init__(self, size: int) -> None:
        self.size = size
        self.pid = os.getpid()
        self.lock = threading.Lock()  # one batch at a time; callers from other threads wait
        self.workers: list[_Worker] = []
        self.sel = selectors.DefaultSelector()

    def _add(self) -> None:
        w = _Worker()
        self.workers.append(w)
        self.sel.register(w.proc.stdout, selectors.EVENT_READ, w)

    def _drop(self, w: _Worker) -> None:
        self.sel.unregister(w.proc.stdout)
        self.workers.remove(w)
        w.kill()

    def close(self) -> None:
        with self.lock:
            for w in list(self.workers):
                self._drop(w)

    def run(self, jobs: list[Pending], timeout_s: float, budget_s: float) -> list[bool | None]:
        """Result per job: True/False, or None when it timed out, was cut at the deadline (``budget_s``
        from the first ready worker: starting workers does not use it up) or its worker died."""
        with self.lock:
            return self._run(jobs, timeout_s, budget_s)

    def _replace(self, w: _Worker) -> None:
        self._drop(w)
        self._add()

    def _run(self, jobs: list[Pending], timeout_s: float, budget_s: float) -> list[bool | None]:
        results: list[bool | None] = [None] * len(jobs)
        todo = list(range(len(jobs)))[::-1]  # popped from the end, so in order
        start_failures = 0
        deadline = math.inf
        while len(self.workers) < self.size:
            self._add()
        while todo or any(w.job is not None for w in self.workers):
            now = time.monotonic()
            if deadline == math.inf and any(w.ready for w in self.workers):
                deadline = now + budget_s
            if now >= deadline:
                # Out of time: what runs is killed (its worker restarts in the background), the rest is cut.
                running = [w for w in self.workers if w.job is not None]
                for w in running:
                    self._replace(w)
                count_stat("cut", len(running) + len(todo))
                return results
            for w in self.workers:
                if w.ready and w.job is None and todo:
                    job = todo.pop()
                    try:
                        w.proc.stdin.write(json.dumps(jobs[job]).encode() + b"\n")
                        w.proc.stdin.flush()
                    except OSError:  # died while idle: retry the job on a fresh worker
                        todo.append(job)
                        w.ready = False
                        w.deadline = 0.0
                        continue
                    w.job, w.deadline = job, time.monotonic() + timeout_s
            waiting = [w.deadline for w in self.workers if w.job is not None or not w.ready]
            wait = max(0.0, min([*waiting, deadline]) - time.monotonic()) if waiting else 0.0
            for key, _ in self.sel.select(wait):
                w = key.data
                data = os.read(w.proc.stdout.fileno(), 65536)
                if not data:  # the worker died (crash, out of memory): its job scores 0
                    count_stat("worker_errors")
                    start_failures += not w.ready
                    self._replace(w)
                    continue
                w.buf += data
                while b"\n" in w.buf:
                    line, w.buf = w.buf.split(b"\n", 1)
                    if line == b'"ready"':
                        w.ready = True
                    elif w.job is not None:
                        results[w.job] = line == b"true"
                        w.job = None
            now = time.monotonic()
            for w in [w for w in self.workers if w.deadline <= now and (w.job is not None or not w.ready)]:
                if w.job is not None:  # ran over: kill it, the answer scores 0, count it
                    count_stat("timeouts")
                else:
                    start_failures += 1
                self._replace(w)
            if start_failures > 2 * self.size:
                # Workers cannot start (broken environment): score the rest 0 rather than loop forever.
                logger.error("reward workers fail to start; %d symbolic comparisons scored 0", len(todo))
                count_stat("worker_errors", len(todo))
                for w in list(self.workers):
                    self._drop(w)
                return results
        return results


_POOL: _Pool | None = None
_POOL_LOCK = threading.Lock()


def default_workers() -> int:
    env = os.environ.get("REWARD_WORKERS")
    if env:
        return max(0, int(env))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def _get_pool(workers: int) -> _Pool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():  # a forked child must not share its parent's pipes
            _POOL = _Pool(workers)
        _POOL.size = max(_POOL.size, workers)
        return _POOL


@atexit.register
def shutdown_pool() -> None:
    """Kill the worker processes (they also exit on their own when this process goes away)."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        pool.close()


def run_symbolic(jobs: list[Pending], timeout_s: float, workers: int, budget_s: float) -> list[bool | None]:
    """Verdict per job (all its pairs equal): True/False, or None when it ran over ``timeout_s``, was cut at
    ``budget_s`` or its worker died. ``workers=0`` runs them in this thread, without a time limit."""
    if not jobs:
        return []
    count_stat("symbolic_jobs", len(jobs))
    if workers <= 0:  # inline, for debugging: no time limit, so only for trusted input
        return [all(grader_symbolic.symbolic_equal(g, a) for g, a in job) for job in jobs]
    return _get_pool(workers).run(jobs, timeout_s, budget_s)
