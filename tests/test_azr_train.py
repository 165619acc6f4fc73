"""Smoke runs of tools/train_azr.py on the tiny backbone, and the code evaluation suites.

The tiny model is random, so on its own nearly every response is malformed. The first run
replaces every other sampled response by a scripted, well-formed one (teacher-forced through the
same head, so its log-probs are genuine): valid proposals enter the buffers, learnability and
solve rates are nonzero, advantages are nonzero and the LoRA head moves while the base weights
stay put. The resumed third step is left to the random model alone (zero valid proposals).
"""

import itertools
import json
import re

import pytest
import torch

from reasoning.pg.rollout import forced_rollout
from unimodal import checkpoint
from unimodal.config import load_config

IDENT = "def f(x):\n    return x"


def _script(prompt: str, counter) -> str:
    """A correct answer for identity programs, or a valid identity proposal."""
    wrap = "<think> ok </think>\n<answer>\n{}\n</answer>"
    if "propose inputs and a message" in prompt:
        k = next(counter) * 10
        blocks = "".join(f"```input\n{k + i}\n```\n" for i in range(10))
        return wrap.format(blocks + "```message\nidentity\n```")
    if "## Task: propose a new" in prompt:
        return wrap.format(f"```python\n{IDENT}\n```\n```input\n{next(counter)}\n```")
    if "deduce the output" in prompt:
        return wrap.format(
            "```output\n" + re.search(r"```input\n(.*?)\n```", prompt, re.S)[1] + "\n```"
        )
    if "find an input" in prompt:
        return wrap.format(
            "```input\n" + re.search(r"```output\n(.*?)\n```", prompt, re.S)[1] + "\n```"
        )
    return wrap.format(f"```python\n{IDENT}\n```")


def _scripted_generate(real):
    counter = itertools.count(100)

    def generate(
        bb, prompts, head, max_new_tokens, temperature=1.0, top_p=1.0, batch_size=16, gen=None,
        **kw,
    ):  # fmt: skip
        rolls = real(bb, prompts, head, max_new_tokens, temperature, top_p, batch_size, gen, **kw)
        for i in range(0, len(rolls), 2):
            rolls[i] = forced_rollout(
                bb, prompts[i], _script(prompts[i], counter), head, temperature
            )
        return rolls

    return generate


def test_train_azr_smoke_scripted_then_random_resume(
    tmp_path, tiny_backbone_dir, monkeypatch, capsys
):
    import reasoning.azr.selfplay as selfplay
    import tools.train_azr as T

    made = []
    load = T.Backbone.from_pretrained
    monkeypatch.setattr(
        T.Backbone, "from_pretrained", lambda *a, **k: made.append(load(*a, **k)) or made[-1]
    )
    monkeypatch.setattr(selfplay, "generate", _scripted_generate(selfplay.generate))
    out = tmp_path / "run"
    args = [f"--model.path={tiny_backbone_dir}", f"--train.out_dir={out}", "--azr.sample_every=1"]
    args += ["--azr.max_new_tokens=12", "--azr.references=1"]
    report = T.main(load_config(T.CONFIG, args))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for kind in ("deduction", "abduction", "induction"):
        assert rows[0][f"{kind}/propose/valid_rate"] == 0.5  # scripted half valid, random half not
        assert rows[0][f"{kind}/propose/learnability"] == 0.5  # 1 of 2 learnability samples right
        assert rows[0][f"{kind}/solve/solve_rate"] == 0.5
        assert rows[-1][f"buffer/{kind}"] == 3  # identity seed + one new task per step
    assert rows[0]["pg/abs_advantage"] > 0.5 and rows[0]["pg/grad_norm"] > 0
    assert all(
        rows[0][f"time/{k}"] > 0
        for k in ("propose", "validate", "learnability", "solve", "check", "update")
    )
    assert report["metrics"]["buffer/deduction"] == 3
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert {s["kind"] for s in samples[0]["propose"] if s["valid"]} == {
        "deduction",
        "abduction",
        "induction",
    }

    # LoRA moved, base did not (compared with a fresh load of the same folder)
    bb = made[0]
    fresh = dict(load(tiny_backbone_dir).model.named_parameters())
    for n, p in bb.model.named_parameters():
        if "lora_" not in n:
            assert torch.equal(p.detach(), fresh[n.replace(".base_layer", "")].detach()), n
    ckpt = checkpoint.latest(out)
    lora = checkpoint.load_weights(ckpt, "lora")
    assert any("lora_B" in k and v.abs().max() > 0 for k, v in lora.items())  # B starts at zero
    again = load(tiny_backbone_dir)
    from reasoning.azr.head import load_head

    head = load_head(again, out)  # reads the [head] section of the checkpoint's config
    assert all(torch.equal(v, again.lora_state_dict(head)[k]) for k, v in lora.items())
    state = checkpoint.load_train_state(ckpt)
    assert state["step"] == 2 and json.loads(state["buffers"]["deduction"])[-1]["step"] == 1

    # resume for one more step with the random model alone: nothing valid, nothing crashes
    monkeypatch.undo()
    T.main(load_config(T.CONFIG, args + ["--train.steps=3"]))
    assert "resumed from" in capsys.readouterr().out
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 3 and last["buffer/induction"] == 3
    assert (
        last["deduction/propose/valid_rate"] == 0.0 and "deduction/propose/learnability" not in last
    )


