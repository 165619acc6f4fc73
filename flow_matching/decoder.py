"""Flow-matching diffusion decoder: one thin adapter over diffusers' condition-attending DiTs.

- ``sana`` (default): ``SanaTransformer2DModel`` (``flow_matching.sana``: cross-attention to the
  condition tokens, optional pooled condition on the timestep embedding);
- ``sd3``: ``SD3Transformer2DModel`` (``flow_matching.sd3``: joint attention, pooled vector =
  mean condition), for users who bring an SD3 / SD3.5 folder.

Time: the network gets ``timestep = 1000 * sigma`` (times SANA's ``config.timestep_scale``), exactly
what diffusers' SANA / SD3 pipelines feed, so pretrained SANA folders load and work as they are.

Representation alignment (REPA, Yu et al. 2024): with ``align_block = k`` the forward also returns
the image-token hidden states after ``transformer_blocks[k]`` (a forward hook), shape (B, N, Dh).

Left out: SANA-Sprint guidance embeddings, SD3 skip-layer guidance, ControlNet residuals.
"""

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from diffusers import SanaTransformer2DModel, SD3Transformer2DModel
from torch import nn

from flow_matching._loading import BuildError, resolve_pretrained, widen_input
from flow_matching.sana import pooled_offset, run_sana, sana_kwargs, sana_widths
from flow_matching.sd3 import check_sd3_grid, pooled_projection, run_sd3, sd3_kwargs, sd3_widths

DECODER_CLASSES = {"sana": SanaTransformer2DModel, "sd3": SD3Transformer2DModel}
TRAIN_MODES = ("full", "lora", "frozen")
Transformer = SanaTransformer2DModel | SD3Transformer2DModel
_POSITIVE_FIELDS = (
    "in_channels",
    "sample_size",
    "patch_size",
    "num_layers",
    "num_attention_heads",
    "attention_head_dim",
    "cond_dim",
    "lora_rank",
)


@dataclass
class DecoderConfig:
    """Decoder options. With ``pretrained`` set, the architecture fields (``in_channels`` ..
    ``pos_embed_max_size``) are ignored and read from the folder; use ``Decoder.cond_dim`` etc."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # pixel-space SANA decoders for the shapes / emoji worlds (patch 4 at 32 px, 2 at 64 px)
        "sana_pixel_tiny": dict(type="sana", in_channels=3, sample_size=32, patch_size=4,
                                num_layers=3, num_attention_heads=3, attention_head_dim=32,
                                cond_dim=96, align_block=1, pooled_cond=True),
        "sana_pixel_small": dict(type="sana", in_channels=3, sample_size=64, patch_size=2,
                                 num_layers=12, num_attention_heads=6, attention_head_dim=64,
                                 cond_dim=384, align_block=4, pooled_cond=True),
    }  # fmt: skip

    type: str = "sana"  # 'sana' | 'sd3'
    pretrained: str | None = None  # local diffusers folder (model or pipeline with transformer/)
    in_channels: int = 4  # latent channels (= out channels)
    ref_channels: int = 0  # extra input channels for reference latents (editing), concatenated;
    # a pretrained decoder gets them with zero-initialised weights
    sample_size: int = 32  # latent side the model is built for (positional tables)
    patch_size: int = 2
    num_layers: int = 2
    num_attention_heads: int = 2
    attention_head_dim: int = 16  # hidden width Dh = heads * head_dim
    cond_dim: int = 32  # condition width Dc (SANA caption_channels, SD3 joint_attention_dim)
    mlp_ratio: float = 2.5  # sana Mix-FFN expansion
    num_cross_attention_heads: int | None = None  # sana; None -> num_attention_heads
    cross_attention_head_dim: int | None = None  # sana; None -> attention_head_dim
    interpolation_scale: float | None = None  # sana; None -> no positional embedding (SANA 1.0)
    qk_norm: str | None = None  # e.g. 'rms_norm_across_heads' (sana 1.5), 'rms_norm' (sd3.5)
    pos_embed_max_size: int | None = None  # sd3; None -> sample_size // patch_size
    align_block: int | None = None  # block whose output is returned as `hidden` (REPA)
    train_mode: str = "full"  # 'full' | 'lora' | 'frozen'
    lora_rank: int = 16
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    gradient_checkpointing: bool = False
    pooled_cond: bool = False  # sana: add the pooled condition to the timestep embedding

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field and the bad value."""
        if self.type not in DECODER_CLASSES:
            raise ValueError(
                f"decoder.type: unknown decoder {self.type!r}; choose one of 'sana', 'sd3'"
            )
        if self.train_mode not in TRAIN_MODES:
            raise ValueError(
                f"decoder.train_mode: unknown mode {self.train_mode!r}; "
                "choose one of 'full', 'lora', 'frozen'"
            )
        for name in _POSITIVE_FIELDS:
            if getattr(self, name) < 1:
                raise ValueError(f"decoder.{name}: must be >= 1, got {getattr(self, name)}")
        if self.ref_channels < 0:
            raise ValueError(f"decoder.ref_channels: must be >= 0, got {self.ref_channels}")
        if self.pretrained is None and self.sample_size % self.patch_size:
            raise ValueError(
                f"decoder.patch_size: {self.patch_size} does not divide "
                f"decoder.sample_size {self.sample_size}"
            )
        if self.pretrained is None and self.align_block is not None:
            if not 0 <= self.align_block < self.num_layers:
                raise ValueError(
                    f"decoder.align_block: {self.align_block} is not a block index in "
                    f"[0, {self.num_layers})"
                )
        if self.train_mode == "lora" and not self.lora_targets:
            raise ValueError("decoder.lora_targets: empty; name the modules LoRA should adapt")

    def transformer_kwargs(self) -> dict:
        """Constructor arguments of the diffusers class for a from-scratch model."""
        common = dict(
            in_channels=self.in_channels + self.ref_channels,
            out_channels=self.in_channels,
            num_attention_heads=self.num_attention_heads,
            attention_head_dim=self.attention_head_dim,
            num_layers=self.num_layers,
            sample_size=self.sample_size,
            patch_size=self.patch_size,
            qk_norm=self.qk_norm,
        )
        return common | (sana_kwargs(self) if self.type == "sana" else sd3_kwargs(self))


