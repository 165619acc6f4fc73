"""Every tool for 2 steps on the fixture folders of the published families (tests/conftest.py):
generation training on Qwen2.5-VL-3B (the default decoder, then SANA-600M + DC-AE f32c32) and
on the text-only Qwen2.5-Coder-1.5B, stage 0 on Qwen2.5-VL-3B, and chat / generate through
`unimodal.Pipeline` on what they write. Real widths, 2 layers, a 16384-row embedding. On the
tiny backbone: SD3.5-Medium + its KL VAE through configs/gen_sd3_pretrained_gpu.toml, and REPA's
encoder target on the DINOv2-B/14 (timm) and CLIP ViT-B/16 (open_clip) hub folders.

The backbones are saved in bf16 like the published ones and loaded with `--model.dtype=float32`,
as a CPU run must (bf16 matmuls are emulated without AVX-512 and take minutes).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unimodal import checkpoint
from unimodal.config import load_config

TWO_STEPS = [
    "--model.dtype=float32", "--train.steps=2", "--train.batch_size=2", "--train.warmup_steps=1",
    "--train.log_every=1", "--train.save_every=1000", "--sample.every=0",
    '--sample.prompts=["a red circle"]', "--gen.sampler.steps=2", "--eval.n_per_category=0",
]  # fmt: skip


def train_gen(backbone: Path, out: Path, *extra: str) -> Path:
    from tools.train_gen import CONFIG, main

    main(
        load_config(
            CONFIG, [f"--model.path={backbone}", f"--train.out_dir={out}", *TWO_STEPS, *extra]
        )
    )
    final = out / "final"
    assert (final / "generator.safetensors").is_file() and (out / "metrics.jsonl").is_file()
    return final


@pytest.mark.slow  # about 80 s on 2 shared cores (fixture builds: 20-30 s each, once)
def test_train_gen_on_qwen25_vl_then_pipeline_generates_and_chats(vl_fixture_dir, tmp_path):
    from unimodal.pipeline import Pipeline

    final = train_gen(vl_fixture_dir, tmp_path / "gen")
    pipe = Pipeline.from_pretrained(final, device="cpu", dtype=torch.float32)
    assert pipe.generator.connector is not None and pipe.backbone.hidden_size == 2048
    (image,) = pipe.generate("a blue square", steps=2)
    assert image.size[0] > 0
    from PIL import Image

    photo = Image.new("RGB", (64, 48), "red")
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What?"}]}]
    answer = pipe.chat(msgs, [photo], max_new_tokens=3)
    assert isinstance(answer, str)


@pytest.mark.slow  # about 55 s
def test_train_gen_on_text_only_qwen25_coder(coder_fixture_dir, tmp_path):
    final = train_gen(coder_fixture_dir, tmp_path / "gen")
    saved = checkpoint.load_weights(tmp_path / "gen" / "final", "generator")
    assert saved and all(v.isfinite().all() for v in saved.values())
    assert final.is_dir()


@pytest.mark.slow  # about 60 s
def test_train_gen_with_sana_600m_and_dc_ae_f32(vl_fixture_dir, sana_fixture_dir, tmp_path):
    final = train_gen(
        vl_fixture_dir, tmp_path / "gen",
        f"--gen.decoder.pretrained={sana_fixture_dir}", "--gen.decoder.align_block=1",
        "--gen.vae.type=dc", f"--gen.vae.path={sana_fixture_dir}",
        "--gen.flow.prediction=velocity", "--gen.resolutions=[32,64,128]",
    )  # fmt: skip
    from unimodal.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(final, device="cpu", dtype=torch.float32)
    assert pipe.generator.decoder.cond_dim == 2304
    (image,) = pipe.generate("a red circle", steps=2)
    assert image.size == (128, 128)  # the last resolution


@pytest.mark.slow  # about 120 s
def test_train_mllm_on_qwen25_vl_exports_a_loadable_backbone(vl_fixture_dir, tmp_path):
    from tools.train_mllm import CONFIG, main
    from unimodal.backbone import Backbone

    out = tmp_path / "mllm"
    args = [
        f"--model.path={vl_fixture_dir}", "--model.dtype=float32", f"--train.out_dir={out}",
        "--train.steps=2", "--train.batch_size=2", "--train.warmup_steps=1",
        "--train.save_every=1000", "--train.log_every=1", "--eval.vqa_samples=2",
    ]  # fmt: skip
    main(load_config(CONFIG, args))
    assert checkpoint.load_train_state(checkpoint.latest(out))["step"] == 2
    base = Backbone.from_pretrained(vl_fixture_dir, dtype=torch.float32)
    trained = Backbone.from_pretrained(out / "final", dtype=torch.float32)
    assert type(trained.model) is type(base.model)
    assert trained.eos_token_ids == base.eos_token_ids  # generation_config.json kept
    a, b = base.model.state_dict(), trained.model.state_dict()
    assert a.keys() == b.keys() and all(b[k].isfinite().all() for k in b)
    assert any(not torch.equal(a[k], b[k]) for k in a), "training changed no weight"


@pytest.mark.slow  # about 65 s (the fixture build: 20 s, once)
def test_train_gen_with_sd35_medium_through_its_gpu_config(
    tiny_backbone_dir, sd35_fixture_dir, tmp_path
):
    d = sd35_fixture_dir
    final = train_gen(
        tiny_backbone_dir, tmp_path / "gen", "--config=gen_sd3_pretrained_gpu",
        f"--gen.decoder.pretrained={d}", f"--gen.vae.path={d}", "--gen.decoder.align_block=1",
        "--gen.resolutions=[16,32,64]",  # latents 2, 4, 8 (VAE f8): 1, 4, 16 patches of 2
    )  # fmt: skip
    saved = checkpoint.load_weights(final, "generator")
    lora = [k for k in saved if "add_q_proj.lora_A" in k]  # the config's LoRA on joint attention
    assert lora and all(v.isfinite().all() for v in saved.values())
    resolved = (final / "config.toml").read_text()
    assert 'type = "sd3"' in resolved and 'train_mode = "lora"' in resolved and str(d) in resolved
    from unimodal.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(final, device="cpu", dtype=torch.float32)
    assert pipe.generator.decoder.type == "sd3" and pipe.generator.vae.downsample == 8
    (image,) = pipe.generate("a red circle", steps=2)
    assert image.size == (64, 64)  # the last resolution


@pytest.mark.slow  # about 10 s each
@pytest.mark.parametrize("kind", ["timm", "open_clip"])
def test_train_gen_aligns_to_the_encoder_fixtures(kind, tiny_backbone_dir, request, tmp_path):
    path = request.getfixturevalue("dinov2_fixture_dir" if kind == "timm" else "clip_fixture_dir")
    extra = ["--gen.encoder.model_kwargs={img_size = 224}"] if kind == "timm" else []
    final = train_gen(
        tiny_backbone_dir, tmp_path / "gen", "--gen.align_target=encoder",
        f"--gen.encoder.kind={kind}", f"--gen.encoder.path={path}", *extra,
    )  # fmt: skip
    saved = checkpoint.load_weights(final, "generator")
    assert not any(k.startswith("encoder.") for k in saved)  # the encoder stays frozen
    assert saved["projectors.0.net.4.weight"].shape[0] == 768  # ViT-B's width
