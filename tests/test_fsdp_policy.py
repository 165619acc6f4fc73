"""`configs/accelerate/fsdp.yaml` wraps the blocks each model really has.

The launcher config is turned into the environment `accelerate launch` would set, the FSDP
plugin is built from it, and accelerate's own FSDP2 resolver (`set_auto_wrap_policy` +
`fsdp2_prepare_auto_wrap_policy`, what `accelerator.prepare` runs) is asked which modules it
wraps: for the modules the tools pass to `loop.prepare` (a `Backbone`, a `Generator`) over a
tiny Qwen2-VL, a Qwen2.5-VL-3B and a text-only Qwen2.5 of real widths (built on the meta
device, no weights) and a SANA decoder.
"""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest
import torch
from torch import nn

from unimodal.backbone import Backbone

ROOT = Path(__file__).resolve().parents[1]


def fsdp_env() -> dict[str, str]:
    """The FSDP environment `accelerate launch --config_file configs/accelerate/fsdp.yaml` sets."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    cfg = str(ROOT / "configs/accelerate/fsdp.yaml")
    args = launch_command_parser().parse_args(["--config_file", cfg, "tools/train_azr.py"])
    args, _, _ = _validate_launch_command(args)
    env = prepare_multi_gpu_env(args)
    return {k: v for k, v in env.items() if k.startswith(("FSDP_", "ACCELERATE_USE_FSDP"))}


def wrapped(model: nn.Module) -> set[str]:
    """Class names of the modules accelerate's FSDP2 path shards one by one in `model`."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy

    with mock.patch.dict(os.environ, fsdp_env()):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2
    plugin.set_auto_wrap_policy(model)  # raises for a listed class the model lacks
    policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
    assert policy is not None
    return {type(m).__name__ for m in model.modules() if m is not model and policy(m)}


def count(model: nn.Module, name: str) -> int:
    return sum(type(m).__name__ == name for m in model.modules())


@pytest.fixture(scope="module")
def tiny_bb(tiny_backbone_dir: Path) -> Backbone:
    return Backbone.from_pretrained(tiny_backbone_dir)


def meta_backbone(model_cls: type, config, processor) -> Backbone:
    with torch.device("meta"):
        model = model_cls(config)
    return Backbone(model, processor)


def real_config(name: str, layers: int = 2):
    """A published config (`unimodal.fixtures`) with its depth cut to `layers`."""
    from transformers import AutoConfig

    from unimodal.fixtures.build import reduced_config
    from unimodal.fixtures.real import FAMILIES

    return AutoConfig.for_model(**reduced_config(FAMILIES[name], layers, None))


def test_qwen2_vl_backbone_wraps_decoder_layers_and_vision_blocks(tiny_bb: Backbone):
    names = wrapped(tiny_bb)
    assert names == {"Qwen2VLDecoderLayer", "Qwen2VLVisionBlock"}


def test_qwen25_vl_backbone_of_real_widths(tiny_bb: Backbone):
    from transformers import Qwen2_5_VLForConditionalGeneration

    cfg = real_config("qwen2.5-vl-3b")
    bb = meta_backbone(Qwen2_5_VLForConditionalGeneration, cfg, tiny_bb.processor)
    assert bb.hidden_size == 2048
    assert wrapped(bb) == {"Qwen2_5_VLDecoderLayer", "Qwen2_5_VLVisionBlock"}
    assert count(bb, "Qwen2_5_VLDecoderLayer") == 2


def test_text_only_qwen25_backbone(tiny_bb: Backbone):
    from transformers import Qwen2ForCausalLM

    cfg = real_config("qwen2.5-coder-1.5b")
    bb = meta_backbone(Qwen2ForCausalLM, cfg, tiny_bb.tokenizer)
    assert wrapped(bb) == {"Qwen2DecoderLayer"}


def test_generator_wraps_backbone_layers_and_sana_blocks(tiny_bb: Backbone):
    from unimodal.generator import Generator, GenModelConfig

    gen = Generator(GenModelConfig(), tiny_bb)
    names = wrapped(gen)
    assert {"Qwen2VLDecoderLayer", "Qwen2VLVisionBlock", "SanaTransformerBlock"} <= names
    assert "Generator" not in names and "Backbone" not in names


def test_generator_with_a_sana_600m_decoder_of_real_widths(tiny_bb: Backbone):
    from flow_matching import DecoderConfig
    from unimodal.generator import Generator, GenModelConfig

    dec = DecoderConfig(
        type="sana", in_channels=32, num_attention_heads=36, attention_head_dim=32, num_layers=2,
        num_cross_attention_heads=16, cross_attention_head_dim=72, cond_dim=2304, sample_size=32,
        patch_size=1, align_block=1,
    )  # fmt: skip
    with torch.device("meta"):  # the decoder, connector and queries: shapes only
        gen = Generator(GenModelConfig(decoder=dec, resolutions=(4, 8, 16)), tiny_bb)
    assert gen.decoder.cond_dim == 2304
    names = wrapped(gen)
    assert {"SanaTransformerBlock", "Qwen2VLDecoderLayer"} <= names
    assert count(gen, "SanaTransformerBlock") == 2
