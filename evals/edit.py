"""Editing evaluation on a fixed seeded set of shapes-world edit pairs.

(a) Edit success per kind: the checker finds the target scene in the output (`check_scene`).
(b) Preservation outside the edited region: PSNR over the pixels outside the region's box, and
SSIM (torchmetrics) between output and target with the region filled from the target in both.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import torch

from unimodal.data import check_scene, edit_sample, render, to_pixels
from unimodal.grid import save_grid, to_pil

HELD_OUT_SEED = 2_000_003


def region_mask(region: tuple[float, float, float, float], size: int) -> torch.Tensor:
    """(1, 1, H, W) bool, True inside the normalised box."""
    x0, y0, x1, y1 = (int(round(v * size)) for v in region)
    m = torch.zeros(1, 1, size, size, dtype=torch.bool)
    m[..., max(0, y0) : min(size, y1 + 1), max(0, x0) : min(size, x1 + 1)] = True
    return m


def preservation(
    out: torch.Tensor, target: torch.Tensor, inside: torch.Tensor
) -> tuple[float, float]:
    """PSNR and SSIM outside the region; images (1, 3, H, W) in [-1, 1]."""
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    a, b = (out + 1) / 2, (target + 1) / 2  # [0, 1]
    outside = ~inside.expand_as(a)
    mse = ((a - b)[outside] ** 2).mean().clamp(min=1e-10)
    psnr = float(10 * torch.log10(1.0 / mse))
    filled = torch.where(inside.expand_as(a), b, a)
    return psnr, float(ssim(filled, b, data_range=1.0))


@torch.no_grad()
def evaluate_edit(
    generator,
    out_dir: str | Path,
    n: int = 100,
    batch_size: int = 25,
    steps: int | None = None,
    text_guidance: float | None = None,
    image_guidance: float | None = None,
) -> dict:
    """Edit `n` held-out pairs; write `report.json` and a grid of (source, output, target)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    size = generator.cfg.resolutions[-1]
    pairs = [edit_sample(HELD_OUT_SEED, i) for i in range(n)]
    ok: dict[str, list[int]] = defaultdict(list)
    psnrs, ssims, tiles, captions = [], [], [], []
    for s in range(0, n, batch_size):
        batch = pairs[s : s + batch_size]
        sources = [render(p.source, size) for p in batch]
        ref = torch.stack([to_pixels(im) for im in sources])
        imgs = generator.generate(
            [p.instruction for p in batch],
            images=[[im] for im in sources],
            ref=ref,
            steps=steps,
            guidance=text_guidance,
            image_guidance=image_guidance,
            seed=s,
        ).cpu()
        for p, src, img in zip(batch, sources, imgs):
            target = to_pixels(render(p.target, size))[None]
            success = check_scene(img, p.target).ok
            ok[p.kind].append(int(success))
            psnr, ssim = preservation(img[None], target, region_mask(p.region, size))
            psnrs.append(psnr)
            ssims.append(ssim)
            if len(tiles) < 48:
                tiles += [src, *to_pil(img[None]), *to_pil(target)]
                captions += [p.instruction, "OK" if success else "X", "target"]
    per_kind = {k: sum(v) / len(v) for k, v in sorted(ok.items())}
    report = {
        "suite": "edit",
        "success": sum(sum(v) for v in ok.values()) / n,
        "per_kind": per_kind,
        "psnr_outside": sum(psnrs) / n,
        "ssim_outside": sum(ssims) / n,
        "n": n,
        "reference_latents": bool(generator.uses_reference),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    save_grid(tiles, captions, out / "edits.png", cell=96, cols=6)
    return report


def edit_table(report: dict) -> str:
    kinds = list(report["per_kind"])
    head = " ".join(f"{k:>9}" for k in kinds)
    vals = " ".join(f"{report['per_kind'][k]:>9.3f}" for k in kinds)
    return (
        f"{'success':>8} {head} {'PSNR-out':>9} {'SSIM-out':>9}\n"
        f"{report['success']:>8.3f} {vals} {report['psnr_outside']:>9.2f} {report['ssim_outside']:>9.3f}"
    )
