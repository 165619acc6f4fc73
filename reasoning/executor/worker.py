"""The worker: a long-lived process inside the sandbox that forks one fresh child per program.

The host starts it as `python -S -s -B -P -c <worker_os.py + this file's text> <config json>`,
so it imports nothing from the package (standard library only; the seccomp, capability, limit
and framing helpers are in worker_os.py). Protocol: requests arrive on fd 0 and replies
leave on fd 1, each a 4-byte big-endian length followed by UTF-8 JSON. Programs never see these
fds: each child gets /dev/null as stdin, a size-capped file in the scratch dir as stdout/stderr
(nobody parses it, so forged markers there mean nothing) and its own result pipe.

Per program the worker compiles the code (compiling never runs it; doing it before the fork
spares each child the page faults of the compiler), then forks. The child, inheriting the
worker's caps on address space, file size (which also caps stdout) and open files, adds CPU
seconds and no processes (and, outside bwrap, dies with the worker), loads the program seccomp
filter, runs the module and `f(<inputs>)`, and writes `status NUL output-or-reason` to its result
pipe. The worker SIGKILLs it at the wall-clock deadline, turns signals and missing or malformed
results into statuses, and empties the scratch dir for the next program (or retires if it can't).

Left out on purpose: parsing or judging outputs (the host does that) and any retry logic.
"""
# ruff: noqa: F821 - the helpers named here are defined in worker_os.py, sent ahead of this file

import builtins
import gc
import json
import os
import posix
import resource
import select
import signal
import struct
import sys
import time

PRELOAD = "collections itertools functools math re string heapq bisect operator copy".split()


def describe(exc):
    try:
        return (type(exc).__name__ + ": " + str(exc))[:1000]
    except BaseException:  # noqa: B036 - str() runs program code
        return type(exc).__name__ + ": <message cannot be formatted>"


def child_main(cfg, program, call, timeout, w):
    """Runs in the forked child; never returns. Replies `status NUL output-or-reason`.

    Everything the reply path needs after the program has run is bound to locals before it runs:
    a program may replace `builtins.repr` / `str` / `type` / `len` / `eval` / `BaseException`,
    `os.write`, `os._exit`, `struct.pack` or this module's globals (`import __main__`), and none
    of that may change its result. Texts are copied to exact `str`s first (a `__repr__` or
    `__str__` may return a str subclass whose `__radd__` would rewrite the whole reply).
    """
    repr_, str_, type_, len_, eval_, base = repr, str, type, len, eval, BaseException
    write, pack, exit_, max_output = os.write, struct.pack, os._exit, cfg["max_output"]
    if cfg["pdeathsig"]:  # in bwrap the pid namespace dies with the worker anyway
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    for fd, source in ((0, cfg["null_fd"]), (1, cfg["out_fd"]), (2, cfg["out_fd"])):
        os.dup2(source, fd)  # out: an unlinked scratch file, emptied per program
    os.closerange(3, w)
    os.closerange(w + 1, 1 << 16)
    os.chdir(cfg["scratch"])
    set_limits({resource.RLIMIT_CPU: int(timeout) + 2, resource.RLIMIT_NPROC: 0})
    if cfg["child_prog"] is not None and not load_seccomp(cfg["child_prog"]):
        os._exit(71)
    try:
        namespace = {"__name__": "__main__", "__builtins__": builtins}
        exec(program, namespace)
        text = str_.__str__(repr_(eval_(call, namespace)))
        status = "ok"
        if len_(text) > max_output:
            status, text = "output-limit", f"output repr has {len_(text)} characters"
    except base as exc:  # noqa: B036 - a program may raise SystemExit and friends
        status, text = "error", "<exception>"
        try:  # str() runs program code
            text = str_.__str__(type_(exc).__name__)
            text = (text + ": " + str_.__str__(str_(exc)))[:1000]
        except base:  # noqa: B036
            text += ": <message cannot be formatted>"
    try:  # no json here: every module touched after fork costs page faults
        body = (status + "\0" + text).encode("utf-8", "backslashreplace")
        frame = pack(">I", len_(body)) + body
        while frame:
            frame = frame[write(w, frame) :]
    except base:  # noqa: B036
        exit_(72)
    exit_(0)


