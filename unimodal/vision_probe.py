"""A vision warm-up for stage 0: each merged image token names the object under its centre.

Pretrained MLLMs start from a vision tower that already sees (CLIP / SigLIP); stage 0 trains
one from scratch, and the gradient that reaches it through an equally untrained LM is weak:
colours come late and shapes not at all (README, stage 0). This auxiliary loss gives the
tower a direct signal from the shapes world's own labels: a linear head on every merged token
(the LM's image embeddings) classifies the cell it covers as background or one of the
colour x shape pairs of the object whose box contains the cell's centre. The head is dropped
at export; the LM still learns to read the tokens from VQA and captions alone.

Left out on purpose: positions, sizes, exact shape outlines (boxes decide coverage).
"""

from __future__ import annotations

import torch
from torch import nn

from unimodal.data import COLORS, SHAPES, Scene

N_CLASSES = 1 + len(COLORS) * len(SHAPES)  # 0 is background


def object_class(color: str, shape: str) -> int:
    return 1 + COLORS.index(color) * len(SHAPES) + SHAPES.index(shape)


def cell_labels(scene: Scene, rows: int, cols: int) -> torch.Tensor:
    """The class of each cell of a rows x cols grid (row-major, Qwen2-VL's merged token order):
    the object whose bounding box holds the cell centre, else background (0)."""
    out = torch.zeros(rows * cols, dtype=torch.long)
    for r in range(rows):
        for c in range(cols):
            x, y = (c + 0.5) / cols, (r + 0.5) / rows
            for o in scene.objects:
                x0, y0, x1, y1 = o.bbox
                if x0 <= x <= x1 and y0 <= y <= y1:
                    out[r * cols + c] = object_class(o.color, o.shape)
                    break
    return out


class TokenProbe(nn.Module):
    """A linear classifier over merged image tokens (N, D) -> (N, N_CLASSES)."""

    def __init__(self, dim: int):
        super().__init__()
        self.head = nn.Linear(dim, N_CLASSES)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(tokens)


def probe_loss(
    probe: TokenProbe, tokens: torch.Tensor, scenes: list[Scene], grid_thw: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of the probe on the merged tokens (N, D) of `scenes` (one image each, in
    order; `grid_thw` (n, 3) their patch grids before the 2 x 2 merge)."""
    labels = [cell_labels(s, int(h) // 2, int(w) // 2) for s, (_, h, w) in zip(scenes, grid_thw)]
    target = torch.cat(labels).to(tokens.device)  # (N,)
    if target.numel() != tokens.shape[0]:
        raise ValueError(f"probe: {tokens.shape[0]} image tokens for {target.numel()} cells")
    return nn.functional.cross_entropy(probe(tokens).float(), target)


class Capture:
    """Keeps the last output of a module (the vision tower's merged tokens) during a forward."""

    def __init__(self, module: nn.Module):
        self.value: torch.Tensor | None = None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args, output) -> None:
        self.value = getattr(output, "pooler_output", output)

    def close(self) -> None:
        self.handle.remove()
