"""Training prompts for RL: the training split of the GenEval-shapes specs (against reward
hacking the evaluation prompts, `unimodal.data.geneval_prompts`, are held out; the split is the
project's one, `unimodal/data/split.py`, so RL and supervised training hold out the same specs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unimodal.data import TRAIN_CATEGORIES, Spec, train_specs
from unimodal.data.captions import spec_text


@dataclass(frozen=True)
class TrainPrompt:
    """One training prompt: its text, spec and category."""

    text: str
    spec: Spec
    category: str


class TrainPrompts:
    """An endless, indexable stream of training prompts: item i is in training category
    i mod 6 (so a batch of 6k prompts covers every category k times) with a training spec drawn
    by seed (seed, i)."""

    def __init__(self, seed: int) -> None:
        self.specs = {c: train_specs(c) for c in TRAIN_CATEGORIES}
        self.seed = seed

    def __getitem__(self, i: int) -> TrainPrompt:
        cat = TRAIN_CATEGORIES[i % len(TRAIN_CATEGORIES)]
        specs = self.specs[cat]
        spec = specs[int(np.random.default_rng([self.seed, i, 17]).integers(len(specs)))]
        return TrainPrompt(spec_text(spec), spec, cat)
