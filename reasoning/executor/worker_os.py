"""The worker's operating-system layer: seccomp, capabilities, resource limits and framing.

Like worker.py it imports nothing from the package (standard library only): the host sends the
text of this file followed by worker.py's as one `python -c` program (channel.WORKER_SOURCE).
"""

import ctypes
import json
import os
import resource
import struct

PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP = 1, 4, 38, 22
PR_CAPBSET_DROP = 24
MAX_REQUEST = 64 << 20

_libc = ctypes.CDLL(None, use_errno=True)


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_program(bpf):
    """A ctypes `sock_fprog` for raw BPF bytes (built once, before forking), or None."""
    if not bpf:
        return None
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _Fprog(len(bpf) // 8, ctypes.addressof(buf))
    prog.keepalive = buf
    return prog


def load_seccomp(prog):
    """Install a seccomp filter on the calling process; True on success."""
    if prog is None or _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    return _libc.prctl(PR_SET_SECCOMP, 2, ctypes.byref(prog), 0, 0) == 0


def drop_capabilities():
    """Drop every capability (bounding set, then effective/permitted/inheritable)."""
    for cap in range(64):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    return _libc.capset(header, data) == 0


def read_exact(fd, n):
    data = b""
    while len(data) < n:
        chunk = os.read(fd, min(n - len(data), 1 << 20))
        if not chunk:
            return None
        data += chunk
    return data


def read_frame(fd):
    head = read_exact(fd, 4)
    size = struct.unpack(">I", head)[0] if head else MAX_REQUEST + 1
    body = read_exact(fd, size) if size <= MAX_REQUEST else None
    return None if body is None else json.loads(body)


def write_frame(fd, body):
    data = struct.pack(">I", len(body)) + body
    while data:
        data = data[os.write(fd, data) :]


def set_limits(limits):
    for which, value in limits.items():  # soft = hard, never above an existing hard limit
        hard = resource.getrlimit(which)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))
