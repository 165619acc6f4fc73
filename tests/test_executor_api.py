"""Public API of the executor on benign programs: run, validate, batches, AZR checks, pool care."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from reasoning.executor import STATUSES, ExecutionResult, Executor, outputs_equal

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

CRUXEVAL = Path(__file__).resolve().parents[1].parent / "shared/data/cruxeval/cruxeval.jsonl"

BENIGN = [  # (code, inputs, expected output repr)
    (
        "def f(s):\n    return s.strip().title().replace(' ', '-')",
        "'  hello big world '",
        "'Hello-Big-World'",
    ),
    ("def f(xs):\n    return [x * x for x in xs if x % 2]", "[1, 2, 3, 4, 5]", "[1, 9, 25]"),
    (
        "def f(d):\n    return sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))",
        "{'a': 1, 'b': 3, 'c': 3}",
        "[('b', 3), ('c', 3), ('a', 1)]",
    ),
    (
        "from collections import Counter, defaultdict\ndef f(s):\n    g = defaultdict(list)\n    for ch, n in Counter(s).items():\n        g[n].append(ch)\n    return dict(g)",
        "'abbccc'",
        "{1: ['a'], 2: ['b'], 3: ['c']}",
    ),
    (
        "import itertools\ndef f(xs):\n    return [p for p in itertools.permutations(xs, 2)][:3]",
        "[1, 2, 3]",
        "[(1, 2), (1, 3), (2, 1)]",
    ),
    (
        "import math\ndef f(n):\n    return math.factorial(n), math.gcd(12, n), round(math.sqrt(n), 3)",
        "8",
        "(40320, 4, 2.828)",
    ),
    (
        "import re\ndef f(s):\n    return re.findall(r'\\d+', s)",
        "'a1b22c333'",
        "['1', '22', '333']",
    ),
    ("def f(n):\n    return 1 if n < 2 else n * f(n - 1)", "300", None),  # moderate recursion
    (
        "class Node:\n    def __init__(self, v, nxt=None):\n        self.v, self.nxt = v, nxt\ndef f(xs):\n    head = None\n    for x in xs:\n        head = Node(x, head)\n    out = []\n    while head:\n        out.append(head.v)\n        head = head.nxt\n    return out",
        "[1, 2, 3]",
        "[3, 2, 1]",
    ),
    (
        "import heapq, bisect\ndef f(xs):\n    h = list(xs)\n    heapq.heapify(h)\n    return [heapq.heappop(h) for _ in range(2)], bisect.bisect(sorted(xs), 4)",
        "[5, 1, 4, 2]",
        "([1, 2], 3)",
    ),
    (
        "def f(text, n=2):\n    return {w: len(w) for w in text.split()[:n]}",
        "'to be or', n=3",
        "{'to': 2, 'be': 2, 'or': 2}",
    ),
    ("def f():\n    return None", "", "None"),
    (
        "def f(a, b):\n    return a.difference(b), frozenset(b)",
        "{1, 2, 3}, {2}",
        "({1, 3}, frozenset({2}))",
    ),
    ("def f(x):\n    print('noise', x)\n    return x", "b'\\x00\\xff'", "b'\\x00\\xff'"),
]


@pytest.fixture(scope="module")
def ex():
    with Executor(workers=2, timeout=2.0, static_checks=True) as executor:
        yield executor


def test_protections_all_on(ex):
    assert set(ex.protections) >= {"namespaces", "seccomp", "rlimits", "static_checks"}
    assert all(ex.protections.values()), ex.protections


@pytest.mark.parametrize("code, inputs, expected", BENIGN)
def test_benign_programs_run_ok(ex, code, inputs, expected):
    result = ex.run(code, inputs)
    assert isinstance(result, ExecutionResult)
    assert result.status == "ok", result.reason
    if expected is not None:
        assert outputs_equal(result.output, expected), result.output
    assert result.duration > 0


def test_validate_accepts_deterministic_benign_batch(ex):
    results = ex.validate_many([(c, i) for c, i, _ in BENIGN])
    assert [r.status for r in results] == ["ok"] * len(BENIGN), [r.reason for r in results]


def test_statuses_and_reasons(ex):
    cases = {
        "def f(x):\n    return 1 / x": ("0", "error", "ZeroDivisionError"),
        "def f():\n    while True:\n        pass": ("", "timeout", "wall clock"),
        "def f():\n    return 'x' * 200_000": ("", "output-limit", "characters"),
        "import os\ndef f():\n    return 1": ("", "rejected", "import of 'os'"),
        "def f(x):\n    return x": ("__import__('os')", "rejected", "inputs"),
        "def g():\n    return 1": ("", "rejected", "no top-level function f"),
    }
    results = ex.run_many([(code, inputs) for code, (inputs, _, _) in cases.items()])
    for result, (_, status, fragment) in zip(results, cases.values()):
        assert result.status == status and result.status in STATUSES
        assert fragment in result.reason and result.output is None


def test_validate_catches_nondeterminism_across_workers(ex):
    code = "def f():\n    return hash('absolute zero') % 1000003, id(object())"
    assert ex.run(code).status == "ok"
    result = ex.validate(code)
    assert result.status == "nondeterministic" and "differ" in result.reason


def test_cruxeval_sample_matches_gold_outputs(ex):
    if not CRUXEVAL.exists():
        pytest.skip("shared CRUXEval data not present")
    rows = [json.loads(line) for line in CRUXEVAL.read_text().splitlines()][::20]
    results = ex.validate_many([(r["code"], r["input"]) for r in rows])
    for row, result in zip(rows, results):
        assert result.status == "ok", (row["id"], result.reason)
        assert outputs_equal(result.output, row["output"]), (row["id"], result.output)


def test_deduction_check(ex):
    code = "def f(xs):\n    return sorted(set(xs))"
    assert ex.check_deduction(code, "[3, 1, 3]", "[1, 3]").correct
    assert ex.check_deduction(code, "[3, 1, 3]", " [1,3] ").correct  # value, not text
    wrong = ex.check_deduction(code, "[3, 1, 3]", "[3, 1]")
    assert not wrong.correct and wrong.expected == "[1, 3]"
    hostile = ex.check_deduction(code, "[3, 1, 3]", "__import__('os').system('touch /tmp/x')")
    assert not hostile.correct  # parsed, never evaluated
    assert ex.check_deduction(code, "[1]", "[1]", gold_output="[1]").correct


def test_abduction_check(ex):
    code = "def f(a, b):\n    return a * b"
    assert ex.check_abduction(code, "3, 4", "12").correct
    assert ex.check_abduction(code, "2, 6", "12").correct  # any input giving the output
    assert not ex.check_abduction(code, "2, 5", "12").correct
    rejected = ex.check_abduction(code, "__import__('os'), 1", "12")
    assert not rejected.correct and rejected.status == "rejected"


def test_induction_check(ex):
    cases = [("1", "2"), ("5", "10"), ("-3", "-6"), ("'ab'", "'abab'")]
    good = ex.check_induction("def f(x):\n    return x * 2", cases)
    assert good.correct and good.passed == 4 and good.accuracy == 1.0
    bad = ex.check_induction("def f(x):\n    return x + x if isinstance(x, int) else x", cases)
    assert not bad.correct and bad.passed == 3 and not bad.cases[3].correct
    crash = ex.check_induction("def f(x):\n    return 1 // 0", cases[:2])
    assert crash.passed == 0 and crash.cases[0].status == "error"


def test_thread_safety(ex):
    results: dict[int, ExecutionResult] = {}

    def call(i):
        results[i] = ex.run("def f(x):\n    return [x] * 3", str(i))

    before = ex.submitted
    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[i].output == repr([i] * 3) for i in range(16))
    assert ex.submitted - before == 16  # every program counted once (the throughput metric)
    ex.run("import os\ndef f():\n    return 1")  # rejected statically: never sent
    assert ex.submitted - before == 16


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                kids = Path(f"/proc/{p}/task/{task}/children").read_text().split()
                todo += [int(k) for k in kids if int(k) not in found]
                found.update(int(k) for k in kids)
        except OSError:
            pass
    return found


def test_dead_and_hung_workers_are_replaced_and_close_kills_everything():
    with Executor(workers=1, timeout=0.5) as ex:
        (worker,) = ex._pool.live_workers()
        (worker_pid,) = [p for p in _descendants(worker.proc.pid) if not _descendants(p)]
        os.kill(worker_pid, signal.SIGKILL)  # dies: the next call reports it and respawns
        worker.proc.wait(timeout=5)  # bwrap exits once its sandbox is gone
        first = ex.run("def f():\n    return 1")
        assert first.status == "error" and "restarted" in first.reason
        assert ex.run("def f():\n    return 2").output == "2"
        (worker,) = ex._pool.live_workers()
        for pid in _descendants(worker.proc.pid):  # freeze the whole sandbox: a hung worker
            os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        hung = ex.run("def f():\n    return 3")
        assert hung.status == "timeout" and "restarted" in hung.reason
        assert time.monotonic() - started < 10
        assert ex.run("def f():\n    return 4").output == "4"
        pids = {w.proc.pid for w in ex._pool.live_workers()}
        pids |= {d for p in pids for d in _descendants(p)}
        assert len(pids) >= 3  # bwrap, its init, the worker
    time.sleep(0.2)
    alive = [p for p in pids if os.path.exists(f"/proc/{p}")]
    assert not alive, alive
    with pytest.raises(RuntimeError):
        ex.run("def f():\n    return 5")


EXIT_SCRIPT = """
import os, sys, time
sys.path.insert(0, {root!r})
from reasoning.executor import Executor
ex = Executor(workers=1)
print(*[w.proc.pid for w in ex._pool.live_workers()], flush=True)
if sys.argv[1] == "hang":
    time.sleep(60)
