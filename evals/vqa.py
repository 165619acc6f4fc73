"""VQA on held-out shapes-world scenes: exact-match accuracy per question type vs chance.

Questions come from a seed the training stream never uses; answers are decoded greedily and
compared after lower-casing and stripping punctuation. Chance is 1 / (number of possible answers)
for each question type.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from unimodal.backbone import Backbone
from unimodal.data import chance_level
from unimodal.sampling import sample
from unimodal.stage0 import shapes_example

HELD_OUT_SEED = 1_000_003


def normalise(text: str) -> str:
    return text.strip().lower().strip(".!?,;: ").split("\n")[0].strip()


@torch.no_grad()
def evaluate_vqa(
    backbone: Backbone, n: int = 200, image_size: int = 64, batch_size: int = 16
) -> dict:
    """Greedy answers on `n` held-out questions; returns per-type and overall accuracy."""
    examples = [shapes_example(HELD_OUT_SEED, i, "vqa", image_size) for i in range(n)]
    hits: dict[str, list[int]] = defaultdict(list)
    samples = []
    for s in range(0, n, batch_size):
        batch = examples[s : s + batch_size]
        prompt = backbone.encode_chat([e.messages for e in batch], [e.images for e in batch])
        out = sample(backbone, prompt, max_new_tokens=6, temperature=0.0)
        for e, ids in zip(batch, out.completion_ids):
            got = normalise(backbone.tokenizer.decode(ids, skip_special_tokens=True))
            hits[e.qtype].append(int(got == normalise(e.answer)))
            if len(samples) < 8:
                samples.append(
                    {
                        "question": e.messages[0]["content"][1]["text"],
                        "answer": e.answer,
                        "got": got,
                    }
                )
    per_type = {
        q: {"accuracy": sum(v) / len(v), "n": len(v), "chance": chance_level(q)}
        for q, v in sorted(hits.items())
    }
    total = [x for v in hits.values() for x in v]
    return {
        "suite": "vqa",
        "overall": sum(total) / max(1, len(total)),
        "per_type": per_type,
        "samples": samples,
    }


def vqa_table(report: dict) -> str:
    rows = [f"{'question type':<14} {'n':>5} {'accuracy':>9} {'chance':>7}"]
    for q, r in report["per_type"].items():
        rows.append(f"{q:<14} {r['n']:>5} {r['accuracy']:>9.3f} {r['chance']:>7.3f}")
    rows.append(
        f"{'overall':<14} {sum(r['n'] for r in report['per_type'].values()):>5} {report['overall']:>9.3f}"
    )
    return "\n".join(rows)
