"""One sandboxed worker process seen from the host: start it, frame messages, kill it.

The worker is started with `subprocess` (never by forking the trainer) from the pool's driver
thread, which also does all of its I/O: one length-prefixed JSON frame per message over the
worker's stdin/stdout, every read under a deadline, replies capped in size and parsed as JSON
only. `kill()` takes the whole sandbox down and reaps it.

Left out: scheduling and retries (`pool.py`).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

from .sandbox import SCRATCH, SandboxPlan

HERE = Path(__file__).parent
WORKER_SOURCE = (HERE / "worker_os.py").read_text() + "\n" + (HERE / "worker.py").read_text()
SPAWN_TIMEOUT = 30.0


class WorkerError(RuntimeError):
    """A worker broke the protocol: died, hung, or sent garbage."""


class Worker:
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

    def send(self, request: dict[str, Any], deadline: float) -> int:
        """Write one request frame; returns its size in bytes."""
        body = json.dumps(request).encode()
        data, fd = struct.pack(">I", len(body)) + body, self.proc.stdin.fileno()  # type: ignore[union-attr]
        size = len(data)
        try:
            while data:
                self._wait_fd(fd, select.POLLOUT, deadline)
                data = data[os.write(fd, data) :]
        except OSError as exc:
            raise WorkerError(f"worker died ({exc})") from None
        return size

    def receive(self, request_id: int, deadline: float) -> dict[str, Any]:
        """Read the reply to `request_id` (replies come in request order)."""
        reply = self._read(deadline)
        if reply.get("id") != request_id:
            raise WorkerError("worker answered another request")
        return reply

    def interrupt(self) -> None:
        """SIGKILL the sandbox without touching our pipes (safe from any thread)."""
        if self.proc.poll() is None:
            for pid in _children(self.proc.pid) if self.scratch is None else []:
                _sigkill(pid)
            if self.scratch is not None:
                _sigkill(-self.proc.pid)

    def kill(self) -> None:
        """SIGKILL the worker with its sandbox, reap it, close the pipes.

        The kill goes to the sandbox's init (bwrap's child), so the kernel tears down the whole
        pid namespace and bwrap reaps it before exiting: nothing is left to the host's init.
        In the fallback, the worker's process group gets it (its children also die with it).
        """
        self.interrupt()
        try:
            self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            _sigkill(self.proc.pid)
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
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
        return [
            int(c)
            for t in tasks
            for c in Path(f"/proc/{pid}/task/{t}/children").read_text().split()
        ]
    except (OSError, ValueError):
        return []
