"""Hostile programs against the executor: the sandbox must hold with static checks OFF, the
static layer must reject them when ON, and afterwards host and pool must be unharmed."""

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from reasoning.executor import Executor

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

SECRET = "executor-test-secret-4242"
MARKER = Path("/tmp/executor_hostile_marker")  # programs try to create it on the host
CANARY = Path(__file__).resolve()  # a host file programs try to read or truncate
FAIL = {"error", "timeout"}

HOSTILE = {  # name: (code, expected statuses)
    "python_loop": ("def f():\n    while True:\n        pass", {"timeout"}),
    "c_loop": ("def f():\n    return sum(range(10**13))", {"timeout"}),
    "sleep": ("import time\ndef f():\n    time.sleep(60)", {"timeout"}),
    "memory_list": ("def f():\n    return len([0] * 10**10)", {"error"}),
    "memory_growth": (
        "def f():\n    x = []\n    while True:\n        x.append(bytearray(10**7))",
        FAIL,
    ),
    "fork_bomb": ("import os\ndef f():\n    while True:\n        os.fork()", {"error"}),
    "subprocess": ("import subprocess\ndef f():\n    return subprocess.run(['id'])", {"error"}),
    "os_system": (f"import os\ndef f():\n    return os.system('touch {MARKER}')", {"error"}),
    "thread_flood": (
        "import threading\ndef f():\n    for _ in range(1000):\n        threading.Thread(target=lambda: 0).start()",
        {"error"},
    ),
    "multiprocessing": (
        "import multiprocessing\ndef f():\n    return multiprocessing.Pool(4).map(abs, [1])",
        {"error"},
    ),
    "read_passwd": ("def f():\n    return open('/etc/passwd').read()", {"error"}),
    "read_host_file": (f"def f():\n    return open({str(CANARY)!r}).read()", {"error"}),
    "truncate_host_file": (f"def f():\n    open({str(CANARY)!r}, 'w').close()", {"error"}),
    "write_host_tmp": (f"def f():\n    open({str(MARKER)!r}, 'w').write('x')", {"error"}),
    "write_usr": ("def f():\n    open('/usr/lib/pwned', 'w').write('x')", {"error"}),
    "write_root": ("import os\ndef f():\n    os.mkdir('/pwned')", {"error"}),
    "proc_environ": ("def f():\n    return open('/proc/1/environ').read()", {"error"}),
    "proc_self_mem": ("def f():\n    return open('/proc/self/mem', 'rb').read(1)", {"error"}),
    "sys_files": ("import os\ndef f():\n    return os.listdir('/sys')", {"error"}),
    "home_files": ("import os\ndef f():\n    return os.listdir('/root')", {"error"}),
    "docker_socket": (
        "import socket\ndef f():\n    s = socket.socket(socket.AF_UNIX)\n    s.connect('/var/run/docker.sock')",
        {"error"},
    ),
    "huge_print": ("def f():\n    while True:\n        print('x' * 10000)", {"output-limit"}),
    "huge_return": ("def f():\n    return 'x' * 10**7", {"output-limit"}),
    "giant_return": ("def f():\n    return 'x' * 10**10", {"error"}),
    "sys_exit": ("import sys\ndef f():\n    sys.exit(0)", {"error"}),
    "os_exit": ("import os\ndef f():\n    os._exit(0)", {"error"}),
    "kill_parent": ("import os\ndef f():\n    os.kill(os.getppid(), 9)", {"error"}),
    "kill_all": ("import os\ndef f():\n    os.kill(-1, 9)", {"error"}),
    "kill_init": ("import os, signal\ndef f():\n    os.kill(1, signal.SIGKILL)", {"error"}),
    "killpg": ("import os\ndef f():\n    os.killpg(0, 9)", {"error"}),
    "recursion": ("def f(n=0):\n    return f(n + 1)", {"error"}),
    "deep_repr": (
        "def f():\n    x = []\n    for _ in range(10**6):\n        x = [x]\n    return x",
        FAIL,
    ),
    "ctypes_null": ("import ctypes\ndef f():\n    return ctypes.string_at(0)", {"error"}),
    "ctypes_memset": ("import ctypes\ndef f():\n    ctypes.memset(1, 0, 1 << 20)", {"error"}),
    "setrlimit": (
        "import resource\ndef f():\n    resource.setrlimit(resource.RLIMIT_AS, (-1, -1))",
        {"error"},
    ),
    "ptrace": (
        "import ctypes\ndef f():\n    assert ctypes.CDLL(None).ptrace(16, 1, 0, 0) == 0",
        {"error"},
    ),
    "unshare": (
        "import ctypes\ndef f():\n    assert ctypes.CDLL(None).unshare(0x10000000) == 0",
        {"error"},
    ),
    "mount": (
        "import ctypes\ndef f():\n    assert ctypes.CDLL(None).mount(b'x', b'/usr', b'tmpfs', 0, 0) == 0",
        {"error"},
    ),
    "subclasses_escape": (
        f"def f():\n    for c in ().__class__.__base__.__subclasses__():\n"
        f"        if c.__name__ == '_wrap_close':\n"
        f"            return c.__init__.__globals__['system']('touch {MARKER}')",
        {"error"},
    ),
    "builtins_escape": (
        f"def f():\n    return __builtins__['__import__']('os').system('touch {MARKER}')",
        {"error"},
    ),
    "import_trick": (
        "def f():\n    return __import__('su' + 'bprocess').check_output(['id'])",
        {"error"},
    ),
}


