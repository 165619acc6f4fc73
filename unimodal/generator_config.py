"""The generation model's configuration (`GenModelConfig`) and the checks of its grids.

One resolution per query scale, the decoder / VAE / flow / sampler sections, alignment to the
backbone or to an external encoder, editing and the query-pass options; `check_grids` tells,
once the decoder and VAE are built, whether each scale's query grid nests in the decoder's
token grid at its resolution (the alignment targets are resampled between the two).

Left out on purpose: anything built from it (that is `unimodal.generator.Generator`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flow_matching import (
    Decoder,
    DecoderConfig,
    FlowMatchingConfig,
    SamplerConfig,
    VAEConfig,
    downsample_factor,
)
from unimodal.config import ConfigError
from unimodal.connector import ConnectorConfig
from unimodal.encoders import EncoderConfig
from unimodal.queries import QueryConfig


@dataclass
class GenModelConfig:
    queries: QueryConfig = field(default_factory=QueryConfig)
    connector: ConnectorConfig = field(
        default_factory=lambda: ConnectorConfig(depth=2, width=128, heads=4)
    )
    decoder: DecoderConfig = field(
        default_factory=lambda: DecoderConfig(
            type="sana",
            in_channels=3,
            sample_size=32,
            patch_size=4,
            num_layers=4,
            num_attention_heads=4,
            attention_head_dim=32,
            cond_dim=128,
            align_block=1,
        )  # fmt: skip
    )
    vae: VAEConfig = field(default_factory=VAEConfig)
    flow: FlowMatchingConfig = field(default_factory=FlowMatchingConfig)
    sampler: SamplerConfig = field(default_factory=lambda: SamplerConfig(steps=20, guidance=3.0))
    resolutions: tuple[int, ...] = (8, 16, 32)  # output pixels per query scale, same order
    train_scales: tuple[int, ...] = ()  # scales that get a decoder loss; empty = all
    cfg_dropout: float = 0.1
    align_weight: float = 0.5  # lambda; 0 disables alignment
    align_target: str = "backbone"  # backbone | encoder
    encoder: EncoderConfig = field(default_factory=EncoderConfig)  # align_target = 'encoder'
    projector_dim: int = 256
    prompt_prefix: str = ""  # text put before every prompt, e.g. "Generate an image: "
    relative_queries: bool = False  # subtract the query states of the empty prompt and scale
    # each token to unit RMS, so the condition keeps only what the prompt changes, at full
    # strength (for weak, e.g. random, backbones, whose prompt signal is small)
    feature_layers: tuple[int, ...] = ()  # LM layers (1..N) whose query states, concatenated,
    # feed the connector; empty = the final states; layers above the deepest do not run
    # (unimodal.query_features)
    edit: bool = False  # editing: source image as vision tokens (+ reference latents)
    edit_reference: bool = True  # editing: also feed the source as reference latents
    image_dropout: float = 0.1  # editing: reference dropped (zeros) with this probability
    prefix_cache: bool = True  # training: prompt once without gradient, queries reuse its KV
    frozen_dtype: str = "float32"  # float32 | bfloat16: the VAE, a LoRA / frozen decoder's
    # base and an external encoder in this dtype, computed under bf16 autocast (unimodal.frozen)
    backbone_checkpointing: bool = False  # recompute each frozen backbone layer in the backward
    # pass instead of keeping its activations (memory for about one more forward pass)

    def __post_init__(self) -> None:
        scales = self.queries.scales
        if len(self.resolutions) != len(scales):
            raise ValueError(
                f"gen.resolutions: {len(self.resolutions)} values for {len(scales)} query scales "
                f"{scales}; give one resolution per scale"
            )
        check_vae_factor(self.resolutions, scales, self.vae)
        for s in self.train_scales:
            if s not in scales:
                raise ValueError(f"gen.train_scales: {s} is not one of queries.scales {scales}")
        if self.align_target not in ("backbone", "encoder"):
            raise ValueError(
                f"gen.align_target: unknown '{self.align_target}' (backbone | encoder)"
            )
        if self.align_target == "encoder" and not self.encoder.path:
            raise ValueError("gen.encoder.path: required for gen.align_target = 'encoder'")
        if self.decoder.pretrained and self.flow.prediction != "velocity":
            raise ValueError(
                "gen.flow.prediction: a pretrained decoder (gen.decoder.pretrained) predicts the "
                f"velocity, not '{self.flow.prediction}'; pass --gen.flow.prediction=velocity"
            )
        if self.frozen_dtype not in ("float32", "bfloat16"):
            raise ValueError(
                f"gen.frozen_dtype: unknown '{self.frozen_dtype}' (float32 | bfloat16)"
            )
        for name in ("cfg_dropout", "image_dropout"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"gen.{name}: must be in [0, 1], got {getattr(self, name)}")


def check_vae_factor(
    resolutions: tuple[int, ...], scales: tuple[int, ...], vae: VAEConfig, factor: int = 0
) -> None:
    """Every resolution a multiple of the VAE's factor (read from its config.json when there is
    one, so this runs before anything loads); the error names a valid choice for `scales`."""
    factor = factor or downsample_factor(vae)
    for r in resolutions:
        if r % factor:
            valid = ",".join(str(2 * s * factor) for s in scales)
            raise ConfigError(
                f"gen.resolutions: {r} px is not a multiple of the VAE factor {factor} "
                f"(gen.vae.type = '{vae.type}'); use multiples of {factor}, e.g. "
                f"--gen.resolutions=[{valid}] for the query scales {list(scales)}"
            )


def check_grids(cfg: GenModelConfig, decoder: Decoder, downsample: int) -> list[int]:
    """Token grid side per scale; errors name the scale / resolution that does not fit."""
    check_vae_factor(cfg.resolutions, cfg.queries.scales, cfg.vae, downsample)
    grids = []
    for s, r in zip(cfg.queries.scales, cfg.resolutions):
        latent = r // downsample
        decoder.validate_grid((latent, latent))
        g = latent // decoder.patch_size
        if g % s and s % g:
            raise ConfigError(
                f"queries.scales: scale {s} does not divide the decoder token grid {g}x{g} at "
                f"{r} px (nor the grid it); choose scales and resolutions that nest"
            )
        grids.append(g)
    return grids
