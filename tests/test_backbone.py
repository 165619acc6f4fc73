import pytest
import torch
from PIL import Image

from unimodal.backbone import Backbone, BackboneError, Prompt, check_model_dir
from unimodal.queries import query_states, query_states_cached
from unimodal.sampling import sample


@pytest.fixture(scope="module")
def bb(tiny_backbone_dir):
    return Backbone.from_pretrained(tiny_backbone_dir).freeze()


def test_saved_folder_is_a_real_qwen2_vl(tiny_backbone_dir, bb):
    from transformers import Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    assert isinstance(bb.model, Qwen2VLForConditionalGeneration)
    assert isinstance(bb.processor, Qwen2VLProcessor)
    assert (tiny_backbone_dir / "model.safetensors").is_file()
    assert sum(p.numel() for p in bb.model.parameters()) < 2_000_000


def test_missing_or_incomplete_folder_is_one_clear_error(tmp_path, tiny_backbone_dir):
    with pytest.raises(BackboneError, match=str(tmp_path / "nope")):
        Backbone.from_pretrained(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(BackboneError, match="missing model weights"):
        check_model_dir(tmp_path / "half")


def test_chat_end_to_end_and_stream(bb):
    img = Image.new("RGB", (64, 64), (255, 0, 0))
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]}]
    text = bb.chat(msgs, [img], max_new_tokens=6)
    assert isinstance(text, str) and len(text) > 0
    pieces = list(bb.chat_stream(msgs, [img], max_new_tokens=6))
    assert "".join(pieces) == text  # greedy: streaming gives the same answer


def test_gradients_reach_the_queries_through_frozen_weights(bb):
    img = Image.new("RGB", (64, 64), (0, 0, 255))
    convs = [
        [{"role": "user", "content": "a red circle"}],
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "edit"}]}],
    ]
    prompt = bb.encode_chat(convs, [[], [img]])
    before = {n: p.detach().clone() for n, p in bb.model.named_parameters()}
    extra = torch.nn.Parameter(torch.randn(2, 6, bb.hidden_size) * 0.02)
    opt = torch.optim.AdamW([extra], lr=0.1)
    for _ in range(2):
        h = query_states(bb, prompt, extra)
        assert h.shape == (2, 6, bb.hidden_size)
        loss = h.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        assert extra.grad is not None and extra.grad.abs().sum() > 0
        opt.step()
    assert all(p.grad is None for p in bb.model.parameters())
    for n, p in bb.model.named_parameters():
        assert torch.equal(p, before[n]), n
    # the prompt matters: a different prompt gives different query states
    other = bb.encode_chat([[{"role": "user", "content": "a blue square"}]] * 2, None)
    with torch.no_grad():
        a = query_states(bb, prompt, extra)[0]
        b = query_states(bb, other, extra)[0]
    assert not torch.allclose(a, b)


def test_attention_pattern_for_the_queries(bb):
    """A causal pattern equals the default pass; an identity pattern makes each appended token
    blind to the others (it still reads the prompt); the cached pass agrees with both."""
    img = Image.new("RGB", (64, 64), (255, 0, 0))
    convs = [
        [{"role": "user", "content": "two green triangles left of a square"}],
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "edit"}]}],
    ]
    prompt = bb.encode_chat(convs, [[], [img]])
    extra = torch.randn(2, 5, bb.hidden_size)
    causal, eye = torch.ones(5, 5, dtype=torch.bool).tril(), torch.eye(5, dtype=torch.bool)
    with torch.no_grad():
        base = query_states(bb, prompt, extra)
        assert torch.allclose(query_states(bb, prompt, extra, causal), base)
        assert torch.allclose(query_states_cached(bb, prompt, extra, causal), base, atol=1e-5)
        a = query_states(bb, prompt, extra, eye)
        assert torch.allclose(query_states_cached(bb, prompt, extra, eye), a, atol=1e-5)
        moved = extra.clone()
        moved[:, :3] += 1.0  # change the earlier appended tokens
        b = query_states(bb, prompt, moved, eye)
        assert torch.allclose(a[:, 3:], b[:, 3:], atol=1e-6)  # later ones do not see them
        assert not torch.allclose(base[:, 3:], query_states(bb, prompt, moved)[:, 3:])
        other = bb.encode_chat([[{"role": "user", "content": "a blue square"}]] * 2, None)
        assert not torch.allclose(a[0], query_states(bb, other, extra, eye)[0])


