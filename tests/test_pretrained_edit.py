"""Editing on a pretrained decoder: the patch embedding is widened for the reference latents
with zero-initialised weights (as InstructPix2Pix widens `conv_in`), so at step 0 the widened
decoder computes exactly what the pretrained one does, whatever the reference."""

from __future__ import annotations

import pytest
import torch
from diffusers import SanaTransformer2DModel, SD3Transformer2DModel

from flow_matching import DecoderConfig, build_decoder


def save_tiny(kind: str, folder) -> None:
    torch.manual_seed(0)
    if kind == "sana":
        SanaTransformer2DModel(
            in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8,
            num_layers=2, num_cross_attention_heads=2, cross_attention_head_dim=8,
            cross_attention_dim=16, caption_channels=24, sample_size=8, patch_size=1,
        ).save_pretrained(folder)  # fmt: skip
    else:
        SD3Transformer2DModel(
            in_channels=4, out_channels=4, num_layers=2, num_attention_heads=2,
            attention_head_dim=8, joint_attention_dim=24, caption_projection_dim=16,
            pooled_projection_dim=24, sample_size=8, patch_size=2, pos_embed_max_size=8,
        ).save_pretrained(folder)  # fmt: skip


@pytest.mark.parametrize("kind", ["sana", "sd3"])
@pytest.mark.parametrize("mode", ["full", "lora"])
def test_widened_pretrained_decoder_starts_where_it_was(tmp_path, kind: str, mode: str):
    save_tiny(kind, tmp_path / kind)
    base = build_decoder(DecoderConfig(type=kind, pretrained=str(tmp_path / kind)))
    wide = build_decoder(
        DecoderConfig(type=kind, pretrained=str(tmp_path / kind), ref_channels=4, train_mode=mode)
    )
    assert (wide.in_channels, wide.ref_channels) == (4, 4) and base.ref_channels == 0
    t = wide.transformer
    proj = (t.patch_embed if kind == "sana" else t.pos_embed).proj  # (Dh, C + R, p, p)
    assert proj.weight.shape[1] == 8 and proj.weight.requires_grad  # the new inputs learn
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 8, 8, generator=g)  # (B, C, H, W)
    ref = torch.randn(2, 4, 8, 8, generator=g)  # (B, R, H, W)
    cond = torch.randn(2, 5, 24, generator=g)  # (B, L, Dc)
    sigma = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        want = base(x, sigma, cond)[0]
        got = wide(x, sigma, cond, ref=ref)[0]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_widened_decoder_reloads_from_config_and_its_trained_state(tmp_path):
    """What loading a final folder does (`Generator(..., pretrained_weights=False)`)."""
    save_tiny("sana", tmp_path / "sana")
    cfg = DecoderConfig(type="sana", pretrained=str(tmp_path / "sana"), ref_channels=4)
    trained = build_decoder(cfg)
    again = build_decoder(cfg, weights=False)
    again.load_state_dict(trained.state_dict())
    x, ref, cond = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8), torch.randn(1, 3, 24)
    sigma = torch.tensor([0.5])
    with torch.no_grad():
        torch.testing.assert_close(
            again(x, sigma, cond, ref=ref)[0], trained(x, sigma, cond, ref=ref)[0]
        )
