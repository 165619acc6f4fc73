"""The held-out prompt split: evaluation specs that no training path can produce."""

from __future__ import annotations

import numpy as np
import pytest

from unimodal.data import (
    CATEGORIES,
    TRAIN_CATEGORIES,
    geneval_prompts,
    heldout_specs,
    is_heldout,
    sample_scene,
    sample_train_prompt,
    train_caption,
    train_specs,
)
from unimodal.data.captions import all_specs
from unimodal.data.split import _features
from unimodal.gendata import GenData, GenDataConfig
from unimodal.stage0 import shapes_example


def test_split_partitions_each_category_and_keeps_every_attribute_in_training():
    for cat in CATEGORIES:
        held, train = heldout_specs(cat), train_specs(cat)
        assert held and train and not held & set(train)
        assert held | set(train) == set(all_specs(cat))
        if cat != "single_object":  # 3 specs: one held out, its shape trained elsewhere
            needed = set().union(*(_features(s) for s in all_specs(cat)))
            assert set().union(*(_features(s) for s in train)) == needed, cat
            assert 0.15 < len(held) / len(all_specs(cat)) < 0.4, cat
    everything = set().union(*(_features(s) for c in CATEGORIES for s in train_specs(c)))
    assert all(_features(s) <= everything for c in CATEGORIES for s in heldout_specs(c))


def test_evaluation_prompts_are_all_held_out():
    items = geneval_prompts(n_per_category=32, seed=0)
    assert len(items) == 32 * len(CATEGORIES)
    assert all(is_heldout(it.spec) for it in items)
    for cat in CATEGORIES:
        texts = {it.text for it in items if it.category == cat}
        assert len(texts) == min(32, len(heldout_specs(cat)))


def test_generator_training_data_never_shows_a_held_out_prompt():
    eval_texts = {it.text for it in geneval_prompts(32, 0)}
    data = GenData(GenDataConfig(), size=16, seed=0)
    seen = {data[i].text for i in range(600)}
    assert not seen & eval_texts
    rng = np.random.default_rng(0)
    for cat in TRAIN_CATEGORIES:
        for _ in range(50):
            assert not is_heldout(sample_train_prompt(rng, cat)[1])
    with pytest.raises(ValueError, match="data.categories"):
        GenDataConfig(categories=("texture",))


def test_stage0_captions_and_tokenizer_text_use_training_specs_only():
    eval_texts = {it.text for it in geneval_prompts(32, 0)}
    answers = {shapes_example(0, i, "caption", 32).answer for i in range(300)}
    assert not answers & eval_texts
    rng = np.random.default_rng(1)
    for _ in range(200):
        try:
            assert not is_heldout(train_caption(sample_scene(rng), rng)[1])
        except ValueError:
            pass


def test_sample_grid_has_a_training_row_and_a_held_out_row():
    from unimodal.data.captions import CATEGORIES as CATS
    from unimodal.data.captions import all_specs, spec_text
    from unimodal.train.gen_config import SampleConfig

    spec_of = {spec_text(s): s for c in CATS for s in all_specs(c)}
    prompts = SampleConfig().prompts
    assert len(prompts) == 16
    assert not any(is_heldout(spec_of[p]) for p in prompts[:8])
    assert all(is_heldout(spec_of[p]) for p in prompts[8:])