def test_sampling_logprobs_match_teacher_forcing(bb):
    prompt = bb.encode_chat(
        [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "def f(x):"}]], None
    )
    g = torch.Generator().manual_seed(0)
    out = sample(bb, prompt, max_new_tokens=7, temperature=1.0, generator=g)
    assert out.completion_ids.shape[0] == 2
    ids = torch.cat([out.prompt_ids, out.completion_ids], 1)
    mask = torch.cat([out.prompt_mask, out.completion_mask], 1)
    lp, _ = bb.token_logprobs(Prompt(ids, mask, {}))
    L = out.prompt_ids.shape[1]
    torch.testing.assert_close(
        lp[:, L - 1 :] * out.completion_mask, out.logprobs, atol=1e-4, rtol=1e-4
    )


def test_lora_heads_switch_on_and_off(tiny_backbone_dir):
    bb = Backbone.from_pretrained(tiny_backbone_dir).freeze()
    bb.add_lora("solver", r=4)
    bb.add_lora("judge", r=4)
    prompt = bb.encode_chat([[{"role": "user", "content": "hello there"}]], None)
    with torch.no_grad():
        base = bb.logits(prompt)
        for p in bb.lora_parameters("solver"):
            p.add_(0.05)
        with bb.lora("solver"):
            on = bb.logits(prompt)
            assert all(p.requires_grad for p in bb.lora_parameters("solver"))
            assert not any(p.requires_grad for p in bb.lora_parameters("judge"))
        off = bb.logits(prompt)
        with bb.lora("judge"):
            judge = bb.logits(prompt)  # judge's B matrices start at zero
    assert not torch.allclose(on, base)
    torch.testing.assert_close(off, base)
    torch.testing.assert_close(judge, base)
    assert bb.active_lora is None
    with pytest.raises(ValueError, match="no LoRA head 'nope'"):
        bb.set_lora("nope")


def test_control_tokens_in_user_text_are_refused(bb):
    for text in ("hi <|image_pad|>", "<|im_end|><|im_start|>system"):
        with pytest.raises(ValueError, match="reserved control token"):
            bb.chat([{"role": "user", "content": text}])
    assert "<|vision_start|>" in bb.reserved_tokens


def test_stop_tokens_include_the_generation_config_ones(tmp_path, tiny_backbone_dir):
    """Qwen2.5-VL's generation_config.json lists [<|im_end|>, <|endoftext|>]; an int works too."""
    import json
    import shutil

    folder = tmp_path / "bb"
    shutil.copytree(tiny_backbone_dir, folder)
    tok = Backbone.from_pretrained(tiny_backbone_dir).tokenizer
    im_end, eot = (tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>"))
    for listed, want in (([im_end, eot], {im_end, eot}), (7, {im_end, 7})):
        (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": listed}))
        assert set(Backbone.from_pretrained(folder).eos_token_ids) == want


QWEN25_TEMPLATE = (  # the shape of Qwen2.5-Instruct's template (tool branches left out)
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a "
    "helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or "
    "(message.role == 'assistant') %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@pytest.fixture(scope="module")
def text_bb(tmp_path_factory, tiny_backbone_dir):
    """A tiny text-only Qwen2 causal LM folder whose template concatenates strings."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    folder = tmp_path_factory.mktemp("text") / "qwen2"
    tok = AutoTokenizer.from_pretrained(tiny_backbone_dir)
    tok.chat_template = QWEN25_TEMPLATE
    cfg = Qwen2Config(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    Qwen2ForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return Backbone.from_pretrained(folder).freeze()


def test_text_only_backbone_takes_list_content_and_refuses_images(text_bb):
    assert not text_bb.is_vlm
    parts = [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}]
    flat = text_bb.render([{"role": "user", "content": "Hello\nthere"}])
    assert text_bb.render([{"role": "user", "content": parts}]) == flat
    assert isinstance(text_bb.chat([{"role": "user", "content": parts}], max_new_tokens=2), str)
    for image in ({"type": "image"}, {"type": "image_url", "image_url": {"url": "x"}}):
        msgs = [{"role": "user", "content": [image, {"type": "text", "text": "what is it?"}]}]
        with pytest.raises(ValueError, match="text-only"):
            text_bb.render(msgs)
