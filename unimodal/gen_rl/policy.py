"""The policy of Flow-GRPO: a supervised generator with some weights set to train, its frozen
reference, and the guided velocity of a batch of prompts.

- `load_policy` reads the folder `tools/train_gen.py` exported and makes trainable either new LoRA
  adapters on the decoder (over a fully trained decoder; a LoRA-trained decoder keeps training
  its own adapters) or the whole decoder, and optionally the queries, connector and nulls.
- `export_policy` writes the trained generator in the supervised folder's format.
- The reference is the supervised model itself: `Reference` keeps a copy of the trainable
  weights as loaded and swaps them in for a no-grad pass, so no second model sits in memory
  (for LoRA the copy is the adapters at init, B = 0, i.e. the base decoder).
- `Conditions.velocity` is the decoder's velocity (x-prediction converted) for stacked CFG
  branches; `flow_matching.sde` combines the branches with the guidance weights.

Left out: EMA of the policy (Flow-GRPO keeps one), a decoder frozen in the supervised run.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from flow_matching import apply_train_mode, guidance_branches, output_to_velocity
from flow_matching.sampler import VelocityFn
from unimodal.config import ConfigError
from unimodal.gen_rl.config import PolicyConfig
from unimodal.generator import Generator


@dataclass
class Policy:
    """The generator under RL, the weight names its export holds, whether LoRA was added."""

    gen: Generator
    exported: set[str]
    added_lora: bool


def load_policy(init: str, cfg: PolicyConfig, device: torch.device | str) -> Policy:
    """The generator of folder `init` with the RL weights of `cfg` trainable."""
    from unimodal.pipeline import Pipeline

    gen = Pipeline.from_pretrained(init, device=str(device)).generator
    if gen is None:
        raise FileNotFoundError(f"init: {init} holds no generator (generator.safetensors)")
    exported = set(gen.trainable_state_dict())
    mode = gen.cfg.decoder.train_mode
    if mode == "frozen" or (mode == "lora" and cfg.train_mode == "full"):
        raise ConfigError(
            f"policy.train_mode: '{cfg.train_mode}' on a decoder trained with train_mode "
            f"'{mode}' is not supported (its export holds no full decoder weights)"
        )
    lora_names = [n for n, _ in gen.decoder.named_parameters() if "lora_" in n]
    gen.requires_grad_(False)
    added = cfg.train_mode == "lora" and mode == "full"
    if cfg.train_mode == "full":
        gen.decoder.requires_grad_(True)
    elif not added:  # keep training the supervised run's adapters
        for n, p in gen.decoder.named_parameters():
            p.requires_grad_(n in lora_names)
    else:
        dec = replace(gen.cfg.decoder, train_mode="lora", lora_rank=cfg.lora_rank)
        dec = replace(dec, lora_alpha=cfg.lora_alpha)
        apply_train_mode(gen.decoder.transformer, dec)
        gen.decoder.to(device)
    if cfg.train_conditions:
        for part in (gen.queries, gen.connector, gen.nulls):
            part.requires_grad_(True)
    gen.eval()  # no dropout: rollouts and updates see the same policy
    return Policy(gen, exported, added)


def export_policy(policy: Policy, init: str, out: Path) -> Path:
    """OUT/final in `tools/train_gen.py`'s format (loadable by `Pipeline.from_pretrained`):
    the supervised folder's config and backbone record, and its weights as RL left them (new
    LoRA adapters fused into the decoder first, which ends training of this generator)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.toml", "backbone.json"):
        shutil.copyfile(Path(init) / name, out / name)
    if policy.added_lora:
        policy.gen.decoder.transformer.fuse_lora()
        policy.gen.decoder.transformer.unload_lora()
    state = {k: v.contiguous() for k, v in policy.gen.state_dict().items() if k in policy.exported}
    if set(state) != policy.exported:
        raise RuntimeError(f"export: missing {sorted(policy.exported - set(state))[:5]}")
    save_file(state, out / "generator.safetensors")
    return out


class Reference:
    """The trainable weights as loaded (the supervised policy), swappable in for a pass."""

    def __init__(self, named: dict[str, nn.Parameter]) -> None:
        self.named = named
        self.weights = {k: p.detach().clone() for k, p in named.items()}

    @contextmanager
    def active(self) -> Iterator[None]:
        """Inside: the model computes with the reference weights (no gradients)."""
        saved = {k: p.data for k, p in self.named.items()}
        try:
            with torch.no_grad():
                for k, p in self.named.items():
                    p.data = self.weights[k]
                yield
        finally:
            for k, p in self.named.items():
                p.data = saved[k]


@dataclass
class Conditions:
    """The stacked CFG conditions (k*B, L, Dc) of a prompt batch and the branch weights."""

    gen: Generator
    stacked: torch.Tensor
    weights: tuple[float, ...]

    @classmethod
    def of(cls, gen: Generator, texts: list[str], guidance: float) -> Conditions:
        """Conditions at the largest scale (as `Generator.generate` samples); with gradients
        when the queries / connector train and gradients are on."""
        k = len(gen.cfg.queries.scales) - 1
        prompt = gen.encode_prompts(texts).to(gen.backbone.device)
        cond = gen.conditions(gen.query_states(prompt))[k]  # (B, L, Dc)
        null = gen.nulls[k](cond.shape[0]).to(cond.dtype)  # (B, L, Dc)
        stacked, _, weights = guidance_branches(cond, null, None, guidance, 1.0)
        return cls(gen, stacked, tuple(weights))

    def rows(self, index: torch.Tensor) -> Conditions:
        """The conditions of prompt rows `index` (B',) in every branch."""
        b = self.stacked.shape[0] // len(self.weights)
        idx = torch.cat([index + i * b for i in range(len(self.weights))])  # (k*B',)
        return Conditions(self.gen, self.stacked[idx.to(self.stacked.device)], self.weights)

    @property
    def velocity(self) -> VelocityFn:
        """Stacked-branch velocity ``(k*B, C, h, w), (k*B,) -> (k*B, C, h, w)``."""

        def fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            out = self.gen.decoder(x, sigma, self.stacked)[0]
            return output_to_velocity(out, x, sigma, self.gen.cfg.flow)

        return fn

    def latent_shape(self, batch: int) -> tuple[int, int, int, int]:
        """(B, C, h, w) of the largest scale's latents."""
        res = self.gen.cfg.resolutions[-1] // self.gen.vae.downsample
        return (batch, self.gen.decoder.in_channels, res, res)
