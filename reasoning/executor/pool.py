"""Host side of the worker pool: start sandboxed workers, talk to them, replace broken ones.

Workers are started with `subprocess` (never by forking the trainer) from one dedicated spawner
thread, so that bwrap's die-with-parent, which follows the thread that started it, lasts as long
as the pool. Each request takes an idle worker exclusively, writes one length-prefixed JSON frame
and reads one back under a deadline of `timeout + grace`. A worker that misses it, dies, or
answers garbage is killed with its whole sandbox and replaced in the background; the caller gets
a `timeout` or `error` reply at once. Replies are size-capped and parsed as JSON only.

Thread-safe: any number of threads may call `execute` at once; a call with `avoid=<worker id>`
is served by another worker (another hash seed), which `validate` needs.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import random
import select
import shutil
import signal
import struct
import subprocess
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .sandbox import SCRATCH, SandboxPlan

WORKER_SOURCE = (Path(__file__).parent / "worker.py").read_text()
SPAWN_TIMEOUT = 30.0
ACQUIRE_TIMEOUT = 120.0
_POOLS: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


class WorkerError(RuntimeError):
    """A worker broke the protocol: died, hung, or sent garbage."""


class _Worker:
    def __init__(self, plan: SandboxPlan, config: dict[str, Any], ident: int, seed: int) -> None:
        self.ident, self.seed = ident, seed
        cfg = {**config, "scratch": SCRATCH if plan.kind == "bwrap" else None}
        argv, kwargs = plan.command(WORKER_SOURCE, json.dumps(cfg), seed)
        self.scratch = kwargs["cwd"] if plan.kind == "none" else None
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            bufsize=0, **kwargs,
        )  # fmt: skip
        self.max_reply = config["max_output"] * 6 + (1 << 16)
        try:
            self.info = self._read(time.monotonic() + SPAWN_TIMEOUT)
        except WorkerError:
            self.kill()
            raise
        if not self.info.get("ready"):
            self.kill()
            raise WorkerError(f"worker sent {self.info!r} instead of ready")

    def _wait_fd(self, fd: int, event: int, deadline: float) -> None:
        poller = select.poll()
        poller.register(fd, event)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError("worker did not answer in time")
            if poller.poll(max(1, int(left * 1000))):
                return

    def _read_exact(self, n: int, deadline: float) -> bytes:
        fd, chunks = self.proc.stdout.fileno(), []  # type: ignore[union-attr]
        while n:
            self._wait_fd(fd, select.POLLIN, deadline)
            chunk = os.read(fd, min(n, 1 << 20))
            if not chunk:
                raise WorkerError("worker died")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _read(self, deadline: float) -> dict[str, Any]:
        (size,) = struct.unpack(">I", self._read_exact(4, deadline))
        if size > self.max_reply:
            raise WorkerError(f"worker reply of {size} bytes exceeds the cap")
        try:
            reply = json.loads(self._read_exact(size, deadline))
        except ValueError as exc:
            raise WorkerError(f"worker sent malformed JSON: {exc}") from None
        if not isinstance(reply, dict):
            raise WorkerError("worker reply is not an object")
        return reply

    def call(self, request: dict[str, Any], deadline: float) -> dict[str, Any]:
        body = json.dumps(request).encode()
        data, fd = struct.pack(">I", len(body)) + body, self.proc.stdin.fileno()  # type: ignore[union-attr]
        try:
            while data:
                self._wait_fd(fd, select.POLLOUT, deadline)
                data = data[os.write(fd, data) :]
        except OSError as exc:
            raise WorkerError(f"worker died ({exc})") from None
        reply = self._read(deadline)
        if reply.get("id") != request["id"]:
            raise WorkerError("worker answered another request")
        return reply

    def kill(self) -> None:
        """SIGKILL the worker with its sandbox and reap it.

        The kill goes to the sandbox's init (bwrap's child), so the kernel tears down the whole
        pid namespace and bwrap reaps it before exiting: nothing is left to the host's init.
        In the fallback, the worker's process group gets it (its children also die with it).
        """
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        if self.proc.poll() is None:
            if self.scratch is None:
                for pid in _children(self.proc.pid):
                    _sigkill(pid)
            else:
                _sigkill(-self.proc.pid)
            try:
                self.proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                _sigkill(self.proc.pid)
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)


def _sigkill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        return [int(c) for t in tasks for c in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]
    except (OSError, ValueError):
        return []


class WorkerPool:
    """`size` sandboxed workers; `execute` runs one request on an idle one."""

    def __init__(self, plan: SandboxPlan, size: int, config: dict[str, Any], grace: float = 2.0):
        self.plan, self.size, self.config, self.grace = plan, size, config, grace
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._live: set[_Worker] = set()
        self._pending = 0
        self._failures = 0
        self._last_error = ""
        self._closed = False
        self._ids = itertools.count(1)
        self._seed_base = random.randrange(1 << 32)
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="executor-spawn")
        _POOLS.add(self)
        for _ in range(size):
            self._spawn_async()
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._idle) >= size or self._failures >= 3, 60):
                self.close()
                raise RuntimeError("executor workers did not start in time")
        if self._failures >= 3 and not self._idle:
            self.close()
            raise RuntimeError(f"executor workers fail to start: {self._last_error}")

    @property
    def worker_info(self) -> dict[str, Any]:
        with self._cond:
            workers = list(self._live)
        return workers[0].info if workers else {}

    def _spawn_async(self) -> None:
        self._pending += 1
        self._spawner.submit(self._spawn_one)

    def _spawn_one(self) -> None:
        ident = next(self._ids)
        seed = (self._seed_base + ident * 2654435761) % (1 << 32)  # distinct ids, distinct seeds
        try:
            worker: _Worker | None = _Worker(self.plan, self.config, ident, seed)
        except (WorkerError, OSError, ValueError) as exc:
            worker, error = None, str(exc)
        with self._cond:
            if worker is None:
                self._failures += 1
                self._last_error = error
                if not self._closed and self._failures < 10:
                    self._spawner.submit(self._retry_later)  # stays counted as pending
                    self._cond.notify_all()
                    return
            self._pending -= 1
            if worker is not None and self._closed:
                worker.kill()
            elif worker is not None:
                self._failures = 0
                self._live.add(worker)
                self._idle.append(worker)
            self._cond.notify_all()

    def _retry_later(self) -> None:
        time.sleep(min(2.0, 0.1 * self._failures))
        self._spawn_one()

    def _acquire(self, avoid: int | None) -> _Worker:
        deadline = time.monotonic() + ACQUIRE_TIMEOUT
        with self._cond:
            if avoid is not None and self.size < 2:
                self.size = 2  # a second opinion needs a second worker (another hash seed)
                self._spawn_async()
            while True:
                if self._closed:
                    raise RuntimeError("executor is closed")
                for i, worker in enumerate(self._idle):
                    if worker.ident != avoid:
                        return self._idle.pop(i)
                if not self._live and not self._pending:
                    raise RuntimeError(f"no executor worker can start: {self._last_error}")
                if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                    if time.monotonic() >= deadline:
                        raise RuntimeError("timed out waiting for an executor worker")

    def _release(self, worker: _Worker) -> None:
        with self._cond:
            if self._closed:
                worker.kill()
            else:
                self._idle.append(worker)
            self._cond.notify_all()

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        with self._cond:
            self._live.discard(worker)
            if not self._closed:
                self._spawn_async()
            self._cond.notify_all()

    def execute(
        self, request: dict[str, Any], timeout: float, avoid: int | None = None
    ) -> tuple[dict[str, Any], int]:
        """(reply, worker id) for `request`; a broken worker yields a timeout/error reply."""
        worker = self._acquire(avoid)
        started = time.monotonic()
        try:
            reply = worker.call(request, started + timeout + max(self.grace, timeout))
        except WorkerError as exc:
            self._replace(worker)
            hung = "in time" in str(exc)
            status = "timeout" if hung else "error"
            reason = f"{exc}; worker restarted"
            return {"status": status, "output": None, "reason": reason,
                    "duration": time.monotonic() - started}, worker.ident  # fmt: skip
        self._release(worker)
        return reply, worker.ident

    def close(self) -> None:
        with self._cond:
            self._closed = True
            workers = list(self._live)
            self._live.clear()
            self._idle.clear()
            self._cond.notify_all()
        for worker in workers:
            worker.kill()
        self._spawner.shutdown(wait=True, cancel_futures=True)


@atexit.register
def _close_all() -> None:
    for pool in list(_POOLS):
        pool.close()
