"""The real-scale SANA recipe (`configs/gen_sana_qwen25vl.toml`) fits the published models.

No weights exist here: SANA 600M is built from its published config on the meta device, and
the DC-AE f32c32 is its published config.json alone (all the config-time check reads).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import torch

from unimodal.config import load_config
from unimodal.train.gen_config import GenTrainConfig

ROOT = Path(__file__).resolve().parents[1]
SANA_600M = dict(  # Efficient-Large-Model/Sana_600M_1024px_diffusers, transformer/config.json
    in_channels=32, out_channels=32, num_attention_heads=36, attention_head_dim=32, num_layers=28,
    num_cross_attention_heads=16, cross_attention_head_dim=72, cross_attention_dim=1152,
    caption_channels=2304, mlp_ratio=2.5, sample_size=32, patch_size=1,
    norm_elementwise_affine=False, norm_eps=1e-6, interpolation_scale=None,
)  # fmt: skip
DC_AE_F32C32 = {  # mit-han-lab/dc-ae-f32c32-sana-1.0-diffusers, config.json (the fields read)
    "_class_name": "AutoencoderDC",
    "latent_channels": 32,
    "encoder_block_out_channels": [128, 256, 512, 512, 1024, 1024],
    "decoder_block_out_channels": [128, 256, 512, 512, 1024, 1024],
    "scaling_factor": 0.41407,
}


def readme_sana_command() -> list[str]:
    """The README's SANA training command, as argv after `tools/train_gen.py`."""
    text = (ROOT / "README.md").read_text()
    cmds = re.findall(r"`(python tools/train_gen\.py [^`]*gen_sana_qwen25vl[^`]*)`", text)
    assert len(cmds) == 1, cmds
    return shlex.split(cmds[0])[2:]


def test_readme_sana_command_is_the_config(tmp_path: Path):
    argv = [a.replace("=DIR", f"={tmp_path}") for a in readme_sana_command()]
    assert [a.split("=")[0] for a in argv] == ["--config", "gen_sana_qwen25vl", "--data.root"]
    cfg = load_config(GenTrainConfig, argv)
    g = cfg.gen
    assert (g.vae.type, g.decoder.type, g.flow.prediction) == ("dc", "sana", "velocity")
    assert g.decoder.pretrained and g.vae.path and cfg.model.path
    assert g.resolutions == (256, 512, 1024) and g.queries.scales == (4, 8, 16)
    assert g.connector.width >= 1024  # not the 64-wide CPU connector
    assert cfg.train.lr <= 1e-4 and cfg.train.batch_size <= 16  # a pretrained decoder; fits


def test_sana_recipe_fits_sana_600m_and_dc_ae_f32(tmp_path: Path):
    from diffusers import SanaTransformer2DModel

    from flow_matching import Decoder, downsample_factor
    from unimodal.connector import Connector
    from unimodal.generator_config import check_grids

    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text(json.dumps(DC_AE_F32C32))
    argv = ["--config", "gen_sana_qwen25vl", f"--gen.vae.path={tmp_path}"]
    cfg = load_config(GenTrainConfig, argv).gen
    assert downsample_factor(cfg.vae) == 32
    with torch.device("meta"):
        decoder = Decoder(SanaTransformer2DModel(**SANA_600M), align_block=cfg.decoder.align_block)
        connector = Connector(cfg.connector, 2048, decoder.cond_dim, cfg.queries.scales)
    assert check_grids(cfg, decoder, 32) == [8, 16, 32]  # token grids nest the 4/8/16 queries
    assert connector.out.weight.shape == (2304, cfg.connector.width)
