"""Multi-layer query features (`gen.feature_layers`): what they hold, what runs, what trains."""

from dataclasses import replace

import pytest
import torch

from unimodal.backbone import Backbone
from unimodal.generator import Generator, GenModelConfig
from unimodal.queries import PromptKV, query_states
from unimodal.query_features import text_model

PROMPTS = ["a red circle", "two blue squares"]


@pytest.fixture(scope="module")
def backbone(tiny_backbone_dir):
    return Backbone.from_pretrained(tiny_backbone_dir)


def _gen(backbone, **kw) -> Generator:
    torch.manual_seed(0)  # the same queries in every generator
    return Generator(GenModelConfig(**kw), backbone)


def _states(gen, grad: bool):
    prompt = gen.encode_prompts(PROMPTS)
    with torch.set_grad_enabled(grad):
        return [h.detach() for h in gen.query_states(prompt)]


@pytest.mark.parametrize("grad", [False, True])  # one pass / prompt cache + query tail
def test_last_layer_is_the_default_and_layers_concatenate(backbone, grad):
    n = len(text_model(backbone.model).layers)
    assert n == 2
    final = _states(_gen(backbone), grad)
    last = _states(_gen(backbone, feature_layers=(n,)), grad)
    first = _states(_gen(backbone, feature_layers=(1,)), grad)
    both = _states(_gen(backbone, feature_layers=(1, n)), grad)
    for f, a, b, c in zip(final, last, first, both, strict=True):
        torch.testing.assert_close(a, f, atol=1e-5, rtol=0)
        assert c.shape[-1] == 2 * f.shape[-1]
        torch.testing.assert_close(c[..., : f.shape[-1]], b, atol=1e-5, rtol=0)
        torch.testing.assert_close(c[..., f.shape[-1] :], f, atol=1e-5, rtol=0)
        assert (b - f).abs().mean() > 1e-3  # layer 1 is not the final state


def test_layer_one_is_the_normed_first_layer_output_and_deeper_layers_do_not_run(backbone):
    gen = _gen(backbone, feature_layers=(1,), prefix_cache=False)
    prompt = gen.encode_prompts(PROMPTS)
    lm = text_model(backbone.model)
    calls = []
    hook = lm.layers[1].register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            got = gen.query_states(prompt)
            assert calls == [] and len(lm.layers) == 2  # layer 2 skipped, the stack restored
            queries = gen.queries(2)
            q = queries.shape[1]
            seen = []
            h1 = lm.layers[0].register_forward_hook(lambda m, a, o: seen.append(o))
            query_states(backbone, prompt, queries, gen.queries.pattern())
            h1.remove()
    finally:
        hook.remove()
    out = seen[0][0] if isinstance(seen[0], tuple) else seen[0]
    want = gen.queries.split(lm.norm(out[:, -q:]))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=0)


def test_precomputed_prompt_cache_gives_the_same_layer_states(backbone):
    gen = _gen(backbone, feature_layers=(1,))
    prompt = gen.encode_prompts(PROMPTS[:1])
    with torch.no_grad():
        want = gen.query_states(prompt)
        cache = backbone.run(prompt, use_cache=True).cache  # all layers, as gencache writes
        kv = PromptKV(prompt, [x.keys for x in cache.layers], [x.values for x in cache.layers])
        got = gen.query_states(kv)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=0)


def test_two_layers_train_with_relative_queries_and_alignment(backbone):
    """Relative states are normalised per layer part: the concatenation of (1,) and (2,)."""
    gen = _gen(backbone, feature_layers=(1, 2), relative_queries=True)
    prompt = gen.encode_prompts(PROMPTS)
    with torch.no_grad():
        parts = [_gen(backbone, feature_layers=(i,), relative_queries=True) for i in (1, 2)]
        want = [torch.cat(hs, -1) for hs in zip(*(g.query_states(prompt) for g in parts))]
    states = gen.query_states(prompt)
    for h, w in zip(states, want, strict=True):
        torch.testing.assert_close(h.detach(), w, atol=1e-4, rtol=0)
    out = gen(prompt, torch.rand(2, 3, 32, 32) * 2 - 1, torch.Generator().manual_seed(0))
    assert "align_16" in out
    out["loss"].backward()
    assert gen.queries.queries[2].grad.abs().sum() > 0
    assert gen.connector.inp.weight.shape[1] == 2 * backbone.hidden_size


@pytest.mark.parametrize("layers", [(3,), (0,), (2, 1), (1, 1)])
def test_bad_layers_name_the_field_and_the_range(backbone, layers):
    with pytest.raises(ValueError, match=r"gen\.feature_layers: .* 1\.\.2"):
        Generator(replace(GenModelConfig(), feature_layers=layers), backbone)
