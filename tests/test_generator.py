"""The generation path: queries through the frozen backbone, alignment, configs, train_gen."""

import pytest
import torch

from unimodal import checkpoint
from unimodal.align import alignment_loss, resample_grid
from unimodal.backbone import Backbone
from unimodal.config import ConfigError, load_config
from unimodal.generator import Generator, GenModelConfig
from unimodal.queries import MultiScaleQueries, QueryConfig


def test_query_layout_336_tokens_plus_boundaries():
    q = MultiScaleQueries(QueryConfig(), width=16)
    seq = q(2)
    assert seq.shape == (2, 336 + 6, 16)
    parts = q.split(seq)
    assert [p.shape[1] for p in parts] == [16, 64, 256]
    torch.testing.assert_close(parts[1][0], q.scale_tokens(1))


def test_alignment_loss_is_minimal_for_identical_features():
    x = torch.randn(2, 16, 8)
    loss, cos = alignment_loss(x, x)
    assert loss.item() == pytest.approx(-1.0, abs=1e-5) and cos.item() == pytest.approx(
        1.0, abs=1e-5
    )
    other, _ = alignment_loss(torch.randn(2, 16, 8), x)
    assert other.item() > loss.item()
    grid = resample_grid(torch.randn(1, 16, 3), 8)
    assert grid.shape == (1, 64, 3)


@pytest.fixture(scope="module")
def gen(tiny_backbone_dir):
    torch.manual_seed(0)
    return Generator(GenModelConfig(), Backbone.from_pretrained(tiny_backbone_dir))


def test_queries_learn_while_backbone_stays_bit_identical(gen):
    before = {n: p.detach().clone() for n, p in gen.backbone.named_parameters()}
    q_before = gen.queries.queries[2].detach().clone()
    params = [p for p in gen.parameters() if p.requires_grad]
    assert not any(p.requires_grad for p in gen.backbone.parameters())
    opt = torch.optim.AdamW(params, lr=1e-2)
    prompt = gen.encode_prompts(["a red circle", "two squares"])
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        out = gen(prompt, pixels, g)
        assert {"fm_4", "fm_8", "fm_16", "align_16", "cos_16"} <= set(out)
        opt.zero_grad()
        out["loss"].backward()
        assert gen.queries.queries[2].grad.abs().sum() > 0
        opt.step()
    assert not torch.equal(q_before, gen.queries.queries[2])
    for n, p in gen.backbone.named_parameters():
        assert torch.equal(p, before[n]), n


def test_generate_shapes_and_determinism(gen):
    a = gen.generate(["a red circle", "a blue square"], steps=2, seed=3)
    b = gen.generate(["a red circle", "a blue square"], steps=2, seed=3)
    assert a.shape == (2, 3, 32, 32) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--gen.decoder.type=unet"], "decoder.type"),
        (["--gen.resolutions=[8, 16]"], "gen.resolutions"),
        (["--gen.train_scales=[5]"], "gen.train_scales"),
        (["--gen.align_target=dino"], "gen.align_target"),
        (["--gen.queries.attention=full"], "queries.attention"),
        (["--gen.flow.prediction=eps"], "flow_matching.prediction"),
        (["--gen.decoder.pretrained=/models/sana"], "gen.flow.prediction=velocity"),
    ],
)
def test_bad_generation_config_is_a_clear_error(argv, needle):
    from tools.train_gen import CONFIG

    with pytest.raises(ConfigError, match=needle):
        load_config(CONFIG, argv)


def test_scale_that_does_not_fit_the_grid_is_a_clear_error(tiny_backbone_dir):
    cfg = load_config(GenModelConfig, ["--queries.scales=[4, 8, 12]"])
    with pytest.raises(ValueError, match="scale 12 does not divide"):
        Generator(cfg, Backbone.from_pretrained(tiny_backbone_dir))


def _args(tiny_backbone_dir, out):
    return [
        f"--model.path={tiny_backbone_dir}",
        f"--train.out_dir={out}",
        "--train.batch_size=2",
        "--train.save_every=1",
        "--train.warmup_steps=1",
        "--train.ema_decay=0.9",
        "--sample.every=0",
        "--eval.n_per_category=1",
    ]


def test_train_gen_smoke_and_exact_resume(tmp_path, tiny_backbone_dir):
    from tools.train_gen import CONFIG, main

    straight = tmp_path / "straight"
    report = main(load_config(CONFIG, _args(tiny_backbone_dir, straight) + ["--train.steps=3"]))
    assert 0.0 <= report["overall"] <= 1.0 and len(report["per_category"]) == 6
    assert list((straight / "samples").glob("*.png")), "no sample grid written"
    assert (straight / "final" / "generator.safetensors").is_file()
    assert (straight / "geneval_shapes" / "report.json").is_file()

    resumed = tmp_path / "resumed"
    main(
        load_config(
            CONFIG, _args(tiny_backbone_dir, resumed) + ["--train.steps=3", "--train.stop_at=2"]
        )
    )
    assert checkpoint.latest(resumed).name == "step_00000002"
    assert not (resumed / "final").exists()
    main(load_config(CONFIG, _args(tiny_backbone_dir, resumed) + ["--train.steps=3"]))
    a = checkpoint.load_weights(checkpoint.latest(straight), "trainable")
    b = checkpoint.load_weights(checkpoint.latest(resumed), "trainable")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    ea = checkpoint.load_weights(checkpoint.latest(straight), "ema")
    eb = checkpoint.load_weights(checkpoint.latest(resumed), "ema")
    for k in ea:
        torch.testing.assert_close(ea[k], eb[k], rtol=1e-5, atol=1e-6, msg=k)


