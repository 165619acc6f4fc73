"""Copy texts of stage 0 (recall, repeat, words) and their held-out teacher-forced copy scores."""

import pytest
import torch

from evals.recall import evaluate_copy, value_tokens
from unimodal.backbone import Backbone
from unimodal.data.recall import COPY_TEXTS, recall_spans, recall_text, repeat_text, words_text
from unimodal.stage0 import Stage0Data, collate, word_pool


def test_recall_asserts_repeat_a_binding_and_spans_cover_the_values():
    for index in range(30):
        text = recall_text(3, index)
        assert text == recall_text(3, index)  # a pure function of (seed, index)
        binding = {}
        for line in text.splitlines():
            if not line.startswith("assert "):
                name, value = line.split(" = ")
                assert name not in binding
                binding[name] = value
        asserts = [ln for ln in text.splitlines() if ln.startswith("assert ")]
        spans = recall_spans(text)
        assert 1 <= len(asserts) == len(spans) <= len(binding)
        for line, (a, b) in zip(asserts, spans):
            name = line.removeprefix("assert ").split(" == ")[0]
            assert text[a:b] == binding[name]
            exec(text, {})  # valid Python whose asserts hold


def test_repeat_is_a_line_then_the_same_line():
    for index in range(20):
        text = repeat_text(4, index)
        first, second, rest = text.split("\n")
        assert first == second and first and rest == ""
        ((a, b),) = COPY_TEXTS["repeat"][1](text)
        assert text[a:b] == first


def test_stage0_copy_rows_are_plain_text_with_loss_on_every_token(tiny_backbone_dir):
    bb = Backbone.from_pretrained(tiny_backbone_dir)
    data = Stage0Data(0, 32, {"recall": 1.0, "repeat": 1.0, "vqa": 1.0})
    rows = [data[i] for i in range(24)]
    assert {r.kind for r in rows} == {"recall", "repeat", "vqa"}
    copy = [r for r in rows if r.kind != "vqa"]
    prompt, mask = collate(bb, copy)
    assert torch.equal(mask, prompt.attention_mask)  # every token, as code


def test_value_tokens_are_the_tokens_of_each_span(tiny_backbone_dir):
    tok = Backbone.from_pretrained(tiny_backbone_dir).tokenizer
    for make, spans_of in COPY_TEXTS.values():
        text = make(1, 2)
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        spans = spans_of(text)
        for (a, b), group in zip(spans, value_tokens(enc["offset_mapping"], spans)):
            assert group and tok.decode([enc["input_ids"][t] for t in group]).strip() == text[a:b]


def perfect_copier(self: Backbone, input_ids, attention_mask, **extra):
    """Logits that predict each next token of the batch exactly: a perfect copy circuit."""
    nxt = torch.roll(input_ids, -1, dims=1)
    return torch.nn.functional.one_hot(nxt, len(self.tokenizer)).float()


def test_copy_scores_are_one_for_a_perfect_copier_and_low_for_a_random_model(
    tiny_backbone_dir, monkeypatch
):
    bb = Backbone.from_pretrained(tiny_backbone_dir)
    bb.model.eval()
    random = evaluate_copy(bb, n=16, batch_size=8)
    assert random["recall"]["spans"] > 16 and random["repeat"]["spans"] == 16
    assert random["recall"]["exact"] < 0.2 and random["repeat"]["exact"] < 0.2
    monkeypatch.setattr(Backbone, "forward", perfect_copier)
    perfect = evaluate_copy(bb, n=16, batch_size=8)
    for kind in COPY_TEXTS:
        assert perfect[kind]["exact"] == 1.0 and perfect[kind]["token"] == 1.0


def test_words_rows_are_random_tokens_twice_with_loss_on_the_copy_only(tiny_backbone_dir):
    bb = Backbone.from_pretrained(tiny_backbone_dir)
    tok = bb.tokenizer
    pool = word_pool(tok)
    assert len(pool) > 100 and not any(t in pool for t in tok.all_special_tokens)
    assert "<|video_pad|>" not in pool and not any("\n" in t for t in pool)
    for index in range(10):
        text = words_text(5, index, pool)
        assert text == words_text(5, index, pool)  # a pure function of (seed, index)
        first, second, rest = text.split("\n")
        assert first == second and first and rest == ""
        ids = tok(first, add_special_tokens=False)["input_ids"]
        assert ids == tok(second, add_special_tokens=False)["input_ids"]  # the same tokens
    data = Stage0Data(0, 32, {"words": 1.0}, tokenizer=tok)
    rows = [data[i] for i in range(4)]
    prompt, mask = collate(bb, rows)
    for i, row in enumerate(rows):
        target = bb.tokenizer.decode(prompt.input_ids[i][mask[i].bool()].tolist())
        assert target == row.text.split("\n", 1)[1] + bb.tokenizer.eos_token
    with pytest.raises(ValueError, match="word pool"):
        Stage0Data(0, 32, {"words": 1.0})


def test_first_phase_draws_its_own_mixture_then_the_main_one():
    data = Stage0Data(0, 32, {"recall": 1.0}, first_weights={"repeat": 1.0}, first_samples=10)
    assert {data[i].kind for i in range(10)} == {"repeat"}
    assert {data[i].kind for i in range(10, 30)} == {"recall"}
    with pytest.raises(ValueError, match="data.first_weights"):
        Stage0Data(0, 32, {"recall": 1.0}, first_weights={"nope": 1.0}, first_samples=10)
