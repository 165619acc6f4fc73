"""The worker pool: one driver thread per sandboxed worker, a shared job queue, respawns.

Each driver owns one worker (`channel.Worker`): it starts it (so bwrap's die-with-parent follows
a thread that lives as long as the pool), takes jobs from the queue, and keeps up to two in
flight so that the worker never waits for the host between programs (only while the frames in
flight fit in a pipe buffer, so neither side can block on a full pipe). Each reply is read under
the deadline `timeout + grace` counted from when the worker could start that job. A worker that
misses it, dies or answers garbage is SIGKILLed with its sandbox and respawned by its driver;
the job gets a `timeout` / `error` reply, jobs queued behind it go back to the queue.

`submit(request, avoid=id)` returns a Future of (reply, worker id); `avoid` keeps the job off a
given worker (the second run of `validate` needs another process and hash seed). Thread-safe.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import random
import threading
import time
import weakref
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from .channel import Worker, WorkerError
from .sandbox import SandboxPlan

PIPELINE_BYTES = 60_000  # frames in flight per worker: below the 64 KiB pipe buffer
MAX_SPAWN_FAILURES = 5
_POOLS: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


@dataclass
class _Job:
    request: dict[str, Any]
    avoid: int | None
    future: Future = field(default_factory=Future)
    size: int = 0
    start: float = 0.0  # when the worker can begin this job (deadline base)


class WorkerPool:
    """`size` sandboxed workers fed from one queue."""

    def __init__(self, plan: SandboxPlan, size: int, config: dict[str, Any], timeout: float):
        self.plan, self.config, self.timeout = plan, config, timeout
        self.grace = max(2.0, timeout)
        self._cond = threading.Condition()
        self._queue: collections.deque[_Job] = collections.deque()
        self._workers: dict[int, Worker] = {}  # driver slot -> current worker
        self._drivers: list[threading.Thread] = []
        self._ids = itertools.count(1)
        self._seed_base = random.randrange(1 << 32)
        self._closed = False
        self._broken = ""
        self._failures = 0
        _POOLS.add(self)
        for _ in range(size):
            self._add_driver()
        with self._cond:
            ready = self._cond.wait_for(lambda: len(self._workers) == size or self._broken, 120)
        if not ready or self._broken:
            self.close()
            raise RuntimeError(f"executor workers fail to start: {self._broken or 'timeout'}")

    @property
    def size(self) -> int:
        return len(self._drivers)

    @property
    def worker_info(self) -> dict[str, Any]:
        with self._cond:
            return next(iter(self._workers.values())).info if self._workers else {}

    def live_workers(self) -> list[Worker]:
        with self._cond:
            return list(self._workers.values())

    def submit(self, request: dict[str, Any], avoid: int | None = None) -> Future:
        job = _Job(request, avoid)
        with self._cond:
            if self._closed or self._broken:
                raise RuntimeError(self._broken or "executor is closed")
            if avoid is not None and self.size < 2:
                self._add_driver()  # a second opinion needs a second worker
            self._queue.append(job)
            self._cond.notify_all()
        return job.future

    def _add_driver(self) -> None:
        slot = len(self._drivers)
        thread = threading.Thread(target=self._drive, args=(slot,), daemon=True)
        thread.name = f"executor-driver-{slot}"
        self._drivers.append(thread)
        thread.start()

    # -- driver thread ------------------------------------------------------------------------

    def _spawn(self, slot: int) -> Worker | None:
        while True:
            with self._cond:
                if self._closed or self._broken:
                    return None
            ident = next(self._ids)
            seed = (self._seed_base + ident * 2654435761) % (1 << 32)  # distinct per worker
            try:
                worker = Worker(self.plan, self.config, ident, seed)
            except (WorkerError, OSError, ValueError) as exc:
                with self._cond:
                    self._failures += 1
                    if self._failures >= MAX_SPAWN_FAILURES:
                        self._break(f"{self._failures} failed starts, last: {exc}")
                time.sleep(0.2)
                continue
            with self._cond:
                self._failures = 0
                self._workers[slot] = worker
                self._cond.notify_all()
            return worker

    def _take(self, ident: int, block: bool, room: int) -> _Job | None:
        with self._cond:
            while True:
                if self._closed or self._broken:
                    return None
                for i, job in enumerate(self._queue):
                    if job.avoid != ident:
                        if block or self._frame_size(job) <= room:
                            del self._queue[i]
                            return job
                        return None
                if not block:
                    return None
                self._cond.wait()

    @staticmethod
    def _frame_size(job: _Job) -> int:
        return 64 + 6 * sum(len(v) for v in job.request.values() if isinstance(v, str))

    def _drive(self, slot: int) -> None:
        worker = self._spawn(slot)
        inflight: collections.deque[_Job] = collections.deque()
        while worker is not None:
            try:
                while True:  # keep the worker fed: up to two jobs in flight
                    room = PIPELINE_BYTES - sum(j.size for j in inflight)
                    if len(inflight) >= 2:
                        break
                    job = self._take(worker.ident, block=not inflight, room=room)
                    if job is None:
                        break
                    job.start = time.monotonic()
                    inflight.append(job)
                    job.size = worker.send(job.request, job.start + self.grace)
                if not inflight:
                    break  # closed
                job = inflight[0]
                deadline = job.start + self.timeout + self.grace
                reply = worker.receive(job.request["id"], deadline)
                inflight.popleft()
                if inflight:
                    inflight[0].start = time.monotonic()
                job.future.set_result((reply, worker.ident))
                if reply.get("retire"):  # its scratch could not be emptied, or it failed
                    worker = self._replace(slot, worker, inflight)
            except WorkerError as exc:
                worker = self._recover(slot, worker, inflight, exc)
        with self._cond:
            self._workers.pop(slot, None)
        if worker is not None:
            worker.kill()
        self._fail(inflight)

    def _replace(
        self, slot: int, worker: Worker, inflight: collections.deque[_Job]
    ) -> Worker | None:
        """Kill `worker`, put its unstarted jobs back at the front of the queue, start another."""
        worker.kill()
        with self._cond:
            self._workers.pop(slot, None)
            closed = self._closed
            if not closed:
                self._queue.extendleft(reversed(inflight))
                inflight.clear()
                self._cond.notify_all()
        if closed:
            self._fail(inflight)
            inflight.clear()
            return None
        return self._spawn(slot)

    def _recover(
        self, slot: int, worker: Worker, inflight: collections.deque[_Job], exc: WorkerError
    ) -> Worker | None:
        """The worker broke on `inflight[0]`: that job gets timeout/error, the rest a new worker."""
        job = inflight.popleft()
        status = "timeout" if "in time" in str(exc) else "error"
        reply = {"status": status, "output": None, "reason": f"{exc}; worker restarted",
                 "duration": time.monotonic() - job.start}  # fmt: skip
        worker.kill()
        job.future.set_result((reply, worker.ident))
        return self._replace(slot, worker, inflight)

    def _break(self, reason: str) -> None:
        """No worker can start: fail everything instead of hanging (caller holds the lock)."""
        self._broken = reason
        jobs = list(self._queue)
        self._queue.clear()
        self._cond.notify_all()
        for job in jobs:
            job.future.set_exception(RuntimeError(f"executor broken: {reason}"))

    def _fail(self, jobs: collections.deque[_Job]) -> None:
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(RuntimeError(self._broken or "executor is closed"))

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Kill every worker, fail queued jobs, join the drivers; idempotent."""
        with self._cond:
            self._closed = True
            queued = collections.deque(self._queue)
            self._queue.clear()
            workers = list(self._workers.values())
            self._cond.notify_all()
        for worker in workers:
            worker.interrupt()  # drivers see EOF, reap and exit
        for thread in self._drivers:
            if thread is not threading.current_thread():
                thread.join(timeout=10)
        self._fail(queued)


@atexit.register
def _close_all() -> None:
    for pool in list(_POOLS):
        pool.close()
