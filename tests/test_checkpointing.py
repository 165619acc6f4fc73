"""Backbone activation checkpointing in the query pass: same loss and gradients, fewer saved
activations, a read-only prompt cache, and decoding left as it was."""

import pytest
import torch
from torch.autograd.graph import saved_tensors_hooks

from unimodal.backbone import Backbone
from unimodal.checkpointing import checkpoint_layers, prefix_cache
from unimodal.generator import Generator, GenModelConfig


def _step(gen: Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    """Loss and trainable gradients of one training step, and the activation bytes autograd
    keeps for the query pass through the backbone (weights excluded)."""
    prompt = gen.encode_prompts(["a red circle left of a blue square", "two triangles"])
    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    gen.zero_grad()
    out = gen(prompt, pixels, torch.Generator().manual_seed(0))
    out["loss"].backward()
    grads = {n: p.grad.clone() for n, p in gen.named_parameters() if p.grad is not None}
    weights = {p.untyped_storage().data_ptr() for p in gen.parameters()}
    saved = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() not in weights:
            saved.append(t.numel() * t.element_size())
        return t

    with saved_tensors_hooks(pack, lambda t: t):
        states = gen.query_states(prompt)
    sum(h.sum() for h in states).backward()
    return out["loss"].detach(), grads, sum(saved)


@pytest.mark.parametrize("prefix", [True, False])
def test_checkpointed_backbone_gives_the_same_step_and_saves_less(tiny_backbone_dir, prefix):
    results = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        backbone = Backbone.from_pretrained(tiny_backbone_dir)
        cfg = GenModelConfig(backbone_checkpointing=ckpt, prefix_cache=prefix)
        results.append(_step(Generator(cfg, backbone).train()))
    (loss0, grads0, saved0), (loss1, grads1, saved1) = results
    torch.testing.assert_close(loss1, loss0, rtol=1e-6, atol=1e-7)
    assert grads0.keys() == grads1.keys() and any("queries" in n for n in grads0)
    for name, g in grads0.items():
        torch.testing.assert_close(grads1[name], g, rtol=1e-5, atol=1e-7, msg=name)
    # each layer keeps only its input: the query pass saves far less
    assert saved1 < 0.5 * saved0, (saved0, saved1)


def test_prefix_cache_is_read_only():
    keys, values = [torch.randn(1, 2, 3, 4)], [torch.randn(1, 2, 3, 4)]
    cache = prefix_cache(keys, values)
    new = torch.randn(1, 2, 5, 4)
    k1, v1 = cache.update(new, new, 0)
    k2, _ = cache.update(new, new, 0)
    assert k1.shape == (1, 2, 8, 4) and torch.equal(k1, k2)
    assert torch.equal(v1[:, :, :3], values[0])
    assert cache.get_seq_length() == 3  # the prompt only, however often it is read


def test_checkpointed_layers_decode_the_same_tokens(tiny_backbone_dir):
    plain = Backbone.from_pretrained(tiny_backbone_dir)
    wrapped = Backbone.from_pretrained(tiny_backbone_dir)
    assert checkpoint_layers(wrapped.model) == checkpoint_layers(wrapped.model) > 0  # idempotent
    messages = [{"role": "user", "content": "a red circle"}]
    assert wrapped.chat(messages, max_new_tokens=6) == plain.chat(messages, max_new_tokens=6)
    # with gradients on and a cache that grows, the layers run as they are (written once)
    prompt = plain.encode(["a red circle"])
    a, b = (bb.run(prompt, use_cache=True) for bb in (plain, wrapped))
    torch.testing.assert_close(b.last_hidden_state, a.last_hidden_state)
    assert b.cache.get_seq_length() == a.cache.get_seq_length() == prompt.input_ids.shape[1]