def test_plot_reads_metrics(tmp_path):
    from reasoning.azr.plot import plot_metrics

    rows = [
        {"step": s, "deduction/propose/valid_rate": 0.1 * s, "abduction/solve/solve_rate": 0.2}
        for s in (1, 2)
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    png = plot_metrics(tmp_path)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_code_suite_helpers(ex_nostatic, shared_data):
    from evals.code_suites import (
        _read_jsonl,
        final_number,
        humaneval_program,
        pass_at_k,
        table,
    )

    assert pass_at_k(5, 2, 1) == pytest.approx(0.4) and pass_at_k(5, 2, 2) == pytest.approx(0.7)
    assert pass_at_k(5, 0, 3) == 0.0 and pass_at_k(4, 3, 2) == 1.0
    assert final_number("<think>2+2 is 4</think><answer> $1,234.0 </answer>") == 1234.0
    assert final_number("so it is 7, then 12.") == 12.0 and final_number("none") is None
    probs = _read_jsonl(shared_data / "humaneval" / "HumanEval.jsonl.gz", 0)
    p = {q["task_id"]: q for q in probs}
    good = [
        humaneval_program(p[t], p[t]["prompt"] + p[t]["canonical_solution"])
        for t in ("HumanEval/0", "HumanEval/106")
    ]
    bad = humaneval_program(
        p["HumanEval/0"], "def has_close_elements(numbers, threshold):\n    return False"
    )
    res = ex_nostatic.run_many([(c, "") for c in good + [bad]])
    assert [r.output for r in res] == ["True", "True", None]
    rep = {"rows": {"CRUXEval-O": {"n": 3, "samples": 1, "pass@1": 1 / 3, "format_rate": 0.5}}}
    assert "CRUXEval-O" in table(rep) and "0.333" in table(rep)


@pytest.fixture(scope="module")
def ex_nostatic():
    from reasoning.executor import Executor

    with Executor(workers=2, timeout=2.0, static_checks=False) as e:
        yield e


def test_eval_suites_run_on_tiny(tiny_backbone_dir, shared_data, ex_nostatic):
    from evals.code_suites import (
        evaluate_cruxeval,
        evaluate_deduction_set,
        evaluate_gsm8k,
        evaluate_humaneval,
        heldout_deduction_set,
    )
    from unimodal.backbone import Backbone

    bb = Backbone.from_pretrained(tiny_backbone_dir).freeze()
    d = shared_data
    crux = evaluate_cruxeval(
        bb, ex_nostatic, d / "cruxeval" / "cruxeval.jsonl", limit=2, max_new_tokens=8
    )
    assert (
        set(crux["rows"]) == {"CRUXEval-O", "CRUXEval-I"} and crux["rows"]["CRUXEval-O"]["n"] == 2
    )
    he = evaluate_humaneval(
        bb,
        ex_nostatic,
        d / "humaneval" / "HumanEval.jsonl.gz",
        limit=2,
        n=3,
        ks=(1, 2),
        temperature=1.0,
        max_new_tokens=8,
    )
    assert he["rows"]["HumanEval"]["samples"] == 3 and "pass@2" in he["rows"]["HumanEval"]
    gsm = evaluate_gsm8k(bb, None, d / "gsm8k" / "test.jsonl", limit=2, max_new_tokens=8)
    assert 0.0 <= gsm["rows"]["GSM8K"]["pass@1"] <= 1.0
    held = evaluate_deduction_set(
        bb, ex_nostatic, heldout_deduction_set(ex_nostatic, 4), max_new_tokens=8
    )
    assert held["rows"]["heldout_deduction"]["n"] == 4
