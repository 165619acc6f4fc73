"""Shared fixtures: the tiny offline backbone, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

# One intra-op thread: the suite runs executor workers and servers beside torch on 2 cores,
# where oversubscribed OpenMP threads are many times slower.
torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_backbone_dir(tmp_path_factory) -> Path:
    from unimodal.presets import build_backbone

    return build_backbone(tmp_path_factory.mktemp("backbone") / "tiny", "tiny")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


# Fixture folders of published models (unimodal/fixtures): real widths, heads, vision and rope
# settings, 2 layers; the embedding is cut to FIXTURE_VOCAB rows (control tokens keep their
# place 293 ids below its end) since the real 151936 rows are most of the cost: 311M of the
# 3B fixture's 543M parameters, 1.1 GB on disk, and AdamW state for train_mllm.
FIXTURE_VOCAB = 16384


@pytest.fixture(scope="session")
def vl_fixture_dir(tmp_path_factory) -> Path:
    """Qwen2.5-VL-3B-Instruct, 2 layers (built in about 20 s)."""
    from unimodal.fixtures import build_fixture

    out = tmp_path_factory.mktemp("fixtures") / "qwen2.5-vl-3b"
    return build_fixture("qwen2.5-vl-3b", out, layers=2, vocab_size=FIXTURE_VOCAB)


@pytest.fixture(scope="session")
def coder_fixture_dir(tmp_path_factory) -> Path:
    """Qwen2.5-Coder-1.5B (text-only base model), 2 layers."""
    from unimodal.fixtures import build_fixture

    out = tmp_path_factory.mktemp("fixtures") / "qwen2.5-coder-1.5b"
    return build_fixture("qwen2.5-coder-1.5b", out, layers=2, vocab_size=FIXTURE_VOCAB)


@pytest.fixture(scope="session")
def sana_fixture_dir(tmp_path_factory) -> Path:
    """The SANA-600M pipeline folder (2 blocks) with the DC-AE f32c32 in vae/."""
    from unimodal.fixtures import build_fixture

    return build_fixture("sana-600m", tmp_path_factory.mktemp("fixtures") / "sana-600m")


@pytest.fixture(scope="session")
def sd35_fixture_dir(tmp_path_factory) -> Path:
    """The SD3.5-Medium pipeline folder (2 MMDiT blocks, block 0 dual-attention) with SD3's KL
    VAE in vae/, saved in bf16 (800 MB, half of it the 384 x 384 position table, whose
    construction is most of the 20 s build) and loaded by diffusers in float32."""
    from unimodal.fixtures import build_fixture

    return build_fixture("sd3.5-medium", tmp_path_factory.mktemp("fixtures") / "sd3.5-medium")


@pytest.fixture(scope="session")
def dinov2_fixture_dir(tmp_path_factory) -> Path:
    """timm/vit_base_patch14_dinov2.lvd142m as its hub folder, 2 blocks, float32."""
    from unimodal.fixtures import build_fixture

    out = tmp_path_factory.mktemp("fixtures") / "dinov2-vitb14"
    return build_fixture("dinov2-vitb14", out, layers=2, dtype="float32")


@pytest.fixture(scope="session")
def clip_fixture_dir(tmp_path_factory) -> Path:
    """open_clip ViT-B-16 (laion2B) as its hub folder, 2 blocks per tower, float32."""
    from unimodal.fixtures import build_fixture

    out = tmp_path_factory.mktemp("fixtures") / "openclip-vit-b16"
    return build_fixture("openclip-vit-b16", out, layers=2, dtype="float32")
