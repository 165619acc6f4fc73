"""Seccomp filters for the sandbox, compiled on the host with libseccomp (`pyseccomp`).

Two deny-lists, exported as raw BPF so that the sandbox needs neither libseccomp nor pyseccomp
(the worker loads them with one `prctl` through ctypes):

- `WORKER_DENY`: applied by each worker to itself, and so inherited by every program: no sockets,
  no ptrace or cross-process memory access, no mount / namespace / keyring / bpf / perf / module /
  reboot / clock syscalls, no terminal injection (TIOCSTI).
- `CHILD_DENY`, added on top in each forked program: no exec, fork, clone or threads, no signals
  (a program can signal nothing, not even itself), no memfd / SysV IPC / device nodes, no new
  sessions, no raising of resource limits.

Denied calls fail with EPERM (clone3 with ENOSYS so that libc falls back to clone, which is then
checked); any foreign-architecture syscall (int 0x80, x32) kills the process. Deliberately a
deny-list on top of namespaces, not an allow-list: Python's syscall set varies across libc and
kernel versions, and a missing entry would fail benign programs.
"""

from __future__ import annotations

import errno
import functools
import tempfile

WORKER_DENY = (
    "socket socketpair ptrace process_vm_readv process_vm_writev kcmp pidfd_getfd mount umount2 "
    "pivot_root chroot unshare setns open_tree move_mount fsopen fsconfig fsmount fspick "
    "mount_setattr keyctl add_key request_key bpf perf_event_open userfaultfd io_uring_setup "
    "io_uring_enter io_uring_register kexec_load kexec_file_load init_module finit_module "
    "delete_module reboot swapon swapoff syslog acct settimeofday clock_settime adjtimex "
    "clock_adjtime sethostname setdomainname iopl ioperm quotactl name_to_handle_at "
    "open_by_handle_at lookup_dcookie personality uselib vhangup fanotify_init migrate_pages "
    "move_pages"
).split()

CHILD_DENY = (
    "execve execveat fork vfork clone kill tkill tgkill rt_sigqueueinfo rt_tgsigqueueinfo "
    "pidfd_open pidfd_send_signal memfd_create memfd_secret shmget shmat shmctl msgget msgsnd "
    "msgrcv semget semop semtimedop mknod mknodat setsid setpgid setrlimit"
).split()

_TIOCSTI, _TIOCLINUX = 0x5412, 0x541C
_CLONE_NAMESPACES = 0x7E020000  # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET


def _compile(worker: bool, child: bool) -> bytes:
    import pyseccomp as sc

    flt = sc.SyscallFilter(sc.ALLOW)
    eperm = sc.ERRNO(errno.EPERM)
    for name in (WORKER_DENY if worker else []) + (CHILD_DENY if child else []):
        try:
            flt.add_rule(eperm, name)
        except (OSError, ValueError, RuntimeError):
            pass  # unknown to this kernel/libseccomp: cannot be called either
    flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    if worker:
        for request in (_TIOCSTI, _TIOCLINUX):
            flt.add_rule(eperm, "ioctl", sc.Arg(1, sc.EQ, request))
    if child:
        flt.add_rule(eperm, "prlimit64", sc.Arg(2, sc.NE, 0))  # reading limits stays allowed
    else:  # the worker may fork, but never into new namespaces
        for bit in range(32):
            if _CLONE_NAMESPACES >> bit & 1:
                flt.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, 1 << bit, 1 << bit))
    with tempfile.TemporaryFile() as fh:
        flt.export_bpf(fh)
        fh.seek(0)
        return fh.read()


@functools.cache
def compiled_filters() -> tuple[bytes, bytes, bytes] | None:
    """BPF bytes of (worker filter, program extras, worker + program), or None without libseccomp.

    A program normally gets the extras stacked on its worker's filter (a short filter loads
    faster, per fork); the combined one is for a worker whose own filter failed to load.
    """
    try:
        return tuple(_compile(w, c) for w, c in ((True, False), (False, True), (True, True)))
    except (ImportError, OSError, AttributeError, RuntimeError, ValueError):
        return None