def wait_child(pid, r, deadline, cap):
    """(raw result bytes, wait status, timed_out, over_cap); SIGKILLs the child when needed."""
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(r, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    buf, timed_out, over, exited = bytearray(), False, False, False
    while not (exited or over):
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        for fd, _ in poller.poll(max(1, int(left * 1000))):
            if fd == pidfd:
                exited = True
            elif chunk := os.read(r, 1 << 16):
                buf += chunk
                over = len(buf) > cap
            else:
                poller.unregister(r)
    if exited and not over:
        os.set_blocking(r, False)
        try:
            while len(buf) <= cap and (chunk := os.read(r, 1 << 16)):
                buf += chunk
        except BlockingIOError:
            pass
        over = len(buf) > cap
    if not exited:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(pidfd)
    return bytes(buf), status, timed_out, over


def classify(raw, status, timed_out, over, timeout):
    if timed_out:
        return "timeout", None, f"killed after {timeout:g} s wall clock"
    if over:
        return "output-limit", None, "result exceeds the output cap"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXFSZ:
            return "output-limit", None, "file size limit exceeded (stdout/stderr or a file)"
        if sig == signal.SIGXCPU:
            return "timeout", None, "CPU time limit exceeded"
        return "error", None, f"killed by signal {signal.Signals(sig).name}"
    code = os.WEXITSTATUS(status)
    valid = code == 0 and len(raw) >= 4 and struct.unpack(">I", raw[:4])[0] == len(raw) - 4
    kind, _, text = raw[4:].decode("utf-8", "replace").partition("\0") if valid else ("", "", "")
    if kind not in ("ok", "error", "output-limit"):
        return "error", None, f"program exited (code {code}) without a valid result"
    return (kind, text, "") if kind == "ok" else (kind, None, text[:1000])


def clear_scratch(scratch):
    """Empty the scratch dir; False when something is left (the worker then retires).

    Iterative, and not shutil: its compression imports would make every fork dearer.
    """
    dirs, todo = [], [scratch]
    try:
        while todo:
            for entry in os.scandir(todo.pop()):
                if entry.is_dir(follow_symlinks=False):
                    dirs.append(entry.path)
                    todo.append(entry.path)
                else:
                    os.unlink(entry.path)
        for path in reversed(dirs):
            os.rmdir(path)
        return not os.listdir(scratch)
    except OSError:
        return False


def run_one(cfg, req):
    start = time.monotonic()
    try:  # compiled here, before fork: the compiler touches many pages, each a fault per child
        program = compile(req["code"], "<program>", "exec")
        call = compile("f(" + req["inputs"] + "\n)", "<inputs>", "eval")
    except Exception as exc:  # SyntaxError, MemoryError, RecursionError, ValueError (NUL)
        reply = {"status": "error", "output": None, "reason": describe(exc)}
        return {**reply, "duration": time.monotonic() - start, "retire": False}
    os.ftruncate(cfg["out_fd"], 0)
    os.lseek(cfg["out_fd"], 0, os.SEEK_SET)
    r, w = os.pipe()
    exit_ = os._exit  # bound before the program can replace it
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            child_main(cfg, program, call, req["timeout"], w)
        finally:
            exit_(70)
    os.close(w)
    try:
        cap = cfg["max_output"] * 4 + 4096  # UTF-8: at most 4 bytes a character
        raw, status, timed_out, over = wait_child(pid, r, start + req["timeout"], cap)
    finally:
        os.close(r)
    result = classify(raw, status, timed_out, over, req["timeout"])
    reply = dict(zip(("status", "output", "reason"), result), duration=time.monotonic() - start)
    return {**reply, "retire": not clear_scratch(cfg["scratch"])}


def _no_shell(command):
    raise PermissionError(1, "no shell in the sandbox")


def main():
    cfg = json.loads(sys.argv[1])
    rfd, wfd = os.dup(0), os.dup(1)
    cfg["null_fd"] = null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1):
        os.dup2(null, fd)
    os.environ.clear()
    cfg["pdeathsig"] = cfg.get("scratch") is None  # no pid namespace: children must die with us
    if cfg["pdeathsig"]:
        cfg["scratch"] = os.getcwd()
    for name in PRELOAD:  # imported once here rather than in every child that needs them
        __import__(name)
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # oversize output kills (Python ignores it)
    os.system = posix.system = _no_shell  # libc system() hides its failed spawn in a status
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    caps = drop_capabilities()
    seccomp = load_seccomp(seccomp_program(bytes.fromhex(cfg["worker_filter"])))
    child = cfg["child_filter"] if seccomp else cfg["child_full_filter"]  # stack or stand alone
    cfg["child_prog"] = seccomp_program(bytes.fromhex(child))
    try:
        cfg["out_fd"] = os.open(cfg["scratch"], os.O_TMPFILE | os.O_WRONLY, 0o600)
    except OSError:  # a filesystem without O_TMPFILE
        path = os.path.join(cfg["scratch"], ".stdout")
        cfg["out_fd"] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.unlink(path)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    set_limits(  # limits the worker can bear too: set once, inherited by every program
        {
            resource.RLIMIT_AS: cfg["memory_bytes"],
            resource.RLIMIT_FSIZE: cfg["file_bytes"],
            resource.RLIMIT_NOFILE: max(16, cfg["open_files"]),
            resource.RLIMIT_CORE: 0,
        }
    )
    gc.collect()
    gc.freeze()
    ready = {"ready": True, "seccomp": seccomp, "caps_dropped": caps, "uid": os.getuid()}
    write_frame(wfd, json.dumps(ready).encode())
    while (req := read_frame(rfd)) is not None:
        try:
            reply = run_one(cfg, req)
        except Exception as exc:  # e.g. fork failing under memory pressure: report and retire
            reply = {"status": "error", "output": None, "reason": f"worker: {exc!r}"[:1000]}
            reply["retire"] = True
        write_frame(wfd, json.dumps({"id": req["id"], **reply}).encode())
        if reply["retire"]:  # the host replaces us; requests already sent go to another worker
            break


if __name__ == "__main__":
    main()
