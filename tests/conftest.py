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