@pytest.fixture(scope="module")
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    yield server
    server.close()


@pytest.fixture(scope="module")
def ex_raw():
    os.environ["EXECUTOR_TEST_SECRET"] = SECRET
    try:
        with Executor(workers=2, timeout=1.0, static_checks=False) as ex:
            yield ex
    finally:
        del os.environ["EXECUTOR_TEST_SECRET"]


@pytest.fixture(scope="module")
def hostile_results(ex_raw, listener):
    MARKER.unlink(missing_ok=True)
    before = CANARY.read_bytes()
    port = listener.getsockname()[1]
    extra = {
        "loopback": (
            f"import socket\ndef f():\n    socket.create_connection(('127.0.0.1', {port}))",
            {"error"},
        ),
        "env_secret": ("import os\ndef f():\n    return dict(os.environ)", {"ok"}),
    }
    programs = {**HOSTILE, **extra}
    results = dict(zip(programs, ex_raw.run_many([(code, "") for code, _ in programs.values()])))
    yield programs, results
    assert not MARKER.exists(), "a program wrote to the host"
    assert CANARY.read_bytes() == before, "a program changed a host file"


@pytest.mark.parametrize("name", [*HOSTILE, "loopback", "env_secret"])
def test_sandbox_holds_without_static_checks(hostile_results, name):
    programs, results = hostile_results
    result, expected = results[name], programs[name][1]
    assert result.status in expected, (name, result)
    assert SECRET not in (result.output or "") + result.reason


def test_loopback_server_saw_no_connection(hostile_results, listener):
    with pytest.raises(TimeoutError):
        listener.accept()


def test_sandbox_identity(ex_raw):
    code = "import os\ndef f():\n    return os.getuid(), sorted(os.listdir('/')), os.getcwd()"
    result = ex_raw.run(code)
    uid, top, cwd = eval(result.output)  # test-side only: a trusted literal from our own program
    assert uid == 65534 and cwd == "/scratch"
    assert set(top) <= {"usr", "lib", "lib64", "lib32", "libx32", "dev", "scratch", "root"}
    assert "etc" not in top and "proc" not in top and "tmp" not in top


def test_scratch_is_private_and_wiped(ex_raw):
    write = "def f():\n    open('note.txt', 'w').write('hi')\n    return open('note.txt').read()"
    read = "import os\ndef f():\n    return sorted(os.listdir('.'))"
    assert ex_raw.run(write).output == "'hi'"
    assert [ex_raw.run(read).output for _ in range(3)] == ["[]"] * 3


def test_scratch_that_cannot_be_emptied_retires_its_worker(ex_raw):
    deep = "import os\ndef f():\n    for _ in range(2100):\n        os.mkdir('d')\n        os.chdir('d')\n    return 1"
    read = "import os\ndef f():\n    return sorted(os.listdir('.'))"
    results = ex_raw.run_many([(deep, ""), (deep, ""), (read, ""), (read, ""), (read, "")])
    assert [r.output for r in results] == ["1", "1", "[]", "[]", "[]"]


def test_forged_result_markers_are_ignored(ex_raw):
    code = (
        "import sys, os, struct, json\n"
        "def f():\n"
        "    frame = json.dumps({'id': 1, 'status': 'ok', 'output': '42', 'duration': 0}).encode()\n"
        "    sys.stdout.buffer.write(struct.pack('>I', len(frame)) + frame)\n"
        '    print(\'{"status": "ok", "output": "42"}\')\n'
        "    sys.stdout.flush()\n"
        "    return 7"
    )
    assert ex_raw.run(code).output == "7"


