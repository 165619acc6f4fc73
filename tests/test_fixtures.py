"""Fixture folders of the published families (unimodal/fixtures, tools/make_fixture.py): the real
configs, the real repo layout, and a tokenizer whose control tokens sit at the real ids.

The session fixtures (tests/conftest.py) cut the embedding to FIXTURE_VOCAB rows; the real-id
tokenizer is checked here on its own, and `build_fixture` at the real vocabulary is what the
tool writes by default.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import FIXTURE_VOCAB

from unimodal.backbone import Backbone
from unimodal.fixtures.build import reduced_config, shift_ids
from unimodal.fixtures.real import FAMILIES, QWEN_VOCAB

REAL_IDS = {
    "<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
    "<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655, "<|video_pad|>": 151656, "<|file_sep|>": 151664,
}  # fmt: skip
SHIFT = FIXTURE_VOCAB - QWEN_VOCAB


def test_tokenizer_has_the_real_qwen2_layout():
    from unimodal.fixtures.tokenizer import qwen2_tokenizer

    tok = qwen2_tokenizer()
    assert len(tok) == 151665 and tok.eos_token == "<|im_end|>" and tok.bos_token is None
    assert {t: tok.convert_tokens_to_ids(t) for t in REAL_IDS} == REAL_IDS
    assert (tok.eos_token_id, tok.pad_token_id) == (151645, 151643)
    text = "def f(x):\n    return x + 12  # a red circle"
    ids = tok(text + "<|im_end|>")["input_ids"]
    assert ids[-1] == 151645 and max(ids[:-1]) < 4096  # fillers are never produced
    assert tok.decode(ids) == text + "<|im_end|>"
    assert tok.decode([9000]) == " #9000"  # a filler decodes, it does not crash


def test_reduced_configs_keep_real_widths_and_cut_depth():
    cfg = reduced_config(FAMILIES["qwen2.5-vl-3b"], 2, None)
    text, vision = cfg["text_config"], cfg["vision_config"]
    assert (text["hidden_size"], text["num_attention_heads"], text["num_key_value_heads"]) == (
        2048, 16, 2,
    )  # fmt: skip
    assert text["num_hidden_layers"] == 2 and vision["depth"] == 2
    assert vision["fullatt_block_indexes"] == [1]  # [7, 15, 23, 31] cut: the last block stays full
    assert text["rope_parameters"]["mrope_section"] == [16, 24, 24]
    assert FAMILIES["qwen2.5-vl-3b"].config["vision_config"]["depth"] == 32  # not mutated
    small = shift_ids(FAMILIES["qwen2.5-vl-3b"].generation, -100)
    assert small["eos_token_id"] == [151545, 151543] and small["top_k"] == 1


def test_vl_fixture_is_laid_out_like_the_real_repo(vl_fixture_dir: Path):
    d = vl_fixture_dir
    index = json.loads((d / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) >= 2 and all((d / s).is_file() for s in shards)
    assert {p.name for p in d.glob("model-*.safetensors")} == shards
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    assert cfg["text_config"]["hidden_size"] == 2048 and cfg["vision_config"]["hidden_size"] == 1280
    assert cfg["image_token_id"] == 151655 + SHIFT
    pre = json.loads((d / "preprocessor_config.json").read_text())
    assert (pre["min_pixels"], pre["max_pixels"], pre["patch_size"]) == (3136, 12845056, 14)
    gen = json.loads((d / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [151645 + SHIFT, 151643 + SHIFT]
    assert "<|vision_start|><|image_pad|><|vision_end|>" in (d / "chat_template.jinja").read_text()


def test_vl_fixture_loads_and_renders_like_qwen25_vl(vl_fixture_dir: Path):
    bb = Backbone.from_pretrained(vl_fixture_dir, dtype=torch.float32)
    assert type(bb.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert bb.is_vlm and bb.hidden_size == 2048
    assert bb.eos_token_ids == [151643 + SHIFT, 151645 + SHIFT]  # generation_config's two
    image = bb.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert image == bb.model.config.image_token_id == 151655 + SHIFT
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
    text = bb.render(msgs)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert text.endswith("<|vision_end|>hi<|im_end|>\n<|im_start|>assistant\n")


def test_text_fixture_is_a_qwen25_coder_base(coder_fixture_dir: Path):
    bb = Backbone.from_pretrained(coder_fixture_dir, dtype=torch.float32)
    assert type(bb.model).__name__ == "Qwen2ForCausalLM" and not bb.is_vlm
    assert bb.hidden_size == 1536 and bb.model.config.num_key_value_heads == 2
    assert bb.model.config.tie_word_embeddings
    assert bb.tokenizer.eos_token == "<|endoftext|>"  # a base model stops on <|endoftext|>
    parts = [{"type": "text", "text": "Hello"}]  # the real template takes strings only
    assert bb.render([{"role": "user", "content": parts}]).startswith(
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud."
    )


def test_sana_fixture_loads_through_the_decoder_and_vae_builders(sana_fixture_dir: Path):
    from flow_matching import DecoderConfig, VAEConfig, build_decoder, build_vae, downsample_factor

    d = sana_fixture_dir
    assert json.loads((d / "model_index.json").read_text())["vae"] == ["diffusers", "AutoencoderDC"]
    assert (d / "vae" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    dec = build_decoder(DecoderConfig(type="sana", pretrained=str(d), align_block=1))
    assert (dec.cond_dim, dec.in_channels) == (2304, 32)
    assert len(dec.transformer.transformer_blocks) == 2
    vae_cfg = VAEConfig(type="dc", path=str(d))
    assert downsample_factor(vae_cfg) == 32
    vae = build_vae(vae_cfg)
    assert vae.latent_channels == 32


def shards_match_index(folder: Path, index: str) -> bool:
    """Every shard the index names is there, and nothing else of that name."""
    shards = set(json.loads((folder / index).read_text())["weight_map"].values())
    stem = index.split(".")[0]
    return len(shards) >= 2 and {p.name for p in folder.glob(f"{stem}-*.safetensors")} == shards


def test_sd35_fixture_loads_through_the_decoder_and_vae_builders(sd35_fixture_dir: Path):
    from flow_matching import DecoderConfig, VAEConfig, build_decoder, build_vae, downsample_factor

    d, real = sd35_fixture_dir, FAMILIES["sd3.5-medium"].config
    index = json.loads((d / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusion3Pipeline"
    assert index["transformer"] == ["diffusers", "SD3Transformer2DModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    index_file = "diffusion_pytorch_model.safetensors.index.json"
    assert shards_match_index(d / "transformer", index_file)
    # configs/gen_sd3_pretrained_gpu.toml's loading path: decoder type sd3, vae type kl
    dec = build_decoder(DecoderConfig(type="sd3", pretrained=str(d), align_block=1))
    c = dec.transformer.config
    assert type(dec.transformer).__name__ == "SD3Transformer2DModel"
    widths = ("patch_size", "in_channels", "out_channels", "num_attention_heads",
              "attention_head_dim", "joint_attention_dim", "caption_projection_dim",
              "pooled_projection_dim", "pos_embed_max_size", "qk_norm", "sample_size")  # fmt: skip
    assert {k: c[k] for k in widths} == {k: real[k] for k in widths}
    assert (dec.hidden_dim, dec.cond_dim, dec.in_channels) == (1536, 4096, 16)
    assert dec.pooled_proj is not None  # 4096-wide conditions, a 2048-wide pooled input
    blocks = dec.transformer.transformer_blocks
    assert len(blocks) == 2 and list(c.dual_attention_layers) == [0]
    assert blocks[0].attn2 is not None and blocks[1].attn2 is None  # dual (MMDiT-X), then single
    assert blocks[1].context_pre_only and dec.transformer.pos_embed.pos_embed.shape == (
        1, 384 * 384, 1536,
    )  # fmt: skip
    vae_cfg = VAEConfig(type="kl", path=str(d))
    assert downsample_factor(vae_cfg) == 8
    vae = build_vae(vae_cfg)
    assert type(vae.model).__name__ == "AutoencoderKL"
    assert (vae.latent_channels, vae.downsample) == (16, 8)
    assert (vae.scaling_factor, vae.shift_factor) == (1.5305, 0.0609)
    vc = vae.model.config
    assert list(vc.block_out_channels) == [128, 256, 512, 512] and vc.layers_per_block == 2


def test_dinov2_fixture_is_a_timm_hub_folder_the_encoder_loads(dinov2_fixture_dir: Path):
    from safetensors.torch import load_file

    from unimodal.encoders import EncoderConfig, build_encoder

    d = dinov2_fixture_dir
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["architecture"] == "vit_base_patch14_dinov2" and cfg["model_args"]["depth"] == 2
    assert cfg["pretrained_cfg"]["input_size"] == [3, 518, 518]
    assert (d / "model.safetensors").is_file() and (d / "pytorch_model.bin").is_file()
    enc = build_encoder(EncoderConfig("timm", "", str(d), {"img_size": 224}))  # REPA's 224 px
    vit = enc.model
    assert type(vit).__name__ == "VisionTransformer" and len(vit.blocks) == 2
    assert (enc.dim, vit.blocks[0].attn.num_heads, vit.patch_embed.patch_size) == (
        768,
        12,
        (14, 14),
    )
    assert (enc.size, enc.num_tokens) == ((224, 224), 256)  # 16 x 16 patches, prefix dropped
    assert torch.allclose(enc.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    saved = load_file(d / "model.safetensors")
    assert torch.equal(vit.blocks[1].mlp.fc2.weight, saved["blocks.1.mlp.fc2.weight"])
    assert vit.pos_embed.shape == (1, 257, 768)  # 37 x 37 + 1 resampled to 16 x 16 + 1


def test_open_clip_fixture_is_an_open_clip_hub_folder_the_encoder_loads(clip_fixture_dir: Path):
    from unimodal.encoders import EncoderConfig, build_encoder
    from unimodal.fixtures.real import CLIP_MEAN

    d = clip_fixture_dir
    cfg = json.loads((d / "open_clip_config.json").read_text())["model_cfg"]
    assert cfg["vision_cfg"] == dict(image_size=224, layers=2, width=768, patch_size=16)
    assert (d / "open_clip_model.safetensors").is_file()
    enc = build_encoder(EncoderConfig("open_clip", "", str(d)))
    vit = enc.model
    assert type(vit).__name__ == "VisionTransformer" and len(vit.transformer.resblocks) == 2
    assert (enc.dim, vit.transformer.resblocks[0].attn.num_heads) == (768, 12)
    assert (enc.size, enc.num_tokens) == ((224, 224), 196)
    assert torch.allclose(enc.mean.flatten(), torch.tensor(CLIP_MEAN))


def test_encoder_hub_folders_that_do_not_fit_are_errors_naming_them(dinov2_fixture_dir, tmp_path):
    from unimodal.encoders import EncoderConfig, EncoderError, build_encoder

    with pytest.raises(EncoderError, match=f"'vit_small_patch14_dinov2', but {dinov2_fixture_dir}"):
        build_encoder(EncoderConfig("timm", "vit_small_patch14_dinov2", str(dinov2_fixture_dir)))
    (tmp_path / "config.json").write_bytes((dinov2_fixture_dir / "config.json").read_bytes())
    with pytest.raises(EncoderError, match=f"{tmp_path} has config.json but no weights"):
        build_encoder(EncoderConfig("timm", "", str(tmp_path)))


def test_make_fixture_refuses_unknown_families_in_one_line(capsys):
    from tools.make_fixture import main

    with pytest.raises(SystemExit) as e:
        main(["--like", "sana-600m", "--vocab-size", "4096", "--out", "unused"])
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith("error: --vocab-size: only for Qwen")
