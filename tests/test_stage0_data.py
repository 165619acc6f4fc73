"""Stage-0 data kinds and the preset's RoPE layout."""

import pytest

from unimodal.data import render, sample_scene
from unimodal.stage0 import OBJECTS_QUESTION, Stage0Data, shapes_example


def test_objects_example_names_every_object_left_to_right():
    import numpy as np

    for index in range(20):
        ex = shapes_example(5, index, "objects", 64)
        scene = sample_scene(np.random.default_rng([5, index, 5]))
        xs = sorted(scene.objects, key=lambda o: o.cx)
        assert ex.answer == ", ".join(f"{o.color} {o.shape}" for o in xs)
        assert ex.messages[0]["content"][1]["text"] == OBJECTS_QUESTION
        assert ex.kind == "objects"
        assert ex.images[0].tobytes() == render(scene, 64).tobytes()


def test_mixture_draws_the_objects_kind_and_rejects_unknown_kinds():
    data = Stage0Data(0, 32, {"objects": 1.0, "vqa": 1.0})
    kinds = {data[i].kind for i in range(40)}
    assert kinds == {"objects", "vqa"}
    with pytest.raises(ValueError, match="objects"):
        Stage0Data(0, 32, {"object": 1.0})


def test_preset_rope_layout_reaches_the_config():
    import dataclasses

    from unimodal.presets import PRESETS, qwen2vl_config, train_tokenizer

    tok = train_tokenizer(300, ["a red circle", "def f(x): return x"])
    p = dataclasses.replace(PRESETS["cpu"], rope_theta=10.0, mrope=(4, 6, 6))
    rope = qwen2vl_config(p, tok).text_config.rope_parameters
    assert rope["rope_theta"] == 10.0 and list(rope["mrope_section"]) == [4, 6, 6]
    with pytest.raises(ValueError, match="head_dim / 2 = 16"):
        qwen2vl_config(dataclasses.replace(p, mrope=(4, 4, 4)), tok)


def test_answer_words_make_every_vqa_answer_one_token():
    from unimodal.data import ANSWERS
    from unimodal.presets import shapes_text, train_tokenizer

    words = [a for answers in ANSWERS.values() for a in answers]
    plain = train_tokenizer(400, list(shapes_text(300)))
    alone = train_tokenizer(400, list(shapes_text(300, answers_alone=True)))
    assert max(len(plain(w)["input_ids"]) for w in words) > 1  # `circle` -> `c`,`irc`,`le`
    assert all(len(alone(w)["input_ids"]) == 1 for w in words)


def test_a_cached_preset_backbone_is_rebuilt_when_the_preset_changes(tmp_path, monkeypatch):
    import dataclasses

    from unimodal import presets

    built = []

    def fake_build(out, preset):
        built.append(preset)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(presets, "build_backbone", fake_build)
    presets.ensure_backbone("", "cpu", tmp_path)
    presets.ensure_backbone("", "cpu", tmp_path)
    assert built == ["cpu"]
    p = presets.PRESETS["cpu"]
    changed = dataclasses.replace(p, answer_words=not p.answer_words)
    monkeypatch.setitem(presets.PRESETS, "cpu", changed)
    presets.ensure_backbone("", "cpu", tmp_path)
    assert built == ["cpu", "cpu"]


def test_cpu_copy_has_slow_rope_pairs_for_text_and_fast_ones_for_image_columns():
    """Content matching across text needs a pair that barely turns per token; `cpu` (base 10)
    has none, `cpu_copy` (base 1e3, 12 pairs to width) has both kinds (presets.py)."""
    from unimodal.presets import PRESETS

    def turns(name: str) -> tuple[float, float]:
        p = PRESETS[name]
        half = p.hidden_size // p.heads // 2
        theta = [p.rope_theta ** (-i / half) for i in range(half)]
        width = theta[p.mrope[0] + p.mrope[1] :]
        return min(theta), 3 * max(width)  # slowest per token; fastest across 4 columns

    assert turns("cpu")[0] > 0.1
    slow, columns = turns("cpu_copy")
    assert slow < 0.01 and columns > 0.3
    assert PRESETS["cpu_copy"].layers <= 2 and PRESETS["cpu_copy"].init_std <= 0.02
