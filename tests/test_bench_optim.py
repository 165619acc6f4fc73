"""The benchmarked optimisations are exact: the prefix KV cache gives the one-pass states and
gradients, dropping finished rows gives the same tokens, and sampling encodes the prompt once
and stacks the guidance branches into one decoder call per step."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import unimodal.queries as queries_module
from benchmarks.common import count_flops
from benchmarks.rollout import bias_eos
from benchmarks.sample import count_calls
from unimodal.backbone import Backbone
from unimodal.generator import Generator, GenModelConfig
from unimodal.sampling import sample

TEXTS = ["a red circle", "two blue squares and a green triangle to the left of them"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine spinning thread pools cost 10x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bb(tiny_backbone_dir):
    return Backbone.from_pretrained(tiny_backbone_dir)


def _run(gen: Generator, prompt, pixels, prefix_cache: bool):
    gen.cfg.prefix_cache = prefix_cache
    gen.zero_grad(set_to_none=True)
    states = gen.query_states(prompt)
    losses = gen(prompt, pixels, torch.Generator().manual_seed(0))
    (losses["loss"] + sum((s**2).mean() for s in states)).backward()
    grads = {n: p.grad.clone() for n, p in gen.named_parameters() if p.grad is not None}
    return [s.detach() for s in states], losses["loss"].detach(), grads


@pytest.mark.parametrize("with_images", [False, True])
def test_prefix_cache_matches_one_pass(bb, with_images):
    torch.manual_seed(0)
    gen = Generator(GenModelConfig(), bb)
    images = None
    if with_images:  # vision tokens in the prefix, M-RoPE positions
        images = [[Image.new("RGB", (64, 64), (200, 30, 30))], [Image.new("RGB", (48, 64), "blue")]]
    prompt = gen.encode_prompts(TEXTS, images)
    assert prompt.attention_mask[0].sum() < prompt.attention_mask[1].sum()  # left padding
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    s1, l1, g1 = _run(gen, prompt, pixels, prefix_cache=False)
    s2, l2, g2 = _run(gen, prompt, pixels, prefix_cache=True)
    for a, b in zip(s1, s2):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(l1, l2, atol=1e-5, rtol=1e-5)
    assert g1.keys() == g2.keys() and any(k.startswith("queries.") for k in g1)
    for k in g1:
        torch.testing.assert_close(g1[k], g2[k], atol=1e-4, rtol=1e-3, msg=k)
    assert all(p.grad is None for p in bb.model.parameters())


def test_prefix_cache_only_where_gradients_flow(bb, monkeypatch):
    gen = Generator(GenModelConfig(), bb)
    prompt = gen.encode_prompts(TEXTS)

    def cached(*args):
        raise RuntimeError("cached path")

    monkeypatch.setattr(queries_module, "query_states_cached", cached)
    with torch.no_grad():
        gen.query_states(prompt)  # sampling: one pass
    with pytest.raises(RuntimeError, match="cached path"):
        gen.query_states(prompt)  # training: the cached path
    # the prefix pass saves work: fewer FLOPs for the same states
    monkeypatch.undo()
    flops = {}
    for cached in (False, True):
        gen.cfg.prefix_cache = cached
        flops[cached] = count_flops(
            lambda: sum(s.sum() for s in gen.query_states(prompt)).backward()
        )  # noqa: B023
    assert flops[True]["total"] < flops[False]["total"]


def test_dropping_finished_rows_keeps_tokens(tiny_backbone_dir):
    bb = Backbone.from_pretrained(tiny_backbone_dir).freeze()
    prompt = bb.encode([f"def f{i}(x):" + " x" * i for i in range(6)])
    bias_eos(bb, 0.2, prompt)  # rows end at different steps
    sizes: list[int] = []
    hook = bb.model.model.register_forward_pre_hook(
        lambda m, a, k: sizes.append(k["input_ids"].shape[0]), with_kwargs=True
    )
    for temperature, top_p in ((1.0, 1.0), (1.0, 0.9), (0.0, 1.0)):
        outs = {}
        for compact in (True, False):
            sizes.clear()
            g = torch.Generator().manual_seed(3)
            outs[compact] = sample(bb, prompt, 24, temperature, top_p, g, compact=compact)
            outs[compact].sizes = list(sizes)
        a, b = outs[True], outs[False]
        assert torch.equal(a.completion_ids, b.completion_ids)
        assert torch.equal(a.completion_mask, b.completion_mask)
        torch.testing.assert_close(a.logprobs, b.logprobs)
        assert set(b.sizes) == {6}
        if temperature > 0:
            lengths = a.completion_mask.sum(1)
            assert lengths.min() < lengths.max()  # some rows finished early ...
            assert min(a.sizes) < 6 and len(a.sizes) == len(b.sizes)  # ... and left the batch
    hook.remove()


def test_static_cache_decode_keeps_tokens(tiny_backbone_dir):
    """A preallocated cache gives the tokens of the growing one; it re-packs finished rows
    away in powers of two, and the compiled step (no hooks: they would break its graph) too."""
    bb = Backbone.from_pretrained(tiny_backbone_dir).freeze()
    prompt = bb.encode([f"def f{i}(x):" + " x" * i for i in range(8)])
    bias_eos(bb, 0.2, prompt)
    sizes: list[int] = []
    hook = bb.model.model.register_forward_pre_hook(
        lambda m, a, k: sizes.append(k["input_ids"].shape[0]), with_kwargs=True
    )
    for temperature, top_p in ((1.0, 1.0), (1.0, 0.9), (0.0, 1.0)):
        ref = sample(bb, prompt, 24, temperature, top_p, torch.Generator().manual_seed(3))
        sizes.clear()
        out = sample(bb, prompt, 24, temperature, top_p, torch.Generator().manual_seed(3), static=True)  # fmt: skip
        assert torch.equal(out.completion_ids, ref.completion_ids)
        assert torch.equal(out.completion_mask, ref.completion_mask)
        torch.testing.assert_close(out.logprobs, ref.logprobs, atol=1e-4, rtol=0)
        assert set(sizes) <= {8, 4, 2, 1}
        if temperature > 0:
            assert min(sizes) < 8  # finished rows left the batch
    hook.remove()
    ref = sample(bb, prompt, 24, 1.0, 1.0, torch.Generator().manual_seed(5))
    out = sample(bb, prompt, 24, 1.0, 1.0, torch.Generator().manual_seed(5), compile=True)
    assert torch.equal(out.completion_ids, ref.completion_ids)
    torch.testing.assert_close(out.logprobs, ref.logprobs, atol=1e-4, rtol=0)


@pytest.mark.parametrize("edit", [False, True])
def test_sampling_encodes_once_and_stacks_branches(bb, edit):
    gen = Generator(GenModelConfig(edit=edit), bb).eval()
    kw = {}
    if edit:
        src = Image.new("RGB", (32, 32), "red")
        kw = dict(images=[[src], [src]], ref=torch.zeros(2, 3, 32, 32), image_guidance=1.5)
    calls = count_calls(gen, lambda: gen.generate(TEXTS, steps=3, guidance=2.0, **kw))
    branches = 3 if edit else 2
    assert calls == {"backbone_passes": 1, "decoder_calls": 3, "decoder_batch": [2 * branches]}


def test_count_flops_by_hand():
    lin = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8, requires_grad=True)
    assert count_flops(lambda: lin(x))["total"] == 2 * 3 * 8 * 4
    assert count_flops(lambda: lin(x).sum().backward())["total"] == 3 * 2 * 3 * 8 * 4
    q = torch.randn(1, 2, 5, 4)  # CPU attention is counted too: QK^T and AV
    sdpa = torch.nn.functional.scaled_dot_product_attention
    assert count_flops(lambda: sdpa(q, q, q))["total"] == 2 * (2 * 2 * 5 * 5 * 4)
    conv = torch.nn.Conv2d(6, 6, 3, padding=1, groups=6)  # depthwise: 9 MACs per output
    img = torch.randn(1, 6, 4, 4, requires_grad=True)
    assert count_flops(lambda: conv(img))["total"] == 2 * 6 * 16 * 9
    assert count_flops(lambda: conv(img).sum().backward())["total"] == 3 * 2 * 6 * 16 * 9
