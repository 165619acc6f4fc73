"""Code and math reasoning suites for Absolute Zero: CRUXEval-O/I, HumanEval, GSM8K, held-out.

- CRUXEval (Gu et al. 2024): O = deduction (program + input -> output), I = abduction (program +
  output -> input); posed with the AZR solver prompts and scored by the executor's AZR checks.
- HumanEval (Chen et al. 2021): the model writes the whole function; the official `check` runs on
  it in the sandbox (the prompt's import lines are prepended).
- GSM8K (Cobbe et al. 2021): exact match of the last number in `<answer>` (else in the text)
  with the number after `####`.
- The held-out deduction set (`reasoning.azr.heldout`) for before/after self-play comparisons.

Greedy decoding (temperature 0, one sample) or `n` samples at a temperature with the unbiased
pass@k estimator of Chen et al. (2021): 1 - C(n - c, k) / C(n, k). The same strict parser as in
training decides the format; `format_rate` says how often it was met. The LoRA head in use is
the caller's choice (`with backbone.lora(name): ...`).
Left out on purpose: few-shot prompting and chain-of-thought prompt variants.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import torch

from reasoning.azr.heldout import heldout_deduction_set
from reasoning.azr.prompts import FORMAT, block, parse_answer, parse_response, solver_prompt
from reasoning.azr.tasks import Task
from reasoning.azr.verify import check_answers
from reasoning.executor import Executor
from unimodal.backbone import Backbone
from unimodal.sampling import sample

__all__ = [
    "evaluate_cruxeval",
    "evaluate_deduction_set",
    "evaluate_gsm8k",
    "evaluate_humaneval",
    "heldout_deduction_set",
    "pass_at_k",
    "table",
]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021, eq. 1)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def _read_jsonl(path: str | Path, limit: int) -> list[dict]:
    opener = gzip.open if str(path).endswith(".gz") else open
    rows = []
    with opener(path, "rt") as fh:
        for line in fh:
            if line.strip():
                rows.append(json.loads(line))
            if limit and len(rows) >= limit:
                break
    return rows


@torch.no_grad()
def _answers(
    bb: Backbone,
    user_turns: Sequence[str],
    n: int,
    temperature: float,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
) -> list[list[str]]:
    """n decoded responses per user turn (greedy when temperature is 0)."""
    n = 1 if temperature <= 0 else n
    prompts = [bb.render([{"role": "user", "content": u}]) for u in user_turns for _ in range(n)]
    gen = torch.Generator(bb.device).manual_seed(seed)
    texts: list[str] = []
    for s in range(0, len(prompts), batch_size):
        out = sample(
            bb, bb.encode(prompts[s : s + batch_size]), max_new_tokens, temperature, 1.0, gen
        )
        for ids, mask in zip(out.completion_ids, out.completion_mask):
            texts.append(bb.tokenizer.decode(ids[mask.bool()], skip_special_tokens=True))
    return [texts[i * n : (i + 1) * n] for i in range(len(user_turns))]


def _score(
    name: str, correct: list[list[bool]], formatted: list[list[bool]], ks: Sequence[int]
) -> dict:
    n = len(correct[0]) if correct else 0
    row: dict = {"n": len(correct), "samples": n}
    for k in ks:
        if k <= n:
            row[f"pass@{k}"] = sum(pass_at_k(n, sum(c), k) for c in correct) / max(1, len(correct))
    row["format_rate"] = sum(sum(f) for f in formatted) / max(1, n * len(formatted))
    return {name: row}


def _examples(users: Sequence[str], texts: list[list[str]], correct: list[list[bool]], m: int = 3):
    return [
        {"prompt": u[-300:], "response": t[0][:500], "correct": c[0]}
        for u, t, c in list(zip(users, texts, correct))[:m]
    ]


def evaluate_tasks(
    bb: Backbone,
    ex: Executor,
    tasks: Sequence[Task],
    name: str,
    n: int = 1,
    ks: Sequence[int] = (1,),
    temperature: float = 0.0,
    max_new_tokens: int = 512,
    batch_size: int = 16,
    seed: int = 0,
) -> dict:
    """Pose AZR tasks with the solver prompt, check answers in the executor; one report row."""
    users = [solver_prompt(t) for t in tasks]
    texts = _answers(bb, users, n, temperature, max_new_tokens, batch_size, seed)
    flat_tasks = [t for t, ts in zip(tasks, texts) for _ in ts]
    answers = [parse_answer(t.kind, x)[0] for t, ts in zip(tasks, texts) for x in ts]
    ok = check_answers(ex, flat_tasks, answers)
    k = len(texts[0]) if texts else 1
    correct = [ok[i * k : (i + 1) * k] for i in range(len(tasks))]
    formatted = [[a is not None for a in answers[i * k : (i + 1) * k]] for i in range(len(tasks))]
    return {
        "rows": _score(name, correct, formatted, ks),
        "examples": _examples(users, texts, correct),
    }


def evaluate_cruxeval(
    backbone: Backbone,
    executor: Executor,
    data_path: str | Path,
    limit: int = 0,
    modes: Sequence[str] = ("O", "I"),
    nano: bool = False,
    **kw,
) -> dict:
    """CRUXEval-O (deduction) and -I (abduction), first `limit` problems (`nano`: in scope)."""
    rows = _read_jsonl(data_path, 0 if nano else limit)
    if nano:  # only the problems inside the nano world's scope (evals.nano)
        from evals.nano import nano_sized

        rows = [r for r in rows if nano_sized(r)][: limit or None]
    report: dict = {"suite": "cruxeval-nano" if nano else "cruxeval", "rows": {}, "examples": []}
    for mode in modes:
        kind = {"O": "deduction", "I": "abduction"}[mode]
        tasks = [Task(kind, r["code"], [r["input"]], [r["output"]]) for r in rows]
        part = evaluate_tasks(backbone, executor, tasks, f"CRUXEval-{mode}", **kw)
        report["rows"].update(part["rows"])
        report["examples"] += part["examples"]
    return report


def evaluate_deduction_set(
    backbone: Backbone,
    executor: Executor,
    tasks: Sequence[Task],
    max_new_tokens: int = 256,
    batch_size: int = 16,
    name: str = "heldout_deduction",
    **kw,
) -> dict:
    """Greedy (by default) accuracy on a list of deduction tasks, e.g. `heldout_deduction_set`."""
    part = evaluate_tasks(
        backbone, executor, tasks, name, max_new_tokens=max_new_tokens, batch_size=batch_size, **kw
    )
    return {"suite": name, **part}


def _imports(prompt: str) -> str:
    return "\n".join(ln for ln in prompt.splitlines() if ln.startswith(("import ", "from ")))


def humaneval_program(problem: dict, completion: str) -> str:
    """The program run in the sandbox: prompt imports + model function + tests; f() -> True.

    The candidate is bound before the wrapper `f` is defined (HumanEval/106's function is `f`).
    """
    return (
        f"{_imports(problem['prompt'])}\n{completion}\n\n{problem['test']}\n\n"
        f"candidate_fn = {problem['entry_point']}\n\n\n"
        "def f():\n    check(candidate_fn)\n    return True\n"
    )


def evaluate_humaneval(
    backbone: Backbone,
    executor: Executor,
    data_path: str | Path,
    limit: int = 0,
    n: int = 1,
    ks: Sequence[int] = (1,),
    temperature: float = 0.0,
    max_new_tokens: int = 512,
    batch_size: int = 16,
    seed: int = 0,
) -> dict:
    """HumanEval pass@k: the official `check` of each problem run on the model's function.

    Pass an executor built with `static_checks=False`: the official tests import `random` /
    `hashlib` and 7 canonical solutions fail the AZR-style static layer; the sandbox is the
    security boundary either way.
    """
    problems = _read_jsonl(data_path, limit)
    users = [
        "## Task: complete the function\nWrite the complete Python function "
        f"`{p['entry_point']}` (signature and body) described below.\n\n"
        f"{block('python', p['prompt'])}\n\n### Answer format\n"
        + FORMAT.format(blocks=block("python", "def ..."))
        for p in problems
    ]
    texts = _answers(backbone, users, n, temperature, max_new_tokens, batch_size, seed)
    jobs, formatted = [], []
    for p, ts in zip(problems, texts):
        fmt = []
        for t in ts:
            parsed = parse_response(t, {"python": 1})
            fmt.append(parsed.ok)
            code = parsed.blocks["python"][0] if parsed.ok else None
            jobs.append(humaneval_program(p, code) if code else "")
        formatted.append(fmt)
    results = executor.run_many([(j, "") for j in jobs])
    ok = [bool(j) and r.ok and r.output == "True" for j, r in zip(jobs, results)]
    k = len(texts[0]) if texts else 1
    correct = [ok[i * k : (i + 1) * k] for i in range(len(problems))]
    return {
        "suite": "humaneval",
        "rows": _score("HumanEval", correct, formatted, ks),
        "examples": _examples(users, texts, correct),
    }


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)


def final_number(text: str) -> float | None:
    """The last number inside <answer>...</answer>, else in the whole text; None if none."""
    m = _ANSWER.search(text)
    nums = _NUMBER.findall(m.group(1) if m else text)
    if not nums:
        return None
    try:
        return float(nums[-1].replace(",", ""))
    except ValueError:
        return None


def evaluate_gsm8k(
    backbone: Backbone,
    executor: Executor | None,
    data_path: str | Path,
    limit: int = 0,
    n: int = 1,
    ks: Sequence[int] = (1,),
    temperature: float = 0.0,
    max_new_tokens: int = 512,
    batch_size: int = 16,
    seed: int = 0,
) -> dict:
    """GSM8K exact match on the final number (the executor is unused; kept for one signature)."""
    rows = _read_jsonl(data_path, limit)
    users = [
        f"## Task: solve the problem\n{r['question']}\n\n### Answer format\n"
        "<think> your step-by-step reasoning </think>\n<answer> the final number </answer>"
        for r in rows
    ]
    texts = _answers(backbone, users, n, temperature, max_new_tokens, batch_size, seed)
    gold = [float(r["answer"].split("####")[-1].strip().replace(",", "")) for r in rows]
    correct = [[final_number(t) == g for t in ts] for g, ts in zip(gold, texts)]
    formatted = [[bool(_ANSWER.search(t)) for t in ts] for ts in texts]
    return {
        "suite": "gsm8k",
        "rows": _score("GSM8K", correct, formatted, ks),
        "examples": _examples(users, texts, correct),
    }


def table(report: dict) -> str:
    """A plain-text table: one row per sub-suite, pass@k columns and the format rate."""
    rows = report["rows"]
    cols = sorted(
        {c for r in rows.values() for c in r if c.startswith("pass@")}, key=lambda c: int(c[5:])
    )
    head = f"{'suite':<20} {'n':>5} " + " ".join(f"{c:>8}" for c in cols) + f" {'format':>7}"
    lines = [head]
    for name, r in rows.items():
        vals = " ".join(f"{r[c]:>8.3f}" if c in r else f"{'-':>8}" for c in cols)
        lines.append(f"{name:<20} {r['n']:>5} {vals} {r['format_rate']:>7.3f}")
    return "\n".join(lines)
