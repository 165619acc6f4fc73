"""VAE adapters (identity, tiny KL / DC through save/load)."""

import pytest
import torch
from diffusers import AutoencoderDC, AutoencoderKL

from flow_matching import DiffusersVAE, IdentityVAE, VAEConfig, build_vae


def tiny_kl() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=4,
        latent_channels=4,
        sample_size=32,
        scaling_factor=0.5,
        shift_factor=0.1,
    )


def tiny_dc() -> AutoencoderDC:
    torch.manual_seed(0)
    return AutoencoderDC(
        latent_channels=8,
        attention_head_dim=4,
        encoder_block_out_channels=(8, 16),
        decoder_block_out_channels=(8, 16),
        encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=(1, 1),
        encoder_qkv_multiscales=((), ()),
        decoder_qkv_multiscales=((), ()),
        scaling_factor=0.4,
    )


def test_identity_round_trip():
    vae = build_vae(VAEConfig())
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    assert isinstance(vae, IdentityVAE) and vae.latent_channels == 3 and vae.downsample == 1
    assert torch.equal(vae.decode(vae.encode(x)), x)


def test_kl_scaling_applied_once(tmp_path):
    raw = tiny_kl()
    raw.save_pretrained(tmp_path / "vae")  # pipeline-folder layout
    vae = build_vae(VAEConfig(type="kl", path=str(tmp_path)))
    assert isinstance(vae, DiffusersVAE) and (vae.latent_channels, vae.downsample) == (4, 2)
    assert not any(p.requires_grad for p in vae.parameters())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        z_raw = raw.encode(x).latent_dist.mode()  # (2, 4, 16, 16)
        lat = vae.encode(x)
        assert lat.shape == (2, 4, 16, 16)
        assert torch.allclose(lat, (z_raw - 0.1) * 0.5, atol=1e-6)
        assert torch.allclose(vae.decode(lat), raw.decode(z_raw).sample, atol=1e-5)


def test_kl_posterior_sampling_is_seeded(tmp_path):
    tiny_kl().save_pretrained(tmp_path)
    vae = build_vae(VAEConfig(type="kl", path=str(tmp_path), sample_posterior=True))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        a = vae.encode(x, torch.Generator().manual_seed(0))
        b = vae.encode(x, torch.Generator().manual_seed(0))
        vae.sample_posterior = False
        mode = vae.encode(x)
    assert torch.equal(a, b) and not torch.allclose(a, mode)


def test_dc_scaling_applied_once(tmp_path):
    raw = tiny_dc()
    raw.save_pretrained(tmp_path)
    vae = build_vae(VAEConfig(type="dc", path=str(tmp_path)))
    assert (vae.latent_channels, vae.downsample) == (8, 2)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        z_raw = raw.encode(x).latent
        lat = vae.encode(x)
        assert torch.allclose(lat, z_raw * 0.4, atol=1e-6)
        out = vae.decode(lat)
        assert out.shape == x.shape
        assert torch.allclose(out, raw.decode(z_raw).sample, atol=1e-5)


def test_vae_config_errors(tmp_path):
    with pytest.raises(ValueError, match=r"vae.type: unknown vae 'vq'"):
        VAEConfig(type="vq")
    with pytest.raises(ValueError, match="vae.path: required"):
        VAEConfig(type="kl")
    with pytest.raises(FileNotFoundError, match="vae.path"):
        build_vae(VAEConfig(type="dc", path=str(tmp_path / "nope")))
    tiny_kl().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="holds a AutoencoderKL"):
        build_vae(VAEConfig(type="dc", path=str(tmp_path)))
