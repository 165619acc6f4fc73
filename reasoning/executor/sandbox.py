"""How a worker process is started: a bubblewrap sandbox, or a documented weaker fallback.

`plan_sandbox()` picks, once per process, the interpreter and the isolation, and probes it:

- `bwrap` (preferred): every namespace (user, mount, pid, net, ipc, uts, cgroup), uid/gid 65534,
  all capabilities dropped, no further user namespaces, new session, die-with-parent, empty
  environment but a per-worker `PYTHONHASHSEED`, a root of read-only binds holding only the
  interpreter and shared libraries (no /etc, /home, /proc, /sys, /tmp, no sockets), a minimal
  read-only /dev, and a size-limited tmpfs at /scratch. When the trainer is root, bwrap itself is
  started as `nobody` so that the sandbox's host uid is unprivileged too; that needs an
  interpreter every user can read (the trainer's own, or the same X.Y in /usr/bin), otherwise
  bwrap runs as root with a mapped uid and no capabilities (`unprivileged_uid` is then False).
- `none` (fallback where bwrap or user namespaces are missing): a plain process in a new session
  with an empty environment, in a private temp dir, as `nobody` when possible. Programs still get
  rlimits, seccomp and the wall-clock kill, but can read any host file the uid can read. It is
  only used with a loud warning.

Nothing here runs programs; `pool.py` starts the commands built here.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

NOBODY = 65534
SCRATCH = "/scratch"
PYTHON_FLAGS = ["-S", "-s", "-B", "-P"]  # no site, no user site, no .pyc, no cwd on sys.path


@dataclass(frozen=True)
class SandboxPlan:
    """The recipe for starting one worker; `command()` gives its argv and Popen arguments."""

    kind: str  # "bwrap" or "none"
    python: str
    binds: tuple[str, ...] = ()
    run_as_nobody: bool = False
    scratch_bytes: int = 64 << 20
    protections: dict[str, bool] = field(default_factory=dict)

    def command(self, source: str, config: str, seed: int) -> tuple[list[str], dict[str, Any]]:
        """(argv, Popen keyword arguments) for a worker running `source` with `config`."""
        py = [self.python, *PYTHON_FLAGS, "-c", source, config]
        kwargs: dict[str, Any] = {"cwd": "/", "start_new_session": True}
        if self.run_as_nobody:
            kwargs.update(user=NOBODY, group=NOBODY, extra_groups=[])
        if self.kind == "none":
            scratch = tempfile.mkdtemp(prefix="executor-")
            if self.run_as_nobody:
                os.chown(scratch, NOBODY, NOBODY)
            kwargs.update(cwd=scratch, env={"PYTHONHASHSEED": str(seed)})
            return py, kwargs
        return [*_bwrap_args(self, seed), *py], {**kwargs, "env": {}}


def _bwrap_args(plan: SandboxPlan, seed: int) -> list[str]:
    args = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--uid", str(NOBODY)]
    args += ["--gid", str(NOBODY), "--cap-drop", "ALL", "--die-with-parent", "--new-session"]
    args += ["--clearenv", "--setenv", "PYTHONHASHSEED", str(seed), "--hostname", "sandbox"]
    for path in plan.binds:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        else:
            args += ["--ro-bind", path, path]
    args += ["--dev", "/dev", "--remount-ro", "/dev"]
    args += ["--size", str(plan.scratch_bytes), "--tmpfs", SCRATCH, "--chdir", SCRATCH]
    return [*args, "--remount-ro", "/"]


def _readable_by_all(path: str) -> bool:
    """Whether an unprivileged user can reach and read `path` (every parent traversable)."""
    path = os.path.abspath(path)
    try:
        mode = os.stat(path).st_mode
        parent = os.path.dirname(path)
        while parent != "/":
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
            parent = os.path.dirname(parent)
    except OSError:
        return False
    need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
    return mode & need == need


def _interpreter_info(exe: str) -> tuple[str, str] | None:
    """(sys.prefix, stdlib dir) of interpreter `exe`, or None when it does not start."""
    code = "import sys, os; print(sys.prefix); print(os.path.dirname(os.__file__))"
    try:
        out = subprocess.run(
            [exe, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=30, env={}
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.split("\n")
    return (lines[0], lines[1]) if out.returncode == 0 and len(lines) >= 2 else None


def _binds_for(exe: str, prefix: str) -> tuple[str, ...]:
    paths = ["/usr/lib", "/usr/lib64", "/lib", "/lib64", "/lib32", "/libx32"]
    paths += [prefix] if prefix not in ("/usr", "/") else [exe]
    if not exe.startswith(prefix.rstrip("/") + "/"):
        paths.append(exe)
    seen: list[str] = []
    for path in paths:
        if os.path.lexists(path) and path not in seen:
            seen.append(path)
    return tuple(seen)


def _candidates(python: str | None) -> list[str]:
    if python:
        return [python]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = [os.path.realpath(sys.executable)]
    for name in (f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        if os.path.exists(name) and os.path.realpath(name) not in found:
            found.append(os.path.realpath(name))
    return found


def _probe(plan: SandboxPlan) -> bool:
    argv, kwargs = plan.command("import sys; sys.stdout.write('ready')", "{}", 0)
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, **kwargs)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return False
    finally:
        if plan.kind == "none":
            shutil.rmtree(kwargs["cwd"], ignore_errors=True)
    return out.returncode == 0 and out.stdout == "ready"


def _protections(kind: str, unprivileged: bool) -> dict[str, bool]:
    boxed = kind == "bwrap"
    return {
        "namespaces": boxed,
        "filesystem_isolation": boxed,
        "network_isolation": boxed,
        "capabilities_dropped": boxed,
        "scratch_size_limit": boxed,
        "unprivileged_uid": unprivileged,
        "rlimits": True,
        "wall_clock_kill": True,
        "output_caps": True,
    }


@functools.cache
def plan_sandbox(
    mode: str = "auto", python: str | None = None, scratch_mb: int = 64
) -> SandboxPlan:
    """The strongest working sandbox for `mode` ("auto", "bwrap" or "none"); raises if none."""
    if mode not in ("auto", "bwrap", "none"):
        raise ValueError(f"sandbox mode must be 'auto', 'bwrap' or 'none', not {mode!r}")
    root = os.geteuid() == 0
    interpreters = [(exe, info) for exe in _candidates(python) if (info := _interpreter_info(exe))]
    if not interpreters:
        raise RuntimeError(f"no usable Python interpreter among {_candidates(python)}")
    options: list[SandboxPlan] = []
    for kind in ("bwrap", "none") if mode == "auto" else (mode,):
        if kind == "bwrap" and shutil.which("bwrap") is None:
            continue
        for nobody in (True, False) if root else (False,):
            for exe, (prefix, stdlib) in interpreters:
                binds = _binds_for(exe, prefix)
                if nobody and not all(_readable_by_all(p) for p in (exe, stdlib, *binds)):
                    continue
                unprivileged = nobody or not root
                options.append(
                    SandboxPlan(
                        kind, exe, binds if kind == "bwrap" else (), nobody, scratch_mb << 20,
                        _protections(kind, unprivileged),
                    )
                )  # fmt: skip
                break  # the first interpreter that fits this (kind, uid) is enough
    for plan in options:
        if _probe(plan):
            return plan
    raise RuntimeError(f"no working sandbox for mode {mode!r} (is bubblewrap installed?)")
