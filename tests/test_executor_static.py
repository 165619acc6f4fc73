"""Static layer and host-side comparison of the executor: no sandbox, no subprocess."""

import pytest

from reasoning.executor import StaticLimits, check_code, check_inputs, outputs_equal
from reasoning.executor.compare import is_literal

BENIGN = [
    "def f(s):\n    return s.upper().split()",
    "def f(xs):\n    return sorted({x: xs.count(x) for x in xs}.items(), key=lambda kv: -kv[1])",
    "from collections import Counter\ndef f(s):\n    return Counter(s).most_common(2)",
    "import itertools, math\ndef f(n):\n    return [math.comb(n, k) for k in range(n)] + list(itertools.accumulate(range(n)))",
    "import re\ndef f(s):\n    return re.sub(r'[aeiou]', '', s)",
    "class Stack:\n    def __init__(self):\n        self._items = []\n    def push(self, x):\n        self._items.append(x)\n        return self\n    def items(self):\n        return self._items\ndef f(x):\n    return Stack().push(x).items()",
    "class P:\n    def __init__(self, v):\n        super().__init__()\n        self.v = v\n    def __eq__(self, o):\n        return self.v == o.v\ndef f(x):\n    return P(x) == P(x)",
    "def f(input):\n    return input[::-1]",
    "f = lambda x: x * 2",
    "def f(n):\n    if __name__ == '__main__':\n        return n\n    return '_____'",
]

HOSTILE = {
    "import os\ndef f():\n    return os.listdir('/')": "import of 'os'",
    "import subprocess\ndef f():\n    pass": "import of 'subprocess'",
    "from os import path\ndef f():\n    pass": "import of 'os'",
    "from . import x\ndef f():\n    pass": "relative import",
    "from math import *\ndef f():\n    pass": "star import",
    "def f():\n    return __import__('ti' + 'me').time()": "__import__",
    "def f():\n    return eval('1+1')": "'eval'",
    "def f():\n    return open('/etc/passwd').read()": "'open'",
    "def f(x):\n    return getattr(x, 'upper')()": "'getattr'",
    "def f():\n    return ().__class__.__base__.__subclasses__()": "forbidden dunder attribute",
    "def f():\n    return __builtins__": "__builtins__",
    "def f():\n    return [].__class__": "__class__",
    "def f(g):\n    return g.gi_frame.f_globals": "forbidden attribute",
    "def f(x):\n    return x._private": "private attribute",
    "import collections\ndef f():\n    return collections._sys": "_sys",
    "import typing\ndef f():\n    return typing.sys": "'sys'",
    "from operator import attrgetter\ndef f(x):\n    return attrgetter('real')(x)": "attrgetter",
    "def f(x):\n    return '{0.__class__}'.format(x)": "string constant",
    "import string\ndef f(x, n):\n    return string.Formatter().get_field(n, [x], {})": "forbidden attribute",
    "def g():\n    pass": "no top-level function f",
    "def f(:\n    pass": "syntax error",
    "def f():\n    return 1\x00": "syntax error",
    "def f():\n    return " + "(" * 300 + "1" + ")" * 300: "syntax error",
    "def f(exec):\n    return exec": "'exec'",
}


@pytest.mark.parametrize("code", BENIGN)
def test_benign_code_passes(code):
    assert check_code(code) is None


@pytest.mark.parametrize("code, fragment", HOSTILE.items())
def test_hostile_code_is_rejected_with_reason(code, fragment):
    reason = check_code(code)
    assert reason is not None and fragment in reason, reason


def test_size_caps():
    code = "def f():\n    return 1\n" + "#" * 100
    assert check_code(code, StaticLimits(max_code_chars=50)).startswith("code has")
    assert check_inputs("1" * 100, StaticLimits(max_input_chars=10)).startswith("inputs have")
    many = "def f():\n    return " + "+".join(["1"] * 400)
    assert "syntax nodes" in check_code(many, StaticLimits(max_nodes=100))


@pytest.mark.parametrize(
    "inputs",
    ["", "[3, 1, 2], 'a'", "(1, ), (1, ), (1, 2)", "x=3", "{'a': {1, 2}}, -1.5e3", "b'\\x00'"],
)
def test_literal_inputs_pass(inputs):
    assert check_inputs(inputs) is None
    assert check_inputs(inputs, literal_only=True) is None


@pytest.mark.parametrize("inputs", ["dict(a=1)", "'ab' * 20", "lambda x: x < 2", "range(3)"])
def test_safe_expression_inputs_pass_unless_literal_only(inputs):
    assert check_inputs(inputs) is None
    assert "not a literal" in check_inputs(inputs, literal_only=True)


@pytest.mark.parametrize(
    "inputs, fragment",
    [
        ("__import__('os').system('id')", "__import__"),
        ("open('/etc/passwd').read()", "'open'"),
        ("().__class__", "__class__"),
        ("*[1, 2]", "unpacking"),
        ("**{'a': 1}", "unpacking"),
        ("1); import os; (", "parse"),
        ("1)(2", "parse"),
    ],
)
def test_hostile_inputs_are_rejected(inputs, fragment):
    reason = check_inputs(inputs)
    assert reason is not None and fragment in reason, reason


@pytest.mark.parametrize(
    "a, b, equal",
    [
        ("[1, 2]", "[1,2]", True),
        ("{'b': 1, 'a': 2}", "{'a': 2, 'b': 1}", True),
        ("{'x', 'y'}", "{'y', 'x'}", True),
        ("(1,)", "[1]", False),
        ("'1'", "1", False),
        ("1", "1.0", True),  # value equality, as Absolute Zero compares
        ("nan", "nan", True),  # not a literal: string comparison
        ("<object object at 0x1>", "<object object at 0x2>", False),
        ("__import__('os')", "__import__('os')", True),  # compared as text, never evaluated
        ("1", None, False),
        ("[" * 1000 + "]" * 1000, "[" * 1000 + "]" * 1000, True),
    ],
)
def test_outputs_equal_by_value_never_eval(a, b, equal):
    assert outputs_equal(a, b) is equal


def test_is_literal_refuses_code():
    assert is_literal("[1, (2, 3), {'a': None}]")
    assert not is_literal("__import__('os').system('true')")
    assert not is_literal("x" * 2_000_000)
