"""The generation model (Ming-Lite-Uni): frozen backbone + multi-scale queries -> connector ->
flow-matching decoder, trained with multi-scale representation alignment.

For each query scale s (default 4, 8, 16) there is one output resolution (`resolutions`): the
backbone runs once on prompt + all queries, the connector turns each scale's query states into
condition tokens, and the shared decoder learns to denoise the image at that scale's resolution
from them. Alignment ties the decoder's block-k hidden states at each scale to the backbone's
query states of that scale, or (`align_target = 'encoder'`, REPA's main setting) to the patch
features of the clean image from a frozen external encoder (`unimodal.encoders`), resampled to
the decoder's token grid. CFG: the condition is dropped to a learned null with probability p.

Editing (`edit = true`): the source image enters twice, as vision tokens in the backbone
context before the instruction and the queries, and as reference latents concatenated to the
decoder's input channels; dual CFG drops the text condition and the reference independently.

The configuration (`GenModelConfig`, and the checks of its grids) is in `unimodal.generator_config`;
what the connector reads of the query pass in `unimodal.query_features`. Left out on purpose:
device placement and logging (the training loop does that).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from flow_matching import (
    NullCondition,
    build_decoder,
    build_vae,
    denoising_loss,
    drop_condition,
    guidance_branches,
    output_to_velocity,
)
from flow_matching import sample as ode_sample
from unimodal.align import Projector, alignment_loss, resample_grid
from unimodal.backbone import Backbone, Prompt
from unimodal.checkpointing import checkpoint_layers
from unimodal.connector import Connector
from unimodal.encoders import build_encoder
from unimodal.frozen import cast_frozen, frozen_autocast
from unimodal.fsdp import block_names, unsharded
from unimodal.generator_config import GenModelConfig, check_grids
from unimodal.queries import MultiScaleQueries, PromptKV, encode_prompts, query_pass, query_states
from unimodal.query_features import check_layers, num_layers, relative_states, selected_states

__all__ = ["GenModelConfig", "Generator"]


class Generator(nn.Module):
    """Everything the generation path trains, plus the frozen backbone, decoder and VAE (and
    the frozen alignment encoder of `cfg.encoder` when `align_target = 'encoder'`).

    `pretrained_weights=False` (loading a trained model): a decoder trained in full is built
    from its folder's config alone (the trained state holds its weights); `config_only`: the
    decoder and VAE from their configs alone, whatever trains (meta-device estimates)."""

    def __init__(  # fmt: skip
        self,
        cfg: GenModelConfig,
        backbone: Backbone,
        pretrained_weights: bool = True,
        config_only: bool = False,
    ):
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone.freeze()
        if cfg.backbone_checkpointing:
            checkpoint_layers(backbone.model)
        self.vae = build_vae(cfg.vae, weights=not config_only)
        self.vae.requires_grad_(False)
        dec_cfg = cfg.decoder
        if cfg.edit and cfg.edit_reference:  # reference latents enter as extra input channels
            dec_cfg = replace(dec_cfg, ref_channels=self.vae.latent_channels)
        weights = not config_only and (pretrained_weights or dec_cfg.train_mode != "full")
        self.decoder = build_decoder(dec_cfg, weights=weights)
        self.uses_reference = self.decoder.ref_channels > 0
        self.grids = check_grids(cfg, self.decoder, self.vae.downsample)
        width = backbone.hidden_size
        check_layers(cfg.feature_layers, num_layers(backbone.model))
        self.queries = MultiScaleQueries(cfg.queries, width)
        scales = cfg.queries.scales
        states_dim = width * (len(cfg.feature_layers) or 1)  # the query states' channels
        self.connector = Connector(cfg.connector, states_dim, self.decoder.cond_dim, tuple(scales))
        self.nulls = nn.ModuleList(NullCondition(s * s, self.decoder.cond_dim) for s in scales)
        self.encoder = build_encoder(cfg.encoder) if cfg.align_target == "encoder" else None
        target_dim = self.encoder.dim if self.encoder is not None else states_dim
        self.projectors = nn.ModuleList(
            Projector(self.decoder.hidden_dim, target_dim, cfg.projector_dim) for _ in scales
        )
        cast_frozen([self.vae, self.decoder, self.encoder], cfg.frozen_dtype)
        self.train_index = [
            k for k, s in enumerate(scales) if not cfg.train_scales or s in cfg.train_scales
        ]

    @property
    def _no_split_modules(self) -> list[str]:
        """The blocks FSDP wraps: the backbone's layers and the decoder's transformer blocks."""
        return block_names(self.backbone.model, self.decoder.transformer)

    def train(self, mode: bool = True) -> Generator:
        super().train(mode)
        self.backbone.model.eval()  # the frozen backbone never runs in training mode
        return self

    # ------------------------------------------------------------------ conditions
    def encode_prompts(self, texts: list[str], images: list[list] | None = None) -> Prompt:
        return encode_prompts(self.backbone, self.cfg.prompt_prefix, texts, images)

    def query_states(self, prompt: Prompt | PromptKV) -> list[torch.Tensor]:
        """Backbone states at each scale's query positions [(B, s*s, D x layers)]; a `PromptKV`
        (precomputed prompt keys / values) runs only the queries."""
        rows = (prompt.prompt if isinstance(prompt, PromptKV) else prompt).input_ids.shape[0]
        queries = self.queries(rows)  # (B, Q, D)
        pattern = self.queries.pattern()
        run = partial(query_pass, self.backbone, prompt, queries, pattern, self.cfg.prefix_cache)
        layers = self.cfg.feature_layers
        hidden = selected_states(self.backbone.model, layers, queries.shape[1], run)
        states = self.queries.split(hidden.float())
        if self.cfg.relative_queries:
            base = self.queries.split(self._empty_prompt_states(pattern, queries.device))
            states = relative_states(states, base, len(layers) or 1)
        return states

    def _empty_prompt_states(self, pattern: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Query states of the empty prompt (1, Q, D); without gradients cached until the
        queries change (their in-place updates bump the version counters)."""
        key = (str(device), tuple(p._version for p in self.queries.parameters()))
        grad = torch.is_grad_enabled()
        if grad or getattr(self, "_empty_key", None) != key:
            empty = getattr(self, "_empty_prompt", None)
            if empty is None or empty.input_ids.device != device:
                self._empty_prompt = empty = self.encode_prompts([""]).to(device)
            q = self.queries(1)
            run = partial(query_states, self.backbone, empty, q, pattern)
            base = selected_states(self.backbone.model, self.cfg.feature_layers, q.shape[1], run)
            if grad:
                return base.float()
            self._empty_key, self._empty_base = key, base.float()
        return self._empty_base

    def conditions(self, states: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.connector(h, k) for k, h in enumerate(states)]  # [(B, s*s, Dc)]

    # ------------------------------------------------------------------ training
    @frozen_autocast
    def forward(
        self,
        prompt: Prompt | PromptKV,
        pixels: torch.Tensor | None,
        generator: torch.Generator | None = None,
        ref: torch.Tensor | None = None,
        latents: list[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Losses for one batch; `pixels` (B, 3, H, W) in [-1, 1] at the largest resolution.

        `ref` (B, 3, H, W): editing sources (zeros for text-to-image rows); used as reference
        latents when the model has them, dropped to zeros with probability `image_dropout`.
        `latents`: the VAE latents of every scale [(B, C, h, w)] precomputed (a cache,
        with `prompt` a `PromptKV`); `pixels` is then unused (alignment to the backbone only).
        """
        if ref is not None and self.uses_reference:
            keep = torch.rand(ref.shape[0], generator=generator, device=ref.device)
            ref = ref * (keep >= self.cfg.image_dropout).to(ref.dtype)[:, None, None, None]
        states = self.query_states(prompt)
        conds = self.conditions(states)
        aligned = self.cfg.align_weight > 0
        if latents is not None and self.encoder is not None:
            raise ValueError("precomputed latents: the external alignment encoder needs pixels")
        feats = self.encoder(pixels) if aligned and self.encoder is not None else None
        out: dict[str, torch.Tensor] = {}
        total = conds[0].new_zeros((), dtype=torch.float32)
        for k in self.train_index:
            s = self.cfg.queries.scales[k]
            x0 = (
                latents[k] if latents is not None else self.encode_latents(pixels, k)
            )  # (B, C, h, w)
            null = self.nulls[k].embedding
            cond, _, _ = drop_condition(conds[k], None, null, self.cfg.cfg_dropout, generator)
            ref_k = self.reference_latents(ref, self.cfg.resolutions[k])
            fm, hidden = denoising_loss(self.decoder, x0, cond, self.cfg.flow, generator, ref_k)
            out[f"fm_{s}"] = fm.detach()
            total = total + fm
            if aligned and hidden is not None:
                target = resample_grid(feats if feats is not None else states[k], self.grids[k])
                al, cos = alignment_loss(self.projectors[k](hidden), target)  # target (B, N, Dt)
                out[f"align_{s}"], out[f"cos_{s}"] = al.detach(), cos
                total = total + self.cfg.align_weight * al
        out["loss"] = total
        return out

    @torch.no_grad()
    def encode_latents(self, pixels: torch.Tensor, k: int) -> torch.Tensor:
        """Pixels (B, 3, H, W) -> VAE latents at scale k's resolution (B, C, h, w)."""
        res = self.cfg.resolutions[k]
        img = pixels if pixels.shape[-1] == res else F.interpolate(pixels, (res, res), mode="area")  # fmt: skip
        return self.vae.encode(img)

    @torch.no_grad()
    def reference_latents(self, ref: torch.Tensor | None, res: int) -> torch.Tensor | None:
        """Source pixels (B, 3, H, W) -> latents at resolution `res`, or None without reference."""
        if ref is None or not self.uses_reference:
            return None
        img = ref if ref.shape[-1] == res else F.interpolate(ref, size=(res, res), mode="area")
        return self.vae.encode(img)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    @unsharded  # under FSDP: full parameters outside the root's forward
    @frozen_autocast
    def generate(
        self,
        texts: list[str],
        *,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int = 0,
        scale_index: int = -1,
        method: str | None = None,
        images: list[list] | None = None,
        ref: torch.Tensor | None = None,
        image_guidance: float | None = None,
        seeds: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] for `texts` at the chosen scale's resolution.

        Noise: one generator seeded `seed` draws the whole batch; `seeds` (one per row) instead
        draws row i from its own generator seeded `seeds[i]`, so a row's image does not depend
        on the batch around it (`seeds=[s]` equals `seed=s` for one prompt).

        Editing: `images` puts each row's source image in the backbone context and `ref`
        (B, 3, H, W) gives it as reference latents; with both, dual guidance combines the
        branches (null, no ref), (null, ref) and (cond, ref) with image and text scales.
        """
        sc = self.cfg.sampler
        guidance = sc.guidance if guidance is None else guidance
        image_guidance = sc.image_guidance if image_guidance is None else image_guidance
        k = scale_index % len(self.cfg.queries.scales)
        device = self.backbone.device
        prompt = self.encode_prompts(texts, images).to(device)
        cond = self.conditions(self.query_states(prompt))[k]  # (B, L, Dc)
        null = self.nulls[k](cond.shape[0]).to(cond.dtype)  # (B, L, Dc)
        res = self.cfg.resolutions[k]
        ref_k = self.reference_latents(ref.to(device) if ref is not None else None, res)
        stacked, refs, weights = guidance_branches(cond, null, ref_k, guidance, image_guidance)
        latent = res // self.vae.downsample
        shape = (cond.shape[0], self.decoder.in_channels, latent, latent)
        noise = None
        if seeds is not None:
            if len(seeds) != shape[0]:
                raise ValueError(f"seeds: {len(seeds)} seeds for {shape[0]} prompts")
            noise = torch.cat([_noise(shape[1:], s, device) for s in seeds])  # (B, C, h, w)

        def velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            out = self.decoder(x, sigma, stacked, ref=refs)[0]
            return output_to_velocity(out, x, sigma, self.cfg.flow)

        x0 = ode_sample(
            velocity,
            shape,
            steps=steps or sc.steps,
            method=method or sc.method,
            shift=sc.shift,
            weights=weights,
            generator=torch.Generator(device=device).manual_seed(seed),
            noise=noise,
            device=device,
        )
        return self.vae.decode(x0).clamp(-1, 1)

    # ------------------------------------------------------------------ weights
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Every trained weight (queries, connector, nulls, projectors, trainable decoder)."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in names}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        if unexpected:
            raise ValueError(f"generator weights: unexpected keys {unexpected[:5]}")
        want = set(self.trainable_state_dict())
        absent = sorted(want - set(state))
        if absent:
            raise ValueError(f"generator weights: missing keys {absent[:5]}")


def _noise(shape: Sequence[int], seed: int, device: torch.device) -> torch.Tensor:
    """One row of start noise (1, *shape), drawn from its own generator seeded `seed`."""
    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.randn((1, *shape), generator=gen, device=device)
