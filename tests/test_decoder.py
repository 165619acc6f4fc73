"""Decoder adapter: tiny SANA / SD3 from config, hooks, train modes, save/load, clear errors."""

import pytest
import torch

from flow_matching import Decoder, DecoderConfig, build_decoder

B, C, H, W, L, DC = 2, 4, 8, 8, 5, 24


def tiny(type_: str = "sana", **kw) -> DecoderConfig:
    base = dict(type=type_, in_channels=C, sample_size=H, patch_size=2, num_layers=2,
                num_attention_heads=2, attention_head_dim=16, cond_dim=DC, align_block=1)  # fmt: skip
    return DecoderConfig(**(base | kw))


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, H, W, generator=g)
    sigma = torch.rand(B, generator=g)
    cond = torch.randn(B, L, DC, generator=g)
    mask = torch.ones(B, L)
    mask[1, 3:] = 0
    return x, sigma, cond, mask


@pytest.mark.parametrize("kind", ["sana", "sd3"])
def test_forward_shapes_and_hidden(kind):
    torch.manual_seed(0)
    dec = build_decoder(tiny(kind))
    x, sigma, cond, mask = inputs()
    v, hidden = dec(x, sigma, cond, mask)
    assert v.shape == x.shape
    assert hidden.shape == (B, dec.num_tokens(H, W), dec.hidden_dim) == (B, 16, 32)
    assert dec.cond_dim == DC and dec.grid_size(H, W) == (4, 4)
    assert dec(x, sigma, cond)[0].shape == x.shape  # mask optional
    dec.align_block = None
    assert dec(x, sigma, cond, mask)[1] is None


@pytest.mark.parametrize("kind", ["sana", "sd3"])
def test_timestep_convention_is_diffusers(kind):
    torch.manual_seed(0)
    dec = build_decoder(tiny(kind))
    x, sigma, cond, _ = inputs()
    v, _ = dec(x, sigma, cond)
    extra = {"pooled_projections": cond.mean(1)} if kind == "sd3" else {}
    raw = dec.transformer(
        x, encoder_hidden_states=cond, timestep=1000 * sigma, return_dict=False, **extra
    )
    assert torch.allclose(v, raw[0], atol=1e-6)


def test_sana_honours_condition_mask_and_other_grids():
    torch.manual_seed(0)
    dec = build_decoder(tiny("sana"))
    x, sigma, cond, mask = inputs()
    v = dec(x, sigma, cond, mask)[0]
    masked_changed = cond.clone()
    masked_changed[1, 3:] += 5.0  # only padded tokens of row 1
    assert torch.allclose(dec(x, sigma, masked_changed, mask)[0], v, atol=1e-6)
    valid_changed = cond.clone()
    valid_changed[1, 0] += 5.0
    assert not torch.allclose(dec(x, sigma, valid_changed, mask)[0][1], v[1], atol=1e-4)
    wide = torch.randn(1, C, 8, 12)  # no positional table: any grid divisible by the patch
    v_wide, h_wide = dec(wide, sigma[:1], cond[:1])
    assert v_wide.shape == wide.shape and h_wide.shape == (1, 24, 32)


def test_pixel_space_sana():
    dec = build_decoder(tiny("sana", in_channels=3, sample_size=32))
    x = torch.randn(1, 3, 32, 32)
    v, hidden = dec(x, torch.tensor([0.5]), torch.randn(1, L, DC))
    assert v.shape == x.shape and hidden.shape == (1, 256, 32)


@pytest.mark.parametrize("kind", ["sana", "sd3"])
def test_gradients_flow_including_through_hidden(kind):
    dec = build_decoder(tiny(kind, gradient_checkpointing=kind == "sana"))
    dec.train()
    x, sigma, cond, mask = inputs()
    v, hidden = dec(x, sigma, cond.requires_grad_(), mask)
    (v.square().mean() + hidden.square().mean()).backward()
    t = dec.transformer
    embed = t.patch_embed if kind == "sana" else t.pos_embed
    for p in (embed.proj.weight, t.proj_out.weight, cond):
        assert p.grad is not None and p.grad.abs().sum() > 0
    dec.zero_grad()
    dec(x, sigma, cond, mask)[1].sum().backward()  # the aligned hidden alone reaches block 0
    to_q = next(p for n, p in t.transformer_blocks[0].named_parameters() if "to_q.weight" in n)
    assert to_q.grad.abs().sum() > 0
    assert t.proj_out.weight.grad is None  # the output head is after the aligned block


def test_frozen_has_no_trainable_params():
    dec = build_decoder(tiny("sana", train_mode="frozen"))
    assert not any(p.requires_grad for p in dec.parameters())


