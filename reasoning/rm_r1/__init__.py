"""RM-R1 reward reasoning (Chen et al. 2025): a judge head that classifies, writes rubrics or
solves, compares, and ends with `<answer>[[A]]</answer>` / `<answer>[[B]]</answer>`.

Map: `prompts` (chain of rubrics / distilled instruction), `verdict` (the one parser and the
+1 / -1 reward), `data` (pairs, RM-Bench, hh-rlhf, traces, A/B balance), `procedural`
(verifiable pairs + templated traces), `distill` (stage 1 batches), `grpo` (stage 2 rollouts),
`sources` (what each stage reads), `judge` (the Python API). The loop is `tools/train_rm.py`.
"""

from reasoning.rm_r1.data import JudgeItem, PairStream, PreferencePair, TraceExample
from reasoning.rm_r1.judge import HeadSpec, Judgement, judge, judge_many, load_head, save_head
from reasoning.rm_r1.prompts import judge_messages
from reasoning.rm_r1.verdict import Verdict, parse_verdict, trace_reward, verdict_reward

__all__ = [
    "HeadSpec",
    "JudgeItem",
    "Judgement",
    "PairStream",
    "PreferencePair",
    "TraceExample",
    "Verdict",
    "judge",
    "judge_many",
    "judge_messages",
    "load_head",
    "parse_verdict",
    "save_head",
    "trace_reward",
    "verdict_reward",
]
