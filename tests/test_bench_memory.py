"""`tools/bench.py memory`: the meta-device activation count against a measured CPU step, and
the real-scale report on the published Qwen2.5-VL-3B + SANA-600M configs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.memory import activation_bytes, meta_generator
from benchmarks.memory_check import measured_step_bytes
from unimodal.backbone import Backbone
from unimodal.checkpointing import checkpoint_layers
from unimodal.config import load_config
from unimodal.generator import Generator
from unimodal.train.gen_config import GenTrainConfig

ROOT = Path(__file__).resolve().parents[1]


def test_meta_estimate_matches_a_measured_cpu_step(tiny_backbone_dir):
    argv = [f"--model.path={tiny_backbone_dir}", "--model.dtype=float32"]
    cfg = load_config(GenTrainConfig, argv)
    meta = meta_generator(cfg).train()
    assert next(meta.decoder.parameters()).is_meta
    torch.manual_seed(0)
    real = Generator(cfg.gen, Backbone.from_pretrained(tiny_backbone_dir)).train()
    for step in ("plain", "checkpointed"):
        if step == "checkpointed":
            checkpoint_layers(meta.backbone.model)
            checkpoint_layers(real.backbone.model)
        est = activation_bytes(meta, 8, 24, "meta")
        kept, peak = measured_step_bytes(real, 8, 24)
        assert abs(est / kept - 1) <= 0.2, (step, est, kept)
        assert peak >= kept
        if step == "plain":
            plain = est
    assert est < plain  # checkpointing keeps less


@pytest.mark.slow
def test_real_scale_report(tmp_path):
    out = tmp_path / "memory.json"
    cmd = [sys.executable, "tools/bench.py", "memory", "--config", "gen_sana_qwen25vl",
           "--backbone-like", "qwen2.5-vl-3b", "--decoder-like", "sana-600m", "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    r = json.loads(out.read_text())
    static = r["static_gib"]
    assert 6.5 < static["params backbone"] < 7.5  # 3.75B parameters in bf16
    assert 2.0 < static["params decoder"] < 2.4  # SANA 600M (590M) in fp32
    per, fits = r["activations_per_sample_gib"], r["largest_batch_per_gpu"]
    ckpt, plain = "with backbone checkpointing", "without backbone checkpointing"
    assert 0 < per[ckpt] < 0.5 * per[plain]
    assert fits[ckpt] > fits[plain] >= 1
    assert "largest batch" not in done.stdout or "per 80 GiB" in done.stdout
    assert "per 80 GiB" in done.stdout