@pytest.mark.parametrize("kind", ["sana", "sd3"])
def test_save_load_and_lora(kind, tmp_path):
    torch.manual_seed(0)
    full = build_decoder(tiny(kind))
    full.transformer.save_pretrained(tmp_path / "transformer")  # pipeline-folder layout
    x, sigma, cond, mask = inputs()
    v, h = full(x, sigma, cond, mask)

    loaded = build_decoder(tiny(kind, pretrained=str(tmp_path)))
    v2, h2 = loaded(x, sigma, cond, mask)
    assert torch.equal(v, v2) and torch.equal(h, h2)

    lora = build_decoder(
        tiny(kind, pretrained=str(tmp_path / "transformer"), train_mode="lora", lora_rank=4)
    )
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert torch.allclose(lora(x, sigma, cond, mask)[0], v, atol=1e-6)  # B = 0 at init
    base_before = {n: p.clone() for n, p in lora.named_parameters() if not p.requires_grad}
    opt = torch.optim.SGD([p for p in lora.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):  # step 1 moves lora_B off zero, step 2 then moves lora_A too
        opt.zero_grad()
        lora(x, sigma, cond, mask)[0].square().mean().backward()
        opt.step()
    assert all(
        torch.equal(p, base_before[n]) for n, p in lora.named_parameters() if not p.requires_grad
    )
    assert not torch.allclose(lora(x, sigma, cond, mask)[0], v, atol=1e-6)


def test_bad_configs_give_clear_errors(tmp_path):
    with pytest.raises(
        ValueError, match=r"decoder.type: unknown decoder 'foo'; choose one of 'sana', 'sd3'"
    ):
        DecoderConfig(type="foo")
    with pytest.raises(ValueError, match=r"decoder.train_mode: unknown mode 'half'"):
        DecoderConfig(train_mode="half")
    with pytest.raises(
        ValueError, match=r"decoder.patch_size: 3 does not divide decoder.sample_size 8"
    ):
        tiny(patch_size=3)
    with pytest.raises(ValueError, match=r"decoder.align_block: 2"):
        tiny(align_block=2)
    with pytest.raises(ValueError, match=r"decoder.num_layers: must be >= 1, got 0"):
        tiny(num_layers=0, align_block=None)
    dec = build_decoder(tiny("sd3"))
    with pytest.raises(
        ValueError, match=r"decoder.patch_size: 2 does not divide the latent grid 7x8"
    ):
        dec.validate_grid((7, 8))
    with pytest.raises(ValueError, match="decoder.pos_embed_max_size"):
        dec.validate_grid((16, 8))
    dec.validate_grid((8, 6))
    with pytest.raises(FileNotFoundError, match="decoder.pretrained"):
        build_decoder(tiny(pretrained=str(tmp_path / "missing")))
    dec.transformer.save_pretrained(tmp_path / "sd3")
    with pytest.raises(ValueError, match="decoder.pretrained: .* holds a SD3Transformer2DModel"):
        build_decoder(tiny("sana", pretrained=str(tmp_path / "sd3")))
    with pytest.raises(TypeError):
        Decoder(torch.nn.Linear(2, 2))


def test_sana_pooled_condition_starts_neutral_and_learns():
    """The pooled path's last layer starts at zero (same output as without it); after a step the
    output depends on the pooled condition even with the cross-attention blinded."""
    torch.manual_seed(0)
    dec = build_decoder(tiny("sana", pooled_cond=True, align_block=None))
    plain = build_decoder(tiny("sana", align_block=None))
    plain.transformer.load_state_dict(dec.transformer.state_dict())
    x, sigma, cond, mask = inputs()
    assert torch.allclose(dec(x, sigma, cond, mask)[0], plain(x, sigma, cond, mask)[0])
    opt = torch.optim.SGD(dec.pooled.parameters(), lr=1.0)
    dec(x, sigma, cond, mask)[0].pow(2).mean().backward()
    assert dec.pooled[-1].weight.grad.abs().sum() > 0
    opt.step()
    for blk in dec.transformer.transformer_blocks:  # cross-attention sees no condition at all
        blk.attn2.to_v.weight.data.zero_()
        blk.attn2.to_v.bias.data.zero_()
    with torch.no_grad():
        a = dec(x, sigma, cond, mask)[0]
        b = dec(x, sigma, cond + 1.0, mask)[0]
    assert not torch.allclose(a, b)


def test_sd3_folder_with_a_narrower_pooled_width_loads(tmp_path):
    """Released SD3 / SD3.5 have pooled width 2048 < condition width 4096: the mean condition
    reaches the pooled input through a zero-initialised map, which then learns."""
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(0)
    kw = tiny("sd3").transformer_kwargs() | {"pooled_projection_dim": 16}
    SD3Transformer2DModel(**kw).save_pretrained(tmp_path / "transformer")
    dec = build_decoder(tiny("sd3", pretrained=str(tmp_path), train_mode="frozen"))
    assert dec.cond_dim == DC and dec.pooled_proj.out_features == 16
    x, sigma, cond, mask = inputs()
    v, _ = dec(x, sigma, cond, mask)
    zero = dec.transformer(
        x, encoder_hidden_states=cond, pooled_projections=torch.zeros(B, 16),
        timestep=1000 * sigma, return_dict=False,
    )[0]  # fmt: skip
    assert torch.allclose(v, zero, atol=1e-6)  # starts from a constant pooled input
    v.square().mean().backward()
    assert dec.pooled_proj.weight.grad.abs().sum() > 0
    assert [n for n, p in dec.named_parameters() if p.requires_grad] == [
        "pooled_proj.weight",
        "pooled_proj.bias",
    ]
