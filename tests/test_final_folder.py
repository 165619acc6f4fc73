"""OUT/final is self-contained: every folder it names is absolute, and loading it reads the
pretrained decoder's weights no more (a decoder that trains in full comes back from the trained
state alone; the frozen VAE and backbone are read once)."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderDC, SanaTransformer2DModel

from unimodal.backbone import Backbone
from unimodal.config import load_config, read_toml


def tiny_folders(root: Path) -> None:
    """A tiny pretrained SANA at root/sana and a tiny DC-AE (factor 2) at root/dcae."""
    torch.manual_seed(0)
    SanaTransformer2DModel(
        in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=8, num_layers=2,
        num_cross_attention_heads=2, cross_attention_head_dim=8, cross_attention_dim=16,
        caption_channels=32, sample_size=8, patch_size=1,
    ).save_pretrained(root / "sana")  # fmt: skip
    AutoencoderDC(
        latent_channels=8, attention_head_dim=4, encoder_block_out_channels=(8, 16),
        decoder_block_out_channels=(8, 16), encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=(1, 1), encoder_qkv_multiscales=((), ()),
        decoder_qkv_multiscales=((), ()), scaling_factor=0.4,
    ).save_pretrained(root / "dcae")  # fmt: skip


def test_final_folder_loads_from_elsewhere_without_rereading_the_decoder(
    tmp_path, tiny_backbone_dir, monkeypatch
):
    from tools.train_gen import CONFIG, export_final
    from unimodal.generator import Generator
    from unimodal.pipeline import Pipeline

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    elsewhere.mkdir()
    tiny_folders(work)
    monkeypatch.chdir(work)  # the run names its folders relative to where it starts
    argv = [
        f"--model.path={tiny_backbone_dir}", "--gen.decoder.pretrained=sana",
        "--gen.decoder.align_block=1", "--gen.vae.type=dc", "--gen.vae.path=dcae",
        "--gen.flow.prediction=velocity", "--gen.resolutions=[8,16,32]",
    ]  # fmt: skip
    cfg = load_config(CONFIG, argv)
    gen = Generator(cfg.gen, Backbone.from_pretrained(tiny_backbone_dir))
    with torch.no_grad():  # "trained": the exported decoder differs from the pretrained one
        for p in gen.decoder.parameters():
            p.add_(0.01)
    final = export_final(gen, cfg, Path(tiny_backbone_dir), tmp_path / "final")

    saved = read_toml(final / "config.toml")
    assert saved["gen"]["decoder"]["pretrained"] == str(work / "sana")
    assert saved["gen"]["vae"]["path"] == str(work / "dcae")
    assert saved["model"]["path"] == str(Path(tiny_backbone_dir).resolve())

    monkeypatch.chdir(elsewhere)
    reads = []
    load = SanaTransformer2DModel.from_pretrained.__func__
    monkeypatch.setattr(
        SanaTransformer2DModel,
        "from_pretrained",
        classmethod(lambda cls, *a, **k: reads.append(a) or load(cls, *a, **k)),
    )
    pipe = Pipeline.from_pretrained(final, device="cpu")
    assert reads == []  # the full-trained decoder came from generator.safetensors alone
    want = gen.decoder.state_dict()
    got = pipe.generator.decoder.state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)
