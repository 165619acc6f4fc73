"""External alignment encoders: random-init timm / open_clip models saved locally load through
the adapter with the same outputs, nothing is downloaded, and `gen.align_target = 'encoder'`
trains through tools/train_gen.py."""

import json
import socket

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from unimodal.config import load_config
from unimodal.encoders import EncoderConfig, EncoderError, build_encoder

TIMM_NAME = "vit_small_patch14_dinov2"
TIMM_KW = {"depth": 1, "embed_dim": 64, "num_heads": 2, "img_size": 28}  # 2 x 2 patches
OC_NAME = "ViT-B-32"
OC_KW = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 48, "patch_size": 8, "head_width": 24},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Any network connection during a test is a failure: weights come from local files only."""

    def refuse(*args, **kwargs):
        raise AssertionError("an encoder tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def timm_model():
    import timm

    torch.manual_seed(0)
    return timm.create_model(TIMM_NAME, pretrained=False, num_classes=0, **TIMM_KW).eval()


@pytest.fixture(scope="module")
def clip_model():
    import open_clip

    torch.manual_seed(0)
    return open_clip.create_model(OC_NAME, **OC_KW).eval()


@pytest.fixture(scope="module")
def timm_file(timm_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("timm") / "dinov2_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in timm_model.state_dict().items()}, path)
    return path


@pytest.fixture(scope="module")
def clip_file(clip_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "clip_tiny.bin"  # a torch state dict
    torch.save(clip_model.state_dict(), path)
    return path


def _normalised(pixels, size, mean, std):
    x = F.interpolate((pixels + 1) / 2, size=size, mode="bicubic", antialias=True)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def test_timm_encoder_matches_the_saved_model(timm_model, timm_file, tmp_path):
    enc = build_encoder(EncoderConfig("timm", TIMM_NAME, str(timm_file), TIMM_KW))
    pixels = torch.rand(2, 3, 16, 16) * 2 - 1  # generator range, not the encoder's size
    feats = enc(pixels)
    assert feats.shape == (2, 4, 64) and (enc.dim, enc.num_tokens, enc.size) == (64, 4, (28, 28))
    x = _normalised(pixels, (28, 28), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with torch.no_grad():
        ref = timm_model.forward_features(x)[:, timm_model.num_prefix_tokens :]  # (B, N, D)
    torch.testing.assert_close(feats, ref)
    enc.train()
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    # a Hugging Face timm folder: the weights file is found, the name read from config.json
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(timm_file.read_bytes())
    (folder / "config.json").write_text(json.dumps({"architecture": TIMM_NAME}))
    again = build_encoder(EncoderConfig("timm", "", str(folder), TIMM_KW))
    torch.testing.assert_close(again(pixels), feats)


def test_open_clip_encoder_matches_the_saved_model(clip_model, clip_file):
    enc = build_encoder(EncoderConfig("open_clip", OC_NAME, str(clip_file), OC_KW))
    pixels = torch.rand(2, 3, 16, 16) * 2 - 1
    feats = enc(pixels)
    assert feats.shape == (2, 16, 48) and enc.dim == 48 and enc.size == (32, 32)
    x = _normalised(pixels, (32, 32), enc.mean.flatten().tolist(), enc.std.flatten().tolist())
    visual = clip_model.visual
    visual.output_tokens = True
    with torch.no_grad():
        _, tokens = visual(x)  # (B, N, D) after ln_post
    visual.output_tokens = False
    torch.testing.assert_close(feats, tokens, atol=1e-5, rtol=1e-5)
    assert type(enc.model) is type(visual)  # the image tower only
    assert not any(p.requires_grad for p in enc.parameters())


def test_missing_or_ambiguous_weights_are_clear_errors(tmp_path, timm_file):
    missing = tmp_path / "nope" / "dinov2.safetensors"
    with pytest.raises(EncoderError, match=str(missing)):
        build_encoder(EncoderConfig("timm", TIMM_NAME, str(missing)))
    with pytest.raises(EncoderError, match="encoder.path: required"):
        build_encoder(EncoderConfig("timm", TIMM_NAME, ""))
    for name in ("a.safetensors", "b.pth"):
        (tmp_path / name).write_bytes(timm_file.read_bytes())
    with pytest.raises(EncoderError, match="need one weights file .* a.safetensors, b.pth"):
        build_encoder(EncoderConfig("timm", TIMM_NAME, str(tmp_path)))
    with pytest.raises(ValueError, match="encoder.kind: unknown 'dino'"):
        EncoderConfig("dino")


def _inline(table: dict) -> str:
    """A TOML inline table, as the command line takes it."""
    items = (
        f"{k} = {_inline(v) if isinstance(v, dict) else json.dumps(v)}" for k, v in table.items()
    )
    return "{" + ", ".join(items) + "}"


def _train_args(tiny_backbone_dir, out, kind, name, path, kwargs):
    return [
        f"--model.path={tiny_backbone_dir}",
        f"--train.out_dir={out}",
        "--train.steps=2",
        "--train.batch_size=2",
        "--train.save_every=1",
        "--train.warmup_steps=1",
        "--sample.every=0",
        "--eval.n_per_category=0",
        "--gen.align_target=encoder",
        f"--gen.encoder.kind={kind}",
        f"--gen.encoder.name={name}",
        f"--gen.encoder.path={path}",
        f"--gen.encoder.model_kwargs={_inline(kwargs)}",
    ]


@pytest.mark.parametrize("kind", ["timm", "open_clip"])
def test_encoder_target_trains_through_train_gen(kind, tmp_path, tiny_backbone_dir, request):
    from tools.train_gen import CONFIG, main

    if kind == "timm":
        name, path, kwargs, dim = TIMM_NAME, request.getfixturevalue("timm_file"), TIMM_KW, 64
    else:
        name, path, kwargs, dim = OC_NAME, request.getfixturevalue("clip_file"), OC_KW, 48
    out = tmp_path / "run"
    cfg = load_config(CONFIG, _train_args(tiny_backbone_dir, out, kind, name, path, kwargs))
    assert cfg.gen.encoder.model_kwargs == kwargs
    main(cfg)
    weights = load_file(out / "final" / "generator.safetensors")
    assert not any(k.startswith("encoder.") for k in weights)  # the encoder stays frozen
    assert weights["projectors.0.net.4.weight"].shape[0] == dim  # projected to its width
    saved = (out / "final" / "config.toml").read_text()
    assert 'align_target = "encoder"' in saved and str(path) in saved


def test_generator_aligns_to_the_encoder_and_keeps_it_frozen(tiny_backbone_dir, timm_file):
    from unimodal.backbone import Backbone
    from unimodal.generator import Generator, GenModelConfig

    torch.manual_seed(0)
    enc_cfg = EncoderConfig("timm", TIMM_NAME, str(timm_file), TIMM_KW)
    gen = Generator(
        GenModelConfig(align_target="encoder", encoder=enc_cfg),
        Backbone.from_pretrained(tiny_backbone_dir),
    )
    before = {n: p.detach().clone() for n, p in gen.encoder.named_parameters()}
    gen.train()
    assert not gen.encoder.training
    prompt = gen.encode_prompts(["a red circle", "two squares"])
    out = gen(prompt, torch.rand(2, 3, 32, 32) * 2 - 1, torch.Generator().manual_seed(0))
    assert {"align_4", "align_8", "align_16"} <= set(out)
    out["loss"].backward()
    assert gen.projectors[2].net[0].weight.grad.abs().sum() > 0
    for n, p in gen.encoder.named_parameters():
        assert p.grad is None and torch.equal(p, before[n]), n
