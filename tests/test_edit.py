"""Editing: reference latents, dual guidance, the edit suite, Pipeline.edit and sessions."""

import pytest
import torch

from evals.edit import preservation, region_mask
from unimodal.config import load_config


def test_preservation_ignores_the_edited_region():
    target = torch.zeros(1, 3, 16, 16)
    out = target.clone()
    out[..., 2:6, 2:6] = 1.0  # a change inside the region only
    inside = region_mask((0.1, 0.1, 0.4, 0.4), 16)
    psnr, ssim = preservation(out, target, inside)
    assert psnr > 90 and ssim == pytest.approx(1.0, abs=1e-4)
    out[..., 12:, 12:] = 1.0  # and one outside
    psnr2, ssim2 = preservation(out, target, inside)
    assert psnr2 < 20 and ssim2 < 0.99


@pytest.fixture(scope="module")
def edit_run(tmp_path_factory, tiny_backbone_dir):
    from tools.train_gen import CONFIG, main

    out = tmp_path_factory.mktemp("edit") / "run"
    args = [
        f"--model.path={tiny_backbone_dir}",
        f"--train.out_dir={out}",
        "--train.steps=2",
        "--train.batch_size=4",
        "--train.warmup_steps=1",
        "--sample.every=0",
        "--eval.n_per_category=0",
        "--eval.edit_n=4",
        "--eval.batch_size=4",
        "--gen.edit=true",
        "--data.edit_fraction=0.5",
        "--gen.sampler.steps=2",
    ]
    report = main(load_config(CONFIG, args))
    return out, report


def test_edit_training_smoke_and_report(edit_run):
    out, report = edit_run
    edit = report["edit"]
    assert edit["reference_latents"] is True and edit["n"] == 4
    assert 0 <= edit["success"] <= 1 and edit["psnr_outside"] > 0
    assert (out / "edit" / "edits.png").is_file()


def test_dual_guidance_uses_three_branches(edit_run):
    from unimodal.pipeline import Pipeline

    out, _ = edit_run
    pipe = Pipeline.from_pretrained(out / "final", device="cpu")
    gen = pipe.generator
    assert gen.uses_reference and gen.decoder.ref_channels == 3
    calls = []
    orig = gen.decoder.forward

    def spy(x, sigma, cond, cond_mask=None, ref=None):
        calls.append((x.shape[0], None if ref is None else ref.shape[0]))
        return orig(x, sigma, cond, cond_mask, ref)

    gen.decoder.forward = spy
    from PIL import Image

    src = Image.new("RGB", (32, 32))
    imgs = pipe.edit(src, "make the circle blue", steps=2, num_images=2)
    assert len(imgs) == 2 and imgs[0].size == (32, 32)
    assert calls == [(6, 6), (6, 6)]  # 3 branches x 2 images, one batched call per step
    gen.decoder.forward = orig
    with pytest.raises(ValueError, match="instruction is empty"):
        pipe.edit(src, "  ")


def test_session_edits_the_last_image_and_chats_about_history(edit_run):
    from unimodal.pipeline import Pipeline

    out, _ = edit_run
    s = Pipeline.from_pretrained(out / "final", device="cpu").session()
    with pytest.raises(ValueError, match="nothing to edit"):
        s.edit("make it blue", steps=1)
    first = s.generate("a red circle", steps=1)
    second = s.edit("now make the circle blue", steps=1)
    assert s.images == [first, second]
    answer = s.chat("What changed?", max_new_tokens=3)
    assert isinstance(answer, str)
    assert [t.role for t in s.history] == ["user", "assistant"] * 3