def test_pipeline_and_eval_front_door_load_the_export(tmp_path, tiny_backbone_dir):
    from tools import eval as eval_tool
    from tools.train_gen import CONFIG, main
    from unimodal.pipeline import Pipeline

    out = tmp_path / "run"
    main(
        load_config(
            CONFIG, _args(tiny_backbone_dir, out) + ["--train.steps=1", "--eval.n_per_category=0"]
        )
    )
    pipe = Pipeline.from_pretrained(out / "final", device="cpu")
    imgs = pipe.generate("a red circle", steps=2, num_images=2)
    assert len(imgs) == 2 and imgs[0].size == (32, 32)
    report = eval_tool.main(
        ["--suite", "geneval-shapes", "--model", str(out / "final"), "--n", "1", "--steps", "2"]
    )
    assert set(report["per_category"]) == {
        "single_object",
        "two_object",
        "counting",
        "colors",
        "position",
        "color_attr",
    }
    assert (out / "final" / "eval_geneval-shapes.json").is_file()
    with pytest.raises(SystemExit):
        eval_tool.main(["--suite", "geneval-shapes", "--model", str(tmp_path / "missing")])


def test_relative_queries_keep_only_the_prompt_at_unit_rms(tiny_backbone_dir):
    """Relative query states: zero for the empty prompt, unit RMS per token otherwise, prompts
    tell apart, and gradients still reach the queries through the frozen backbone."""
    torch.manual_seed(0)
    gen = Generator(GenModelConfig(relative_queries=True), Backbone.from_pretrained(tiny_backbone_dir))  # fmt: skip
    states = gen.query_states(gen.encode_prompts(["a red circle", "two blue squares", ""]))
    for h in states:  # (3, s*s, D)
        rms = h.pow(2).mean(-1).sqrt()  # (3, s*s)
        torch.testing.assert_close(rms[:2], torch.ones_like(rms[:2]), atol=1e-3, rtol=0)
        assert rms[2].max() < 1e-2  # nothing but the prompt's change survives
        assert (h[0] - h[1]).abs().mean() > 0.1
    states[-1][:2].sum().backward()
    assert gen.queries.queries[2].grad.abs().sum() > 0


def test_relative_baseline_is_cached_until_the_queries_change(tiny_backbone_dir):
    torch.manual_seed(0)
    gen = Generator(GenModelConfig(relative_queries=True), Backbone.from_pretrained(tiny_backbone_dir))  # fmt: skip
    prompt = gen.encode_prompts(["a red circle"])
    with torch.no_grad():
        first = gen.query_states(prompt)[0]
        base = gen._empty_base
        assert gen.query_states(prompt)[0].equal(first) and gen._empty_base is base
        gen.queries.queries[0].add_(1.0)  # an optimizer step changes the queries in place
        assert not gen.query_states(prompt)[0].equal(first) and gen._empty_base is not base


def test_sd3_config_trains_on_a_tiny_sd3_folder(tmp_path, tiny_backbone_dir):
    """configs/gen_sd3_pretrained_gpu.toml as shipped (LoRA on the SD3 MMDiT, KL VAE, pooled
    width narrower than the condition, as in real SD3), on a tiny pipeline folder."""
    from diffusers import AutoencoderKL, SD3Transformer2DModel

    from tools.train_gen import CONFIG, main

    torch.manual_seed(0)
    folder = tmp_path / "sd3"
    SD3Transformer2DModel(
        in_channels=4, out_channels=4, num_layers=2, num_attention_heads=2,
        attention_head_dim=16, joint_attention_dim=24, caption_projection_dim=32,
        pooled_projection_dim=16, sample_size=16, patch_size=2, pos_embed_max_size=16,
    ).save_pretrained(folder / "transformer")  # fmt: skip
    AutoencoderKL(
        block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4, latent_channels=4,
        sample_size=32, scaling_factor=0.5, shift_factor=0.1,
    ).save_pretrained(folder / "vae")  # fmt: skip
    small = ["--gen.connector.width=32", "--gen.connector.heads=2", "--gen.projector_dim=32"]
    args = ["--config", "gen_sd3_pretrained_gpu", f"--gen.decoder.pretrained={folder}",
            f"--gen.vae.path={folder}", "--gen.resolutions=[8, 16, 32]",
            "--gen.decoder.align_block=1", "--gen.sampler.steps=2", "--train.steps=1",
            "--train.save_every=1", "--eval.n_per_category=0", *small]  # fmt: skip
    out = tmp_path / "run"
    cfg = load_config(CONFIG, _args(tiny_backbone_dir, out) + args)
    assert cfg.gen.decoder.train_mode == "lora" and cfg.gen.vae.type == "kl"
    main(cfg)
    names = set(checkpoint.load_weights(checkpoint.latest(out), "trainable"))
    assert any("lora_" in n for n in names) and "decoder.pooled_proj.weight" in names
    assert not any(n.startswith("decoder.transformer.") and "lora_" not in n for n in names)


def test_repa_dinov2_config_parses():
    from tools.train_gen import CONFIG

    cfg = load_config(CONFIG, ["--config", "gen_shapes_repa_dinov2_gpu"])
    assert cfg.gen.align_target == "encoder" and cfg.gen.encoder.kind == "timm"
    assert cfg.gen.encoder.model_kwargs == {"img_size": 224}
