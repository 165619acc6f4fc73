"""Named LoRA heads (peft) on a backbone's language model: add, switch, save and load.

Each head (proposer, solver, judge ...) is injected with peft's `inject_adapter_in_model` under
its own adapter name; at most one is active, and only its weights require gradients. With all
heads off the model is the frozen reference. Heads can be removed again (a server unloading a
hot-loaded adapter); `unimodal.adapters` saves and loads them as PEFT adapter folders.
Left out on purpose: merging heads into the weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class LoraHeadConfig:
    """One LoRA head on the shared backbone (the `[head]` section of the reasoning tools)."""

    name: str = "head"  # the head's adapter name on the shared backbone
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")

    def __post_init__(self) -> None:
        if self.r < 1 or not self.target_modules:
            raise ValueError(f"head: r must be >= 1 and target_modules non-empty ({self})")


def lora_config(
    r: int = 16,
    alpha: int = 32,
    dropout: float = 0.0,
    target_modules: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj"),
) -> Any:
    """The peft `LoraConfig` of a reasoning head: `target_modules` of the language model only."""
    from peft import LoraConfig

    targets = rf".*(language_model|model\.layers).*\.({'|'.join(target_modules)})$"
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets)


class LoraHeads:
    """LoRA head management for a class holding `self.model` and `self.lora_names`."""

    model: nn.Module
    lora_names: list[str]

    def _lora_layers(self) -> list[nn.Module]:
        from peft.tuners.tuners_utils import BaseTunerLayer

        return [m for m in self.model.modules() if isinstance(m, BaseTunerLayer)]

    def add_lora(
        self,
        name: str,
        r: int = 16,
        alpha: int = 32,
        dropout: float = 0.0,
        target_modules: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj"),
    ) -> None:
        """Add a named LoRA head on the language model (vision tower untouched); starts off."""
        from peft import inject_adapter_in_model

        if name in self.lora_names:
            raise ValueError(f"LoRA head '{name}' already exists")
        cfg = lora_config(r, alpha, dropout, target_modules)
        inject_adapter_in_model(cfg, self.model, adapter_name=name)
        self.lora_names.append(name)
        self.lora_specs[name] = LoraHeadConfig(name, r, alpha, dropout, tuple(target_modules))
        self.set_lora(None)

    def remove_lora(self, name: str) -> None:
        """Delete head `name` (its weights leave the model); the others are untouched, all off."""
        if name not in self.lora_names:
            raise ValueError(
                f"no LoRA head '{name}' (have: {', '.join(self.lora_names) or 'none'})"
            )
        for layer in self._lora_layers():
            if name in getattr(layer, "lora_A", {}):
                layer.delete_adapter(name)
        self.lora_names.remove(name)
        self.lora_specs.pop(name, None)
        self.set_lora(None)

    @property
    def lora_specs(self) -> dict[str, LoraHeadConfig]:
        """The shape of every head added, by name."""
        if not hasattr(self, "_lora_specs"):
            self._lora_specs: dict[str, LoraHeadConfig] = {}
        return self._lora_specs

    def add_head(self, head: LoraHeadConfig) -> list[nn.Parameter]:
        """Add `head` with fp32 weights (even on a bf16 base) and switch it on; its parameters."""
        self.add_lora(head.name, head.r, head.alpha, head.dropout, head.target_modules)
        params = self.lora_parameters(head.name)
        for p in params:
            p.data = p.data.float()
        self.set_lora(head.name)
        return params

    def set_lora(self, name: str | None) -> None:
        """Switch head `name` on (others off), or all heads off with None.

        Only the active head's weights require gradients; base weights are never touched.
        """
        if name is not None and name not in self.lora_names:
            have = ", ".join(self.lora_names) or "none added"
            raise ValueError(f"no LoRA head '{name}' (have: {have})")
        for layer in self._lora_layers():
            if name is None:
                layer.enable_adapters(False)
            else:
                layer.enable_adapters(True)
                layer.set_adapter(name)
        for n, p in self.model.named_parameters():
            if "lora_" in n:
                p.requires_grad_(name is not None and f".{name}." in n)
        self._active_lora = name

    @contextlib.contextmanager
    def lora(self, name: str | None) -> Iterator[None]:
        """Run a block with head `name` on (None: all heads off, i.e. the reference model)."""
        prev = self.active_lora
        self.set_lora(name)
        try:
            yield
        finally:
            self.set_lora(prev)

    @property
    def active_lora(self) -> str | None:
        return getattr(self, "_active_lora", None)

    def _lora_named(self, name: str) -> Iterator[tuple[str, nn.Parameter]]:
        return (
            (n, p) for n, p in self.model.named_parameters() if f".{name}." in n and "lora_" in n
        )

    def lora_parameters(self, name: str) -> list[nn.Parameter]:
        return [p for _, p in self._lora_named(name)]

    def lora_state_dict(self, name: str) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu() for n, p in self._lora_named(name)}

    def load_lora_state_dict(self, name: str, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.model.named_parameters())
        missing = [k for k in state if k not in params]
        if missing:
            raise ValueError(f"LoRA head '{name}': unknown keys {missing[:3]}")
        with torch.no_grad():
            for k, v in state.items():
                params[k].copy_(v)
