"""The one worker that owns the pipeline: a FIFO of jobs, micro-batching and cancellation.

All model work runs on a single thread, so the pipeline (and the GPU) never sees two calls at
once. Queued jobs that share a non-None `key` (e.g. text-to-image with equal steps, guidance,
seed and size) run as one batched call of up to `max_batch` images; the worker waits up to
`batch_window_s` for companions before starting such a job. A job whose future was cancelled
(its client went away) before the worker reached it is dropped without running.

Left out on purpose: priorities, several devices, and stopping a call that is already running
(streaming jobs stop themselves between pieces; see `unimodal.serve.chat`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Job:
    """One request's work: `run(payloads) -> results` runs it (batched with equal `key`s)."""

    payload: Any
    run: Callable[[list[Any]], list[Any]]
    key: Hashable | None = None  # None: never batched
    weight: int = 1  # images this job adds to a batch
    future: Future = field(default_factory=Future)


@dataclass
class WorkerStats:
    submitted: int = 0
    batches: int = 0  # pipeline calls
    jobs_run: int = 0
    cancelled: int = 0  # dropped before running
    failed: int = 0
    largest_batch: int = 0  # jobs in one call


class QueueFull(Exception):
    """The queue holds `max_queue` jobs already."""


class Worker:
    """A thread that runs submitted jobs one (batch) at a time, in arrival order."""

    def __init__(self, max_batch: int = 8, batch_window_s: float = 0.01, max_queue: int = 64):
        self.max_batch = max_batch
        self.batch_window_s = batch_window_s
        self.max_queue = max_queue
        self.stats = WorkerStats()
        self._jobs: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="unimodal-worker", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closed

    def pending(self) -> int:
        """Jobs waiting (not yet running), cancelled ones excluded."""
        with self._cond:
            return sum(not j.future.cancelled() for j in self._jobs)

    def submit(self, job: Job) -> Job:
        with self._cond:
            if self._closed:
                raise QueueFull("the worker is shutting down")
            live = deque(j for j in self._jobs if not j.future.cancelled())
            self.stats.cancelled += len(self._jobs) - len(live)
            self._jobs = live
            if len(self._jobs) >= self.max_queue:
                raise QueueFull(f"{len(self._jobs)} requests are queued (limit {self.max_queue})")
            self._jobs.append(job)
            self.stats.submitted += 1
            self._cond.notify_all()
        return job

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking jobs, cancel the queued ones, let the running one finish."""
        with self._cond:
            self._closed = True
            for j in self._jobs:
                j.future.cancel()
            self._jobs.clear()
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ the loop
    def _companions(self, head: Job) -> list[Job]:
        """Queued jobs that can join `head`'s call, in order, within the batch size."""
        if head.key is None:
            return []
        out, weight = [], head.weight
        for j in self._jobs:
            if j.key == head.key and not j.future.cancelled():
                if weight + j.weight > self.max_batch:
                    break
                out.append(j)
                weight += j.weight
        return out

    def _next_batch(self) -> list[Job] | None:
        with self._cond:
            while not self._jobs and not self._closed:
                self._cond.wait()
            if not self._jobs:
                return None
            head = self._jobs.popleft()
            if head.key is not None and not head.future.cancelled():
                deadline = time.monotonic() + self.batch_window_s
                while not self._closed and (left := deadline - time.monotonic()) > 0:
                    batch = self._companions(head)
                    if head.weight + sum(j.weight for j in batch) >= self.max_batch:
                        break
                    self._cond.wait(left)
            batch = [head, *self._companions(head)]
            for j in batch[1:]:
                self._jobs.remove(j)
        return batch

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            live = [j for j in batch if j.future.set_running_or_notify_cancel()]
            self.stats.cancelled += len(batch) - len(live)
            if not live:
                continue
            self.stats.batches += 1
            self.stats.largest_batch = max(self.stats.largest_batch, len(live))
            try:
                results = live[0].run([j.payload for j in live])
                if len(results) != len(live):
                    raise RuntimeError(f"{len(results)} results for {len(live)} jobs")
            except BaseException as e:  # noqa: B036 - every error goes to its requests
                self.stats.failed += len(live)
                for j in live:
                    j.future.set_exception(e)
                continue
            self.stats.jobs_run += len(live)
            for j, r in zip(live, results):
                j.future.set_result(r)