class Decoder(nn.Module):
    """Uniform face of a SANA / SD3 transformer: ``(x_t, sigma, cond, mask) -> (velocity, hidden)``."""

    def __init__(
        self, transformer: Transformer, align_block: int | None = None, pooled_cond: bool = False
    ) -> None:
        super().__init__()
        if not isinstance(transformer, tuple(DECODER_CLASSES.values())):
            raise TypeError(f"unsupported decoder model {type(transformer).__name__}")
        self.transformer = transformer
        self.type = "sana" if isinstance(transformer, SanaTransformer2DModel) else "sd3"
        c = transformer.config
        self.in_channels: int = c.out_channels or c.in_channels  # latent channels predicted
        self.ref_channels: int = c.in_channels - self.in_channels  # reference channels taken
        self.patch_size: int = c.patch_size
        self.hidden_dim: int = c.num_attention_heads * c.attention_head_dim
        widths = sana_widths if self.type == "sana" else sd3_widths
        self.cond_dim, self.timestep_scale = widths(transformer)  # Dc, network time per sigma
        self.pooled_proj = pooled_projection(transformer) if self.type == "sd3" else None
        num_blocks = len(transformer.transformer_blocks)
        if align_block is not None and not 0 <= align_block < num_blocks:
            raise BuildError(
                f"decoder.align_block: {align_block} is not a block index in [0, {num_blocks})"
            )
        self.align_block = align_block
        self.pooled = None  # sana only: pooled condition -> timestep-embedding offset
        if pooled_cond and self.type == "sana":
            self.pooled = pooled_offset(self.cond_dim, self.hidden_dim)

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Token grid ``(h // p, w // p)`` for a latent of ``height x width``."""
        return height // self.patch_size, width // self.patch_size

    def num_tokens(self, height: int, width: int) -> int:
        """Number of image tokens N for a latent of ``height x width``."""
        gh, gw = self.grid_size(height, width)
        return gh * gw

    def validate_grid(self, latent_hw: tuple[int, int]) -> None:
        """Raise ``BuildError`` if the latent grid cannot be patchified by this model."""
        h, w = latent_hw
        p = self.patch_size
        if h % p or w % p:
            raise BuildError(
                f"decoder.patch_size: {p} does not divide the latent grid {h}x{w}; "
                f"use a resolution whose latent side is a multiple of {p}"
            )
        if self.type == "sd3":
            check_sd3_grid(self.transformer, h, w)

    def forward(
        self,
        x_t: torch.Tensor,
        sigma: torch.Tensor,
        cond: torch.Tensor,
        cond_mask: torch.Tensor | None = None,
        ref: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Velocity ``(B, C, H, W)`` at noise level ``sigma`` (B,) given ``cond`` (B, L, Dc).

        ``cond_mask`` (B, L): 1 / True for valid condition tokens. ``ref`` (B, R, H, W): reference
        latents concatenated on channels (models built with ``ref_channels``; zeros when None).
        Returns ``(velocity, hidden)`` with ``hidden`` (B, N, Dh) after ``align_block``, or None.
        """
        b = x_t.shape[0]
        x_t = self._with_reference(x_t, ref)  # (B, C + R, H, W)
        timestep = (sigma.float() * self.timestep_scale).reshape(-1).expand(b)  # (B,)
        pooled = None
        if self.type == "sd3" or self.pooled is not None:
            pooled = masked_mean(cond, cond_mask)  # (B, Dc)
        captured: list[torch.Tensor] = []
        handles = self._hooks(pooled, captured)
        try:
            if self.type == "sana":
                out = run_sana(self.transformer, x_t, timestep, cond, cond_mask)  # (B, C', H, W)
            else:
                if self.pooled_proj is not None:
                    pooled = self.pooled_proj(pooled)  # (B, P)
                out = run_sd3(self.transformer, x_t, timestep, cond, pooled)  # (B, C', H, W)
        finally:
            for handle in handles:
                handle.remove()
        velocity = out[:, : self.in_channels]  # (B, C, H, W); drops learned-variance channels
        hidden = captured[0] if captured else None  # (B, N, Dh)
        return velocity, hidden

    def _with_reference(self, x_t: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
        """Concatenate reference latents on channels (zeros when the model takes them but
        none are given)."""
        if not self.ref_channels:
            if ref is not None:
                raise ValueError("decoder: reference latents given, but decoder.ref_channels = 0")
            return x_t
        if ref is None:
            ref = x_t.new_zeros(x_t.shape[0], self.ref_channels, *x_t.shape[2:])
        return torch.cat([x_t, ref.to(x_t.dtype)], 1)  # (B, C + R, H, W)

    def _hooks(self, pooled: torch.Tensor | None, captured: list) -> list:
        """Forward hooks for one call: SANA's pooled offset on the timestep embedding, and the
        capture of the ``align_block`` output into ``captured``. The caller removes them."""
        handles = []
        if self.pooled is not None:
            offset = self.pooled(pooled)  # (B, Dh)

            def add_pooled(_module: nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor:
                return output + offset.to(output.dtype)

            handles.append(self.transformer.time_embed.emb.register_forward_hook(add_pooled))
        if self.align_block is not None:

            def hook(_module: nn.Module, _args: tuple, output: object) -> None:
                # SANA blocks return hidden states; SD3 joint blocks return (context, hidden).
                captured.append(output[1] if isinstance(output, tuple) else output)

            block = self.transformer.transformer_blocks[self.align_block]
            handles.append(block.register_forward_hook(hook))
        return handles


def masked_mean(cond: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of the valid condition tokens: (B, L, D), mask (B, L) or None -> (B, D)."""
    if mask is None:
        return cond.mean(dim=1)  # (B, D)
    m = mask.to(cond.dtype).unsqueeze(-1)  # (B, L, 1)
    return (cond * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, D)


def apply_train_mode(transformer: Transformer, cfg: DecoderConfig) -> None:
    """Set which weights train: all ('full'), none ('frozen'), or only injected LoRA ('lora')."""
    if cfg.train_mode == "full":
        transformer.requires_grad_(True)
        return
    transformer.requires_grad_(False)
    if cfg.train_mode == "lora":
        from peft import LoraConfig

        lora = LoraConfig(
            r=cfg.lora_rank,
            lora_alpha=cfg.lora_alpha,
            target_modules=list(cfg.lora_targets),
            init_lora_weights=True,  # B = 0: the adapted model starts equal to the base
        )
        transformer.add_adapter(lora)


def build_decoder(cfg: DecoderConfig, weights: bool = True) -> Decoder:
    """Build from config (from scratch) or load ``cfg.pretrained``, then apply ``cfg.train_mode``.
    ``weights=False`` builds a pretrained folder's architecture from its config alone (for
    callers that load every weight afterwards)."""
    cfg.validate()
    cls = DECODER_CLASSES[cfg.type]
    if cfg.pretrained is None:
        transformer = cls(**cfg.transformer_kwargs())
    else:
        folder, subfolder = resolve_pretrained(
            cfg.pretrained, "transformer", "decoder.pretrained", (cls.__name__,)
        )
        kw = dict(subfolder=subfolder, local_files_only=True)
        if weights:
            transformer = cls.from_pretrained(folder, **kw)
        else:
            transformer = cls.from_config(cls.load_config(folder, **kw))
    if cfg.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    apply_train_mode(transformer, cfg)
    if cfg.pretrained is not None and cfg.ref_channels:  # after: the new input always trains
        widen_input(transformer, cfg.ref_channels)
    return Decoder(transformer, align_block=cfg.align_block, pooled_cond=cfg.pooled_cond)
