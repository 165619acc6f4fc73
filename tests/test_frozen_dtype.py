"""`gen.frozen_dtype = "bfloat16"`: the parts that never train in bf16, the trained ones in
fp32; training, sampling and the VAE work the same under the autocast it brings."""

from dataclasses import replace

import pytest
import torch
from diffusers import AutoencoderKL

from flow_matching import VAEConfig, build_vae
from unimodal.backbone import Backbone
from unimodal.frozen import cast_frozen
from unimodal.generator import Generator, GenModelConfig


def _gen(tiny_backbone_dir, dtype: str) -> Generator:
    base = GenModelConfig()
    cfg = replace(base, frozen_dtype=dtype, decoder=replace(base.decoder, train_mode="lora"))
    torch.manual_seed(0)
    return Generator(cfg, Backbone.from_pretrained(tiny_backbone_dir)).train()


def _loss(gen: Generator) -> torch.Tensor:
    prompt = gen.encode_prompts(["a red circle", "two squares"])
    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return gen(prompt, pixels, torch.Generator().manual_seed(0))["loss"]


def test_frozen_decoder_base_in_bf16_trains_lora_in_fp32(tiny_backbone_dir):
    ref, gen = _gen(tiny_backbone_dir, "float32"), _gen(tiny_backbone_dir, "bfloat16")
    dec = dict(gen.decoder.named_parameters())
    frozen = [p for p in dec.values() if not p.requires_grad]
    lora = [p for n, p in dec.items() if "lora_" in n]
    assert frozen and lora and all(p.dtype == torch.bfloat16 for p in frozen)
    assert all(p.dtype == torch.float32 for p in lora)
    assert all(p.dtype == torch.float32 for p in gen.queries.parameters())
    size = sum(p.numel() * p.element_size() for p in gen.decoder.parameters())
    ref_size = sum(p.numel() * p.element_size() for p in ref.decoder.parameters())
    assert size < 0.6 * ref_size  # the base weights take half the bytes
    loss, ref_loss = _loss(gen), _loss(ref)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref_loss, rtol=0.05, atol=0.02)  # bf16 matmuls
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in lora)
    assert all(p.grad is None for p in frozen)
    image = gen.generate(["a red circle"], steps=2, seed=3)
    want = ref.generate(["a red circle"], steps=2, seed=3)
    assert image.dtype == torch.float32 and image.shape == want.shape
    assert (image - want).abs().mean() < 0.05


def test_bf16_vae_gives_fp32_latents_close_to_the_fp32_vae(tmp_path):
    torch.manual_seed(0)
    AutoencoderKL(
        block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4, latent_channels=4,
        sample_size=32,
    ).save_pretrained(tmp_path)  # fmt: skip
    ref, vae = (build_vae(VAEConfig(type="kl", path=str(tmp_path))) for _ in range(2))
    assert cast_frozen([vae.requires_grad_(False)], "bfloat16") > 0
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = vae.encode(pixels)
        back = vae.decode(z)
    assert z.dtype == back.dtype == torch.float32
    torch.testing.assert_close(z, ref.encode(pixels), rtol=0.05, atol=0.05)


def test_unknown_frozen_dtype_is_refused():
    with pytest.raises(ValueError, match="gen.frozen_dtype"):
        GenModelConfig(frozen_dtype="float16")