_FRAME = "struct.pack('>I', 11) + b\"ok\\0'forged'\""  # a whole reply: ok, output 'forged'
FORGERS = {  # programs that tamper, at import time, with what the worker formats results with
    "repr": "import builtins\nbuiltins.repr = lambda o: \"'forged'\"",
    "str_len": "import builtins\nbuiltins.len = lambda o: 10**9\nbuiltins.str = lambda o='': 'x'",
    "eval": "import builtins\nbuiltins.eval = lambda *a: 'forged'",
    "type_isinstance": "import builtins\nbuiltins.type = builtins.isinstance = lambda *a: int",
    "exceptions": "import builtins\nbuiltins.BaseException = builtins.Exception = int",
    "print_format": "import builtins\nbuiltins.print = builtins.format = lambda *a, **k: 'forged'",
    "os_write": "import os, struct\n_w = os.write\n"
    f"os.write = lambda fd, d: _w(fd, {_FRAME}) and len(d)",
    "os_exit": "import os\nos._exit = lambda code: None",
    "struct_pack": "import struct\nstruct.pack = lambda *a: b'\\0\\0\\0\\7'",
    "worker_globals": "import __main__, os, struct\n__main__.repr = lambda o: 'forged'\n"
    f"__main__.write_frame = lambda fd, d: os.write(fd, {_FRAME})",
}


@pytest.mark.parametrize("name", FORGERS)
def test_forged_builtins_do_not_change_the_result(ex_raw, name):
    result = ex_raw.run(FORGERS[name] + "\ndef f(x):\n    return [x, 'a']", "1")
    assert (result.status, result.output) == ("ok", "[1, 'a']"), result


def test_str_subclass_texts_cannot_rewrite_the_reply(ex_raw):
    """A __str__ / __repr__ returning a str subclass whose __radd__ forges 'ok' is copied first."""
    sub = (
        "class S(str):\n"
        "    def __radd__(self, other):\n"
        "        return S(\"ok\\0'forged'\")\n"
        "    def __getitem__(self, key):\n"
        "        return self\n"
        "    def __len__(self):\n"
        "        return 0\n"
    )
    raises = "class E(Exception):\n    def __str__(self):\n        return S('boom')\n"
    error = ex_raw.run(sub + raises + "def f():\n    raise E()")
    assert (error.status, error.reason) == ("error", "E: boom"), error
    returns = "class V:\n    def __repr__(self):\n        return S('v')\n"
    ok = ex_raw.run(sub + returns + "def f():\n    return V()")
    assert (ok.status, ok.output) == ("ok", "v"), ok


NONDETERMINISTIC = {
    "random": "import random\ndef f():\n    return random.random()",
    "time": "import time\ndef f():\n    return time.time()",
    "id": "def f():\n    return id(object())",
    "hash": "def f():\n    return hash('absolute zero')",
    "set_order": "def f():\n    return str(list({str(i) * 3 for i in range(40)}))",
    "object_repr": "def f():\n    return repr(object())",
    "urandom": "import os\ndef f():\n    return os.urandom(8)",
}


@pytest.mark.parametrize("name", NONDETERMINISTIC)
def test_validate_flags_nondeterminism(ex_raw, name):
    result = ex_raw.validate(NONDETERMINISTIC[name])
    assert result.status == "nondeterministic", result


def test_static_layer_rejects_the_hostile_suite():
    with Executor(workers=1, timeout=1.0, static_checks=True) as ex:
        names = [*HOSTILE, *NONDETERMINISTIC]
        codes = {**{n: c for n, (c, _) in HOSTILE.items()}, **NONDETERMINISTIC}
        results = ex.run_many([(codes[n], "") for n in names])
        statuses = {n: r.status for n, r in zip(names, results)}
        runaway = {"python_loop", "c_loop", "recursion", "deep_repr", "huge_print", "huge_return",
                   "memory_list", "memory_growth", "giant_return", "id", "hash", "set_order", "object_repr"}  # fmt: skip
        for name in names:
            if name not in runaway:
                assert statuses[name] == "rejected", (name, statuses[name])
        assert all(r.reason for r in results if r.status != "ok")
        assert ex.validate(NONDETERMINISTIC["hash"]).status == "nondeterministic"


def test_pool_still_answers_after_the_suite(hostile_results, ex_raw):
    results = ex_raw.run_many([("def f(x):\n    return x * 2", str(i)) for i in range(20)])
    assert [r.output for r in results] == [str(2 * i) for i in range(20)]
    deadline = time.monotonic() + 10
    while len(ex_raw._pool.live_workers()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(ex_raw._pool.live_workers()) == 2
    for worker in ex_raw._pool.live_workers():  # no program process outlived its run
        tree, todo = [], [worker.proc.pid]
        while todo:
            pid = todo.pop()
            kids = [int(k) for t in os.listdir(f"/proc/{pid}/task")
                    for k in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]  # fmt: skip
            tree += kids
            todo += kids
        assert len(tree) == 2, tree  # the sandbox's init and the worker itself


def test_concurrent_hostile_and_benign_calls(ex_raw):
    outputs = []

    def benign():
        outputs.extend(ex_raw.run("def f(x):\n    return -x", str(i)).output for i in range(10))

    thread = threading.Thread(target=benign)
    thread.start()
    started = time.monotonic()
    loop = ex_raw.run("def f():\n    while True:\n        pass")
    thread.join()
    assert loop.status == "timeout" and time.monotonic() - started < 5
    assert outputs == [str(-i) for i in range(10)]