"""


@pytest.mark.parametrize("how", ["exit", "hang"])
def test_workers_die_with_the_trainer(how, tmp_path):
    script = tmp_path / "trainer.py"
    script.write_text(EXIT_SCRIPT.format(root=str(Path(__file__).resolve().parents[1])))
    proc = subprocess.Popen([sys.executable, str(script), how], stdout=subprocess.PIPE, text=True)
    (bwrap_pid,) = map(int, proc.stdout.readline().split())
    pids = {bwrap_pid, *_descendants(bwrap_pid)}
    assert len(pids) >= 3
    if how == "hang":
        proc.kill()  # SIGKILL: no atexit, only die-with-parent
    proc.wait(timeout=20)
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if _alive(p)]


def _alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def test_fallback_without_namespaces_warns_and_still_limits():
    with pytest.warns(RuntimeWarning, match="DEGRADED"):
        ex = Executor(workers=1, timeout=0.5, sandbox="none")
    with ex:
        assert not ex.protections["namespaces"] and ex.protections["seccomp"]
        assert ex.run("def f(x):\n    return x + 1", "1").output == "2"
        off = [
            "import os\ndef f():\n    return os.fork()",
            "import socket\ndef f():\n    return socket.socket()",
            "def f():\n    while True:\n        pass",
        ]
        ex.static_checks = False
        statuses = [r.status for r in ex.run_many([(c, "") for c in off])]
        assert statuses == ["error", "error", "timeout"]
